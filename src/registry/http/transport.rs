//! The one way a request reaches the registry: [`Inner::send`] takes a [`Request`] and
//! owns everything every endpoint shares: the registry's permit, the Authorization
//! header and one re-authentication on a 401 (through `auth`), redirects followed by hand
//! (credentials stay at their origin), the stall timeout and the streaming-upload
//! watchdog, the re-read of racy 500s, retries of replayable requests within the
//! operation's budget (`retry`), and the mapping of answers: the statuses the request
//! accepts are an [`Answer`], a 404 is `None` where the request says so, anything else is
//! the registry's own error. Also here: the two checks every endpoint repeats, the
//! announced `Docker-Content-Digest` ([`Inner::check_stored`], [`announced_digest`]) and
//! `Link` paging ([`Pages`], [`Answer::next_page`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, LINK, LOCATION, RETRY_AFTER,
};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use super::{Inner, content_length};
use crate::model::Digest;
use crate::registry::BlobStream;
use crate::registry::error::RegistryError;
use crate::registry::retry::parse_retry_after;

const MAX_REDIRECTS: usize = 5;
/// Re-reads of a manifest or blob answered 500 (see `Inner::execute_read`).
const RACY_READS: u32 = 3;
/// The most pages one listing (tags, catalog, referrers) may take.
pub const MAX_PAGES: usize = 10_000;

/// One request to the registry, before authentication, and how its answer is judged.
pub(super) struct Request<'a> {
    method: Method,
    url: Url,
    scopes: Vec<String>,
    headers: HeaderMap,
    what: &'a str,
    /// Take a permit of the registry's semaphore (false only for download resumes).
    permit: bool,
    /// A read another writer may race: a 500 is read again (see `execute_read`).
    racy: bool,
    /// Retried on transient errors within the operation's budget (replayable bodies).
    retry: bool,
    /// A 404 is `Ok(None)` instead of an error.
    missing_is_none: bool,
    /// The statuses that are an answer; any other is an error. Default: 2xx.
    accept: fn(StatusCode) -> bool,
    /// Read the answer's body up to this many bytes (under the permit, within the retry);
    /// `None`: the caller gets the unread response.
    read: Option<usize>,
}

impl<'a> Request<'a> {
    pub(super) fn new(method: Method, url: Url, scopes: Vec<String>, what: &'a str) -> Self {
        Request {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            what,
            permit: true,
            racy: false,
            retry: true,
            missing_is_none: false,
            accept: |s| s.is_success(),
            read: None,
        }
    }

    pub(super) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// A read of something another writer may be rewriting (a tag, a blob link).
    pub(super) fn racy(mut self) -> Self {
        self.racy = true;
        self
    }

    /// Sent once: the caller retries (or must not).
    pub(super) fn once(mut self) -> Self {
        self.retry = false;
        self
    }

    /// Without a permit (the Range requests that resume a download).
    pub(super) fn without_permit(mut self) -> Self {
        self.permit = false;
        self
    }

    /// A 404 answers `None`.
    pub(super) fn missing_is_none(mut self) -> Self {
        self.missing_is_none = true;
        self
    }

    /// Which statuses are answers (the caller judges them); others are errors.
    pub(super) fn accept(mut self, accept: fn(StatusCode) -> bool) -> Self {
        self.accept = accept;
        self
    }

    /// Read the whole body of an answer, at most `max` bytes.
    pub(super) fn read(mut self, max: usize) -> Self {
        self.read = Some(max);
        self
    }
}

/// An accepted answer.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    /// Where the answer came from (after redirects): relative `Location`s and `Link`s
    /// resolve against it.
    pub(super) url: Url,
    /// The body, when the request asked for it to be read.
    pub(super) body: Bytes,
    /// The unread response, when the request did not ask for the body.
    pub(super) response: Option<Response>,
    /// The permit the request held, kept while an unread body may still be read under it.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Answer {
    /// The `rel="next"` page of a paged listing, resolved against this answer's URL.
    pub(super) fn next_page(&self) -> Option<Url> {
        self.headers
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .and_then(|n| self.url.join(&n).ok())
    }
}

