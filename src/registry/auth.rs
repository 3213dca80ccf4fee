//! Registry authentication: `WWW-Authenticate` challenge parsing (Bearer with realm,
//! service and space-separated scopes; Basic), token requests (GET `realm?service&scope…`
//! with Basic credentials or anonymously; OAuth2 POST with `grant_type=refresh_token` for
//! identity tokens or `grant_type=password` for registries that refuse the GET), a token
//! cache per scope set renewed ahead of expiry, and the scope union on `insufficient_scope`.
//! For `auth = "azure"` it asks an [`IdentitySource`] plug-in for the identity token and
//! renews it when due.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};

use super::credentials::{self, Credential, Secret};
use super::error::RegistryError;
use super::retry::RetryPolicy;
use crate::config::AuthSpec;

mod challenge;
mod token;

pub use challenge::{
    CATALOG_SCOPE, Challenge, delete_scope, merge_scopes, parse_challenges, pull_scope, push_scope,
};
use token::{basic_header, bearer_header};

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
            let at = IdentityFor {
                registry: &self.registry,
                origin: &base,
                host: &self.host,
            };
            let (rt, renew_at) = source.identity_token(&self.client, at).await?;
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
}

/// `auth = "azure"`: where a registry's identity token (an OAuth2 refresh token) comes from.
/// A plug-in, wired in by `commands` through [`super::ClientOptions::identity`]: Azure's ACR
/// exchange (src/azure/acr.rs) implements it. The registry client asks it when it has no
/// token or the one it holds is due for renewal, and then gets scoped access tokens from the
/// realm with `grant_type=refresh_token`, like any identity token.
pub trait IdentitySource: Send + Sync {
    /// A fresh identity token for a registry, exchanged at `at.origin` (the origin of the
    /// registry's token realm, else its endpoint), and when to renew it.
    fn identity_token<'a>(
        &'a self,
        client: &'a reqwest::Client,
        at: IdentityFor<'a>,
    ) -> BoxFuture<'a, Result<(Secret, Instant), RegistryError>>;
}

/// Where an identity token is wanted: the registry (its configuration key, for messages),
/// the origin the token is exchanged at, and the registry's host (the token's service).
#[derive(Clone, Copy, Debug)]
pub struct IdentityFor<'a> {
    pub registry: &'a str,
    pub origin: &'a str,
    pub host: &'a str,
}

#[cfg(test)]
mod tests;
