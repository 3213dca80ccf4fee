//! Manifest bytes: what kind they are, what they reference, and a platform subset of an index.
//! The bytes are never re-serialised except when a subset index is deliberately built.

use oci_spec::image::{ImageIndex, ImageManifest};

use super::digest::Digest;
use super::media;
use super::platform::Platform;

/// A manifest as a registry stores it: exact bytes, media type, digest of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// One referenced piece of content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentRef {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
}

/// What a manifest's bytes say.
#[derive(Clone, Debug)]
pub enum Parsed {
    Index {
        manifests: Vec<ContentRef>,
        subject: Option<ContentRef>,
    },
    Image {
        config: ContentRef,
        layers: Vec<ContentRef>,
        subject: Option<ContentRef>,
        artifact_type: Option<String>,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest has unsupported media type `{0}`")]
    MediaType(String),
    #[error("manifest references an invalid digest: {0}")]
    Digest(String),
    #[error("manifest does not follow the OCI schema: {0}")]
    Schema(String),
}

impl RawManifest {
    /// Wrap bytes, computing their digest. The media type comes from the body's `mediaType`,
    /// else the given Content-Type, else the shape (`manifests` means an index).
    pub fn new(bytes: Vec<u8>, content_type: Option<&str>) -> Result<RawManifest, ManifestError> {
        let media_type = detect_media_type(&bytes, content_type)?;
        Ok(RawManifest {
            digest: Digest::of(&bytes),
            bytes,
            media_type,
        })
    }

    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }

    pub fn parse(&self) -> Result<Parsed, ManifestError> {
        parse(&self.bytes, &self.media_type)
    }
}

fn detect_media_type(bytes: &[u8], content_type: Option<&str>) -> Result<String, ManifestError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(mt.to_string());
    }
    if let Some(ct) = content_type {
        let ct = ct.split(';').next().unwrap_or("").trim();
        if media::is_index(ct) || media::is_manifest(ct) {
            return Ok(ct.to_string());
        }
    }
    if v.get("manifests").is_some() {
        Ok(media::OCI_INDEX.to_string())
    } else if v.get("config").is_some() {
        Ok(media::OCI_MANIFEST.to_string())
    } else {
        Err(ManifestError::MediaType(
            content_type.unwrap_or("(none)").to_string(),
        ))
    }
}

