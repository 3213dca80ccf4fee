//! A fault-injecting HTTP/1.1 reverse proxy in front of a real registry. Everything passes
//! through streamed (bodies are buffered only for a byte flip, and manifest PUTs by the
//! referrers API stand-in), `Location` headers that name the upstream are rewritten to the
//! proxy, every request is counted, and faults chosen by the test are injected on the
//! requests they match: a status (429 with Retry-After, 503…), a dropped connection, a
//! truncated body, a flipped byte, a delay, a canned answer.
//!
//! [`FaultProxy::with_referrers_api`] starts it as a stand-in for the OCI 1.1 referrers API
//! in front of Distribution 2.8 (see [`super::referrers_api`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::referrers_api::{ReferrersIndex, Route, descriptor_of, route};
use super::{BoxError, HttpBody, ServerTask, full_body, spawn_server};

/// Which requests a fault applies to.
#[derive(Clone, Debug)]
pub struct Match {
    /// Exact method, None for any.
    pub method: Option<String>,
    /// A substring of the path and query.
    pub path_contains: String,
    /// Let this many matching requests through untouched first.
    pub skip: usize,
}

impl Match {
    /// Requests with this method whose path (with query) contains `path_contains`.
    pub fn method_path(method: &str, path_contains: &str) -> Match {
        Match {
            method: Some(method.to_string()),
            path_contains: path_contains.to_string(),
            skip: 0,
        }
    }

    /// Any method on a path containing `path_contains`.
    pub fn path(path_contains: &str) -> Match {
        Match {
            method: None,
            path_contains: path_contains.to_string(),
            skip: 0,
        }
    }

    /// Every request.
    pub fn any() -> Match {
        Match::path("")
    }

    /// Skip the first `n` matching requests: `.after(1)` hits the 2nd one.
    pub fn after(mut self, n: usize) -> Match {
        self.skip = n;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && path.contains(&self.path_contains)
    }
}

/// What happens to a matched request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status without reaching the upstream, with `Retry-After: N` if given.
    /// The body is a registry-style error (`TOOMANYREQUESTS`, `UNAVAILABLE`, …).
    Status(u16, Option<u64>),
    /// Close the connection without any response.
    Reset,
    /// Forward, then send only the first N bytes of the body (headers unchanged) and drop
    /// the connection.
    Truncate(u64),
    /// Forward, then flip one bit of the body byte at this offset (clamped to the last byte).
    FlipByte(u64),
    /// Wait this long, then forward.
    Delay(Duration),
    /// Forward, and add this header to the response (a hostile `Link`, say).
    AddHeader(String, String),
    /// Never answer: the connection stays open and silent (a port that accepts and hangs).
    Hang,
    /// Forward, send the headers and the first N bytes of the body, then stall: the
    /// connection stays open and no more bytes come.
    StallAfter(u64),
    /// Answer this status, Content-Type and body without reaching the upstream (a hostile
    /// or broken answer, like a referrers API answering something that is not an index).
    Respond(u16, String, Vec<u8>),
    /// Forward, sending the body at about this many bytes per second (a slow link).
    Throttle(u64),
}

/// A fault: which requests, how many times, what.
#[derive(Clone, Debug)]
pub struct Fault {
    pub when: Match,
    /// How many matching requests (after `when.skip`) get the fault; `usize::MAX` for all.
    pub times: usize,
    pub kind: FaultKind,
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The fault injected, if any.
    pub fault: Option<FaultKind>,
    /// Whether the request carried an Authorization header.
    pub authorization: bool,
}

struct ActiveFault {
    fault: Fault,
    seen: usize,
    fired: usize,
}

#[derive(Default)]
struct State {
    faults: Vec<ActiveFault>,
    log: Vec<ProxyRequest>,
}

struct Shared {
    state: Mutex<State>,
    upstream: String,
    proxy_base: String,
    client: Client<HttpConnector, HttpBody>,
    /// The referrers API stand-in's index, when the proxy is one.
    referrers: Option<Mutex<ReferrersIndex>>,
}

/// A running proxy on a free loopback port.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    _task: ServerTask,
}

