//! Registry authentication: `WWW-Authenticate` challenge parsing (Bearer with realm,
//! service and space-separated scopes; Basic), token requests (GET `realm?service&scope…`
//! with Basic credentials or anonymously; OAuth2 POST with `grant_type=refresh_token` for
//! identity tokens or `grant_type=password` for registries that refuse the GET), a token
//! cache per scope set renewed ahead of expiry, and the scope union on `insufficient_scope`.
//! For `auth = "azure"` it asks an [`IdentitySource`] plug-in for the identity token and
//! renews it when due.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::credentials::{self, Credential, Secret};
use super::error::RegistryError;
use super::retry::RetryPolicy;
use crate::config::AuthSpec;

/// One challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scopes: Vec<String>,
        /// `insufficient_scope`, `invalid_token`, …
        error: Option<String>,
    },
    Basic,
}

/// Parse every challenge of a `WWW-Authenticate` value (unknown schemes are skipped).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        header[start..*i].to_string()
    };
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let scheme = read_token(&mut i);
        if scheme.is_empty() {
            // A stray '=': skip it.
            i += 1;
            continue;
        }
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        loop {
            skip_ws(&mut i);
            let at = i;
            let name = read_token(&mut i);
            skip_ws(&mut i);
            if name.is_empty() || i >= b.len() || b[i] != b'=' {
                i = at;
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b' ' | b'\t') {
                    i += 1;
                }
                header[start..i].to_string()
            };
            params.insert(name.to_ascii_lowercase(), value);
            skip_ws(&mut i);
            if i < b.len() && b[i] == b',' {
                i += 1;
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scopes: params
                            .remove("scope")
                            .map(|s| s.split_whitespace().map(str::to_string).collect())
                            .unwrap_or_default(),
                        error: params.remove("error"),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic),
            _ => {}
        }
    }
    out
}

/// Merge scopes (`type:name:actions`), joining the actions of the same resource.
/// The result is sorted and deterministic.
pub fn merge_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut by_resource: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut opaque = BTreeSet::new();
    for s in scopes {
        let parsed = s.split_once(':').and_then(|(t, rest)| {
            rest.rsplit_once(':')
                .map(|(name, actions)| (t.to_string(), name.to_string(), actions))
        });
        match parsed {
            Some((t, name, actions)) => {
                let set = by_resource.entry((t, name)).or_default();
                set.extend(
                    actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                );
            }
            None => {
                opaque.insert(s.to_string());
            }
        }
    }
    let mut out: Vec<String> = by_resource
        .into_iter()
        .map(|((t, name), actions)| {
            let mut actions: Vec<String> = actions.into_iter().collect();
            // Conventional order: pull before push, then the rest.
            actions.sort_by_key(|a| match a.as_str() {
                "pull" => (0, a.clone()),
                "push" => (1, a.clone()),
                _ => (2, a.clone()),
            });
            format!("{t}:{name}:{}", actions.join(","))
        })
        .collect();
    out.extend(opaque);
    out.sort();
    out
}

/// `repository:<repo>:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// `repository:<repo>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// `repository:<repo>:delete` plus pull (Distribution asks for `*` on delete; ACR for delete).
pub fn delete_scope(repo: &str) -> String {
    format!("repository:{repo}:delete,pull,push")
}

pub const CATALOG_SCOPE: &str = "registry:catalog:*";

