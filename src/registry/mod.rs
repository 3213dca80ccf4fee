//! Registry access behind one interface: `Registry` is either an OCI Distribution registry
//! over HTTP(S) (`http`, with `auth`, `credentials` and `retry`) or a directory of OCI
//! image layouts (`layout`). This module owns the shared types (descriptors, referrers,
//! verified blob streams), the referrers tag-schema fallback common to both backends, and
//! `Registries`, the per-key set that shares token caches and connection pools.
//!
//! Retries: idempotent requests and replayable bodies (manifests, byte blobs, listings,
//! HEADs, upload starts) are retried inside the client on transient errors. A streamed
//! blob upload (`put_blob`) consumes its source and is never replayed: on a transient
//! error it fails with `is_transient() == true` and the caller retries the whole copy.

pub mod auth;
pub mod credentials;
pub mod error;
pub mod http;
pub mod layout;
mod referrers_merge;
mod registries;
pub mod retry;
pub mod tls;
pub mod verify;

#[cfg(test)]
mod scripted_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::config::{Endpoint, RegistrySpec};
use crate::model::reference::{valid_path, valid_tag};
use crate::model::{Digest, RawManifest, media};

pub use error::RegistryError;
use error::Result;
pub use http::HttpRegistry;
pub use layout::LayoutRegistry;
pub use registries::Registries;
pub use retry::RetryPolicy;

/// Install rustls' ring crypto provider for the process (idempotent). Every reqwest client
/// needs it; `HttpRegistry::new` calls it, and so must any other code building a client.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a manifest HEAD says: enough to compare and to reference it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

impl From<RawManifest> for Descriptor {
    /// The descriptor of manifest bytes read whole (when a HEAD answer is not enough).
    fn from(m: RawManifest) -> Descriptor {
        Descriptor {
            size: m.bytes.len() as u64,
            digest: m.digest,
            media_type: m.media_type,
        }
    }
}

/// One manifest whose `subject` is a given digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Blob bytes as they arrive. Streams returned by `get_blob` verify the digest as bytes
/// pass and end with `Err(DigestMismatch)` (never a clean end) when the content is wrong.
pub type BlobStream = futures_util::stream::BoxStream<'static, Result<bytes::Bytes>>;

/// A blob being read: its size and its verified byte stream.
pub struct Blob {
    pub size: u64,
    pub stream: BlobStream,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The outcome of a manifest PUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutManifest {
    /// The registry answered `OCI-Subject`: it indexes referrers itself.
    pub subject_indexed: bool,
}

/// The largest manifest read or written (Distribution's own limit): a bigger answer is
/// refused before it is buffered.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Client tuning shared by every HTTP registry. Deadlines are per registry entry
/// (`timeout`, `stall_timeout`: [`crate::config::Timeouts`]), not here.
#[derive(Clone)]
pub struct ClientOptions {
    /// Blobs larger than this are uploaded in chunks (PATCH); smaller ones stream in one PUT
    /// (no buffering, the fastest path, measured in BENCHMARKS.md). A registry that answers
    /// 413 to a monolithic upload gets chunks from then on.
    pub chunk_threshold: u64,
    /// The size of one PATCH chunk (held in memory per upload).
    pub chunk_size: u64,
    pub max_manifest_size: usize,
    pub retry: RetryPolicy,
    /// Where `auth = "azure"` registries get their identity token (a plug-in wired in by
    /// `commands`; None: such registries fail with a credentials error).
    pub identity: Option<Arc<dyn auth::IdentitySource>>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("chunk_threshold", &self.chunk_threshold)
            .field("chunk_size", &self.chunk_size)
            .field("max_manifest_size", &self.max_manifest_size)
            .field("retry", &self.retry)
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            chunk_threshold: 2 << 30,
            chunk_size: 16 << 20,
            max_manifest_size: MAX_MANIFEST_SIZE,
            retry: RetryPolicy::default(),
            identity: None,
        }
    }
}