impl FaultProxy {
    /// Proxy to `upstream` (e.g. `http://127.0.0.1:5000`, as [`TestRegistry::url`] gives).
    ///
    /// [`TestRegistry::url`]: super::registry::TestRegistry::url
    pub async fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_as(upstream, None).await
    }

    /// A proxy that is also a stand-in for the OCI 1.1 referrers API in front of `upstream`
    /// (see [`super::referrers_api`]): it answers `OCI-Subject` to manifest PUTs with a
    /// subject and serves `GET /v2/<name>/referrers/<digest>`.
    pub async fn with_referrers_api(upstream: &str) -> FaultProxy {
        FaultProxy::start_as(upstream, Some(Mutex::new(ReferrersIndex::default()))).await
    }

    async fn start_as(upstream: &str, referrers: Option<Mutex<ReferrersIndex>>) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            upstream: upstream.trim_end_matches('/').to_string(),
            proxy_base: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
            referrers,
        });
        let s = shared.clone();
        let task = spawn_server(listener, move |req| {
            let s = s.clone();
            async move { forward(req, s).await }
        });
        FaultProxy {
            port,
            shared,
            _task: task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Add a fault; faults are tried in the order added, the first eligible one applies.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(ActiveFault {
            fault,
            seen: 0,
            fired: 0,
        });
    }

    /// Page referrers listings `n` descriptors at a time (referrers API stand-in only).
    pub fn referrers_page_size(&self, n: usize) {
        self.referrers_index().page_size = Some(n.max(1));
    }

    /// The descriptors the referrers API stand-in lists for `subject` in `repo`.
    pub fn referrers_listed(
        &self,
        repo: &str,
        subject: &airlock::model::Digest,
    ) -> Vec<serde_json::Value> {
        self.referrers_index().listed(repo, subject)
    }

    fn referrers_index(&self) -> std::sync::MutexGuard<'_, ReferrersIndex> {
        self.shared
            .referrers
            .as_ref()
            .expect("not a referrers API stand-in: start it with FaultProxy::with_referrers_api")
            .lock()
            .expect("referrers index lock")
    }

    /// Remove every fault (counts stay).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// How many requests used `method` ("*" for any) on a path containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|r| (method == "*" || r.method == method) && r.path.contains(path_contains))
            .count()
    }

    /// How many faults were injected in total.
    pub fn faults_injected(&self) -> usize {
        self.lock().log.iter().filter(|r| r.fault.is_some()).count()
    }

    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("proxy state lock")
    }
}

/// Pick the fault for a request (updating the counters) and log it.
fn choose(shared: &Shared, method: &str, path: &str, authorization: bool) -> Option<FaultKind> {
    let mut st = shared.state.lock().expect("proxy state lock");
    let mut chosen = None;
    for f in st.faults.iter_mut() {
        if !f.fault.when.matches(method, path) {
            continue;
        }
        f.seen += 1;
        if chosen.is_none() && f.seen > f.fault.when.skip && f.fired < f.fault.times {
            f.fired += 1;
            chosen = Some(f.fault.kind.clone());
        }
    }
    st.log.push(ProxyRequest {
        method: method.to_string(),
        path: path.to_string(),
        fault: chosen.clone(),
        authorization,
    });
    chosen
}

async fn forward(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<HttpBody>, BoxError> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let authorization = req.headers().contains_key(hyper::header::AUTHORIZATION);
    let fault = choose(&shared, &method, &path, authorization);
    match &fault {
        Some(FaultKind::Status(code, retry_after)) => {
            return Ok(status_reply(*code, *retry_after));
        }
        Some(FaultKind::Reset) => return Err("injected connection reset".into()),
        Some(FaultKind::Delay(d)) => tokio::time::sleep(*d).await,
        Some(FaultKind::Hang) => std::future::pending::<()>().await,
        Some(FaultKind::Respond(code, content_type, body)) => {
            return Ok(Response::builder()
                .status(*code)
                .header(hyper::header::CONTENT_TYPE, content_type.as_str())
                .body(full_body(body.clone()))?);
        }
        _ => {}
    }
    let standin = match &shared.referrers {
        Some(_) => route(&method, &path),
        None => None,
    };
    let (mut req, pushed) = match &standin {
        Some(Route::List {
            repo,
            subject,
            artifact_type,
            start,
        }) => {
            let index = shared.referrers.as_ref().expect("stand-in");
            let (status, headers, body) = index.lock().expect("referrers index lock").answer(
                repo,
                subject,
                artifact_type.as_deref(),
                *start,
                &path,
            );
            let mut b = Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            return Ok(b.body(full_body(body))?);
        }
        Some(Route::PutManifest { .. }) => {
            // Manifests are small (Distribution refuses more than 4 MiB): read it to see
            // whether it has a subject, then send the same bytes on.
            let content_type = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.to_string());
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let pushed = descriptor_of(&bytes, content_type.as_deref());
            (Request::from_parts(parts, full_body(bytes)), pushed)
        }
        _ => (
            req.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed()),
            None,
        ),
    };
    *req.uri_mut() = format!("{}{}", shared.upstream, path).parse()?;
    req.headers_mut().remove(hyper::header::HOST);
    let resp = match shared.client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(full_body(format!("proxy: upstream failed: {e}")))?);
        }
    };
    let (mut parts, body) = resp.into_parts();
    if let Some(index) = &shared.referrers {
        match (&standin, parts.status) {
            (Some(Route::PutManifest { repo }), StatusCode::CREATED) => {
                if let Some((subject, descriptor)) = pushed {
                    parts
                        .headers
                        .insert("oci-subject", subject.to_string().parse()?);
                    index
                        .lock()
                        .expect("referrers index lock")
                        .add(repo, subject, descriptor);
                }
            }
            (Some(Route::DeleteManifest { repo, digest }), StatusCode::ACCEPTED) => {
                index
                    .lock()
                    .expect("referrers index lock")
                    .remove(repo, digest);
            }
            _ => {}
        }
    }
    if let Some(loc) = parts
        .headers
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        && let Some(rest) = loc.strip_prefix(&shared.upstream)
    {
        let rewritten = format!("{}{}", shared.proxy_base, rest);
        parts
            .headers
            .insert(hyper::header::LOCATION, rewritten.parse()?);
    }
    if let Some(FaultKind::AddHeader(name, value)) = &fault {
        parts.headers.append(
            hyper::header::HeaderName::from_bytes(name.as_bytes())?,
            value.parse()?,
        );
    }
    let body: HttpBody = match fault {
        Some(FaultKind::StallAfter(keep)) => stalled(body, keep),
        Some(FaultKind::FlipByte(at)) => {
            let mut data = body.collect().await?.to_bytes().to_vec();
            if !data.is_empty() {
                let i = (at as usize).min(data.len() - 1);
                data[i] ^= 0x01;
            }
            full_body(data)
        }
        Some(FaultKind::Truncate(keep)) => truncated(body, keep),
        Some(FaultKind::Throttle(per_second)) => throttled(body, per_second),
        _ => body.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
    };
    Ok(Response::from_parts(parts, body))
}