#[derive(Clone, Debug)]
enum Scheme {
    /// No request has been challenged yet.
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Authentication state of one registry: its credentials, the scheme it asked for, and
/// cached bearer tokens by scope set.
pub struct Authenticator {
    registry: String,
    host: String,
    endpoint: String,
    spec: AuthSpec,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// `stall_timeout`: the longest wait for the token endpoint's headers or next bytes.
    stall: Duration,
    creds: tokio::sync::OnceCell<Option<Credential>>,
    /// `auth = "azure"`: where the identity token comes from (None: this build or wiring
    /// has no plug-in for it).
    identity: Option<Arc<dyn IdentitySource>>,
    /// `auth = "azure"`: the identity token and when to renew it.
    identity_token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<Vec<String>, CachedToken>>,
    /// Serialises token fetches so concurrent requests share one token.
    fetching: tokio::sync::Mutex<()>,
    /// The token endpoint refused GET: use the OAuth2 password grant.
    prefer_post: AtomicBool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("registry", &self.registry)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        registry: &str,
        host: &str,
        endpoint: &str,
        spec: AuthSpec,
        client: reqwest::Client,
        retry: RetryPolicy,
        stall: Duration,
    ) -> Authenticator {
        Authenticator {
            registry: registry.to_string(),
            host: host.to_string(),
            endpoint: endpoint.to_string(),
            spec,
            client,
            retry,
            stall,
            creds: tokio::sync::OnceCell::new(),
            identity: None,
            identity_token: tokio::sync::Mutex::new(None),
            scheme: Mutex::new(Scheme::Unknown),
            tokens: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            prefer_post: AtomicBool::new(false),
        }
    }

    /// Take `auth = "azure"` identity tokens from `identity`.
    pub fn with_identity(mut self, identity: Option<Arc<dyn IdentitySource>>) -> Authenticator {
        self.identity = identity;
        self
    }

    /// The hint for an Unauthorized error.
    pub fn hint(&self) -> String {
        match &self.spec {
            AuthSpec::Azure => format!(
                "the Azure identity airlock runs as was refused: give it AcrPull/AcrPush on the \
                 registry (listing repositories for prune or audit needs a role with \
                 catalog access, e.g. Container Registry Repository Catalog Lister), or use \
                 AIRLOCK_ACR_REFRESH_TOKEN / `az acr login -n {}`",
                self.host
            ),
            _ => credentials::login_hint(&self.registry, &self.host),
        }
    }

    /// Whether credentials were found (and so went with requests or token requests).
    pub fn has_credentials(&self) -> bool {
        self.spec == AuthSpec::Azure || matches!(self.creds.get(), Some(Some(_)))
    }

    /// The hint for a 401 to a request that carried credentials: they were rejected, so
    /// "provide credentials" would mislead.
    pub fn rejected_hint(&self) -> String {
        match &self.spec {
            AuthSpec::Basic {
                username,
                password_env,
            } => format!(
                "the registry rejected the credentials sent (user `{username}`, password from \
                 ${password_env}): check them"
            ),
            AuthSpec::Docker => format!(
                "the registry rejected the credentials from the docker configuration: check \
                 them, or run `docker login {}` again",
                self.host
            ),
            AuthSpec::Azure | AuthSpec::Anonymous => {
                format!(
                    "the registry rejected the credentials sent: {}",
                    self.hint()
                )
            }
        }
    }

    async fn credentials(&self) -> Result<Option<Credential>, RegistryError> {
        if self.spec == AuthSpec::Azure {
            let Some(source) = &self.identity else {
                return Err(RegistryError::Credentials {
                    registry: self.registry.clone(),
                    message: "auth = \"azure\" has no identity source in this build".into(),
                });
            };
            let mut held = self.identity_token.lock().await;
            if let Some((rt, renew_at)) = held.as_ref()
                && Instant::now() < *renew_at
            {
                return Ok(Some(Credential::IdentityToken(rt.clone())));
            }
            // ACR's token realm is `https://<r>.azurecr.io/oauth2/token`: exchange at the
            // realm's origin (the registry's own, unless it fronts another token service).
            let realm_origin = match &*self.scheme.lock().expect("auth lock") {
                Scheme::Bearer { realm, .. } => Url::parse(realm)
                    .ok()
                    .map(|u| u.origin().ascii_serialization()),
                _ => None,
            };
            let base = realm_origin.unwrap_or_else(|| self.endpoint.clone());
            let (rt, renew_at) = source
                .identity_token(&self.client, &self.registry, &base, &self.host)
                .await?;
            *held = Some((rt.clone(), renew_at));
            return Ok(Some(Credential::IdentityToken(rt)));
        }
        self.creds
            .get_or_try_init(|| credentials::resolve(&self.registry, &self.host, &self.spec))
            .await
            .cloned()
    }