/// The `Docker-Content-Digest` a registry announced: `None` when absent, `Err` with the
/// parse error when it is not a digest.
pub(super) fn announced_digest(headers: &HeaderMap) -> Option<Result<Digest, String>> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(|d| d.parse::<Digest>().map_err(|e| e.to_string()))
}

/// The pages of one listing: stops on a URL already read (a self-referencing or cyclic
/// `Link`) and fails past [`MAX_PAGES`].
pub(super) struct Pages {
    seen: std::collections::HashSet<Url>,
}

impl Pages {
    pub(super) fn new(first: &Url) -> Pages {
        Pages {
            seen: std::collections::HashSet::from([first.clone()]),
        }
    }

    /// The next page to read, `None` when the listing is complete.
    pub(super) fn next(
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

/// What a request sends as body.
pub(super) enum Body {
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
    let headers = resp.headers().clone();
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    api_error_from(registry, what, status, &headers, &body)
}

/// `RegistryError::Api` from an error answer already read.
fn api_error_from(
    registry: &str,
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> RegistryError {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let (code, message) = parse_error_body(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
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

pub(super) fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
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

pub(super) async fn read_limited(
    mut resp: Response,
    max: usize,
) -> Result<Vec<u8>, reqwest::Error> {
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

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `-v` line of one request: method, registry, path (never the query: upload state and
/// presigned URLs are credentials; never a header), status or cause, bytes received (the
/// body read, or the length announced for a body the caller streams; none for HEAD) and
/// sent, and how long it took.
fn outcome_line(
    registry: &str,
    req: &Request<'_>,
    body: &Body,
    result: &Result<Answer, RegistryError>,
    took: Duration,
) -> String {
    use crate::model::size::format_size;
    let outcome = match result {
        Ok(a) => {
            let received = match &a.response {
                _ if req.method == Method::HEAD => 0,
                Some(_) => content_length(&a.headers).unwrap_or(0),
                None => a.body.len() as u64,
            };
            format!(
                "{} {}, {}",
                a.status.as_u16(),
                a.status.canonical_reason().unwrap_or(""),
                format_size(received)
            )
        }
        Err(e) => match e.status() {
            Some(status) => format!("{status} {}", e.code().unwrap_or("")),
            None => e.retry_cause(),
        },
    };
    let sent = match body {
        Body::None => 0,
        Body::Bytes(b) => b.len() as u64,
        Body::Stream(_, len, ..) => *len,
    };
    let sent = if sent > 0 {
        format!(", sent {}", format_size(sent))
    } else {
        String::new()
    };
    format!(
        "{} `{registry}` {} → {outcome}{sent}, {} ms",
        req.method,
        req.url.path(),
        took.as_millis()
    )
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
pub(super) struct Watched {
    pub(super) inner: BlobStream,
    pub(super) waiting: Arc<AtomicBool>,
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

impl Inner {
    pub(super) async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        self.opts.retry.run_for(&self.key, what, op).await
    }

    pub(super) async fn error(&self, what: &str, resp: Response) -> RegistryError {
        api_error(&self.key, what, resp).await
    }

    pub(super) fn transport(&self, what: &str, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            // The connect timeout is the stall timeout: say so.
            return RegistryError::Timeout {
                registry: self.key.clone(),
                what: what.to_string(),
                after: self.stall,
            };
        }
        let e = crate::registry::error::redact_url(e);
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
        call: &Request<'_>,
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
        call: &Request<'_>,
    ) -> Result<(Response, Option<OwnedSemaphorePermit>), RegistryError> {
        let mut n: u32 = 0;
        loop {
            let (resp, permit) = self.execute(call, &Body::None).await?;
            if resp.status() == StatusCode::INTERNAL_SERVER_ERROR && n < RACY_READS {
                n += 1;
                drop((resp, permit));
                let pause = crate::registry::jittered(Duration::from_millis(100) * n);
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
        call: &Request<'_>,
        mut resp: Response,
        authz: Option<HeaderValue>,
    ) -> Result<Response, RegistryError> {
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let next = self.location_in(resp.headers(), resp.url(), call.what)?;
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

    /// The `Location` of an answer (an upload session, a redirect), resolved against it.
    pub(super) fn location(&self, answer: &Answer, what: &str) -> Result<Url, RegistryError> {
        self.location_in(&answer.headers, &answer.url, what)
    }

    fn location_in(
        &self,
        headers: &HeaderMap,
        url: &Url,
        what: &str,
    ) -> Result<Url, RegistryError> {
        let loc = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::invalid(&self.key, what, "answer without Location"))?;
        url.join(loc).map_err(|e| {
            RegistryError::invalid(&self.key, what, format!("bad Location `{loc}`: {e}"))
        })
    }

    /// Read a whole (small) body with an idle timeout per chunk; error above `max` bytes.
    pub(super) async fn read_body(
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

    /// Send a request and judge its answer: the one path every endpoint takes (see the
    /// module docs). `None` for a 404 when the request says [`Request::missing_is_none`].
    pub(super) async fn send(
        &self,
        req: &Request<'_>,
        body: &Body,
    ) -> Result<Option<Answer>, RegistryError> {
        let answer = self.answer(req, body).await?;
        Ok((!(req.missing_is_none && answer.status == StatusCode::NOT_FOUND)).then_some(answer))
    }

    /// [`Inner::send`] for a request whose every answer is accepted or an error (no
    /// `missing_is_none`). Replayable requests are retried on transient errors unless
    /// sent [`Request::once`]; a streamed body never is.
    pub(super) async fn answer(
        &self,
        req: &Request<'_>,
        body: &Body,
    ) -> Result<Answer, RegistryError> {
        // Boxed: every endpoint's future holds this one, and a request's state (auth,
        // redirects, the upload watchdog) would otherwise sit inline in all of them.
        if req.retry && !matches!(body, Body::Stream(..)) {
            self.retry(req.what, || Box::pin(self.send_once(req, body)))
                .await
        } else {
            Box::pin(self.send_once(req, body)).await
        }
    }

    /// One attempt of a request, its outcome logged at info level (`-v`).
    async fn send_once(&self, req: &Request<'_>, body: &Body) -> Result<Answer, RegistryError> {
        let started = Instant::now();
        let result = self.exchange(req, body).await;
        if tracing::enabled!(tracing::Level::INFO) {
            tracing::info!(
                "{}",
                outcome_line(&self.key, req, body, &result, started.elapsed())
            );
        }
        result
    }

    async fn exchange(&self, req: &Request<'_>, body: &Body) -> Result<Answer, RegistryError> {
        let (resp, permit) = if req.racy && matches!(body, Body::None) {
            self.execute_read(req).await?
        } else {
            self.execute(req, body).await?
        };
        let status = resp.status();
        let missing = status == StatusCode::NOT_FOUND && req.missing_is_none;
        if !(req.accept)(status) && !missing {
            return Err(self.error(req.what, resp).await);
        }
        let headers = resp.headers().clone();
        let url = resp.url().clone();
        let (body, response) = match req.read {
            Some(max) if !missing => (self.read_body(req.what, resp, max).await?, None),
            _ => (Bytes::new(), Some(resp)),
        };
        Ok(Answer {
            status,
            headers,
            url,
            body,
            response,
            _permit: permit,
        })
    }

    /// The error of an answer the caller accepted and then refused.
    pub(super) async fn refused(&self, what: &str, answer: Answer) -> RegistryError {
        match answer.response {
            Some(resp) => self.error(what, resp).await,
            None => api_error_from(
                &self.key,
                what,
                answer.status,
                &answer.headers,
                &answer.body,
            ),
        }
    }

    /// A write's answer may not announce another digest than the one written (a header
    /// that is no digest at all is ignored here: the content was verified on its way out).
    pub(super) fn check_stored(
        &self,
        headers: &HeaderMap,
        written: &Digest,
        label: &str,
    ) -> Result<(), RegistryError> {
        match announced_digest(headers) {
            Some(Ok(d)) if &d != written => Err(RegistryError::DigestMismatch {
                what: format!("{label} as stored by `{}`", self.key),
                expected: written.clone(),
                actual: d,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
