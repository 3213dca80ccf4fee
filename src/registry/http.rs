//! The OCI Distribution client on reqwest: one `reqwest::Client` per registry (keep-alive,
//! HTTP/2 where offered), a semaphore of `max_concurrency` permits held per HTTP request,
//! authentication on 401 (see `auth`), retries of replayable requests (see `retry`),
//! redirects followed by hand (no Authorization to another origin), idle timeouts instead
//! of total timeouts, and every manifest, blob, tag, catalog and referrers endpoint.
//!
//! Permits: a request holds one permit of its registry from before it is sent until its
//! response headers arrive (buffered answers: until the body is read). A download's body
//! streams without a permit, and the Range requests that resume a broken download take
//! none, so a copy within one registry never waits for a permit while holding one.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue,
    LINK, LOCATION, RANGE, RETRY_AFTER,
};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::{self, Authenticator};
use super::error::RegistryError;
use super::retry::parse_retry_after;
use super::verify::Verify;
use super::{Blob, BlobStream, ClientOptions, Descriptor, PutManifest, Referrer};
use crate::config::RegistrySpec;
use crate::model::{Digest, RawManifest, media};

const OCTET_STREAM: &str = "application/octet-stream";
const MAX_REDIRECTS: usize = 5;
const MAX_RESUMES: u32 = 3;
/// Re-reads of a manifest or blob answered 500 (see `Inner::execute_read`).
const RACY_READS: u32 = 3;
/// The most pages one listing (tags, catalog, referrers) may take.
pub const MAX_PAGES: usize = 10_000;

/// The pages of one listing: stops on a URL already read (a self-referencing or cyclic
/// `Link`) and fails past [`MAX_PAGES`].
struct Pages {
    seen: std::collections::HashSet<Url>,
}

impl Pages {
    fn new(first: &Url) -> Pages {
        Pages {
            seen: std::collections::HashSet::from([first.clone()]),
        }
    }

    /// The next page to read, `None` when the listing is complete.
    fn next(
        &mut self,
        registry: &str,
        what: &str,
        next: Option<Url>,
    ) -> Result<Option<Url>, RegistryError> {
        let Some(url) = next else { return Ok(None) };
        if !self.seen.insert(url.clone()) {
            tracing::warn!(
                "{what} on `{registry}`: the registry links back to a page already read; \
                 the listing ends there"
            );
            return Ok(None);
        }
        if self.seen.len() > MAX_PAGES {
            return Err(RegistryError::invalid(
                registry,
                what,
                format!("the listing has more than {MAX_PAGES} pages"),
            ));
        }
        Ok(Some(url))
    }
}

/// A registry spoken to over HTTP(S).
#[derive(Clone, Debug)]
pub struct HttpRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: String,
    /// `scheme://host[:port]`, no trailing slash.
    base: Url,
    host: String,
    client: reqwest::Client,
    auth: Authenticator,
    permits: Arc<Semaphore>,
    opts: ClientOptions,
    /// `stall_timeout`: the longest wait for a connection, for response headers, for the
    /// next bytes of a body, or for an upload body to make progress.
    stall: Duration,
    /// The registry rejected a monolithic upload: upload in chunks from now on.
    prefer_chunked: AtomicBool,
    /// Upload sessions started and not yet finished or cancelled (repository, Location):
    /// what `abort_open_uploads` DELETEs when an interrupted apply drops its transfers.
    open_uploads: std::sync::Mutex<Vec<(String, Url)>>,
    /// Whether the registry has the referrers API: unknown until its first answer.
    referrers: AtomicU8,
    /// Held while the referrers API is probed, so concurrent first lookups wait for one
    /// answer instead of all probing.
    referrers_probe: tokio::sync::Mutex<()>,
    /// Manifests and small blobs this client read or wrote by digest (see `ContentCache`).
    cache: Mutex<ContentCache>,
}

/// Content this client already read or wrote, by (repository, digest): a manifest or small
/// blob addressed by digest never changes, so one apply never asks for it twice (the scan
/// and the promote re-read what the import just wrote). Scoped to the repository, so a
/// repository is never assumed to hold what was only seen in another; a delete through this
/// client evicts. Bounded: cleared when it would grow past `CACHE_BYTES`.
#[derive(Debug, Default)]
struct ContentCache {
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

/// `Inner::referrers` states.
const REFERRERS_UNKNOWN: u8 = 0;
const REFERRERS_SUPPORTED: u8 = 1;
const REFERRERS_UNSUPPORTED: u8 = 2;

/// What a request sends as body.
enum Body {
    None,
    /// Replayable (retries, re-sends after a 401).
    Bytes(Bytes),
    /// A one-shot stream with its exact length, its progress and whether it is waiting on
    /// its source; sent once.
    Stream(
        Mutex<Option<reqwest::Body>>,
        u64,
        Arc<AtomicU64>,
        Arc<AtomicBool>,
    ),
}

/// One request to the registry, before authentication.
struct Call<'a> {
    method: Method,
    url: Url,
    scopes: Vec<String>,
    headers: HeaderMap,
    what: &'a str,
    /// Take a permit of the registry's semaphore (false only for download resumes).
    permit: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, url: Url, scopes: Vec<String>, what: &'a str) -> Call<'a> {
        Call {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            what,
            permit: true,
        }
    }

    fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Call<'a> {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Turn an error response into `RegistryError::Api`, keeping the registry's own code.
pub(crate) async fn api_error(registry: &str, what: &str, resp: Response) -> RegistryError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    let (code, message) = parse_error_body(&body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_uppercase()
                .replace(' ', "_"),
            if text.is_empty() || text.len() > 300 {
                status.canonical_reason().unwrap_or("").to_string()
            } else {
                text.to_string()
            },
        )
    });
    RegistryError::Api {
        registry: registry.to_string(),
        what: what.to_string(),
        status: status.as_u16(),
        code,
        message,
        retry_after,
    }
}

fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    let e: ErrorBody = serde_json::from_slice(body).ok()?;
    let first = e.errors.first()?;
    let message = e
        .errors
        .iter()
        .map(|x| x.message.as_str())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Some((first.code.clone(), message))
}

async fn read_limited(mut resp: Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() >= max {
            out.truncate(max);
            break;
        }
    }
    Ok(out)
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(value: &str) -> Option<String> {
    for part in value.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next"))
                .unwrap_or(false)
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    header_str(headers, CONTENT_TYPE.as_str())
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
        .filter(|ct| !ct.is_empty())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse().ok())
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Time out a future with a fixed limit.
async fn within<T>(
    limit: Duration,
    registry: &str,
    what: &str,
    fut: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(RegistryError::Timeout {
            registry: registry.to_string(),
            what: what.to_string(),
            after: limit,
        }),
    }
}

/// A source stream that says whether its consumer is waiting on it: a stall while the
/// source owes the next bytes is the source's (its own stall timeout names it), not the
/// upload target's.
struct Watched {
    inner: BlobStream,
    waiting: Arc<AtomicBool>,
}

impl futures_util::Stream for Watched {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let r = self.inner.as_mut().poll_next(cx);
        self.waiting.store(r.is_pending(), Ordering::Relaxed);
        r
    }
}

/// Time out a streaming upload when its body makes no progress for `idle` while the
/// target is the one holding it up, or when the answer takes longer than `finish` after
/// the last byte went out. While `waiting_source` is set the source owes the bytes.
#[allow(clippy::too_many_arguments)]
async fn watched<T>(
    progress: &AtomicU64,
    waiting_source: &AtomicBool,
    total: u64,
    idle: Duration,
    finish: Duration,
    registry: &str,
    what: &str,
    fut: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    let mut fut = std::pin::pin!(fut);
    let mut last = progress.load(Ordering::Relaxed);
    let mut since = Instant::now();
    let tick = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep(tick) => {
                let now = progress.load(Ordering::Relaxed);
                if now != last || (now < total && waiting_source.load(Ordering::Relaxed)) {
                    last = now;
                    since = Instant::now();
                }
                let limit = if now >= total { finish } else { idle };
                if since.elapsed() > limit {
                    return Err(RegistryError::Timeout {
                        registry: registry.to_string(),
                        what: what.to_string(),
                        after: limit,
                    });
                }
            }
        }
    }
}

fn is_digest(reference: &str) -> Option<Digest> {
    reference.parse().ok()
}