    /// The Authorization header for a request needing `scopes`, when the registry is
    /// known to want one. `None` before the first challenge and for anonymous Basic.
    pub async fn header(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
        let scheme = self.scheme.lock().expect("auth lock").clone();
        match scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.credentials().await?.as_ref().and_then(basic_header)),
            Scheme::Bearer { realm, service } => {
                let key = merge_scopes(scopes.iter().map(String::as_str));
                if let Some(t) = self.cached(&key) {
                    return Ok(Some(bearer_header(&t)));
                }
                let _guard = self.fetching.lock().await;
                if let Some(t) = self.cached(&key) {
                    return Ok(Some(bearer_header(&t)));
                }
                let t = self.fetch_token(&realm, service.as_deref(), &key).await?;
                self.store(key, t.clone());
                Ok(Some(bearer_header(&t.token)))
            }
        }
    }

    fn cached(&self, key: &[String]) -> Option<Secret> {
        let tokens = self.tokens.lock().expect("token lock");
        tokens
            .get(key)
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.token.clone())
    }

    fn store(&self, key: Vec<String>, t: CachedToken) {
        self.tokens.lock().expect("token lock").insert(key, t);
    }

    /// Handle a 401: learn the scheme from the challenge and get fresh authorization
    /// covering `scopes` and whatever the challenge asked for. Returns false when there
    /// is nothing new to try (no challenge, Basic without credentials, or Basic
    /// credentials already sent with the refused request: `sent` is the Authorization it
    /// carried). Judged per request, not per registry: concurrent first requests all go
    /// out without credentials, and each of them is worth one retry.
    pub async fn challenged(
        &self,
        headers: &HeaderMap,
        scopes: &[String],
        sent: Option<&HeaderValue>,
    ) -> Result<bool, RegistryError> {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scopes,
                error,
            } => Some((
                realm.clone(),
                service.clone(),
                scopes.clone(),
                error.clone(),
            )),
            Challenge::Basic => None,
        });
        if let Some((realm, service, extra, error)) = bearer {
            tracing::debug!(
                registry = %self.registry,
                realm = %realm,
                error = ?error,
                "bearer challenge"
            );
            let previous = std::mem::replace(
                &mut *self.scheme.lock().expect("auth lock"),
                Scheme::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                },
            );
            if !matches!(&previous, Scheme::Bearer { realm: r, .. } if r == &realm) {
                let realm_host = Url::parse(&realm)
                    .ok()
                    .and_then(|u| {
                        u.host_str().map(|h| match u.port() {
                            Some(p) => format!("{}://{h}:{p}", u.scheme()),
                            None => format!("{}://{h}", u.scheme()),
                        })
                    })
                    .unwrap_or_else(|| "(an invalid realm)".into());
                tracing::info!(
                    "registry `{}` asks for tokens from {realm_host}: credentials go there",
                    self.registry
                );
            }
            let key = merge_scopes(scopes.iter().map(String::as_str));
            let union = merge_scopes(
                scopes
                    .iter()
                    .map(String::as_str)
                    .chain(extra.iter().map(String::as_str)),
            );
            let _guard = self.fetching.lock().await;
            let t = self.fetch_token(&realm, service.as_deref(), &union).await?;
            let token = t.token.clone();
            let renew_at = t.renew_at;
            self.store(union, t);
            self.store(key, CachedToken { token, renew_at });
            return Ok(true);
        }
        if challenges.contains(&Challenge::Basic) {
            *self.scheme.lock().expect("auth lock") = Scheme::Basic;
            // Retrying only helps if credentials exist and were not sent already.
            let sent_basic = sent.is_some_and(|v| v.as_bytes().starts_with(b"Basic "));
            return Ok(!sent_basic && self.credentials().await?.is_some());
        }
        Ok(false)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken, RegistryError> {
        let creds = self.credentials().await?;
        let what = format!("get a token from {realm}");
        let realm_url = Url::parse(realm).map_err(|e| {
            RegistryError::invalid(&self.registry, &what, format!("invalid realm: {e}"))
        })?;
        if !matches!(realm_url.scheme(), "http" | "https") {
            return Err(RegistryError::invalid(
                &self.registry,
                &what,
                "the token realm is not an http(s) URL",
            ));
        }
        // A realm may be another host (Docker Hub's is): credentials go there, but never in
        // the clear when the registry itself is spoken to over TLS.
        if creds.is_some() && realm_url.scheme() == "http" && self.endpoint.starts_with("https:") {
            return Err(RegistryError::invalid(
                &self.registry,
                format!(
                    "get a token from {}",
                    realm_url.host_str().unwrap_or("the realm")
                ),
                "the registry is https but its token realm is plain http: refusing to send \
                 credentials there",
            ));
        }
        let resp: TokenResponse = self
            .retry
            .run_for(&self.registry, &what, || async {
                let post = self.prefer_post.load(Ordering::Relaxed);
                tracing::debug!(registry = %self.registry, realm, ?scopes, post, "token request");
                let req = self.token_request(&realm_url, service, scopes, creds.as_ref(), post);
                let mut resp = self.send(req, &what).await?;
                if matches!(
                    resp.status(),
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                ) && matches!(creds, Some(Credential::UsernamePassword { .. }))
                    && !post
                {
                    // The token endpoint wants the OAuth2 form (password grant).
                    self.prefer_post.store(true, Ordering::Relaxed);
                    let req = self.token_request(&realm_url, service, scopes, creds.as_ref(), true);
                    resp = self.send(req, &what).await?;
                }
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                        what: what.clone(),
                        code: Some(format!("token endpoint answered {}", status.as_u16())),
                        hint: if creds.is_some() {
                            self.rejected_hint()
                        } else {
                            self.hint()
                        },
                    });
                }
                if !status.is_success() {
                    return Err(super::http::api_error(&self.registry, &what, resp).await);
                }
                let body = self.stalled(&what, resp.bytes()).await?;
                serde_json::from_slice::<TokenResponse>(&body).map_err(|e| {
                    RegistryError::invalid(
                        &self.registry,
                        &what,
                        format!("bad token response: {e}"),
                    )
                })
            })
            .await?;
        let token = resp
            .token
            .filter(|t| !t.is_empty())
            .or(resp.access_token)
            .ok_or_else(|| {
                RegistryError::invalid(&self.registry, &what, "token response without a token")
            })?;
        let lifetime = token_lifetime(resp.expires_in, &token);
        Ok(CachedToken {
            token: Secret::new(token),
            renew_at: Instant::now() + lifetime - renew_margin(lifetime),
        })
    }

    /// GET `realm?service&scope…` (Basic credentials if any), or the OAuth2 POST form:
    /// `grant_type=refresh_token` for identity tokens, `grant_type=password` when `post`.
    fn token_request(
        &self,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credential>,
        post: bool,
    ) -> reqwest::RequestBuilder {
        let post_form = |grant: Vec<(&str, String)>| {
            let mut form: Vec<(&str, String)> = vec![("client_id", "airlock".into())];
            if let Some(s) = service {
                form.push(("service", s.to_string()));
            }
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            form.extend(grant);
            self.client.post(realm.clone()).form(&form)
        };
        let get = || {
            let mut url = realm.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes {
                    q.append_pair("scope", s);
                }
            }
            self.client.get(url)
        };
        match creds {
            Some(Credential::IdentityToken(rt)) => post_form(vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", rt.expose().to_string()),
            ]),
            Some(Credential::UsernamePassword { username, password }) if post => post_form(vec![
                ("grant_type", "password".into()),
                ("username", username.clone()),
                ("password", password.expose().to_string()),
            ]),
            Some(Credential::UsernamePassword { username, password }) => {
                get().basic_auth(username, Some(password.expose()))
            }
            None => get(),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        self.stalled(what, req.send()).await
    }

    /// A token-endpoint step bounded by the stall timeout.
    async fn stalled<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, reqwest::Error>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(self.stall, fut).await {
            Ok(r) => r.map_err(|e| self.transport(what, e)),
            Err(_) => Err(RegistryError::Timeout {
                registry: self.registry.clone(),
                what: what.to_string(),
                after: self.stall,
            }),
        }
    }

    fn transport(&self, what: &str, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            return RegistryError::Timeout {
                registry: self.registry.clone(),
                what: what.to_string(),
                after: self.stall,
            };
        }
        let e = super::error::redact_url(e);
        RegistryError::Transport {
            registry: self.registry.clone(),
            what: what.to_string(),
            source: e,
        }
    }
}

