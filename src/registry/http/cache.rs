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
}