fn content_ref(field: &str, d: &oci_spec::image::Descriptor) -> Result<ContentRef, ManifestError> {
    let digest: Digest =
        d.digest()
            .to_string()
            .parse()
            .map_err(|e: super::digest::DigestError| {
                ManifestError::Digest(format!("`{field}.digest`: {e}"))
            })?;
    Ok(ContentRef {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
        platform: d.platform().as_ref().map(|p| {
            Platform::new(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        }),
    })
}

/// Parse manifest bytes of a known media type.
pub fn parse(bytes: &[u8], media_type: &str) -> Result<Parsed, ManifestError> {
    if media::is_index(media_type) {
        let idx = ImageIndex::from_reader(bytes).map_err(|e| diagnose(bytes, e, true))?;
        let manifests = idx
            .manifests()
            .iter()
            .enumerate()
            .map(|(i, d)| content_ref(&format!("manifests[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let subject = idx
            .subject()
            .as_ref()
            .map(|d| content_ref("subject", d))
            .transpose()?;
        Ok(Parsed::Index { manifests, subject })
    } else if media::is_manifest(media_type) {
        let m = ImageManifest::from_reader(bytes).map_err(|e| diagnose(bytes, e, false))?;
        Ok(Parsed::Image {
            config: content_ref("config", m.config())?,
            layers: m
                .layers()
                .iter()
                .enumerate()
                .map(|(i, d)| content_ref(&format!("layers[{i}]"), d))
                .collect::<Result<Vec<_>, _>>()?,
            subject: m
                .subject()
                .as_ref()
                .map(|d| content_ref("subject", d))
                .transpose()?,
            artifact_type: m.artifact_type().as_ref().map(|a| a.to_string()),
        })
    } else {
        Err(ManifestError::MediaType(media_type.to_string()))
    }
}

/// Say what is wrong with bytes the OCI types refused: not JSON at all, or a descriptor whose
/// `digest` or `size` is invalid (naming the field), or else the schema error as it is.
fn diagnose(bytes: &[u8], e: impl std::fmt::Display, index: bool) -> ManifestError {
    let v: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(json) => return ManifestError::Json(json.to_string()),
    };
    let mut descriptors: Vec<(String, &serde_json::Value)> = Vec::new();
    let list = if index { "manifests" } else { "layers" };
    if let Some(items) = v.get(list).and_then(|l| l.as_array()) {
        descriptors.extend(
            items
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("{list}[{i}]"), d)),
        );
    }
    for single in ["config", "subject"] {
        if let Some(d) = v.get(single).filter(|d| d.is_object()) {
            descriptors.push((single.to_string(), d));
        }
    }
    descriptors.sort_by_key(|(field, _)| field != "config");
    for (field, d) in descriptors {
        match d.get("digest") {
            Some(serde_json::Value::String(s)) => {
                if let Err(e) = s.parse::<Digest>() {
                    return ManifestError::Digest(format!("`{field}.digest`: {e}"));
                }
            }
            Some(other) => {
                return ManifestError::Digest(format!("`{field}.digest` is {other}, not a string"));
            }
            None => return ManifestError::Schema(format!("`{field}` has no digest")),
        }
        if let Some(size) = d.get("size")
            && size.as_u64().is_none()
        {
            return ManifestError::Schema(format!(
                "`{field}.size` is {size}, not a byte count (a whole number from 0 to 2^64-1)"
            ));
        }
    }
    ManifestError::Schema(e.to_string())
}

/// Build the index that keeps only the children whose platform one of `wanted` selects.
/// Every other field of the index is kept; the result is deterministic for the same input.
/// Returns None when no child matches.
pub fn subset_index(
    index: &RawManifest,
    wanted: &[Platform],
) -> Result<Option<RawManifest>, ManifestError> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&index.bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    let Parsed::Index { manifests, .. } = index.parse()? else {
        return Err(ManifestError::MediaType(index.media_type.clone()));
    };
    let keep: Vec<bool> = manifests
        .iter()
        .map(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| wanted.iter().any(|w| w.selects(p)))
        })
        .collect();
    if !keep.iter().any(|k| *k) {
        return Ok(None);
    }
    let arr = v
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| ManifestError::Json("index without manifests".into()))?;
    let mut i = 0;
    arr.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
    let bytes = serde_json::to_vec_pretty(&v).map_err(|e| ManifestError::Json(e.to_string()))?;
    Ok(Some(RawManifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: index.media_type.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> RawManifest {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [
                {"mediaType": media::OCI_MANIFEST, "digest": d('a'), "size": 10,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media::OCI_MANIFEST, "digest": d('b'), "size": 11,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ],
            "annotations": {"x": "y"}
        });
        RawManifest::new(serde_json::to_vec(&body).unwrap(), None).unwrap()
    }

    #[test]
    fn parses_an_index() {
        let idx = index();
        assert!(idx.is_index());
        let Parsed::Index { manifests, .. } = idx.parse().unwrap() else {
            panic!()
        };
        assert_eq!(manifests.len(), 2);
        assert_eq!(
            manifests[1].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn subset_is_deterministic_and_keeps_fields() {
        let idx = index();
        let want = vec!["linux/amd64".parse().unwrap()];
        let a = subset_index(&idx, &want).unwrap().unwrap();
        let b = subset_index(&idx, &want).unwrap().unwrap();
        assert_eq!(a, b);
        assert_ne!(a.digest, idx.digest);
        let Parsed::Index { manifests, .. } = a.parse().unwrap() else {
            panic!()
        };
        assert_eq!(manifests.len(), 1);
        assert!(String::from_utf8_lossy(&a.bytes).contains("annotations"));
        assert!(
            subset_index(&idx, &["windows/amd64".parse().unwrap()])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_bad_digest_is_named_not_called_bad_json() {
        let good = format!("sha256:{}", "a".repeat(64));
        let manifest = |layer_digest: serde_json::Value, size: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": good, "size": 2},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": good, "size": 3},
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": layer_digest, "size": size},
                ]
            }))
            .unwrap()
        };
        let parse = |bytes: Vec<u8>| parse(&bytes, media::OCI_MANIFEST).unwrap_err().to_string();
        for bad in ["sha256:xyz", "nonsense", "sha256:", ""] {
            let e = parse(manifest(serde_json::json!(bad), serde_json::json!(3)));
            assert!(!e.contains("JSON"), "{e}");
            assert!(
                e.contains("invalid digest") && e.contains("`layers[1].digest`"),
                "{e}"
            );
        }
        // Accepted by the OCI types, refused by airlock (sha256 only): still named.
        let e = parse(manifest(
            serde_json::json!(format!("sha512:{}", "b".repeat(128))),
            serde_json::json!(3),
        ));
        assert!(
            e.contains("`layers[1].digest`") && e.contains("sha256"),
            "{e}"
        );
        let e = parse(manifest(serde_json::json!(42), serde_json::json!(3)));
        assert!(e.contains("`layers[1].digest` is 42, not a string"), "{e}");
        let e = parse(manifest(serde_json::json!(good), serde_json::json!(-1)));
        assert!(
            e.contains("`layers[1].size` is -1, not a byte count"),
            "{e}"
        );
        let e = parse(manifest(serde_json::json!(good), serde_json::json!("3")));
        assert!(e.contains("`layers[1].size`"), "{e}");
        // What is not JSON is still said so.
        let e = parse(b"{\"schemaVersion\": 2,".to_vec());
        assert!(e.starts_with("manifest is not valid JSON"), "{e}");
        // An index child.
        let idx = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": "sha256:0", "size": 1}]
        }))
        .unwrap();
        let e = super::parse(&idx, media::OCI_INDEX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`manifests[0].digest`"), "{e}");
    }

    #[test]
    fn media_type_from_shape_or_header() {
        let m = RawManifest::new(br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(), None).unwrap();
        assert_eq!(m.media_type, media::OCI_INDEX);
        let m = RawManifest::new(
            br#"{"schemaVersion":2,"config":{}}"#.to_vec(),
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, media::DOCKER_MANIFEST);
    }
}