impl HttpRegistry {
    /// Build the client for one registry entry. `https://` unless the endpoint says `http://`.
    pub fn new(
        spec: &RegistrySpec,
        endpoint: &str,
        opts: &ClientOptions,
    ) -> Result<HttpRegistry, RegistryError> {
        super::ensure_crypto_provider();
        let what = "set up the registry client";
        let base = Url::parse(endpoint.trim_end_matches('/')).map_err(|e| {
            RegistryError::invalid(
                &spec.key,
                what,
                format!("invalid endpoint `{endpoint}`: {e}"),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(RegistryError::invalid(
                &spec.key,
                what,
                format!("endpoint `{endpoint}` must be http(s)://host[:port]"),
            ));
        }
        let host_only = base.host_str().unwrap_or_default();
        let host_only = if host_only == "registry-1.docker.io" {
            crate::model::reference::DOCKER_HUB
        } else {
            host_only
        };
        let host = match base.port() {
            Some(p) => format!("{host_only}:{p}"),
            None => host_only.to_string(),
        };
        let stall = spec.timeouts.stall_timeout;
        let mut opts = opts.clone();
        opts.retry.budget = Some(spec.timeouts.timeout);
        let client = reqwest::Client::builder()
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(stall)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| RegistryError::Transport {
                registry: spec.key.clone(),
                what: what.into(),
                source: e,
            })?;
        let base_str = base.as_str().trim_end_matches('/').to_string();
        let auth = Authenticator::new(
            &spec.key,
            &host,
            &base_str,
            spec.auth.clone(),
            client.clone(),
            opts.retry.clone(),
            stall,
        )
        .with_identity(opts.identity.clone());
        Ok(HttpRegistry {
            inner: Arc::new(Inner {
                key: spec.key.clone(),
                base,
                host,
                client,
                auth,
                permits: Arc::new(Semaphore::new(spec.max_concurrency.max(1))),
                opts,
                stall,
                prefer_chunked: AtomicBool::new(false),
                open_uploads: std::sync::Mutex::new(Vec::new()),
                referrers: AtomicU8::new(REFERRERS_UNKNOWN),
                referrers_probe: tokio::sync::Mutex::new(()),
                cache: Mutex::new(ContentCache::default()),
            }),
        })
    }

    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// `host[:port]` as written in pullable references (`registry-1.docker.io` is `docker.io`).
    pub fn host(&self) -> String {
        self.inner.host.clone()
    }

    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let i = &self.inner;
        let what = format!("check manifest {repo}:{reference}");
        let url = i.url(&format!("{repo}/manifests/{reference}"))?;
        let head = i
            .retry(&what, || async {
                let call = Call::new(
                    Method::HEAD,
                    url.clone(),
                    vec![auth::pull_scope(repo)],
                    &what,
                )
                .header(ACCEPT, media::MANIFEST_ACCEPT);
                let (resp, _permit) = i.execute_read(&call).await?;
                match resp.status() {
                    s if s.is_success() => Ok(Some(resp.headers().clone())),
                    StatusCode::NOT_FOUND => Ok(None),
                    _ => Err(i.error(&what, resp).await),
                }
            })
            .await?;
        let Some(headers) = head else {
            return Ok(None);
        };
        let digest = header_str(&headers, "docker-content-digest").and_then(|d| d.parse().ok());
        let media_type =
            content_type(&headers).filter(|ct| media::is_index(ct) || media::is_manifest(ct));
        let size = content_length(&headers);
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) if size > 0 => {
                if let Some(want) = is_digest(reference)
                    && want != digest
                {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("manifest {repo}@{want} on `{}`", i.key),
                        expected: want,
                        actual: digest,
                    });
                }
                Ok(Some(Descriptor {
                    digest,
                    media_type,
                    size,
                }))
            }
            // Incomplete HEAD answer: read the manifest itself.
            _ => Ok(self
                .get_manifest(repo, reference)
                .await?
                .map(|m| Descriptor {
                    size: m.bytes.len() as u64,
                    digest: m.digest,
                    media_type: m.media_type,
                })),
        }
    }

    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<RawManifest>, RegistryError> {
        let i = &self.inner;
        if let Some(d) = is_digest(reference)
            && let Some(m) = i.cached_manifest(repo, &d)
        {
            return Ok(Some(m));
        }
        let what = format!("get manifest {repo}:{reference}");
        let url = i.url(&format!("{repo}/manifests/{reference}"))?;
        let got = i
            .retry(&what, || async {
                let call = Call::new(
                    Method::GET,
                    url.clone(),
                    vec![auth::pull_scope(repo)],
                    &what,
                )
                .header(ACCEPT, media::MANIFEST_ACCEPT);
                let (resp, _permit) = i.execute_read(&call).await?;
                match resp.status() {
                    s if s.is_success() => {
                        let headers = resp.headers().clone();
                        let body = i.read_body(&what, resp, i.opts.max_manifest_size).await?;
                        Ok(Some((headers, body)))
                    }
                    StatusCode::NOT_FOUND => Ok(None),
                    _ => Err(i.error(&what, resp).await),
                }
            })
            .await?;
        let Some((headers, body)) = got else {
            return Ok(None);
        };
        let actual = Digest::of(&body);
        let label = format!("manifest {repo}:{reference} from `{}`", i.key);
        if let Some(want) = is_digest(reference)
            && want != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: label,
                expected: want,
                actual,
            });
        }
        if let Some(announced) = header_str(&headers, "docker-content-digest") {
            let announced: Digest = announced.parse().map_err(|e| {
                RegistryError::invalid(&i.key, &what, format!("bad Docker-Content-Digest: {e}"))
            })?;
            if announced != actual {
                return Err(RegistryError::DigestMismatch {
                    what: label,
                    expected: announced,
                    actual,
                });
            }
        }
        let m = RawManifest::new(body.to_vec(), content_type(&headers).as_deref())
            .map_err(|e| RegistryError::invalid(&i.key, &what, e.to_string()))?;
        i.cache.lock().expect("cache lock").put_manifest(repo, &m);
        Ok(Some(m))
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &RawManifest,
    ) -> Result<PutManifest, RegistryError> {
        let i = &self.inner;
        let what = format!("put manifest {repo}:{reference}");
        if let Some(d) = is_digest(reference)
            && d != m.digest
        {
            return Err(RegistryError::invalid(
                &i.key,
                &what,
                format!("the manifest's digest is {}", m.digest),
            ));
        }
        let url = i.url(&format!("{repo}/manifests/{reference}"))?;
        let body = Body::Bytes(Bytes::from(m.bytes.clone()));
        let headers = i
            .retry(&what, || async {
                let call = Call::new(
                    Method::PUT,
                    url.clone(),
                    vec![auth::push_scope(repo)],
                    &what,
                )
                .header(CONTENT_TYPE, &m.media_type);
                let (resp, _permit) = i.execute(&call, &body).await?;
                if resp.status().is_success() {
                    Ok(resp.headers().clone())
                } else {
                    Err(i.error(&what, resp).await)
                }
            })
            .await?;
        if let Some(d) = header_str(&headers, "docker-content-digest")
            && let Ok(d) = d.parse::<Digest>()
            && d != m.digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {repo}:{reference} as stored by `{}`", i.key),
                expected: m.digest.clone(),
                actual: d,
            });
        }
        i.cache.lock().expect("cache lock").put_manifest(repo, m);
        Ok(PutManifest {
            subject_indexed: headers.contains_key("oci-subject"),
        })
    }

    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<(), RegistryError> {
        let i = &self.inner;
        let what = format!("delete manifest {repo}@{digest}");
        i.cache
            .lock()
            .expect("cache lock")
            .manifests
            .remove(&(repo.to_string(), digest.clone()));
        let url = i.url(&format!("{repo}/manifests/{digest}"))?;
        i.retry(&what, || async {
            let call = Call::new(
                Method::DELETE,
                url.clone(),
                vec![auth::delete_scope(repo)],
                &what,
            );
            let (resp, _permit) = i.execute(&call, &Body::None).await?;
            match resp.status() {
                s if s.is_success() => Ok(()),
                // Already gone: deleting is idempotent.
                StatusCode::NOT_FOUND => Ok(()),
                _ => Err(i.error(&what, resp).await),
            }
        })
        .await
    }

    pub async fn blob_exists(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let i = &self.inner;
        let what = format!("check blob {repo}@{digest}");
        let url = i.url(&format!("{repo}/blobs/{digest}"))?;
        i.retry(&what, || async {
            let call = Call::new(
                Method::HEAD,
                url.clone(),
                vec![auth::pull_scope(repo)],
                &what,
            );
            let (resp, _permit) = i.execute_read(&call).await?;
            match resp.status() {
                s if s.is_success() => Ok(Some(content_length(resp.headers()).unwrap_or(0))),
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(i.error(&what, resp).await),
            }
        })
        .await
    }

    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Blob, RegistryError> {
        let i = &self.inner;
        let what = format!("get blob {repo}@{digest}");
        let resp = i
            .retry(&what, || async {
                i.blob_response(repo, digest, 0, true, &what).await
            })
            .await?;
        let size = match content_length(resp.headers()) {
            Some(n) => n,
            None => self.blob_exists(repo, digest).await?.ok_or_else(|| {
                RegistryError::invalid(&i.key, &what, "the registry sent no Content-Length")
            })?,
        };
        let body = resp.bytes_stream().boxed();
        let raw = download_stream(self.inner.clone(), repo, digest, size, body);
        let stream = Verify::new(
            raw,
            digest,
            size,
            &i.key,
            format!("blob {repo}@{digest} from `{}`", i.key),
        )
        .boxed();
        Ok(Blob { size, stream })
    }

    pub async fn get_blob_bytes(
        &self,
        repo: &str,
        digest: &Digest,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let key = (repo.to_string(), digest.clone());
        if let Some(b) = self.inner.cache.lock().expect("cache lock").blobs.get(&key)
            && b.len() as u64 <= max
        {
            return Ok(b.to_vec());
        }
        let what = format!("get blob {repo}@{digest}");
        let bytes = self
            .inner
            .retry(&what, || async {
                let blob = self.get_blob(repo, digest).await?;
                if blob.size > max {
                    return Err(RegistryError::invalid(
                        &self.inner.key,
                        &what,
                        format!("blob is {} bytes, more than the {max} expected", blob.size),
                    ));
                }
                let chunks: Vec<Bytes> = blob.stream.try_collect().await?;
                Ok(chunks.concat())
            })
            .await?;
        self.inner.cache.lock().expect("cache lock").put_blob(
            repo,
            digest,
            &Bytes::copy_from_slice(&bytes),
        );
        Ok(bytes)
    }

    pub async fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        stream: BlobStream,
    ) -> Result<(), RegistryError> {
        let verified = Verify::new(
            stream,
            digest,
            size,
            &self.inner.key,
            format!("blob {repo}@{digest} being uploaded"),
        )
        .boxed();
        self.put_verified_blob(repo, digest, size, verified).await
    }

    /// Upload a stream that already verifies itself (see `Registry::put_verified_blob`).
    pub async fn put_verified_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        verified: BlobStream,
    ) -> Result<(), RegistryError> {
        let i = &self.inner;
        let what = format!("upload blob {repo}@{digest}");
        let (location, min_chunk) = i.start_upload(repo, &what).await?;
        i.open_uploads
            .lock()
            .expect("open uploads lock")
            .push((repo.to_string(), location.clone()));
        let chunked = size > i.opts.chunk_threshold || i.prefer_chunked.load(Ordering::Relaxed);
        let result = if chunked {
            i.upload_chunked(repo, digest, location.clone(), verified, min_chunk, &what)
                .await
        } else {
            i.upload_monolithic(repo, digest, size, location.clone(), verified, &what)
                .await
        };
        if let Err(e) = &result {
            tracing::debug!(registry = %i.key, "upload of {digest} failed ({e}); cancelling the session");
            i.cancel_upload(repo, &location).await;
        }
        i.open_uploads
            .lock()
            .expect("open uploads lock")
            .retain(|(_, l)| l != &location);
        result
    }

    /// DELETE every upload session whose transfer was dropped before it finished (an
    /// interrupted apply). Returns how many were cancelled.
    pub async fn abort_open_uploads(&self) -> usize {
        let open: Vec<(String, Url)> =
            std::mem::take(&mut *self.inner.open_uploads.lock().expect("open uploads lock"));
        for (repo, location) in &open {
            self.inner.cancel_upload(repo, location).await;
        }
        open.len()
    }

    pub async fn put_blob_bytes(&self, repo: &str, bytes: Bytes) -> Result<Digest, RegistryError> {
        let i = &self.inner;
        let digest = Digest::of(&bytes);
        let what = format!("upload blob {repo}@{digest}");
        i.retry(&what, || async {
            let (location, _) = i.start_upload(repo, &what).await?;
            let mut url = location.clone();
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let call = Call::new(Method::PUT, url, vec![auth::push_scope(repo)], &what)
                .header(CONTENT_TYPE, OCTET_STREAM);
            let (resp, _permit) = i.execute(&call, &Body::Bytes(bytes.clone())).await?;
            if resp.status().is_success() {
                Ok(())
            } else {
                let e = i.error(&what, resp).await;
                drop(_permit);
                i.cancel_upload(repo, &location).await;
                Err(e)
            }
        })
        .await?;
        i.cache
            .lock()
            .expect("cache lock")
            .put_blob(repo, &digest, &bytes);
        Ok(digest)
    }

    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from_repo: &str,
    ) -> Result<bool, RegistryError> {
        let i = &self.inner;
        let what = format!("mount blob {digest} from {from_repo} into {repo}");
        let mut url = i.url(&format!("{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from_repo);
        let opened = i
            .retry(&what, || async {
                let call = Call::new(
                    Method::POST,
                    url.clone(),
                    vec![auth::push_scope(repo), auth::pull_scope(from_repo)],
                    &what,
                )
                .header(CONTENT_LENGTH, "0");
                let (resp, _permit) = i.execute(&call, &Body::None).await?;
                match resp.status() {
                    StatusCode::CREATED => Ok(None),
                    StatusCode::ACCEPTED => Ok(Some(i.location(&resp, &what)?)),
                    _ => Err(i.error(&what, resp).await),
                }
            })
            .await?;
        match opened {
            None => Ok(true),
            Some(location) => {
                i.cancel_upload(repo, &location).await;
                Ok(false)
            }
        }
    }

    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let i = &self.inner;
        let what = format!("list tags of {repo}");
        let mut url = i.url(&format!("{repo}/tags/list"))?;
        let mut out = Vec::new();
        let mut pages = Pages::new(&url);
        loop {
            let page = i
                .get_page(&url, vec![auth::pull_scope(repo)], &what, true)
                .await?;
            let Some((body, next)) = page else {
                return Ok(Vec::new());
            };
            let t: Tags = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::invalid(&i.key, &what, format!("bad tag list: {e}")))?;
            out.extend(t.tags.unwrap_or_default());
            match pages.next(&i.key, &what, next)? {
                Some(n) => url = n,
                None => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Catalog {
            repositories: Option<Vec<String>>,
        }
        let i = &self.inner;
        let what = "list repositories (catalog)".to_string();
        let mut url = i.url("_catalog")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let mut out = Vec::new();
        let mut pages = Pages::new(&url);
        loop {
            let page = i
                .get_page(&url, vec![auth::CATALOG_SCOPE.to_string()], &what, false)
                .await?;
            let Some((body, next)) = page else { break };
            let c: Catalog = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::invalid(&i.key, &what, format!("bad catalog: {e}")))?;
            out.extend(c.repositories.unwrap_or_default());
            match pages.next(&i.key, &what, next)? {
                Some(n) => url = n,
                None => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The referrers API. `Ok(None)` when the registry has none (404 / 400 / 405).
    ///
    /// A registry with the API never answers 404 to it (OCI distribution spec), so an error
    /// status without a registry error code (Distribution 2.8: `404 page not found`, an
    /// unknown route) is remembered for this registry and not probed again; the first
    /// lookups are serialised until that answer. A 404 carrying a registry code
    /// (`NAME_UNKNOWN`, …) is about the repository, not the API, and is not remembered.
    pub async fn referrers_api(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let i = &self.inner;
        let what = format!("list referrers of {repo}@{subject}");
        let mut url = i.url(&format!("{repo}/referrers/{subject}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        if i.referrers.load(Ordering::Acquire) == REFERRERS_UNSUPPORTED {
            return Ok(None);
        }
        let _probing = if i.referrers.load(Ordering::Acquire) == REFERRERS_UNKNOWN {
            let guard = i.referrers_probe.lock().await;
            match i.referrers.load(Ordering::Acquire) {
                REFERRERS_UNSUPPORTED => return Ok(None),
                REFERRERS_SUPPORTED => None,
                _ => Some(guard),
            }
        } else {
            None
        };
        let mut out = Vec::new();
        let mut pages = Pages::new(&url);
        loop {
            let got = i
                .retry(&what, || async {
                    let call = Call::new(
                        Method::GET,
                        url.clone(),
                        vec![auth::pull_scope(repo)],
                        &what,
                    )
                    .header(ACCEPT, media::OCI_INDEX);
                    let (resp, _permit) = i.execute(&call, &Body::None).await?;
                    match resp.status() {
                        StatusCode::OK => {
                            let next = resp
                                .headers()
                                .get(LINK)
                                .and_then(|v| v.to_str().ok())
                                .and_then(next_link)
                                .and_then(|n| resp.url().join(&n).ok());
                            let body = i.read_body(&what, resp, i.opts.max_manifest_size).await?;
                            Ok(Some((body, next)))
                        }
                        StatusCode::NOT_FOUND
                        | StatusCode::BAD_REQUEST
                        | StatusCode::METHOD_NOT_ALLOWED => {
                            let status = resp.status();
                            let body = read_limited(resp, 16 * 1024).await.unwrap_or_default();
                            if status == StatusCode::METHOD_NOT_ALLOWED
                                || parse_error_body(&body).is_none()
                            {
                                i.referrers.store(REFERRERS_UNSUPPORTED, Ordering::Release);
                                tracing::debug!(registry = %i.key, "no referrers API: using the tag schema");
                            }
                            Ok(None)
                        }
                        _ => Err(i.error(&what, resp).await),
                    }
                })
                .await?;
            let Some((body, next)) = got else {
                return Ok(None);
            };
            i.referrers.store(REFERRERS_SUPPORTED, Ordering::Release);
            out.extend(
                super::referrers_from_index(&body)
                    .map_err(|m| RegistryError::invalid(&i.key, &what, m))?,
            );
            match pages.next(&i.key, &what, next)? {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(Some(out))
    }
}

impl Inner {
    fn cached_manifest(&self, repo: &str, digest: &Digest) -> Option<RawManifest> {
        self.cache
            .lock()
            .expect("cache lock")
            .manifests
            .get(&(repo.to_string(), digest.clone()))
            .cloned()
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let s = format!("{}/v2/{path}", self.base.as_str().trim_end_matches('/'));
        Url::parse(&s)
            .map_err(|e| RegistryError::invalid(&self.key, "build a URL", format!("`{s}`: {e}")))
    }

    async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        self.opts.retry.run_for(&self.key, what, op).await
    }

    async fn error(&self, what: &str, resp: Response) -> RegistryError {
        api_error(&self.key, what, resp).await
    }

    fn transport(&self, what: &str, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            // The connect timeout is the stall timeout: say so.
            return RegistryError::Timeout {
                registry: self.key.clone(),
                what: what.to_string(),
                after: self.stall,
            };
        }
        let e = super::error::redact_url(e);
        RegistryError::Transport {
            registry: self.key.clone(),
            what: what.to_string(),
            source: e,
        }
    }

    /// A 401 that re-authentication cannot fix. `sent`: the request carried credentials,
    /// so they were rejected (not missing).
    async fn unauthorized(&self, what: &str, resp: Response, sent: bool) -> RegistryError {
        let body = read_limited(resp, 16 * 1024).await.unwrap_or_default();
        RegistryError::Unauthorized {
            registry: self.key.clone(),
            what: what.to_string(),
            code: parse_error_body(&body).map(|(c, _)| c),
            hint: if sent {
                self.auth.rejected_hint()
            } else {
                self.auth.hint()
            },
        }
    }

    /// Send a request: authorization, permit, one re-authentication on 401 (replayable
    /// bodies only), redirects of GET/HEAD followed by hand. The permit is returned with
    /// the response so a buffered body can be read under it.
    async fn execute(
        &self,
        call: &Call<'_>,
        body: &Body,
    ) -> Result<(Response, Option<OwnedSemaphorePermit>), RegistryError> {
        let mut reauthenticated = false;
        // Credentials stay at their origin: a registry-supplied absolute URL (a pagination
        // `Link`, an upload `Location`) on another scheme, host or port gets no
        // Authorization at all. Redirects are checked the same way in `follow`.
        let own_origin = same_origin(&call.url, &self.base);
        if !own_origin {
            tracing::debug!(
                registry = %self.key,
                host = call.url.host_str(),
                "request to another origin: sent without credentials"
            );
        }
        loop {
            let authz = if own_origin {
                self.auth.header(&call.scopes).await?
            } else {
                None
            };
            let permit = if call.permit {
                Some(
                    self.permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("registry semaphore is never closed"),
                )
            } else {
                None
            };
            let mut rb = self
                .client
                .request(call.method.clone(), call.url.clone())
                .headers(call.headers.clone());
            if let Some(a) = &authz {
                rb = rb.header(AUTHORIZATION, a.clone());
            }
            tracing::debug!(
                registry = %self.key,
                method = %call.method,
                path = call.url.path(),
                "request"
            );
            let idle = self.stall;
            let resp = match body {
                Body::None => {
                    within(idle, &self.key, call.what, async {
                        rb.send().await.map_err(|e| self.transport(call.what, e))
                    })
                    .await?
                }
                Body::Bytes(b) => {
                    within(idle, &self.key, call.what, async {
                        rb.header(CONTENT_LENGTH, b.len())
                            .body(b.clone())
                            .send()
                            .await
                            .map_err(|e| self.transport(call.what, e))
                    })
                    .await?
                }
                Body::Stream(slot, len, progress, waiting) => {
                    let Some(stream_body) = slot.lock().expect("body lock").take() else {
                        return Err(RegistryError::invalid(
                            &self.key,
                            call.what,
                            "a streamed body cannot be sent twice",
                        ));
                    };
                    let fut = async {
                        rb.header(CONTENT_LENGTH, *len)
                            .body(stream_body)
                            .send()
                            .await
                            .map_err(|e| self.transport(call.what, e))
                    };
                    watched(
                        progress,
                        waiting,
                        *len,
                        idle,
                        self.opts.retry.budget.unwrap_or(idle * 5).max(idle),
                        &self.key,
                        call.what,
                        fut,
                    )
                    .await?
                }
            };
            tracing::debug!(registry = %self.key, status = resp.status().as_u16(), "response");
            if resp.status() == StatusCode::UNAUTHORIZED {
                drop(permit);
                let replayable = !matches!(body, Body::Stream(..));
                if !reauthenticated
                    && replayable
                    && own_origin
                    && self
                        .auth
                        .challenged(resp.headers(), &call.scopes, authz.as_ref())
                        .await?
                {
                    reauthenticated = true;
                    continue;
                }
                return Err(self
                    .unauthorized(
                        call.what,
                        resp,
                        authz.is_some() && self.auth.has_credentials(),
                    )
                    .await);
            }
            if resp.status().is_redirection()
                && matches!(call.method, Method::GET | Method::HEAD)
                && resp.headers().contains_key(LOCATION)
            {
                let resp = self.follow(call, resp, authz).await?;
                return Ok((resp, permit));
            }
            return Ok((resp, permit));
        }
    }

    /// A read of something another writer may be rewriting (a tag, a repository's blob
    /// link): Distribution's filesystem storage rewrites such links in place, and a read
    /// meanwhile finds one empty and answers 500. Sent again after a short pause, a few
    /// times (a 500 is otherwise not retried: Distribution also answers it to malformed
    /// requests, deterministically).
    async fn execute_read(
        &self,
        call: &Call<'_>,
    ) -> Result<(Response, Option<OwnedSemaphorePermit>), RegistryError> {
        let mut n: u32 = 0;
        loop {
            let (resp, permit) = self.execute(call, &Body::None).await?;
            if resp.status() == StatusCode::INTERNAL_SERVER_ERROR && n < RACY_READS {
                n += 1;
                drop((resp, permit));
                let pause = super::jittered(Duration::from_millis(100) * n);
                tracing::debug!(registry = %self.key, "{}: 500, reading again in {}ms", call.what, pause.as_millis());
                tokio::time::sleep(pause).await;
                continue;
            }
            return Ok((resp, permit));
        }
    }

    /// Follow redirects by hand: Authorization only to the registry's own origin.
    async fn follow(
        &self,
        call: &Call<'_>,
        mut resp: Response,
        authz: Option<HeaderValue>,
    ) -> Result<Response, RegistryError> {
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let next = self.location(&resp, call.what)?;
            tracing::debug!(registry = %self.key, host = next.host_str(), "following redirect");
            let mut rb = self
                .client
                .request(call.method.clone(), next.clone())
                .headers(call.headers.clone());
            if same_origin(&next, &self.base)
                && let Some(a) = &authz
            {
                rb = rb.header(AUTHORIZATION, a.clone());
            }
            resp = within(self.stall, &self.key, call.what, async {
                rb.send().await.map_err(|e| self.transport(call.what, e))
            })
            .await?;
        }
        if resp.status().is_redirection() {
            return Err(RegistryError::invalid(
                &self.key,
                call.what,
                "too many redirects",
            ));
        }
        Ok(resp)
    }

    fn location(&self, resp: &Response, what: &str) -> Result<Url, RegistryError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::invalid(&self.key, what, "answer without Location"))?;
        resp.url().join(loc).map_err(|e| {
            RegistryError::invalid(&self.key, what, format!("bad Location `{loc}`: {e}"))
        })
    }

    /// Read a whole (small) body with an idle timeout per chunk; error above `max` bytes.
    async fn read_body(
        &self,
        what: &str,
        mut resp: Response,
        max: usize,
    ) -> Result<Bytes, RegistryError> {
        if let Some(n) = content_length(resp.headers())
            && n > max as u64
        {
            return Err(RegistryError::invalid(
                &self.key,
                what,
                format!("answer of {n} bytes is larger than {max}"),
            ));
        }
        let mut out = BytesMut::new();
        loop {
            let chunk = within(self.stall, &self.key, what, async {
                resp.chunk().await.map_err(|e| self.transport(what, e))
            })
            .await?;
            let Some(chunk) = chunk else { break };
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(RegistryError::invalid(
                    &self.key,
                    what,
                    format!("answer is larger than {max} bytes"),
                ));
            }
        }
        Ok(out.freeze())
    }

    /// One page of a paged JSON listing: body and the next page's URL. `None` on 404
    /// when `missing_is_empty` (NAME_UNKNOWN), else 404 is an error.
    async fn get_page(
        &self,
        url: &Url,
        scopes: Vec<String>,
        what: &str,
        missing_is_empty: bool,
    ) -> Result<Option<(Bytes, Option<Url>)>, RegistryError> {
        self.retry(what, || async {
            let call = Call::new(Method::GET, url.clone(), scopes.clone(), what)
                .header(ACCEPT, "application/json");
            let (resp, _permit) = self.execute(&call, &Body::None).await?;
            match resp.status() {
                s if s.is_success() => {
                    let next = resp
                        .headers()
                        .get(LINK)
                        .and_then(|v| v.to_str().ok())
                        .and_then(next_link)
                        .and_then(|n| resp.url().join(&n).ok());
                    let body = self.read_body(what, resp, 64 * 1024 * 1024).await?;
                    Ok(Some((body, next)))
                }
                StatusCode::NOT_FOUND if missing_is_empty => Ok(None),
                _ => Err(self.error(what, resp).await),
            }
        })
        .await
    }

    /// GET a blob from `offset` (Range when > 0). 200/206 only; anything else an error.
    async fn blob_response(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
        permit: bool,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let url = self.url(&format!("{repo}/blobs/{digest}"))?;
        let mut call = Call::new(Method::GET, url, vec![auth::pull_scope(repo)], what);
        call.permit = permit;
        if offset > 0 {
            call = call.header(RANGE, &format!("bytes={offset}-"));
        }
        let (resp, _permit) = self.execute(&call, &Body::None).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error(what, resp).await)
        }
    }

    /// POST an upload session; its Location and the registry's minimum chunk length.
    async fn start_upload(&self, repo: &str, what: &str) -> Result<(Url, u64), RegistryError> {
        let url = self.url(&format!("{repo}/blobs/uploads/"))?;
        self.retry(what, || async {
            let call = Call::new(
                Method::POST,
                url.clone(),
                vec![auth::push_scope(repo)],
                what,
            )
            .header(CONTENT_LENGTH, "0");
            let (resp, _permit) = self.execute(&call, &Body::None).await?;
            if resp.status() == StatusCode::ACCEPTED {
                let min = header_str(resp.headers(), "oci-chunk-min-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok((self.location(&resp, what)?, min))
            } else if resp.status().is_success() {
                Err(RegistryError::invalid(
                    self.key.as_str(),
                    what,
                    format!("upload start answered {} instead of 202", resp.status()),
                ))
            } else {
                Err(self.error(what, resp).await)
            }
        })
        .await
    }

    /// Best effort: DELETE an upload session nobody will finish.
    async fn cancel_upload(&self, repo: &str, location: &Url) {
        let what = format!("cancel an upload to {repo}");
        let call = Call::new(
            Method::DELETE,
            location.clone(),
            vec![auth::push_scope(repo)],
            &what,
        );
        match self.execute(&call, &Body::None).await {
            Ok((resp, _))
                if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND => {}
            Ok((resp, _)) => {
                tracing::debug!(registry = %self.key, status = resp.status().as_u16(), "upload cancel refused")
            }
            Err(e) => tracing::debug!(registry = %self.key, "upload cancel failed: {e}"),
        }
    }

    async fn finish_put(
        &self,
        resp: Response,
        digest: &Digest,
        what: &str,
        chunked: bool,
    ) -> Result<(), RegistryError> {
        if resp.status() == StatusCode::CREATED || resp.status().is_success() {
            if let Some(d) = header_str(resp.headers(), "docker-content-digest")
                && let Ok(d) = d.parse::<Digest>()
                && &d != digest
            {
                return Err(RegistryError::DigestMismatch {
                    what: format!("{what} as stored by `{}`", self.key),
                    expected: digest.clone(),
                    actual: d,
                });
            }
            return Ok(());
        }
        if !chunked && resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
            // Upload in chunks from now on; the caller's retry takes that path.
            self.prefer_chunked.store(true, Ordering::Relaxed);
        }
        Err(self.error(what, resp).await)
    }

    async fn upload_monolithic(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        location: Url,
        verified: BlobStream,
        what: &str,
    ) -> Result<(), RegistryError> {
        let failure: Arc<Mutex<Option<RegistryError>>> = Arc::new(Mutex::new(None));
        let progress = Arc::new(AtomicU64::new(0));
        let waiting = Arc::new(AtomicBool::new(false));
        let (f, p) = (failure.clone(), progress.clone());
        let verified = Watched {
            inner: verified,
            waiting: waiting.clone(),
        };
        let body_stream = verified.map(move |r| match r {
            Ok(b) => {
                p.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            }
            Err(e) => {
                let msg = e.to_string();
                *f.lock().expect("failure lock") = Some(e);
                Err(std::io::Error::other(msg))
            }
        });
        let mut url = location;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let call = Call::new(Method::PUT, url, vec![auth::push_scope(repo)], what)
            .header(CONTENT_TYPE, OCTET_STREAM);
        let body = Body::Stream(
            Mutex::new(Some(reqwest::Body::wrap_stream(body_stream))),
            size,
            progress,
            waiting,
        );
        let sent = self.execute(&call, &body).await;
        // An error of the source stream (or its verification) is the real cause.
        if let Some(e) = failure.lock().expect("failure lock").take() {
            return Err(e);
        }
        let (resp, _permit) = sent?;
        self.finish_put(resp, digest, what, false).await
    }

    async fn upload_chunked(
        &self,
        repo: &str,
        digest: &Digest,
        mut location: Url,
        mut verified: BlobStream,
        min_chunk: u64,
        what: &str,
    ) -> Result<(), RegistryError> {
        let chunk_size = self.opts.chunk_size.max(min_chunk).max(1) as usize;
        let mut offset: u64 = 0;
        let mut buf = BytesMut::with_capacity(chunk_size);
        let mut ended = false;
        while !ended {
            while buf.len() < chunk_size {
                match verified.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            let chunk = buf.split().freeze();
            let end = offset + chunk.len() as u64 - 1;
            let call = Call::new(
                Method::PATCH,
                location.clone(),
                vec![auth::push_scope(repo)],
                what,
            )
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_RANGE, &format!("{offset}-{end}"));
            let (resp, _permit) = self.execute(&call, &Body::Bytes(chunk.clone())).await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.error(what, resp).await);
            }
            // Always continue at the newest Location: the old one is stale.
            location = self.location(&resp, what)?;
            offset = end + 1;
        }
        let mut url = location;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let call = Call::new(Method::PUT, url, vec![auth::push_scope(repo)], what)
            .header(CONTENT_TYPE, OCTET_STREAM);
        let (resp, _permit) = self.execute(&call, &Body::Bytes(Bytes::new())).await?;
        self.finish_put(resp, digest, what, true).await
    }
}