/// A registry: HTTP(S) or an OCI image-layout directory. Enum dispatch, no trait objects.
#[derive(Debug)]
pub enum Registry {
    Http(HttpRegistry),
    Layout(LayoutRegistry),
}

macro_rules! dispatch {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            Registry::Http($r) => $e,
            Registry::Layout($r) => $e,
        }
    };
}

impl Registry {
    /// Cancel upload sessions left open by transfers that were dropped (an interrupted
    /// apply). Layout writes go to temporary files that are never renamed into place.
    pub async fn abort_open_uploads(&self) -> usize {
        match self {
            Registry::Http(r) => r.abort_open_uploads().await,
            Registry::Layout(_) => 0,
        }
    }

    pub fn from_spec(spec: &RegistrySpec) -> Result<Registry> {
        Registry::from_spec_with(spec, &ClientOptions::default())
    }

    pub fn from_spec_with(spec: &RegistrySpec, opts: &ClientOptions) -> Result<Registry> {
        match &spec.endpoint {
            Endpoint::Url(url) => Ok(Registry::Http(HttpRegistry::new(spec, url, opts)?)),
            Endpoint::Layout(dir) => Ok(Registry::Layout(LayoutRegistry::new(&spec.key, dir))),
        }
    }

    /// How many requests were retried, by cause (HTTP registries; `None` when none was).
    pub fn retry_summary(&self) -> Option<String> {
        match self {
            Registry::Http(r) => r.retry_summary(),
            Registry::Layout(_) => None,
        }
    }

    /// The configuration key (alias or host), for messages.
    pub fn key(&self) -> &str {
        dispatch!(self, r => r.key())
    }

    /// `host[:port]` as used in pullable references; for a layout, its directory.
    pub fn host(&self) -> String {
        dispatch!(self, r => r.host())
    }

