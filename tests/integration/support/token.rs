//! A Docker token issuer for [`super::registry::Auth::Token`] registries: `GET /token` with
//! optional Basic credentials and the OAuth2 `POST /token` form (password and refresh_token
//! grants). Tokens are RS256 JWTs with the certificate in the `x5c` header, signed by a key and
//! self-signed certificate made with the `openssl` CLI at start. A per-user ACL (repository
//! prefix → actions) decides what is granted: requested ∩ allowed, as real issuers do. Every
//! request is recorded so tests can count and inspect them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::{BoxError, HttpBody, ServerTask, full_body, spawn_server};

/// The `service` the issuer and its registries agree on.
pub const SERVICE: &str = "airlock-test-registry";
/// The `iss` claim.
pub const ISSUER: &str = "airlock-test-issuer";

/// One request the issuer answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// "GET", "password" or "refresh_token".
    pub grant: String,
    /// The authenticated user, None for anonymous.
    pub user: Option<String>,
    /// The scopes asked for, as sent.
    pub scopes: Vec<String>,
    /// The access granted, as `type:name:action,action` (only non-empty grants).
    pub granted: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

struct Rule {
    /// None: everyone, anonymous included.
    user: Option<String>,
    resource_type: String,
    prefix: String,
    actions: Vec<String>,
}

struct State {
    users: HashMap<String, String>,
    rules: Vec<Rule>,
    refresh_tokens: HashMap<String, String>,
    requests: Vec<TokenRequest>,
    ttl_secs: u64,
    next_id: u64,
}

struct Keys {
    encoding: jsonwebtoken::EncodingKey,
    x5c: String,
}

/// A running token issuer on a free loopback port.
pub struct TokenServer {
    port: u16,
    dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    keys: Arc<Keys>,
    _task: ServerTask,
}