/// When a token response says nothing else (no `expires_in`, no readable JWT `exp`).
const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);

/// A token's lifetime: `expires_in` when the answer has it, else what its JWT says
/// (`exp - iat`, which needs no agreement between clocks; `exp` against the local clock
/// without `iat`), else an assumed minute. ACR's `/oauth2/token` answers without
/// `expires_in`: its access tokens carry their lifetime (about 75 minutes) only as `exp`.
/// When both are present the shorter wins. The token is not verified (the registry does).
fn token_lifetime(expires_in: Option<u64>, token: &str) -> Duration {
    let jwt = jwt_lifetime(token);
    let secs = match (expires_in, jwt) {
        (Some(e), Some(j)) => e.min(j),
        (Some(e), None) => e,
        (None, Some(j)) => j,
        (None, None) => ASSUMED_LIFETIME.as_secs(),
    };
    Duration::from_secs(secs.max(1))
}

/// `exp - iat` (or `exp - now`) of a JWT, in seconds; None when the token is opaque.
fn jwt_lifetime(token: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<u64>,
        iat: Option<u64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let c: Claims = serde_json::from_slice(&bytes).ok()?;
    let exp = c.exp?;
    let from = c.iat.filter(|&i| i <= exp).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    });
    Some(exp.saturating_sub(from))
}

