//! Image transfers: content before tags. Blobs first (mounted within a registry, skipped when
//! the target has them, else streamed and verified), then child manifests by digest, then the
//! index or manifest under its tag. A blob is uploaded at most once per registry in one apply:
//! later repositories that need it mount it from the first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::{Mutex, OnceCell};

use crate::model::manifest::{ContentRef, Parsed};
use crate::model::{Digest, RawManifest};
use crate::registry::http::SMALL_BLOB;
use crate::registry::{Blob, Registry, RegistryError, names_unknown_blob};

/// How many blobs of one image are copied at once: large ones, and small ones beside them.
const BLOB_CONCURRENCY: usize = 4;
/// Attempts for one blob copy when a transient error interrupts the stream.
const BLOB_ATTEMPTS: usize = 3;
/// Times a manifest PUT answered "blob unknown" re-checks and re-links its content.
const RELINK_ATTEMPTS: usize = 2;

/// Counters for the report and the benchmark.
#[derive(Default, Debug)]
pub struct Stats {
    pub blobs_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub blobs_present: AtomicU64,
    pub manifests_put: AtomicU64,
}

impl Stats {
    /// Add another step's counts.
    pub fn add(&self, o: &StatsSnapshot) {
        self.blobs_uploaded
            .fetch_add(o.blobs_uploaded, Ordering::Relaxed);
        self.bytes_uploaded
            .fetch_add(o.bytes_uploaded, Ordering::Relaxed);
        self.blobs_mounted
            .fetch_add(o.blobs_mounted, Ordering::Relaxed);
        self.blobs_present
            .fetch_add(o.blobs_present, Ordering::Relaxed);
        self.manifests_put
            .fetch_add(o.manifests_put, Ordering::Relaxed);
    }

    /// One blob of `bytes` bytes uploaded.
    fn count_upload(&self, bytes: u64) {
        self.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            blobs_uploaded: self.blobs_uploaded.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
            blobs_present: self.blobs_present.load(Ordering::Relaxed),
            manifests_put: self.manifests_put.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub manifests_put: u64,
}

/// Which repository of a registry already holds a blob in this apply; one cell per
/// (registry, digest) so that concurrent images wait for the first copy instead of repeating it.
/// (registry key, blob digest).
type LedgerKey = (String, Digest);
/// (registry key, repository, blob digest).
type RepoKey = (String, String, Digest);

#[derive(Default)]
pub struct BlobLedger {
    cells: Mutex<HashMap<LedgerKey, Arc<OnceCell<String>>>>,
    /// One cell per (registry, repository, digest): a blob is mounted or uploaded into a
    /// repository at most once per apply, and images that need it there too wait for that
    /// one write. Distribution's filesystem storage rewrites the repository's blob link on
    /// every mount or upload, non-atomically (truncate, then write): a manifest PUT checking
    /// that link meanwhile reads it empty and fails with DIGEST_INVALID / BLOB_UNKNOWN.
    linked: Mutex<HashMap<RepoKey, Arc<OnceCell<()>>>>,
    /// Images this apply imported into (registry, repository, digest) whose source had no
    /// referrers and no cosign tags to carry: their promote has none to read either.
    bare: std::sync::Mutex<std::collections::HashSet<RepoKey>>,
}

impl BlobLedger {
    /// Run `place` (which makes `digest` present in `repo`) unless this apply already did
    /// for this repository; concurrent callers wait for the first. A failure leaves the
    /// next caller to try again.
    pub async fn once_in_repo<F, Fut>(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        place: F,
    ) -> Result<(), RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), RegistryError>>,
    {
        let cell = self
            .linked
            .lock()
            .await
            .entry((registry.to_string(), repo.to_string(), digest.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(place).await.map(|_| ())
    }

    /// This apply imported `digest` into `repo` and its source had nothing attached to carry
    /// (no referrers, no cosign tags).
    pub fn note_bare_import(&self, registry: &str, repo: &str, digest: &Digest) {
        self.bare.lock().expect("bare imports lock").insert((
            registry.to_string(),
            repo.to_string(),
            digest.clone(),
        ));
    }

    /// Whether this apply imported `digest` into `repo` with nothing attached (see
    /// [`BlobLedger::note_bare_import`]): a promote from there has no referrers or cosign
    /// tags to carry and need not look (their reads would find only what the import wrote).
    pub fn imported_bare(&self, registry: &str, repo: &str, digest: &Digest) -> bool {
        self.bare.lock().expect("bare imports lock").contains(&(
            registry.to_string(),
            repo.to_string(),
            digest.clone(),
        ))
    }

    /// Run `place` (which makes `digest` present in `dst`) unless another repository of
    /// the same registry got the blob earlier in this apply; concurrent callers wait for the
    /// first. `None` when `dst` holds it now, else the repository that does (to mount from).
    async fn first_copy<Fut>(
        &self,
        dst: Repo<'_>,
        digest: &Digest,
        place: Fut,
    ) -> Result<Option<String>, RegistryError>
    where
        Fut: std::future::Future<Output = Result<(), RegistryError>>,
    {
        let cell = self
            .cells
            .lock()
            .await
            .entry((dst.registry.key().to_string(), digest.clone()))
            .or_default()
            .clone();
        let mut first_here = false;
        let holder = cell
            .get_or_try_init(|| async {
                first_here = true;
                place.await?;
                Ok::<String, RegistryError>(dst.name.to_string())
            })
            .await?;
        Ok((!first_here && holder != dst.name).then(|| holder.clone()))
    }
}

/// Progress callback: bytes moved for a blob.
pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

pub struct Copier<'a> {
    pub ledger: &'a BlobLedger,
    pub stats: &'a Stats,
    pub on_bytes: Option<OnBytes>,
}

/// A source or target: a registry and a repository in it.
#[derive(Clone, Copy)]
pub struct Repo<'a> {
    pub registry: &'a Registry,
    pub name: &'a str,
}