/// A download body that resumes with `Range` after a transient break (at most
/// `MAX_RESUMES` times), without taking a permit, and with an idle timeout per chunk.
fn download_stream(
    inner: Arc<Inner>,
    repo: &str,
    digest: &Digest,
    size: u64,
    body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
) -> BlobStream {
    struct State {
        inner: Arc<Inner>,
        repo: String,
        digest: Digest,
        size: u64,
        body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
        received: u64,
        skip: u64,
        resumes: u32,
    }
    let state = State {
        inner,
        repo: repo.to_string(),
        digest: digest.clone(),
        size,
        body,
        received: 0,
        skip: 0,
        resumes: 0,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        let what = format!("get blob {}@{}", s.repo, s.digest);
        loop {
            if s.received >= s.size {
                // Let the connection finish cleanly; anything beyond `size` is ignored
                // here and the verifier has already seen exactly `size` bytes.
                return None;
            }
            let next = tokio::time::timeout(s.inner.stall, s.body.next()).await;
            let err = match next {
                Ok(Some(Ok(mut chunk))) => {
                    if s.skip > 0 {
                        let n = s.skip.min(chunk.len() as u64) as usize;
                        chunk = chunk.slice(n..);
                        s.skip -= n as u64;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    let room = s.size - s.received;
                    if chunk.len() as u64 > room {
                        chunk = chunk.slice(..room as usize);
                    }
                    s.received += chunk.len() as u64;
                    return Some((Ok(chunk), Some(s)));
                }
                Ok(Some(Err(e))) => s.inner.transport(&what, e),
                Ok(None) => RegistryError::Truncated {
                    registry: s.inner.key.clone(),
                    what: what.clone(),
                    expected: s.size,
                    received: s.received,
                },
                Err(_) => RegistryError::Timeout {
                    registry: s.inner.key.clone(),
                    what: what.clone(),
                    after: s.inner.stall,
                },
            };
            if s.resumes >= MAX_RESUMES || !err.is_transient() {
                return Some((Err(err), None));
            }
            s.resumes += 1;
            tracing::debug!(registry = %s.inner.key, "{err}; resuming at byte {}", s.received);
            match s
                .inner
                .blob_response(&s.repo, &s.digest, s.received, false, &what)
                .await
            {
                Ok(resp) => {
                    let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
                    let start = header_str(resp.headers(), CONTENT_RANGE.as_str())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    s.skip = match (partial, start) {
                        (true, Some(st)) if st <= s.received => s.received - st,
                        (true, _) => {
                            return Some((
                                Err(RegistryError::invalid(
                                    &s.inner.key,
                                    &what,
                                    "unexpected Content-Range when resuming",
                                )),
                                None,
                            ));
                        }
                        // A 200 restarts from byte 0: skip what was already passed on.
                        (false, _) => s.received,
                    };
                    s.body = resp.bytes_stream().boxed();
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://x/a?p=1>; rel="prev", <https://x/a?p=3>; rel=next"#).as_deref(),
            Some("https://x/a?p=3")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        let base = Url::parse("http://127.0.0.1:5000/v2/_catalog?n=2").unwrap();
        assert_eq!(
            base.join("/v2/_catalog?last=b&n=2").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/_catalog?last=b&n=2"
        );
    }

    #[test]
    fn error_bodies_keep_the_registry_code() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            parse_error_body(b),
            Some(("MANIFEST_UNKNOWN".into(), "manifest unknown".into()))
        );
        assert_eq!(parse_error_body(b"404 page not found"), None);
    }

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

    #[test]
    fn pages_end_on_a_repeated_url_and_are_bounded() {
        let u = |q: &str| Url::parse(&format!("https://r.example/v2/x/tags/list{q}")).unwrap();
        let mut p = Pages::new(&u(""));
        assert_eq!(
            p.next("r", "list", Some(u("?n=1"))).unwrap(),
            Some(u("?n=1"))
        );
        // Back to a page already read (itself, or the first): the listing ends.
        assert_eq!(p.next("r", "list", Some(u("?n=1"))).unwrap(), None);
        assert_eq!(p.next("r", "list", Some(u(""))).unwrap(), None);
        assert_eq!(p.next("r", "list", None).unwrap(), None);
        let mut p = Pages::new(&u(""));
        for i in 1..MAX_PAGES {
            assert!(
                p.next("r", "list", Some(u(&format!("?last={i}"))))
                    .unwrap()
                    .is_some()
            );
        }
        let e = p
            .next("r", "list", Some(u("?last=one-too-many")))
            .unwrap_err();
        assert!(e.to_string().contains("more than 10000 pages"), "{e}");
    }

    #[tokio::test]
    async fn transport_errors_name_their_cause() {
        crate::registry::ensure_crypto_provider();
        // A port nobody listens on: bind, read the port, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v2/?secret=1"))
            .send()
            .await
            .unwrap_err();
        let cause = crate::registry::error::transport_cause(&e);
        assert!(cause.starts_with("connection refused"), "{cause}");
        assert!(!cause.contains("secret"), "{cause}");
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://r.example/v2/x").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://r.example:443/y").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://blob.example/y").unwrap()
        ));
        assert!(!same_origin(&a, &Url::parse("http://r.example/y").unwrap()));
    }
}
