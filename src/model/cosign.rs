//! The cosign tags airlock manages: `sha256-<hex>.sig` (signatures), `.att` (attestations) and
//! `.sbom` (SBOMs), the tag-based layout cosign uses on registries without the referrers API.
//! They travel with the image they are about (import and promote copy them), and `audit` and
//! `prune` skip exactly those whose subject digest is present in the same repository.

use super::digest::Digest;
use super::manifest::{Parsed, RawManifest};

/// The suffixes of the cosign tags airlock copies, in the order they are copied.
pub const SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

/// The cosign tags for an image digest: `sha256-<hex>.sig`, `.att`, `.sbom`.
pub fn signature_tags(subject: &Digest) -> Vec<String> {
    SUFFIXES
        .iter()
        .map(|s| format!("{}{s}", subject.referrers_tag()))
        .collect()
}

/// The subject digest of a cosign tag airlock manages; `None` for every other tag. Exact:
/// `sha256-`, 64 lowercase hex characters, then one of [`SUFFIXES`] and nothing more.
pub fn signature_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_at_checked(64)?;
    if !SUFFIXES.contains(&suffix) {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

/// Whether a manifest is a signature-style artifact that no runtime can run: an image
/// manifest with at least one layer and no filesystem layer (cosign's `.sig`, `.att` and
/// `.sbom` layers are JSON or SBOM documents). A tag named like a cosign tag that holds a
/// runnable image is a live tag like any other.
pub fn is_signature_manifest(m: &RawManifest) -> bool {
    match m.parse() {
        Ok(Parsed::Image { layers, .. }) => {
            !layers.is_empty() && !layers.iter().any(|l| is_filesystem_layer(&l.media_type))
        }
        _ => false,
    }
}

/// OCI and Docker filesystem layer media types (tar, compressed or not, distributable or not).
fn is_filesystem_layer(media_type: &str) -> bool {
    let m = media_type.trim().to_ascii_lowercase();
    m.starts_with("application/vnd.oci.image.layer.")
        || m.starts_with("application/vnd.docker.image.rootfs.")
        || m.contains("tar")
        || m.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_tags_round_trip_to_their_subject() {
        let d = Digest::of(b"image");
        let tags = signature_tags(&d);
        assert_eq!(
            tags,
            [".sig", ".att", ".sbom"].map(|s| format!("sha256-{}{s}", d.hex()))
        );
        for t in &tags {
            assert_eq!(signature_subject(t), Some(d.clone()), "{t}");
        }
    }

    #[test]
    fn nothing_else_is_a_signature_tag() {
        let hex = Digest::of(b"image").hex().to_string();
        for t in [
            format!("sha256-{hex}"),                      // a referrers-schema index
            format!("sha256-{hex}.sig.sig"),              // trailing junk
            format!("sha256-{hex}.SIG"),                  // case
            format!("sha256-{hex}.sign"),                 // other suffix
            format!("sha256-{}.sig", &hex[..63]),         // short
            format!("sha256-{}.sig", hex.to_uppercase()), // upper-case hex
            format!("sha512-{hex}.sig"),                  // algorithm
            format!("x-sha256-{hex}.sig"),                // prefix
            "1.36.1".to_string(),
            "sha256-.sig".to_string(),
        ] {
            assert_eq!(signature_subject(&t), None, "{t}");
        }
    }

    fn manifest(layer_types: &[&str]) -> RawManifest {
        let layers: Vec<String> = layer_types
            .iter()
            .map(|t| {
                format!(
                    r#"{{"mediaType":"{t}","digest":"{}","size":1}}"#,
                    Digest::of(t.as_bytes())
                )
            })
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{}]}}"#,
            Digest::of(b"{}"),
            layers.join(",")
        );
        RawManifest::new(json.into_bytes(), None).unwrap()
    }

    #[test]
    fn only_manifests_without_filesystem_layers_are_signatures() {
        assert!(is_signature_manifest(&manifest(&[
            "application/vnd.dev.cosign.simplesigning.v1+json"
        ])));
        assert!(is_signature_manifest(&manifest(&[
            "application/vnd.dsse.envelope.v1+json"
        ])));
        // A runnable image under a cosign-looking tag is an image.
        for runnable in [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/x-tar",
        ] {
            assert!(
                !is_signature_manifest(&manifest(&[
                    "application/vnd.dev.cosign.simplesigning.v1+json",
                    runnable
                ])),
                "{runnable}"
            );
        }
        assert!(!is_signature_manifest(&manifest(&[])));
    }
}
