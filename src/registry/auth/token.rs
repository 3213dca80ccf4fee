//! Token requests to a Bearer realm: GET `realm?service&scope…` with Basic credentials or
//! anonymously, or the OAuth2 POST form (`grant_type=refresh_token` for identity tokens,
//! `grant_type=password` for registries that refuse the GET); how long a token lives; and
//! the Authorization headers built from tokens and credentials.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::HeaderValue;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::{Authenticator, CachedToken};
use crate::registry::credentials::{Credential, Secret};
use crate::registry::error::RegistryError;

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Authenticator {
    pub(super) async fn fetch_token(
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
                    return Err(
                        crate::registry::http::api_error(&self.registry, &what, resp).await,
                    );
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
        let e = crate::registry::error::redact_url(e);
        RegistryError::Transport {
            registry: self.registry.clone(),
            what: what.to_string(),
            source: e,
        }
    }
}

/// When a token response says nothing else (no `expires_in`, no readable JWT `exp`).
pub(super) const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);

/// A token's lifetime: `expires_in` when the answer has it, else what its JWT says
/// (`exp - iat`, which needs no agreement between clocks; `exp` against the local clock
/// without `iat`), else an assumed minute. ACR's `/oauth2/token` answers without
/// `expires_in`: its access tokens carry their lifetime (about 75 minutes) only as `exp`.
/// When both are present the shorter wins. The token is not verified (the registry does).
pub(super) fn token_lifetime(expires_in: Option<u64>, token: &str) -> Duration {
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
pub(super) fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(5 * 60))
}

pub(super) fn bearer_header(t: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

pub(super) fn basic_header(c: &Credential) -> Option<HeaderValue> {
    let Credential::UsernamePassword { username, password } = c else {
        return None;
    };
    let enc = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}
