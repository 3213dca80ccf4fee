//! The real-registry test harness: Docker Distribution processes started per test on free
//! loopback ports ([`registry`]), a Docker token issuer ([`token`]), a fault-injecting reverse
//! proxy ([`proxy`], also a stand-in for the OCI 1.1 referrers API: [`referrers_api`]),
//! deterministic real image content ([`images`]), a small raw registry client for seeding and
//! reading back ([`client`]), a self-signed TLS server side ([`tls`]) and skopeo as an
//! independent client ([`skopeo`]). Nothing here
//! mocks the registry protocol: every byte goes through a real registry. A missing tool is a
//! loud failure with the install command, never a skip.
//!
//! The token issuer and the proxy are tasks of the test's tokio runtime. A test that blocks
//! its thread while a client talks to them (a `std::process::Command` running the airlock
//! binary, say) must use `#[tokio::test(flavor = "multi_thread")]` or an async process call,
//! or the client waits forever on a server that cannot run.

#![allow(dead_code)]

pub mod airlock;
pub mod client;
pub mod config;
pub mod images;
pub mod proxy;
pub mod python;
pub mod records;
pub mod referrers_api;
pub mod registry;
pub mod skopeo;
pub mod tls;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::Once;

/// The command that installs every external tool the harness needs.
pub const INSTALL_HINT: &str = "apt-get install -y docker-registry skopeo openssl";

/// The external binaries the harness runs.
pub const TOOLS: &[&str] = &["docker-registry", "skopeo", "openssl"];

/// Panic with the install command when one of [`TOOLS`] is not on PATH.
pub fn ensure_tools() {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        if let Err(msg) = missing_tools(std::env::var_os("PATH")) {
            panic!("{msg}");
        }
    });
}

/// Err naming the [`TOOLS`] missing from this PATH, with the install command.
pub fn missing_tools(path: Option<std::ffi::OsString>) -> Result<(), String> {
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| !dirs.iter().any(|d| is_executable(&d.join(t))))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "integration tests need real tools that are missing: {}. Install them with: {INSTALL_HINT}",
            missing.join(", ")
        ))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A reqwest client for plain-HTTP loopback registries: no redirects followed, the ring
/// TLS provider installed (reqwest is built without a default provider).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build reqwest client")
}

/// A free loopback port: bind 127.0.0.1:0, read the port, release it. The caller retries when
/// another process takes the port before it binds.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The last `n` lines of a text file, for panic messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Errors of the in-process HTTP servers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of the in-process HTTP servers.
pub type HttpBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// A whole in-memory response body.
pub fn full_body(data: impl Into<bytes::Bytes>) -> HttpBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An HTTP/1.1 server task (tokio) on a loopback listener; aborted, with its connections, on
/// drop.
pub struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve HTTP/1.1 on `listener`, calling `handler` per request. A handler error closes the
/// connection without a response (what a connection reset looks like to a client).
pub fn spawn_server<F, Fut>(listener: tokio::net::TcpListener, handler: F) -> ServerTask
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<HttpBody>, BoxError>> + Send + 'static,
{
    ServerTask(tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(handler);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    }))
}