    /// `None` when the manifest or the repository does not exist.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Descriptor>> {
        self.check(repo, Some(reference))?;
        dispatch!(self, r => r.head_manifest(repo, reference).await)
    }

    /// The exact bytes, verified against `Docker-Content-Digest` and against `reference`
    /// when it is a digest. `None` when the manifest or the repository does not exist.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Option<RawManifest>> {
        self.check(repo, Some(reference))?;
        dispatch!(self, r => r.get_manifest(repo, reference).await)
    }

    /// Store `m` under a tag or under its own digest. Refused above [`MAX_MANIFEST_SIZE`].
    ///
    /// An answer saying a blob or child manifest is unknown (`BLOB_UNKNOWN`,
    /// `MANIFEST_BLOB_UNKNOWN`, `DIGEST_INVALID` about a blob) is retried a few times after a
    /// short, growing, jittered pause: another process writing the same content (a second
    /// apply) makes Distribution rewrite the repository's blob link non-atomically, and a
    /// manifest PUT checking it meanwhile finds it empty. Content really missing still fails.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &RawManifest,
    ) -> Result<PutManifest> {
        self.check(repo, Some(reference))?;
        let refused = |why: String| {
            let what = format!("put manifest {repo}:{reference}");
            Err(RegistryError::invalid(self.key(), what, why))
        };
        if m.bytes.len() > MAX_MANIFEST_SIZE {
            let size = m.bytes.len();
            return refused(format!(
                "the manifest is {size} bytes, more than the {MAX_MANIFEST_SIZE} allowed"
            ));
        }
        // By digest: only under its own.
        let tag = match reference.parse::<Digest>() {
            Ok(d) if d == m.digest => None,
            Ok(_) => return refused(format!("the manifest's digest is {}", m.digest)),
            Err(_) => Some(reference),
        };
        let mut attempt: u32 = 0;
        loop {
            match dispatch!(self, r => r.put_manifest(repo, m, tag).await) {
                Err(e) if names_unknown_blob(&e) && attempt < BLOB_UNKNOWN_RETRIES => {
                    attempt += 1;
                    let pause = jittered(Duration::from_millis(100) * 2u32.pow(attempt - 1));
                    tracing::info!(
                        "{e}; another writer may be linking the same content: retrying in {}ms",
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// Delete by digest (and so every tag pointing at it). Already absent is success.
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        self.check(repo, None)?;
        dispatch!(self, r => r.delete_manifest(repo, digest).await)
    }

    /// The blob's size when the repository has it.
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.check(repo, None)?;
        dispatch!(self, r => r.blob_exists(repo, digest).await)
    }

    /// Stream a blob, verified while it streams.
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Blob> {
        self.check(repo, None)?;
        dispatch!(self, r => r.get_blob(repo, digest).await)
    }

    /// A small blob (configs, verdicts) in memory, verified; an error if larger than `max`.
    pub async fn get_blob_bytes(&self, repo: &str, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        self.check(repo, None)?;
        dispatch!(self, r => r.get_blob_bytes(repo, digest, max).await)
    }

    /// Upload `size` bytes that must hash to `digest`. Not retried (the stream is consumed):
    /// on failure the upload session is cancelled and the caller may retry the whole copy.
    pub async fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        stream: BlobStream,
    ) -> Result<()> {
        let doing = match self {
            Registry::Http(_) => "being uploaded",
            Registry::Layout(_) => "being written",
        };
        let what = format!("blob {repo}@{digest} {doing}");
        let stream = verify::Verify::new(stream, digest, size, self.key(), what).boxed();
        self.put_verified_blob(repo, digest, Blob { size, stream })
            .await
    }

    /// [`Registry::put_blob`] for a blob that verifies itself against `digest` and its size
    /// (one returned by [`Registry::get_blob`] for the same digest): it is not hashed again.
    pub async fn put_verified_blob(&self, repo: &str, digest: &Digest, blob: Blob) -> Result<()> {
        self.check(repo, None)?;
        dispatch!(self, r => r.put_blob(repo, digest, blob).await)
    }

    /// [`Registry::put_verified_blob`] of the blob `source` opens (a
    /// [`Registry::get_blob`] of another registry): over HTTP the upload session is started
    /// while `source` waits for its answer.
    pub async fn put_verified_blob_from(
        &self,
        repo: &str,
        digest: &Digest,
        source: impl std::future::Future<Output = Result<Blob>>,
    ) -> Result<()> {
        self.check(repo, None)?;
        match self {
            Registry::Http(r) => r.put_blob_from(repo, digest, source).await,
            Registry::Layout(r) => r.put_blob(repo, digest, source.await?).await,
        }
    }

    pub async fn put_blob_bytes(&self, repo: &str, bytes: bytes::Bytes) -> Result<Digest> {
        self.check(repo, None)?;
        dispatch!(self, r => r.put_blob_bytes(repo, bytes).await)
    }

    /// Make a small blob present in `repo`: mounted from `from` (a repository of this
    /// registry that holds it, or `repo` itself to ask whether it is there), else uploaded
    /// (over HTTP, through the upload session the declined mount opened: two requests at
    /// most, against HEAD + POST + PUT). True when it was mounted (already there).
    pub async fn mount_or_put_bytes(
        &self,
        repo: &str,
        from: &str,
        bytes: bytes::Bytes,
    ) -> Result<bool> {
        self.check(repo, None)?;
        self.check(from, None)?;
        match self {
            Registry::Http(r) => r.mount_or_put_bytes(repo, from, bytes).await,
            Registry::Layout(r) => {
                let digest = Digest::of(&bytes);
                if r.blob_exists(repo, &digest).await?.is_some()
                    || (from != repo && r.mount_blob(repo, &digest, from).await?)
                {
                    return Ok(true);
                }
                r.put_blob_bytes(repo, bytes).await?;
                Ok(false)
            }
        }
    }

    /// Cross-repository mount within this registry: true when mounted, false when the
    /// registry declined (the opened upload session is cancelled).
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from_repo: &str) -> Result<bool> {
        self.check(repo, None)?;
        self.check(from_repo, None)?;
        dispatch!(self, r => r.mount_blob(repo, digest, from_repo).await)
    }

    /// Every tag of a repository, sorted; empty when the repository does not exist.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.check(repo, None)?;
        dispatch!(self, r => r.list_tags(repo).await)
    }

    /// Every repository, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        dispatch!(self, r => r.catalog().await)
    }

    /// Manifests whose `subject` is `subject`: the referrers API where the registry has one,
    /// else the tag-schema index `sha256-<hex>`; filtered by artifact type if given.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, RegistryError> {
        self.check(repo, None)?;
        let from_api = match self {
            Registry::Http(h) => h.referrers_api(repo, subject, artifact_type).await?,
            Registry::Layout(_) => None,
        };
        let all = match from_api {
            Some(list) => list,
            None => match self.get_manifest(repo, &subject.referrers_tag()).await? {
                None => Vec::new(),
                Some(index) => referrers_from_index(&index.bytes).map_err(|m| {
                    RegistryError::invalid(
                        self.key(),
                        format!(
                            "read the referrers index {repo}:{}",
                            subject.referrers_tag()
                        ),
                        m,
                    )
                })?,
            },
        };
        let mut seen = std::collections::HashSet::new();
        Ok(all
            .into_iter()
            .filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t)))
            .filter(|r| seen.insert(r.digest.clone()))
            .collect())
    }

    /// Push a manifest that has a `subject` (by digest). When the registry does not index
    /// it itself (no `OCI-Subject` in the answer), add it to the tag-schema index
    /// `sha256-<subject hex>`; idempotent. A registry with the referrers API pays nothing
    /// more than the PUT. `OCI-Subject` is believed only from a registry whose referrers API
    /// answers (asked once per registry when no lookup did yet): lookups on one without it
    /// read the tag schema, so there the index is kept whatever the header says.
    pub async fn push_referrer(
        &self,
        repo: &str,
        m: &RawManifest,
        subject: &Digest,
    ) -> Result<(), RegistryError> {
        let put = self.put_manifest(repo, &m.digest.to_string(), m).await?;
        if put.subject_indexed
            && let Registry::Http(h) = self
        {
            let has_api = match h.has_referrers_api() {
                Some(known) => known,
                None => h.referrers_api(repo, subject, None).await?.is_some(),
            };
            if has_api {
                return Ok(());
            }
            tracing::warn!(
                registry = self.key(),
                "the registry answered OCI-Subject but has no referrers API: keeping the \
                 referrers tag schema"
            );
        }
        let tag = subject.referrers_tag();
        let lock = self.referrers_lock(repo, &tag);
        let _guard = lock.lock().await;
        let current = self.get_manifest(repo, &tag).await?;
        self.merge_referrer(repo, m, &tag, current)
            .await
            .map(|_| ())
    }

    /// Write a referrers tag-schema index. An entry whose manifest was deleted makes
    /// Distribution refuse the whole index (MANIFEST_BLOB_UNKNOWN; every later record about
    /// this subject would fail): such entries are dropped, once, and the index written again.
    async fn put_referrers_index(
        &self,
        repo: &str,
        tag: &str,
        index: &mut Value,
        new_entry: &str,
    ) -> Result<(), RegistryError> {
        let as_raw = |index: &Value| {
            let bytes = serde_json::to_vec(index).expect("json");
            RawManifest {
                digest: Digest::of(&bytes),
                bytes,
                media_type: media::OCI_INDEX.to_string(),
            }
        };
        match self.put_manifest(repo, tag, &as_raw(index)).await {
            Err(e) if e.code() == Some("MANIFEST_BLOB_UNKNOWN") => {
                let listed: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
                let mut kept = Vec::new();
                for e in listed {
                    let gone = match e.get("digest").and_then(|d| d.as_str()) {
                        Some(d) if d != new_entry => self.head_manifest(repo, d).await?.is_none(),
                        _ => false,
                    };
                    if !gone {
                        kept.push(e);
                    }
                }
                index["manifests"] = Value::Array(kept);
                self.put_manifest(repo, tag, &as_raw(index))
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Refuse malformed repository names and references before any request.
    fn check(&self, repo: &str, reference: Option<&str>) -> Result<()> {
        if !valid_path(repo) {
            return Err(RegistryError::invalid(
                self.key(),
                format!("use repository `{repo}`"),
                "not a valid repository path (lowercase components separated by `/`)",
            ));
        }
        if let Some(r) = reference
            && !valid_tag(r)
            && r.parse::<Digest>().is_err()
        {
            return Err(RegistryError::invalid(
                self.key(),
                format!("use reference {repo}:{r}"),
                "not a valid tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or sha256 digest",
            ));
        }
        Ok(())
    }

    /// The lock serialising read-modify-write updates of one tag-schema index (this registry,
    /// repository and subject): updates of different indexes run in parallel.
    fn referrers_lock(&self, repo: &str, tag: &str) -> Arc<tokio::sync::Mutex<()>> {
        static LOCKS: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>> =
            Mutex::new(BTreeMap::new());
        let mut locks = LOCKS.lock().expect("referrers locks");
        // Forget indexes nobody is updating (only this map holds their lock).
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks
            .entry(format!("{}/{repo}:{tag}", self.key()))
            .or_default()
            .clone()
    }
}

/// Retries of a manifest PUT answered "blob unknown" (see [`Registry::put_manifest`]).
const BLOB_UNKNOWN_RETRIES: u32 = 4;
/// Re-reads of a tag-schema referrers index after writing it (see `push_referrer`).
const REFERRERS_MERGE_ROUNDS: usize = 5;

/// Whether a manifest PUT failed because the registry did not find a blob or child
/// manifest it references: `BLOB_UNKNOWN`, `MANIFEST_BLOB_UNKNOWN`, or Distribution's
/// `DIGEST_INVALID` "blob unknown to registry".
pub fn names_unknown_blob(e: &RegistryError) -> bool {
    match e {
        RegistryError::Api { code, message, .. } => {
            matches!(code.as_str(), "BLOB_UNKNOWN" | "MANIFEST_BLOB_UNKNOWN")
                || (code == "DIGEST_INVALID" && message.to_ascii_lowercase().contains("blob"))
        }
        _ => false,
    }
}

/// `base` stretched by a random factor in [1, 2): concurrent writers spread out.
pub(crate) fn jittered(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(1.0 + frac)
}

/// The descriptor of a referrer for a tag-schema index: media type, digest, size,
/// artifactType (the manifest's, else its config media type) and its annotations.
fn referrer_descriptor(m: &RawManifest) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(&m.bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let mut d = json!({
        "mediaType": m.media_type,
        "digest": m.digest.to_string(),
        "size": m.bytes.len(),
    });
    let artifact_type = v.get("artifactType").and_then(|a| a.as_str()).or_else(|| {
        v.get("config")
            .and_then(|c| c.get("mediaType"))
            .and_then(|c| c.as_str())
    });
    if let Some(a) = artifact_type {
        d["artifactType"] = json!(a);
    }
    if let Some(a) = v
        .get("annotations")
        .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
    {
        d["annotations"] = a.clone();
    }
    Ok(d)
}

/// Referrers listed in an OCI index (referrers API answer or tag-schema index).
pub fn referrers_from_index(bytes: &[u8]) -> Result<Vec<Referrer>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        media_type: String,
        digest: String,
        size: u64,
        artifact_type: Option<String>,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Option<Vec<Entry>>,
    }
    let idx: Index = serde_json::from_slice(bytes).map_err(|e| format!("not an OCI index: {e}"))?;
    idx.manifests
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            Ok(Referrer {
                digest: e
                    .digest
                    .parse()
                    .map_err(|x: crate::model::digest::DigestError| x.to_string())?,
                media_type: e.media_type,
                size: e.size,
                artifact_type: e.artifact_type,
                annotations: e.annotations,
            })
        })
        .collect()
}

