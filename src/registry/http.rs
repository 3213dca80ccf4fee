//! The OCI Distribution client on reqwest: one `reqwest::Client` per registry (keep-alive,
//! HTTP/2 where offered), a semaphore of `max_concurrency` permits held per HTTP request,
//! authentication on 401 (see `auth`), retries of replayable requests (see `retry`),
//! redirects followed by hand (no Authorization to another origin), idle timeouts instead
//! of total timeouts, and every manifest, blob, tag, catalog and referrers endpoint.
//!
//! Every request goes one way, [`transport`]'s `Inner::send`; the endpoints are grouped by
//! what they move: `manifests` (manifests, tags, catalog), `referrers` (the OCI 1.1
//! referrers API, its answers checked as hostile input), `blobs` (existence,
//! small blobs, mounts), `upload` (upload sessions, monolithic and chunked), `download`
//! (blob streams that resume) and `cache` (content already read or written by digest).
//!
//! Permits: a request holds one permit of its registry from before it is sent until its
//! response headers arrive (buffered answers: until the body is read). A download's body
//! streams without a permit, and the Range requests that resume a broken download take
//! none, so a copy within one registry never waits for a permit while holding one.

mod blobs;
mod cache;
mod download;
mod manifests;
mod referrers;
mod transport;
mod upload;

use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use tokio::sync::Semaphore;

use super::ClientOptions;
use super::auth::Authenticator;
use super::error::RegistryError;
use crate::config::RegistrySpec;
use crate::model::Digest;
use cache::ContentCache;

pub use cache::SMALL_BLOB;
pub(crate) use transport::api_error;
pub use transport::{MAX_PAGES, next_link};

const OCTET_STREAM: &str = "application/octet-stream";

/// `Inner::referrers` states.
const REFERRERS_UNKNOWN: u8 = 0;
const REFERRERS_SUPPORTED: u8 = 1;
const REFERRERS_UNSUPPORTED: u8 = 2;

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
        // This registry's own count (its token requests included, through `auth`).
        opts.retry.tally = Some(Arc::new(crate::registry::retry::RetryTally::default()));
        let client = crate::registry::tls::client_builder()
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

    /// The summary of this client's retries so far (see `RetryTally::summary`).
    pub fn retry_summary(&self) -> Option<String> {
        let tally = self.inner.opts.retry.tally.as_ref()?;
        tally.summary(&self.inner.key)
    }

    /// `host[:port]` as written in pullable references (`registry-1.docker.io` is `docker.io`).
    pub fn host(&self) -> String {
        self.inner.host.clone()
    }
}

impl Inner {
    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let s = format!("{}/v2/{path}", self.base.as_str().trim_end_matches('/'));
        Url::parse(&s)
            .map_err(|e| RegistryError::invalid(&self.key, "build a URL", format!("`{s}`: {e}")))
    }
}