impl TokenServer {
    /// Generate the key and certificate, then serve `/token`. Nobody is allowed anything
    /// until [`allow`](Self::allow) says so.
    pub async fn start() -> TokenServer {
        super::ensure_tools();
        let dir = tempfile::Builder::new()
            .prefix("airlock-token-")
            .tempdir()
            .expect("create token temp dir");
        let keys = Arc::new(make_keys(dir.path()).await);
        let state = Arc::new(Mutex::new(State {
            users: HashMap::new(),
            rules: Vec::new(),
            refresh_tokens: HashMap::new(),
            requests: Vec::new(),
            ttl_secs: 300,
            next_id: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token server");
        let port = listener.local_addr().expect("token server addr").port();
        let st = state.clone();
        let k = keys.clone();
        let task = spawn_server(listener, move |req| {
            let st = st.clone();
            let keys = k.clone();
            async move { handle(req, st, keys).await }
        });
        TokenServer {
            port,
            dir,
            state,
            keys,
            _task: task,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn service(&self) -> &'static str {
        SERVICE
    }

    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The self-signed certificate (PEM) registries use as `rootcertbundle`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Add (or change the password of) a user.
    pub fn add_user(&self, user: &str, pass: &str) {
        self.lock().users.insert(user.into(), pass.into());
    }

    /// Let `user` (None: everyone, anonymous included) do `actions` ("pull", "push",
    /// "delete", "*") on repositories whose name starts with `prefix` ("" = all).
    pub fn allow(&self, user: Option<&str>, prefix: &str, actions: &[&str]) {
        self.lock().rules.push(Rule {
            user: user.map(str::to_string),
            resource_type: "repository".into(),
            prefix: prefix.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        });
    }

    /// Let `user` (None: everyone) read the catalog (`registry:catalog:*`).
    pub fn allow_catalog(&self, user: Option<&str>) {
        self.lock().rules.push(Rule {
            user: user.map(str::to_string),
            resource_type: "registry".into(),
            prefix: "catalog".into(),
            actions: vec!["*".into()],
        });
    }

    /// Drop every rule (users and refresh tokens stay).
    pub fn revoke_all(&self) {
        self.lock().rules.clear();
    }

    /// Lifetime (`expires_in`, and `exp - iat`) of the tokens issued from now on.
    pub fn set_ttl(&self, secs: u64) {
        self.lock().ttl_secs = secs;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.lock().requests.clone()
    }

    /// How many requests were answered.
    pub fn count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Issue a token directly (no HTTP), as the issuer would for `user` and these scopes.
    pub fn issue(&self, user: Option<&str>, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let mut st = self.lock();
        let access = grant(&st, user, &scopes);
        sign(&mut st, &self.keys, user, &access)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("token state lock")
    }
}

async fn make_keys(dir: &Path) -> Keys {
    let out = tokio::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=airlock-test-issuer"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run openssl ({e}); install it with: {}",
                super::INSTALL_HINT
            )
        });
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    load_keys(dir)
}

fn load_keys(dir: &Path) -> Keys {
    let key = std::fs::read(dir.join("key.pem")).expect("read token key");
    let cert = std::fs::read_to_string(dir.join("cert.pem")).expect("read token cert");
    // The PEM body is the base64 of the DER certificate, which is what x5c carries.
    let x5c: String = cert
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    Keys {
        encoding: jsonwebtoken::EncodingKey::from_rsa_pem(&key).expect("parse token key"),
        x5c,
    }
}

/// One granted access entry.
#[derive(Clone, Debug, serde::Serialize)]
struct Access {
    #[serde(rename = "type")]
    resource_type: String,
    name: String,
    actions: Vec<String>,
}

/// Requested ∩ allowed, per scope. Scopes are `type:name:actions` (name may hold `:`).
fn grant(st: &State, user: Option<&str>, scopes: &[String]) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for scope in scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter(|s| !s.is_empty())
    {
        let Some((resource_type, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let resource_type = resource_type.split('(').next().unwrap_or(resource_type);
        let granted: Vec<String> = actions
            .split(',')
            .filter(|a| {
                st.rules.iter().any(|r| {
                    (r.user.is_none() || r.user.as_deref() == user)
                        && r.resource_type == resource_type
                        && name.starts_with(&r.prefix)
                        && r.actions.iter().any(|x| x == "*" || x == a)
                })
            })
            .map(str::to_string)
            .collect();
        if granted.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|a| a.resource_type == resource_type && a.name == name)
        {
            Some(a) => {
                for g in granted {
                    if !a.actions.contains(&g) {
                        a.actions.push(g);
                    }
                }
            }
            None => out.push(Access {
                resource_type: resource_type.to_string(),
                name: name.to_string(),
                actions: granted,
            }),
        }
    }
    out
}

fn sign(st: &mut State, keys: &Keys, user: Option<&str>, access: &[Access]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    st.next_id += 1;
    let claims = json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": SERVICE,
        "exp": now + st.ttl_secs,
        "nbf": now.saturating_sub(5),
        "iat": now,
        "jti": format!("airlock-test-{}", st.next_id),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5c = Some(vec![keys.x5c.clone()]);
    jsonwebtoken::encode(&header, &claims, &keys.encoding).expect("sign token")
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    keys: Arc<Keys>,
) -> Result<Response<HttpBody>, BoxError> {
    if req.uri().path() != "/token" {
        return Ok(reply(StatusCode::NOT_FOUND, json!({"error": "not found"})));
    }
    let basic = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let params: Vec<(String, String)> = if method == Method::POST {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let mut st = state.lock().expect("token state lock");
    let grant_kind = if method == Method::POST {
        get("grant_type").unwrap_or_default()
    } else {
        "GET".to_string()
    };
    let mut record = TokenRequest {
        grant: grant_kind.clone(),
        user: None,
        scopes: scopes.clone(),
        granted: Vec::new(),
        status: 200,
    };
    let check = |st: &State, u: &str, p: &str| st.users.get(u).is_some_and(|pw| pw == p);
    let user: Result<Option<String>, &str> = match grant_kind.as_str() {
        "GET" => match &basic {
            None => Ok(None),
            Some((u, p)) if check(&st, u, p) => Ok(Some(u.clone())),
            Some(_) => Err("invalid credentials"),
        },
        "password" => match (get("username"), get("password")) {
            (Some(u), Some(p)) if check(&st, &u, &p) => Ok(Some(u)),
            _ => Err("invalid credentials"),
        },
        "refresh_token" => match get("refresh_token").and_then(|t| st.refresh_tokens.get(&t)) {
            Some(u) => Ok(Some(u.clone())),
            None => Err("invalid refresh token"),
        },
        _ => Err("unsupported grant_type"),
    };
    if get("service").is_some_and(|s| s != SERVICE) {
        record.status = 400;
        st.requests.push(record);
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "unknown service"}),
        ));
    }
    let user = match user {
        Ok(u) => u,
        Err(why) => {
            record.status = 401;
            st.requests.push(record);
            return Ok(reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_grant", "error_description": why,
                       "errors": [{"code": "UNAUTHORIZED", "message": why}]}),
            ));
        }
    };
    record.user = user.clone();
    let access = grant(&st, user.as_deref(), &scopes);
    record.granted = access
        .iter()
        .map(|a| format!("{}:{}:{}", a.resource_type, a.name, a.actions.join(",")))
        .collect();
    let token = sign(&mut st, &keys, user.as_deref(), &access);
    let issued_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": st.ttl_secs,
        "issued_at": issued_at,
    });
    let wants_refresh = get("access_type").as_deref() == Some("offline")
        || get("offline_token").as_deref() == Some("true");
    if let (true, Some(u)) = (wants_refresh, &user) {
        let refresh = match get("refresh_token") {
            Some(t) if grant_kind == "refresh_token" => t,
            _ => {
                st.next_id += 1;
                let t = format!("refresh-{}-{}", u, st.next_id);
                st.refresh_tokens.insert(t.clone(), u.clone());
                t
            }
        };
        body["refresh_token"] = json!(refresh);
    }
    if grant_kind != "GET" {
        body["scope"] = json!(scopes.join(" "));
    }
    st.requests.push(record);
    Ok(reply(StatusCode::OK, body))
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(full_body(body.to_string()))
        .expect("build token response")
}
