//! One Docker Distribution (`docker-registry serve`) process per [`TestRegistry`]: its own
//! temp dir (config, filesystem storage with delete enabled, log), a free loopback port, the
//! access log captured to a file and parsed for request counts. Killed on drop; `stop` and
//! `restart` keep the port, the data and the upload-state secret so crash tests can resume.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::token::TokenServer;
use super::{ensure_tools, free_port, tail};

/// How long a registry may take to answer `GET /v2/` after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(15);

const LOG_FILE: &str = "registry.log";

/// How clients authenticate to a [`TestRegistry`].
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// Anonymous read and write.
    None,
    /// htpasswd (bcrypt) with one user.
    Basic { user: &'a str, pass: &'a str },
    /// Bearer tokens from this issuer (its realm, service, issuer and certificate).
    Token(&'a TokenServer),
    /// Tokens signed by this issuer's key but requested from another realm (a front end
    /// such as a local ACR `/oauth2/token` that issues through [`TokenServer::issue`]).
    TokenAt(&'a TokenServer, &'a str),
}

/// One request line from the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    pub method: String,
    /// Path and query, as the client sent them.
    pub path: String,
    pub status: u16,
}

/// A running (or stopped) Docker Distribution process.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    expect_status: u16,
    child: Option<Child>,
}

impl TestRegistry {
    /// Start a registry with this authentication and wait until `GET /v2/` answers (200, or
    /// 401 for the auth variants). Panics with the log tail when it does not start.
    pub async fn start(auth: Auth<'_>) -> TestRegistry {
        ensure_tools();
        let dir = tempfile::Builder::new()
            .prefix("airlock-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Basic { user, pass } => {
                let hash = bcrypt::hash(pass, 4).expect("bcrypt hash");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{hash}\n")).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: airlock-test\n    path: {}\n",
                    yaml_str(&path)
                )
            }
            Auth::Token(ts) | Auth::TokenAt(ts, _) => {
                let realm = match auth {
                    Auth::TokenAt(_, realm) => realm.to_string(),
                    _ => ts.realm(),
                };
                let cert = dir.path().join("token-root.pem");
                std::fs::copy(ts.cert_path(), &cert).expect("copy token certificate");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    realm,
                    ts.service(),
                    ts.issuer(),
                    yaml_str(&cert)
                )
            }
        };
        let expect_status = if matches!(auth, Auth::None) { 200 } else { 401 };
        std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        let secret = format!("airlock-test-{}-{}", std::process::id(), free_port());
        let mut last_log = String::new();
        for _ in 0..8 {
            let port = free_port();
            let cfg = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n{auth_yaml}",
                data = yaml_str(&dir.path().join("data")),
            );
            std::fs::write(dir.path().join("config.yml"), cfg).expect("write registry config");
            match spawn_and_wait(dir.path(), port, expect_status).await {
                Ok(child) => {
                    return TestRegistry {
                        dir,
                        port,
                        expect_status,
                        child: Some(child),
                    };
                }
                Err(Spawn::PortTaken) => last_log = tail(&dir.path().join(LOG_FILE), 20),
                Err(Spawn::Failed(msg)) => panic!("{msg}"),
            }
        }
        panic!("docker-registry could not bind a free port after 8 attempts; log:\n{last_log}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The filesystem storage root (`docker/registry/v2/...` lives under it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that holds the registry's stdout and stderr (access log included).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Every request the access log holds, in order, across restarts.
    pub fn requests(&self) -> Vec<AccessEntry> {
        self.log().lines().filter_map(parse_access_line).collect()
    }

    /// How many logged requests used `method` (exact, e.g. "PUT"; "*" for any) on a path
    /// (with query) containing `path_contains`. Examples: ("PUT", "/blobs/uploads/") blob
    /// upload completions, ("PATCH", "/blobs/uploads/") chunks, ("POST", "mount=") mounts.
    /// The registry writes a line when its handler returns, before the client has read the
    /// end of the response, so a count taken after a request completed includes it.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|e| (method == "*" || e.method == method) && e.path.contains(path_contains))
            .count()
    }

    /// Kill the process (SIGKILL: as abrupt as a crash) and wait for it. Data stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop if running, then start again on the same port with the same data and secret.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn_and_wait(self.dir.path(), self.port, self.expect_status).await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(Spawn::PortTaken) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Spawn::PortTaken) => panic!(
                    "docker-registry could not get its port {} back on restart; log:\n{}",
                    self.port,
                    tail(&self.log_path(), 20)
                ),
                Err(Spawn::Failed(msg)) => panic!("{msg}"),
            }
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Spawn {
    PortTaken,
    Failed(String),
}

/// Spawn `docker-registry serve <dir>/config.yml` and wait until `GET /v2/` answers
/// `expect_status`.
async fn spawn_and_wait(dir: &Path, port: u16, expect_status: u16) -> Result<Child, Spawn> {
    let log_path = dir.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("open registry log");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run docker-registry ({e}); install it with: {}",
                super::INSTALL_HINT
            )
        });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("address already in use") {
                return Err(Spawn::PortTaken);
            }
            return Err(Spawn::Failed(format!(
                "docker-registry exited ({status}) before answering on 127.0.0.1:{port}; log tail:\n{}",
                tail(&log_path, 30)
            )));
        }
        if probe_status(port).await == Some(expect_status) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Spawn::Failed(format!(
                "docker-registry did not answer GET /v2/ with {expect_status} on 127.0.0.1:{port} within {START_TIMEOUT:?}; log tail:\n{}",
                tail(&log_path, 30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The status code of `GET /v2/` on the port, or None while nothing answers.
async fn probe_status(port: u16) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..]).await.ok()?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Parse a combined-log-format line: `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "ua"`.
fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let rest = &line[line.find("] \"")? + 3..];
    let (request, after) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = after.trim_start().split(' ').next()?.parse().ok()?;
    Some(AccessEntry {
        method,
        path,
        status,
    })
}

/// A path quoted for YAML.
fn yaml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
