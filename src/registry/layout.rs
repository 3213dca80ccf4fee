//! The OCI image-layout backend: a registry entry with a directory endpoint, where each
//! repository is an OCI image layout at `DIR/<repository path>/` (`oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`). Tags are `index.json` entries annotated with
//! `org.opencontainers.image.ref.name`; manifests pushed by digest are stored as blobs
//! only. Every write goes to a temporary file in the same directory and is renamed into
//! place; blobs are verified while written; `index.json` updates are serialised.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::error::{RegistryError, Result};
use super::verify::Verify;
use super::{Blob, Descriptor, PutManifest};
use crate::model::reference::valid_path;
use crate::model::{Digest, RawManifest, media};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The lock file in a layout root (skipped by the catalog, like every dot name).
const LOCK_FILE: &str = ".airlock.lock";

/// The layout's lock (see `LayoutRegistry::lock`): released when dropped (closing the
/// file releases the flock).
struct LayoutLock {
    _file: std::fs::File,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of OCI image layouts, one per repository.
#[derive(Clone, Debug)]
pub struct LayoutRegistry {
    key: String,
    root: PathBuf,
    index_lock: Arc<tokio::sync::Mutex<()>>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> RegistryError {
    move |e| RegistryError::io(what, e)
}

fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Write `bytes` to `path` atomically (temp file in the same directory, then rename).
async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_chunks(path, futures_util::stream::iter([Ok(bytes)])).await
}

/// Write the chunks of `body` to `path` atomically: a temp file in the same directory, synced,
/// then renamed over `path`. On any error (the body's own included) the temp file is removed.
async fn write_atomic_chunks<B: AsRef<[u8]>>(
    path: &Path,
    mut body: impl futures_util::Stream<Item = Result<B>> + Unpin,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = tmp_path(dir, name);
    let result = async {
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(io(format!("create {}", tmp.display())))?;
        while let Some(chunk) = body.next().await {
            f.write_all(chunk?.as_ref())
                .await
                .map_err(io(format!("write {}", tmp.display())))?;
        }
        f.sync_all()
            .await
            .map_err(io(format!("sync {}", tmp.display())))?;
        drop(f);
        tokio::fs::rename(&tmp, path).await.map_err(io(format!(
            "rename {} to {}",
            tmp.display(),
            path.display()
        )))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

fn entry_digest(entry: &Value) -> Option<Digest> {
    entry.get("digest")?.as_str()?.parse().ok()
}

impl LayoutRegistry {
    pub fn new(key: &str, root: &Path) -> LayoutRegistry {
        LayoutRegistry {
            key: key.to_string(),
            root: root.to_path_buf(),
            index_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The directory, as written in `oci:` references.
    pub fn host(&self) -> String {
        self.root.display().to_string()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a repository. Symlinks on the way are followed while they stay
    /// inside the layout root (a pull, `audit` and `prune` then see the same repository);
    /// one leading outside the root is refused.
    async fn repo_dir(&self, repo: &str) -> Result<PathBuf> {
        if !valid_path(repo) {
            return Err(RegistryError::invalid(
                &self.key,
                format!("use repository `{repo}`"),
                "not a valid repository path (lowercase components separated by `/`)",
            ));
        }
        let dir = self.root.join(repo);
        let root = match tokio::fs::canonicalize(&self.root).await {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dir),
            Err(e) => {
                return Err(RegistryError::io(
                    format!("resolve {}", self.root.display()),
                    e,
                ));
            }
        };
        // The deepest existing part of the path must resolve inside the root.
        let mut probe = dir.clone();
        loop {
            match tokio::fs::canonicalize(&probe).await {
                Ok(real) if real.starts_with(&root) => return Ok(dir),
                Ok(real) => {
                    return Err(RegistryError::invalid(
                        &self.key,
                        format!("use repository `{repo}`"),
                        format!(
                            "{} leads outside the layout directory (to {}): symlinks must stay \
                             inside it",
                            probe.display(),
                            real.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !probe.pop() || !probe.starts_with(&self.root) {
                        return Ok(dir);
                    }
                }
                Err(e) => return Err(RegistryError::io(format!("resolve {}", probe.display()), e)),
            }
        }
    }

    async fn blob_path(&self, repo: &str, digest: &Digest) -> Result<PathBuf> {
        Ok(self
            .repo_dir(repo)
            .await?
            .join("blobs")
            .join("sha256")
            .join(digest.hex()))
    }

    /// Hold the layout's lock: one `index.json` read-modify-write at a time, across
    /// processes (an exclusive `flock` on `<root>/.airlock.lock`, taken after this
    /// process's own turn) — two applies on one layout keep every tag.
    async fn lock(&self) -> Result<LayoutLock> {
        let turn = self.index_lock.clone().lock_owned().await;
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(io(format!("create {}", self.root.display())))?;
        let path = self.root.join(LOCK_FILE);
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)?;
            #[cfg(unix)]
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
            Ok(f)
        })
        .await
        .map_err(|e| RegistryError::invalid(&self.key, "lock the layout", e.to_string()))?
        .map_err(io(format!("lock {}", self.root.join(LOCK_FILE).display())))?;
        Ok(LayoutLock {
            _file: file,
            _turn: turn,
        })
    }

    fn not_found(&self, what: String, code: &str) -> RegistryError {
        RegistryError::Api {
            registry: self.key.clone(),
            what,
            status: 404,
            code: code.to_string(),
            message: "not found in the layout".into(),
            retry_after: None,
        }
    }

    /// Create the layout skeleton of a repository if needed.
    async fn ensure_layout(&self, repo: &str) -> Result<PathBuf> {
        let dir = self.repo_dir(repo).await?;
        let blobs = dir.join("blobs").join("sha256");
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(io(format!("create {}", blobs.display())))?;
        let layout = dir.join("oci-layout");
        if !tokio::fs::try_exists(&layout).await.unwrap_or(false) {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
        }
        let index = dir.join("index.json");
        if !tokio::fs::try_exists(&index).await.unwrap_or(false) {
            let _g = self.lock().await?;
            if !tokio::fs::try_exists(&index).await.unwrap_or(false) {
                let empty =
                    json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []});
                write_atomic(&index, &serde_json::to_vec(&empty).expect("json")).await?;
            }
        }
        Ok(dir)
    }

    async fn read_index(&self, repo: &str) -> Result<Option<Value>> {
        let path = self.repo_dir(repo).await?.join("index.json");
        match tokio::fs::read(&path).await {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                RegistryError::invalid(&self.key, format!("read {}", path.display()), e.to_string())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(format!("read {}", path.display()), e)),
        }
    }

    /// Read-modify-write `index.json` under the lock.
    async fn update_index(&self, repo: &str, change: impl FnOnce(&mut Vec<Value>)) -> Result<()> {
        let dir = self.ensure_layout(repo).await?;
        let _g = self.lock().await?;
        let mut index = self
            .read_index(repo)
            .await?
            .unwrap_or_else(|| json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX}));
        let mut manifests: Vec<Value> = index
            .get("manifests")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        change(&mut manifests);
        index["manifests"] = Value::Array(manifests);
        let bytes = serde_json::to_vec(&index).expect("json");
        write_atomic(&dir.join("index.json"), &bytes).await
    }

    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .get_manifest(repo, reference)
            .await?
            .map(Descriptor::from))
    }

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Option<RawManifest>> {
        let what = format!("get manifest {repo}:{reference}");
        let (digest, hint) = match reference.parse::<Digest>() {
            Ok(d) => (d, None),
            Err(_) => {
                let Some(index) = self.read_index(repo).await? else {
                    return Ok(None);
                };
                let entry = index
                    .get("manifests")
                    .and_then(|m| m.as_array())
                    .and_then(|m| {
                        m.iter()
                            .rev()
                            .find(|e| ref_name(e) == Some(reference))
                            .cloned()
                    });
                let Some(entry) = entry else {
                    return Ok(None);
                };
                let d = entry_digest(&entry).ok_or_else(|| {
                    RegistryError::invalid(
                        &self.key,
                        &what,
                        "index.json entry without a valid digest",
                    )
                })?;
                (
                    d,
                    entry
                        .get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                )
            }
        };
        let path = self.blob_path(repo, &digest).await?;
        if let Ok(meta) = tokio::fs::metadata(&path).await
            && meta.len() > super::MAX_MANIFEST_SIZE as u64
        {
            return Err(RegistryError::invalid(
                &self.key,
                &what,
                format!(
                    "the manifest is {} bytes, more than the {} allowed",
                    meta.len(),
                    super::MAX_MANIFEST_SIZE
                ),
            ));
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if hint.is_some() {
                    return Err(RegistryError::invalid(
                        &self.key,
                        &what,
                        format!("the tag points to {digest}, which is missing from the layout"),
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(RegistryError::io(format!("read {}", path.display()), e)),
        };
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {repo}@{digest} in `{}`", self.key),
                expected: digest,
                actual,
            });
        }
        RawManifest::new(bytes, hint.as_deref())
            .map(Some)
            .map_err(|e| RegistryError::invalid(&self.key, &what, e.to_string()))
    }

    /// Store `m` under `tag`, else under its digest ([`super::Registry::put_manifest`]
    /// checked a digest reference).
    pub async fn put_manifest(
        &self,
        repo: &str,
        m: &RawManifest,
        tag: Option<&str>,
    ) -> Result<PutManifest> {
        if Digest::of(&m.bytes) != m.digest {
            let reference = tag.map_or_else(|| m.digest.to_string(), str::to_string);
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest for {repo}:{reference}"),
                expected: m.digest.clone(),
                actual: Digest::of(&m.bytes),
            });
        }
        self.ensure_layout(repo).await?;
        let path = self.blob_path(repo, &m.digest).await?;
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            write_atomic(&path, &m.bytes).await?;
        }
        if let Some(tag) = tag {
            let entry = json!({
                "mediaType": m.media_type,
                "digest": m.digest.to_string(),
                "size": m.bytes.len(),
                "annotations": {REF_NAME: tag},
            });
            self.update_index(repo, |manifests| {
                manifests.retain(|e| ref_name(e) != Some(tag));
                manifests.push(entry);
            })
            .await?;
        }
        Ok(PutManifest {
            subject_indexed: false,
        })
    }

    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        if self.read_index(repo).await?.is_some() {
            self.update_index(repo, |manifests| {
                manifests.retain(|e| entry_digest(e).as_ref() != Some(digest));
            })
            .await?;
        }
        let path = self.blob_path(repo, digest).await?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RegistryError::io(format!("remove {}", path.display()), e)),
        }
    }

    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(repo, digest).await?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(format!("stat {}", path.display()), e)),
        }
    }

    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Blob> {
        let path = self.blob_path(repo, digest).await?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.not_found(format!("get blob {repo}@{digest}"), "BLOB_UNKNOWN"));
            }
            Err(e) => return Err(RegistryError::io(format!("open {}", path.display()), e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(io(format!("stat {}", path.display())))?
            .len();
        let shown = path.display().to_string();
        let raw = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
            .map_err(move |e| RegistryError::io(format!("read {shown}"), e))
            .boxed();
        let stream = Verify::new(
            raw,
            digest,
            size,
            &self.key,
            format!("blob {repo}@{digest} in `{}`", self.key),
        )
        .boxed();
        Ok(Blob { size, stream })
    }

    pub async fn get_blob_bytes(&self, repo: &str, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let what = format!("get blob {repo}@{digest}");
        let Some(size) = self.blob_exists(repo, digest).await? else {
            return Err(self.not_found(what, "BLOB_UNKNOWN"));
        };
        if size > max {
            return Err(RegistryError::invalid(
                &self.key,
                &what,
                format!("blob is {size} bytes, more than the {max} expected"),
            ));
        }
        let path = self.blob_path(repo, digest).await?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(io(format!("read {}", path.display())))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {repo}@{digest} in `{}`", self.key),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Write a blob whose stream verifies itself (see `Registry::put_verified_blob`).
    pub async fn put_blob(&self, repo: &str, digest: &Digest, blob: Blob) -> Result<()> {
        if self.blob_exists(repo, digest).await? == Some(blob.size) {
            return Ok(());
        }
        self.ensure_layout(repo).await?;
        let path = self.blob_path(repo, digest).await?;
        write_atomic_chunks(&path, blob.stream).await
    }

    pub async fn put_blob_bytes(&self, repo: &str, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        if self.blob_exists(repo, &digest).await? != Some(bytes.len() as u64) {
            self.ensure_layout(repo).await?;
            write_atomic(&self.blob_path(repo, &digest).await?, &bytes).await?;
        }
        Ok(digest)
    }

    /// Hard-link (else copy) the blob from another repository of the same directory.
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from_repo: &str) -> Result<bool> {
        let src = self.blob_path(from_repo, digest).await?;
        if !tokio::fs::try_exists(&src).await.unwrap_or(false) {
            return Ok(false);
        }
        if self.blob_exists(repo, digest).await?.is_some() {
            return Ok(true);
        }
        self.ensure_layout(repo).await?;
        let dst = self.blob_path(repo, digest).await?;
        let tmp = tmp_path(dst.parent().expect("blob path has a parent"), digest.hex());
        let linked = tokio::fs::hard_link(&src, &tmp).await;
        let result = match linked {
            Ok(()) => Ok(()),
            Err(_) => tokio::fs::copy(&src, &tmp)
                .await
                .map(|_| ())
                .map_err(io(format!("copy {} to {}", src.display(), tmp.display()))),
        };
        let result = match result {
            Ok(()) => tokio::fs::rename(&tmp, &dst).await.map_err(io(format!(
                "rename {} to {}",
                tmp.display(),
                dst.display()
            ))),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok(true)
    }

    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let Some(index) = self.read_index(repo).await? else {
            return Ok(Vec::new());
        };
        let mut tags: Vec<String> = index
            .get("manifests")
            .and_then(|m| m.as_array())
            .map(|m| m.iter().filter_map(ref_name).map(str::to_string).collect())
            .unwrap_or_default();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// Every directory under the root holding an `oci-layout` file, as a repository path.
    /// Symlinked directories are followed like any other (each is listed under its own
    /// name, as a pull would reach it) while they resolve inside the root; one leading
    /// outside is an error, never silently skipped.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let root = self.root.clone();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || {
            let real_root = match std::fs::canonicalize(&root) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(RegistryError::io(format!("resolve {}", root.display()), e)),
            };
            let mut out = Vec::new();
            let mut stack = vec![(root.clone(), String::new(), vec![real_root.clone()])];
            while let Some((dir, rel, ancestors)) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) => return Err(RegistryError::io(format!("list {}", dir.display()), e)),
                };
                if !rel.is_empty() && dir.join("oci-layout").is_file() {
                    out.push(rel.clone());
                }
                for entry in entries {
                    let entry = entry.map_err(io(format!("list {}", dir.display())))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || name == "blobs" {
                        continue;
                    }
                    let path = entry.path();
                    let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
                    if !path.is_dir() {
                        continue;
                    }
                    let real = std::fs::canonicalize(&path)
                        .map_err(io(format!("resolve {}", path.display())))?;
                    if is_link && !real.starts_with(&real_root) {
                        return Err(RegistryError::invalid(
                            &key,
                            "list repositories",
                            format!(
                                "{} leads outside the layout directory (to {}): symlinks \
                                 must stay inside it",
                                path.display(),
                                real.display()
                            ),
                        ));
                    }
                    // A link back to a directory above it would list forever.
                    if ancestors.contains(&real) {
                        continue;
                    }
                    let child = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    let mut chain = ancestors.clone();
                    chain.push(real);
                    stack.push((path, child, chain));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| {
            RegistryError::invalid(
                &self.key,
                "list repositories",
                format!("walk panicked: {e}"),
            )
        })?
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;
    use crate::registry::{BlobStream, Registry};

    /// A layout behind the registry interface (as `Registry::from_spec` builds it).
    fn reg(dir: &tempfile::TempDir) -> std::sync::Arc<Registry> {
        std::sync::Arc::new(Registry::Layout(LayoutRegistry::new("local", dir.path())))
    }

    fn blob_stream(b: &'static [u8]) -> BlobStream {
        stream::iter(vec![
            Ok(Bytes::from_static(&b[..3])),
            Ok(Bytes::from_static(&b[3..])),
        ])
        .boxed()
    }

    fn manifest(config: &Digest, layer: &Digest) -> RawManifest {
        let v = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 11}],
        });
        RawManifest::new(serde_json::to_vec(&v).unwrap(), None).unwrap()
    }

    #[tokio::test]
    async fn blobs_manifests_tags() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(&dir);
        let layer = Digest::of(b"hello world");
        r.put_blob("a/b", &layer, 11, blob_stream(b"hello world"))
            .await
            .unwrap();
        assert_eq!(r.blob_exists("a/b", &layer).await.unwrap(), Some(11));
        let cfg = r
            .put_blob_bytes("a/b", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let m = manifest(&cfg, &layer);
        r.put_manifest("a/b", "v1", &m).await.unwrap();
        r.put_manifest("a/b", "v1", &m).await.unwrap();
        r.put_manifest("a/b", "v2", &m).await.unwrap();
        assert_eq!(r.list_tags("a/b").await.unwrap(), vec!["v1", "v2"]);
        let got = r.get_manifest("a/b", "v1").await.unwrap().unwrap();
        assert_eq!(got, m);
        let d = r
            .head_manifest("a/b", &m.digest.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.digest, m.digest);
        assert_eq!(d.media_type, media::OCI_MANIFEST);
        assert!(r.get_manifest("a/b", "nope").await.unwrap().is_none());
        assert!(r.get_manifest("x", "v1").await.unwrap().is_none());
        assert!(dir.path().join("a/b/oci-layout").is_file());

        let blob = r.get_blob("a/b", &layer).await.unwrap();
        let bytes: Vec<Bytes> = blob.stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"hello world");
        assert_eq!(r.get_blob_bytes("a/b", &cfg, 10).await.unwrap(), b"{}");
        assert!(r.get_blob_bytes("a/b", &layer, 10).await.is_err());

        assert!(r.mount_blob("c", &layer, "a/b").await.unwrap());
        assert!(!r.mount_blob("c", &Digest::of(b"zz"), "a/b").await.unwrap());
        assert_eq!(r.catalog().await.unwrap(), vec!["a/b", "c"]);

        r.delete_manifest("a/b", &m.digest).await.unwrap();
        assert!(r.list_tags("a/b").await.unwrap().is_empty());
        r.delete_manifest("a/b", &m.digest).await.unwrap();
    }

    #[tokio::test]
    async fn two_writers_on_one_directory_keep_every_tag() {
        let dir = tempfile::tempdir().unwrap();
        // Separate instances: only the file lock serialises them (as two processes).
        let a = reg(&dir);
        let b = reg(&dir);
        let cfg = a
            .put_blob_bytes("r", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let layer = Digest::of(b"hello world");
        a.put_blob("r", &layer, 11, blob_stream(b"hello world"))
            .await
            .unwrap();
        let m = manifest(&cfg, &layer);
        let writes = (0..40).map(|i| {
            let r = if i % 2 == 0 { a.clone() } else { b.clone() };
            let m = m.clone();
            tokio::spawn(async move { r.put_manifest("r", &format!("t{i}"), &m).await })
        });
        for w in writes.collect::<Vec<_>>() {
            w.await.unwrap().unwrap();
        }
        assert_eq!(a.list_tags("r").await.unwrap().len(), 40);
        assert!(dir.path().join(LOCK_FILE).is_file());
        assert_eq!(a.catalog().await.unwrap(), vec!["r"]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_inside_the_root_are_followed_and_outside_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = reg(&dir);
        let cfg = r
            .put_blob_bytes("quarantine/app", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let layer = Digest::of(b"hello world");
        r.put_blob("quarantine/app", &layer, 11, blob_stream(b"hello world"))
            .await
            .unwrap();
        r.put_manifest("quarantine/app", "1", &manifest(&cfg, &layer))
            .await
            .unwrap();
        std::fs::create_dir_all(dir.path().join("live")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("quarantine/app"),
            dir.path().join("live/app"),
        )
        .unwrap();
        // What a pull of live/app sees, the catalog and the tag list see too.
        assert_eq!(
            r.catalog().await.unwrap(),
            vec!["live/app", "quarantine/app"]
        );
        assert_eq!(r.list_tags("live/app").await.unwrap(), vec!["1"]);
        assert!(r.get_manifest("live/app", "1").await.unwrap().is_some());
        // A loop back up the tree is not walked forever.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("live/loop")).unwrap();
        assert_eq!(
            r.catalog().await.unwrap(),
            vec!["live/app", "quarantine/app"]
        );
        std::fs::remove_file(dir.path().join("live/loop")).unwrap();
        // Outside the root: refused, by name, for the repository and for the catalog.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("live/escape")).unwrap();
        let e = r.list_tags("live/escape").await.unwrap_err();
        assert!(e.to_string().contains("leads outside the layout"), "{e}");
        let e = r
            .put_blob_bytes("live/escape/deeper", Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("leads outside the layout"), "{e}");
        let e = r.catalog().await.unwrap_err();
        assert!(e.to_string().contains("live/escape"), "{e}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn bad_blob_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let r = reg(&dir);
        let wrong = Digest::of(b"something else");
        let e = r
            .put_blob("a", &wrong, 11, blob_stream(b"hello world"))
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
        assert_eq!(r.blob_exists("a", &wrong).await.unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a/blobs/sha256"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty());
        assert!(r.get_blob("a", &wrong).await.is_err());
        assert!(r.list_tags("../etc").await.is_err());
    }
}