/// Renew ahead of expiry: a tenth of the lifetime early, at most five minutes early.
fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(5 * 60))
}

fn bearer_header(t: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

fn basic_header(c: &Credential) -> Option<HeaderValue> {
    let Credential::UsernamePassword { username, password } = c else {
        return None;
    };
    let enc = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// `auth = "azure"`: where a registry's identity token (an OAuth2 refresh token) comes from.
/// A plug-in, wired in by `commands` through [`super::ClientOptions::identity`]: Azure's ACR
/// exchange (src/azure/acr.rs) implements it. The registry client asks it when it has no
/// token or the one it holds is due for renewal, and then gets scoped access tokens from the
/// realm with `grant_type=refresh_token`, like any identity token.
pub trait IdentitySource: Send + Sync {
    /// A fresh identity token for `registry` (host `host`), exchanged at `origin` (the origin
    /// of the registry's token realm, else its endpoint), and when to renew it.
    fn identity_token<'a>(
        &'a self,
        client: &'a reqwest::Client,
        registry: &'a str,
        origin: &'a str,
        host: &'a str,
    ) -> BoxFuture<'a, Result<(Secret, Instant), RegistryError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_several_scopes() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull repository:c:pull,push""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scopes: vec![
                    "repository:a/b:pull".into(),
                    "repository:c:pull,push".into()
                ],
                error: None,
            }]
        );
    }

    #[test]
    fn parses_error_basic_and_several_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="http://127.0.0.1:1/token", service="svc", scope="repository:x:pull,push", error="insufficient_scope""#,
        );
        let Challenge::Bearer { error, scopes, .. } = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(error.as_deref(), Some("insufficient_scope"));
        assert_eq!(scopes, &vec!["repository:x:pull,push".to_string()]);
        assert_eq!(
            parse_challenges(r#"Basic realm="test-realm""#),
            vec![Challenge::Basic]
        );
        let two = parse_challenges(r#"Basic realm="a, b", Bearer realm="https://x/t",service=s"#);
        assert_eq!(two.len(), 2, "{two:?}");
        assert_eq!(
            two[1],
            Challenge::Bearer {
                realm: "https://x/t".into(),
                service: Some("s".into()),
                scopes: vec![],
                error: None
            }
        );
        assert!(parse_challenges("Negotiate abc==").is_empty());
        assert_eq!(
            parse_challenges(r#"Bearer realm="q\"uote""#),
            vec![Challenge::Bearer {
                realm: "q\"uote".into(),
                service: None,
                scopes: vec![],
                error: None
            }]
        );
    }

    #[test]
    fn scope_union_merges_actions() {
        let s = merge_scopes([
            "repository:a:pull",
            "repository:b:pull",
            "repository:a:push,pull",
            "registry:catalog:*",
        ]);
        assert_eq!(
            s,
            vec![
                "registry:catalog:*".to_string(),
                "repository:a:pull,push".to_string(),
                "repository:b:pull".to_string()
            ]
        );
    }

    #[tokio::test]
    async fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
        crate::registry::ensure_crypto_provider();
        let auth = |endpoint: &str| {
            Authenticator::new(
                "r",
                "r.example",
                endpoint,
                // HOME is set in every test process: credentials exist.
                AuthSpec::Basic {
                    username: "u".into(),
                    password_env: "HOME".into(),
                },
                reqwest::Client::new(),
                RetryPolicy::none(),
                Duration::from_secs(1),
            )
        };
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="http://127.0.0.1:9/token",service="s""#),
        );
        let e = auth("https://r.example")
            .challenged(&h, &[pull_scope("a")], None)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("refusing to send credentials"),
            "{e}"
        );
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        // An http registry may have an http realm: the request is made (and fails here,
        // nothing listens on port 9), not refused.
        let e = auth("http://r.example")
            .challenged(&h, &[pull_scope("a")], None)
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("refusing"), "{e}");
    }

    #[test]
    fn access_token_lifetimes_come_from_the_jwt_when_the_answer_has_none() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = |claims: &str| format!("{}.{}.sig", b64("{}"), b64(claims));
        // ACR: no expires_in, a 75-minute JWT.
        let acr = jwt(r#"{"iat":1000,"exp":5500}"#);
        assert_eq!(token_lifetime(None, &acr), Duration::from_secs(4500));
        // Both: the shorter.
        assert_eq!(token_lifetime(Some(300), &acr), Duration::from_secs(300));
        assert_eq!(token_lifetime(Some(9000), &acr), Duration::from_secs(4500));
        // Opaque or without exp: expires_in, else the assumed minute.
        assert_eq!(
            token_lifetime(Some(120), "opaque"),
            Duration::from_secs(120)
        );
        assert_eq!(token_lifetime(None, "opaque"), ASSUMED_LIFETIME);
        assert_eq!(token_lifetime(None, &jwt(r#"{"iat":1}"#)), ASSUMED_LIFETIME);
        // exp in the past or before iat: renew at once (1 s, never zero).
        assert_eq!(
            token_lifetime(None, &jwt(r#"{"iat":50,"exp":10}"#)),
            Duration::from_secs(1)
        );
        // Renewed a tenth early, at most five minutes early.
        assert_eq!(
            renew_margin(Duration::from_secs(4500)),
            Duration::from_secs(300)
        );
        assert_eq!(
            renew_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn secrets_in_headers_are_sensitive() {
        let h = basic_header(&Credential::UsernamePassword {
            username: "u".into(),
            password: Secret::new("p"),
        })
        .unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic dTpw");
        assert!(bearer_header(&Secret::new("t")).is_sensitive());
    }
}