/// Concurrency for registries without an entry.
pub use crate::config::defaults::DEFAULT_MAX_CONCURRENCY;
pub use referrers_merge::Pushed;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthSpec, Transfer};

    fn spec(key: &str, endpoint: Endpoint) -> RegistrySpec {
        RegistrySpec {
            key: key.into(),
            endpoint,
            auth: AuthSpec::Anonymous,
            transfer: Transfer::Stream,
            max_concurrency: 2,
            timeouts: Default::default(),
            arm: None,
        }
    }

    #[test]
    fn registries_are_shared_and_defaulted() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "acr".to_string(),
            spec("acr", Endpoint::Url("https://acr.example:8443".into())),
        );
        let regs = Registries::new(&specs);
        let a = regs.get("acr").unwrap();
        assert!(Arc::ptr_eq(&a, &regs.get("acr").unwrap()));
        assert!(Arc::ptr_eq(&a, &regs.get("acr.example:8443").unwrap()));
        assert_eq!(a.host(), "acr.example:8443");
        let hub = regs.get("docker.io").unwrap();
        assert_eq!(hub.host(), "docker.io");
        assert_eq!(hub.key(), "docker.io");
        assert_eq!(
            regs.spec("ghcr.io").unwrap().endpoint,
            Endpoint::Url("https://ghcr.io".into())
        );
        assert!(regs.get("not a host/").is_err());
    }

    #[test]
    fn referrer_descriptors_copy_artifact_type_and_annotations() {
        let subject = Digest::of(b"s");
        let m = referrers_merge::tests::verdict_referrer(
            &subject,
            json!({"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}),
        );
        let d = referrer_descriptor(&m).unwrap();
        let idx = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [d]});
        let refs = referrers_from_index(&serde_json::to_vec(&idx).unwrap()).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].digest, m.digest);
        assert_eq!(
            refs[0].artifact_type.as_deref(),
            Some(media::VERDICT_ARTIFACT)
        );
        assert_eq!(
            refs[0].annotations["org.opencontainers.image.created"],
            "2026-01-01T00:00:00Z"
        );
        assert!(
            referrers_from_index(br#"{"schemaVersion":2,"manifests":null}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn layout_referrers_via_tag_schema() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::from_spec(&spec("local", Endpoint::Layout(dir.path().to_path_buf())))
            .unwrap();
        let subject = Digest::of(b"subject");
        let mk = |n: u32, at: &str| {
            let body = json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_MANIFEST,
                "artifactType": at,
                "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2},
                "layers": [],
                "subject": {"mediaType": media::OCI_MANIFEST, "digest": subject.to_string(), "size": 1},
                "annotations": {"n": n.to_string()}
            });
            RawManifest::new(serde_json::to_vec(&body).unwrap(), None).unwrap()
        };
        let v = mk(1, media::VERDICT_ARTIFACT);
        let p = mk(2, media::PROMOTION_ARTIFACT);
        r.push_referrer("q/x", &v, &subject).await.unwrap();
        r.push_referrer("q/x", &v, &subject).await.unwrap();
        r.push_referrer("q/x", &p, &subject).await.unwrap();
        let all = r.referrers("q/x", &subject, None).await.unwrap();
        assert_eq!(
            all.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
            vec![v.digest.clone(), p.digest.clone()]
        );
        let only = r
            .referrers("q/x", &subject, Some(media::VERDICT_ARTIFACT))
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].annotations["n"], "1");
        assert!(
            r.referrers("q/x", &Digest::of(b"other"), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            r.list_tags("q/x").await.unwrap(),
            vec![subject.referrers_tag()]
        );
    }
}