impl<'a> Repo<'a> {
    pub fn new(registry: &'a Registry, name: &'a str) -> Self {
        Repo { registry, name }
    }
}

impl Copier<'_> {
    /// Copy `top` (already read from `src`, possibly a rebuilt subset index) into `dst` and tag
    /// it `tag`. Children of an index are read from `src` by digest.
    pub async fn copy_image(
        &self,
        src: Repo<'_>,
        dst: Repo<'_>,
        top: &RawManifest,
        tag: &str,
    ) -> Result<(), RegistryError> {
        let leg = self.leg(src, dst);
        leg.copy_content(top).await?;
        leg.put_linked(tag, top).await
    }

    /// PUT `top` under `reference` once its content is in place (a [`Copier::copy_image`] by
    /// digest); content a concurrent writer unlinked meanwhile is placed again (bounded).
    pub async fn put_tagged(
        &self,
        src: Repo<'_>,
        dst: Repo<'_>,
        reference: &str,
        top: &RawManifest,
    ) -> Result<(), RegistryError> {
        self.leg(src, dst).put_linked(reference, top).await
    }

    /// Copy a manifest that is not tagged (a referrer) with its blobs, by digest.
    pub async fn copy_untagged(
        &self,
        src: Repo<'_>,
        dst: Repo<'_>,
        m: &RawManifest,
    ) -> Result<(), RegistryError> {
        self.leg(src, dst).copy_blobs_of(m).await
    }

    /// Put a small in-memory blob (a record's config or document) into `dst`: mounted from
    /// the repository of this registry that received it earlier in this apply (the empty
    /// config `{}` of every verdict and promotion record is one blob: the first writer
    /// places it, concurrent ones wait and mount it), else uploaded. Each placement is one
    /// mount request, and when the registry declines it (202), the upload goes through the
    /// session it opened (one PUT): a mount from `dst` itself asks whether it is there.
    pub async fn put_bytes(&self, dst: Repo<'_>, bytes: bytes::Bytes) -> Result<(), RegistryError> {
        let digest = Digest::of(&bytes);
        let first = self.place_bytes(dst, dst.name, bytes.clone());
        match self.ledger.first_copy(dst, &digest, first).await? {
            None => Ok(()),
            Some(holder) => self.place_bytes(dst, &holder, bytes).await,
        }
    }

    async fn place_bytes(
        &self,
        dst: Repo<'_>,
        from: &str,
        bytes: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let n = bytes.len() as u64;
        if dst
            .registry
            .mount_or_put_bytes(dst.name, from, bytes)
            .await?
        {
            self.stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.count_upload(n);
        }
        Ok(())
    }

    fn leg<'s>(&'s self, src: Repo<'s>, dst: Repo<'s>) -> Leg<'s> {
        Leg {
            copier: self,
            src,
            dst,
        }
    }
}