/// The body cut after `keep` bytes, then an error, which makes hyper drop the connection.
fn truncated(body: Incoming, keep: u64) -> HttpBody {
    let stream =
        futures_util::stream::unfold((body, keep, false), |(mut body, left, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                // Let hyper flush the headers and the kept bytes before the connection drops.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let err: BoxError = "injected truncation".into();
                return Some((Err(err), (body, 0, true)));
            }
            match body.frame().await {
                None => None,
                Some(Err(e)) => Some((Err(Box::new(e) as BoxError), (body, 0, true))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let n = (data.len() as u64).min(left);
                        let chunk: Bytes = data.slice(..n as usize);
                        Some((Ok(Frame::data(chunk)), (body, left - n, false)))
                    }
                    Err(frame) => Some((Ok(frame), (body, left, false))),
                },
            }
        });
    http_body_util::StreamBody::new(stream).boxed()
}

/// The body in pieces of a tenth of `per_second` bytes, one every 100 ms.
fn throttled(body: Incoming, per_second: u64) -> HttpBody {
    let piece = (per_second / 10).max(1) as usize;
    let stream = futures_util::stream::unfold(
        (body, Bytes::new()),
        move |(mut body, mut pending)| async move {
            while pending.is_empty() {
                match body.frame().await? {
                    Err(e) => return Some((Err(Box::new(e) as BoxError), (body, pending))),
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => pending = data,
                        Err(frame) => return Some((Ok(frame), (body, pending))),
                    },
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let chunk = pending.split_to(piece.min(pending.len()));
            Some((Ok(Frame::data(chunk)), (body, pending)))
        },
    );
    http_body_util::StreamBody::new(stream).boxed()
}

/// The body's first `keep` bytes, then silence with the connection open.
fn stalled(body: Incoming, keep: u64) -> HttpBody {
    let stream = futures_util::stream::unfold((body, keep), |(mut body, left)| async move {
        if left == 0 {
            std::future::pending::<()>().await;
        }
        match body.frame().await {
            None => None,
            Some(Err(e)) => Some((Err(Box::new(e) as BoxError), (body, 0))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let n = (data.len() as u64).min(left);
                    let chunk: Bytes = data.slice(..n as usize);
                    Some((Ok(Frame::data(chunk)), (body, left - n)))
                }
                Err(frame) => Some((Ok(frame), (body, left))),
            },
        }
    });
    http_body_util::StreamBody::new(stream).boxed()
}

fn status_reply(code: u16, retry_after: Option<u64>) -> Response<HttpBody> {
    let (err, msg) = match code {
        429 => ("TOOMANYREQUESTS", "injected: too many requests"),
        503 => ("UNAVAILABLE", "injected: service unavailable"),
        401 => ("UNAUTHORIZED", "injected: authentication required"),
        404 => ("NOT_FOUND", "injected: not found"),
        _ => ("UNKNOWN", "injected failure"),
    };
    let mut b = Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(secs) = retry_after {
        b = b.header(hyper::header::RETRY_AFTER, secs.to_string());
    }
    let body = serde_json::json!({"errors": [{"code": err, "message": msg}]}).to_string();
    b.body(full_body(body)).expect("build fault response")
}
