//! Content this client already read or wrote, by digest.

use bytes::Bytes;

use super::Inner;
use crate::model::{Digest, RawManifest};

/// Content this client already read or wrote, by (repository, digest): a manifest or small
/// blob addressed by digest never changes, so one apply never asks for it twice (the scan
/// and the promote re-read what the import just wrote). Scoped to the repository, so a
/// repository is never assumed to hold what was only seen in another; a delete through this
/// client evicts. Bounded: cleared when it would grow past `CACHE_BYTES`.
#[derive(Debug, Default)]
pub(super) struct ContentCache {
    manifests: std::collections::HashMap<(String, Digest), RawManifest>,
    blobs: std::collections::HashMap<(String, Digest), Bytes>,
    bytes: usize,
}

/// Bound of the content cache of one registry client.
const CACHE_BYTES: usize = 32 << 20;
/// Blobs up to this size go into the content cache.
pub const SMALL_BLOB: u64 = 64 << 10;

impl ContentCache {
    fn make_room(&mut self, n: usize) {
        if self.bytes + n > CACHE_BYTES {
            self.manifests.clear();
            self.blobs.clear();
            self.bytes = 0;
        }
        self.bytes += n;
    }

    fn put_manifest(&mut self, repo: &str, m: &RawManifest) {
        if m.bytes.len() > CACHE_BYTES / 8 {
            return;
        }
        self.make_room(m.bytes.len());
        self.manifests
            .insert((repo.to_string(), m.digest.clone()), m.clone());
        for (digest, bytes) in embedded_blobs(&m.bytes) {
            self.put_blob(repo, &digest, &bytes);
        }
    }

    fn put_blob(&mut self, repo: &str, digest: &Digest, b: &Bytes) {
        if b.len() as u64 > SMALL_BLOB {
            return;
        }
        self.make_room(b.len());
        self.blobs
            .insert((repo.to_string(), digest.clone()), b.clone());
    }
}

/// The blobs an image manifest embeds in its descriptors (OCI 1.1 `data`, base64: airlock's
/// records embed their envelope), each only when its bytes are exactly what the descriptor
/// names: as long as its `size` and hashing to its `digest`. Anything else embedded is
/// ignored (hostile or broken: the blob is then read from the registry, verified).
fn embedded_blobs(manifest: &[u8]) -> Vec<(Digest, Bytes)> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: String,
        size: u64,
        data: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Image {
        config: Option<Desc>,
        #[serde(default)]
        layers: Vec<Desc>,
    }
    // Cheap test first: most manifests embed nothing.
    if !manifest.windows(6).any(|w| w == b"\"data\"") {
        return Vec::new();
    }
    let Ok(image) = serde_json::from_slice::<Image>(manifest) else {
        return Vec::new();
    };
    image
        .config
        .into_iter()
        .chain(image.layers)
        .filter_map(|d| {
            let data = d.data?;
            if d.size > SMALL_BLOB || data.len() as u64 > SMALL_BLOB * 2 {
                return None;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .ok()?;
            let digest: Digest = d.digest.parse().ok()?;
            (bytes.len() as u64 == d.size && Digest::of(&bytes) == digest)
                .then(|| (digest, Bytes::from(bytes)))
        })
        .collect()
}

impl Inner {
    pub(super) fn cached_manifest(&self, repo: &str, digest: &Digest) -> Option<RawManifest> {
        self.cache
            .lock()
            .expect("cache lock")
            .manifests
            .get(&(repo.to_string(), digest.clone()))
            .cloned()
    }

    pub(super) fn cache_manifest(&self, repo: &str, m: &RawManifest) {
        self.cache.lock().expect("cache lock").put_manifest(repo, m);
    }

    pub(super) fn cached_blob(&self, repo: &str, digest: &Digest, max: u64) -> Option<Vec<u8>> {
        let key = (repo.to_string(), digest.clone());
        let cache = self.cache.lock().expect("cache lock");
        cache
            .blobs
            .get(&key)
            .filter(|b| b.len() as u64 <= max)
            .map(|b| b.to_vec())
    }

    pub(super) fn cache_blob(&self, repo: &str, digest: &Digest, bytes: &Bytes) {
        self.cache
            .lock()
            .expect("cache lock")
            .put_blob(repo, digest, bytes);
    }

    /// Forget a manifest deleted through this client.
    pub(super) fn evict_manifest(&self, repo: &str, digest: &Digest) {
        self.cache
            .lock()
            .expect("cache lock")
            .manifests
            .remove(&(repo.to_string(), digest.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_cache_is_per_repository_and_bounded() {
        let mut c = ContentCache::default();
        let small = Bytes::from_static(b"{}");
        let d = Digest::of(&small);
        c.put_blob("a", &d, &small);
        assert!(c.blobs.contains_key(&("a".to_string(), d.clone())));
        assert!(!c.blobs.contains_key(&("b".to_string(), d.clone())));
        // Too big to keep.
        let big = Bytes::from(vec![0u8; SMALL_BLOB as usize + 1]);
        c.put_blob("a", &Digest::of(&big), &big);
        assert_eq!(c.blobs.len(), 1);
        // Past the bound, everything is forgotten.
        let chunk = Bytes::from(vec![1u8; SMALL_BLOB as usize]);
        for n in 0..(CACHE_BYTES / chunk.len() + 1) {
            c.put_blob(&format!("r{n}"), &Digest::of(&chunk), &chunk);
        }
        assert!(c.bytes <= CACHE_BYTES);
        assert!(!c.blobs.contains_key(&("a".to_string(), d)));
    }

    fn manifest_embedding(digest: &Digest, size: usize, data: &[u8]) -> RawManifest {
        use base64::Engine as _;
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::model::media::OCI_MANIFEST,
            "config": {"mediaType": crate::model::media::OCI_EMPTY,
                       "digest": Digest::of(b"{}").to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json",
                        "digest": digest.to_string(), "size": size,
                        "data": base64::engine::general_purpose::STANDARD.encode(data)}],
        });
        RawManifest::new(serde_json::to_vec(&body).unwrap(), None).unwrap()
    }

    #[test]
    fn embedded_data_is_cached_only_when_it_is_the_described_content() {
        let envelope = b"{\"payload\":\"x\"}".to_vec();
        let d = Digest::of(&envelope);
        let mut c = ContentCache::default();
        // Exactly the content: kept, for this repository only.
        c.put_manifest("a", &manifest_embedding(&d, envelope.len(), &envelope));
        assert_eq!(
            c.blobs[&("a".to_string(), d.clone())].as_ref(),
            &envelope[..]
        );
        assert!(!c.blobs.contains_key(&("b".to_string(), d.clone())));
        // Other bytes under the digest (an edited envelope), a wrong size, or no base64:
        // never believed.
        let mut c = ContentCache::default();
        c.put_manifest(
            "a",
            &manifest_embedding(&d, envelope.len(), b"{\"payload\":\"y\"}"),
        );
        c.put_manifest("b", &manifest_embedding(&d, envelope.len() + 1, &envelope));
        let mut m = manifest_embedding(&d, envelope.len(), &envelope);
        let text = String::from_utf8(m.bytes.clone()).unwrap();
        let b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&envelope)
        };
        m.bytes = text.replace(&b64, "!!not base64!!").into_bytes();
        c.put_manifest("c", &m);
        assert!(c.blobs.is_empty(), "{:?}", c.blobs.keys());
    }
}