/// One copy in progress: content goes from `src` to `dst`, counted in the copier's stats
/// and placed once per repository through its ledger.
#[derive(Clone, Copy)]
struct Leg<'a> {
    copier: &'a Copier<'a>,
    src: Repo<'a>,
    dst: Repo<'a>,
}

impl Leg<'_> {
    /// Everything `top` references, in `dst`: its blobs, or (an index) its child manifests
    /// by digest with their blobs. `top` itself is not written ([`Leg::put_linked`]).
    async fn copy_content(&self, top: &RawManifest) -> Result<(), RegistryError> {
        match top.parse().map_err(|e| self.src.invalid(&top.digest, e))? {
            Parsed::Index { manifests, .. } => {
                for child in &manifests {
                    self.copy_child(child).await?;
                }
                Ok(())
            }
            Parsed::Image { .. } => self.copy_blobs_of(top).await,
        }
    }

    /// Copy one child manifest of an index (its blobs, then itself by digest) unless the
    /// target has it. Its bytes must be as long as the index's descriptor says.
    async fn copy_child(&self, child: &ContentRef) -> Result<(), RegistryError> {
        let (src, dst, digest) = (self.src, self.dst, child.digest.to_string());
        if dst
            .registry
            .head_manifest(dst.name, &digest)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let m = src
            .registry
            .get_manifest(src.name, &digest)
            .await?
            .ok_or_else(|| src.missing(&child.digest))?;
        src.expect_size("manifest", child, m.bytes.len() as u64)?;
        self.copy_blobs_of(&m).await?;
        self.put_linked(&digest, &m).await
    }

    /// PUT a manifest whose content is in place. When the registry still says a blob or
    /// child is unknown (after `Registry::put_manifest`'s own pauses: another apply is
    /// writing the same content), check each one, place again what is really missing
    /// (bypassing this apply's ledger, which believes it is there), and try again; bounded.
    async fn put_linked(&self, reference: &str, m: &RawManifest) -> Result<(), RegistryError> {
        let mut relinked = 0;
        loop {
            match self
                .dst
                .registry
                .put_manifest(self.dst.name, reference, m)
                .await
            {
                Ok(_) => {
                    let stats = self.copier.stats;
                    stats.manifests_put.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if names_unknown_blob(&e) && relinked < RELINK_ATTEMPTS => {
                    relinked += 1;
                    tracing::warn!(
                        "{e}; checking the content of {}:{reference} and linking it again",
                        self.dst.name
                    );
                    self.relink(m).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Make every blob (or child manifest) of `m` present in `dst` again.
    async fn relink(&self, m: &RawManifest) -> Result<(), RegistryError> {
        match m.parse().map_err(|e| self.src.invalid(&m.digest, e))? {
            Parsed::Index { manifests, .. } => {
                for child in &manifests {
                    Box::pin(self.copy_child(child)).await?;
                }
            }
            Parsed::Image { config, layers, .. } => {
                for b in std::iter::once(config).chain(layers) {
                    let dst = self.dst;
                    if dst
                        .registry
                        .blob_exists(dst.name, &b.digest)
                        .await?
                        .is_none()
                    {
                        self.copy_blob_here(&b).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn copy_blobs_of(&self, m: &RawManifest) -> Result<(), RegistryError> {
        let blobs: Vec<ContentRef> = match m.parse().map_err(|e| self.src.invalid(&m.digest, e))? {
            Parsed::Image { config, layers, .. } => {
                let mut v = vec![config];
                v.extend(layers);
                v
            }
            Parsed::Index { .. } => vec![],
        };
        let mut seen = std::collections::HashSet::new();
        let blobs: Vec<ContentRef> = blobs
            .into_iter()
            .filter(|b| seen.insert(b.digest.clone()))
            .collect();
        let (small, mut large): (Vec<&ContentRef>, Vec<&ContentRef>) =
            blobs.iter().partition(|b| b.size <= SMALL_BLOB);
        // The longest transfers first: with more layers than slots, the last to start is a
        // short one.
        large.sort_by_key(|b| std::cmp::Reverse(b.size));
        let (small, large) = futures_util::join!(self.copy_all(small), self.copy_all(large));
        small.into_iter().chain(large).collect()
    }

    /// Copy `blobs`, [`BLOB_CONCURRENCY`] at a time. Small blobs (a config, most of all)
    /// and large ones each get their own slots: a config's three requests do not hold back
    /// the fourth layer of a four-layer image, whose transfer would then end that much later.
    async fn copy_all(&self, blobs: Vec<&ContentRef>) -> Vec<Result<(), RegistryError>> {
        stream::iter(blobs)
            .map(|b| self.copy_blob(b))
            .buffer_unordered(BLOB_CONCURRENCY)
            .collect()
            .await
    }

    /// Make blob `b` present in `dst`: mount when the registry already holds it (from the
    /// source repository, or from another repository this apply copied it to), skip when
    /// present, else stream it from `src`, verified. Once per repository in one apply.
    async fn copy_blob(&self, b: &ContentRef) -> Result<(), RegistryError> {
        let dst = self.dst;
        let ledger = self.copier.ledger;
        ledger
            .once_in_repo(dst.registry.key(), dst.name, &b.digest, || {
                self.copy_blob_here(b)
            })
            .await
    }

    async fn copy_blob_here(&self, b: &ContentRef) -> Result<(), RegistryError> {
        let (src, dst, stats) = (self.src, self.dst, self.copier.stats);
        let same_registry = std::ptr::eq(src.registry, dst.registry);
        if same_registry && src.name == dst.name {
            return Ok(());
        }
        if same_registry
            && dst
                .registry
                .mount_blob(dst.name, &b.digest, src.name)
                .await?
        {
            stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let ledger = self.copier.ledger;
        let Some(holder) = ledger
            .first_copy(dst, &b.digest, self.place_blob(b))
            .await?
        else {
            return Ok(());
        };
        // Another repository of this registry got it earlier in this apply.
        if dst
            .registry
            .mount_blob(dst.name, &b.digest, &holder)
            .await?
        {
            stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.place_blob(b).await
    }

    /// Make blob `b` present in `dst` from `src` (another registry, or a repository that
    /// could not mount it). A large blob is looked for first (HEAD): a re-run after an
    /// interruption never uploads a large blob again. A small one (≤ [`SMALL_BLOB`]) is
    /// not: its upload starts as a mount from `dst` itself, which the registry answers 201
    /// when it holds the blob and otherwise with the upload session the bytes then take —
    /// two requests for a new small blob (HEAD + POST + PUT before), one for a present one.
    async fn place_blob(&self, b: &ContentRef) -> Result<(), RegistryError> {
        let (dst, size) = (self.dst, b.size);
        if size > SMALL_BLOB
            && let Some(held) = dst.registry.blob_exists(dst.name, &b.digest).await?
        {
            // A HEAD without Content-Length reads as 0: unknown, not a mismatch.
            if held != 0 {
                dst.expect_size("blob", b, held)?;
            }
            self.copier
                .stats
                .blobs_present
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let moved = Arc::new(AtomicU64::new(0));
            let copied = if size <= SMALL_BLOB {
                self.copy_small_blob(b).await
            } else {
                self.stream_blob(b, moved.clone()).await
            };
            match copied {
                Ok(()) => return Ok(()),
                // A broken transfer is copied again; an attempt that moved no byte met a
                // dead or stalled registry, whose client already spent its retry budget.
                Err(e)
                    if e.is_transient()
                        && attempt < BLOB_ATTEMPTS
                        && (size <= SMALL_BLOB || moved.load(Ordering::Relaxed) > 0) =>
                {
                    tracing::warn!(
                        "retrying copy of {} to {} (attempt {attempt}): {e}",
                        b.digest.short(),
                        dst.name
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A small blob (configs, most of them) goes through memory: both clients keep it, so
    /// the scan that reads the config next does not fetch it again.
    async fn copy_small_blob(&self, b: &ContentRef) -> Result<(), RegistryError> {
        let (src, dst, digest) = (self.src, self.dst, &b.digest);
        // At most the descriptor's size is read (more is refused), and no less is accepted.
        let bytes = src
            .registry
            .get_blob_bytes(src.name, digest, b.size)
            .await?;
        let n = bytes.len() as u64;
        src.expect_size("blob", b, n)?;
        let put = Digest::of(&bytes);
        if &put != digest {
            // Cannot happen: get_blob_bytes verified the content.
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {}@{digest} being uploaded", dst.name),
                expected: digest.clone(),
                actual: put,
            });
        }
        let stats = self.copier.stats;
        if dst
            .registry
            .mount_or_put_bytes(dst.name, dst.name, bytes.into())
            .await?
        {
            // It was there already (a re-run).
            stats.blobs_present.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(f) = &self.copier.on_bytes {
            f(n);
        }
        stats.count_upload(n);
        Ok(())
    }

    async fn stream_blob(
        &self,
        b: &ContentRef,
        moved: Arc<AtomicU64>,
    ) -> Result<(), RegistryError> {
        let (src, dst) = (self.src, self.dst);
        let on_bytes = self.copier.on_bytes.clone();
        let source = async move {
            let blob = src.registry.get_blob(src.name, &b.digest).await?;
            // The stream verifies exactly `blob.size` bytes (the source's length): that must
            // be the descriptor's size, or the manifest lies about its content.
            src.expect_size("blob", b, blob.size)?;
            let stream = blob
                .stream
                .inspect(move |chunk| {
                    if let Ok(c) = chunk {
                        moved.fetch_add(c.len() as u64, Ordering::Relaxed);
                        if let Some(f) = &on_bytes {
                            f(c.len() as u64);
                        }
                    }
                })
                .boxed();
            Ok(Blob {
                size: b.size,
                stream,
            })
        };
        // get_blob's stream verifies itself: the upload does not hash it a second time. The
        // target's upload session is opened while the source answers.
        dst.registry
            .put_verified_blob_from(dst.name, &b.digest, source)
            .await?;
        self.copier.stats.count_upload(b.size);
        Ok(())
    }
}

impl Repo<'_> {
    /// `registry/repository@digest`, for messages.
    fn at(&self, digest: &Digest) -> String {
        format!("{}/{}@{digest}", self.registry.key(), self.name)
    }

    /// `actual` bytes of the `kind` (blob or manifest) `expected` read or found here must be
    /// as many as its descriptor says.
    fn expect_size(
        &self,
        kind: &str,
        expected: &ContentRef,
        actual: u64,
    ) -> Result<(), RegistryError> {
        if actual == expected.size {
            return Ok(());
        }
        Err(RegistryError::SizeMismatch {
            what: format!("{kind} {}", self.at(&expected.digest)),
            expected: expected.size,
            actual,
        })
    }

    fn invalid(&self, digest: &Digest, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Content {
            what: self.at(digest),
            message: e.to_string(),
        }
    }

    fn missing(&self, digest: &Digest) -> RegistryError {
        self.invalid(digest, "the manifest is missing (MANIFEST_UNKNOWN)")
    }
}
