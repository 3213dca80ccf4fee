//! `auth = "azure"`: ACR identity tokens. An ACR refresh token comes from
//! `AIRLOCK_ACR_REFRESH_TOKEN` when set (e.g. `az acr login --expose-token`), else from an
//! Entra ID token of the credential chain exchanged at `/oauth2/exchange` on the origin of
//! the registry's token realm (ACR's own host). [`AcrExchange`] is the registry client's
//! [`IdentitySource`] plug-in; scoped access tokens then come from `/oauth2/token` with
//! `grant_type=refresh_token`, like any identity token.

use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use std::sync::Arc;

use super::Azure;
use crate::registry::RegistryError;
use crate::registry::auth::{IdentityFor, IdentitySource};
use crate::secret::Secret;

/// An ACR refresh token given directly.
pub const REFRESH_TOKEN_ENV: &str = "AIRLOCK_ACR_REFRESH_TOKEN";

/// Renew a refresh token this long before its `exp`.
const RENEW_EARLY: Duration = Duration::from_secs(5 * 60);
/// When a refresh token's lifetime cannot be read (ACR's last three hours).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The ACR token exchange, with the Azure context whose credential chain it takes Entra ID
/// tokens from.
pub struct AcrExchange {
    azure: Arc<Azure>,
}

impl AcrExchange {
    pub fn new(azure: Arc<Azure>) -> AcrExchange {
        AcrExchange { azure }
    }
}

impl IdentitySource for AcrExchange {
    fn identity_token<'a>(
        &'a self,
        client: &'a reqwest::Client,
        at: IdentityFor<'a>,
    ) -> BoxFuture<'a, Result<(Secret, Instant), RegistryError>> {
        Box::pin(async move {
            let rt = refresh_token(&self.azure, client, at).await?;
            let at = renew_at(rt.expose());
            Ok((rt, at))
        })
    }
}

fn fail(registry: &str, message: String) -> RegistryError {
    RegistryError::Credentials {
        registry: registry.to_string(),
        message,
    }
}

/// When to renew a refresh token: its JWT `exp` less five minutes, else in an hour.
/// The token is not verified here (the registry does that); only its expiry is read.
pub fn renew_at(token: &str) -> Instant {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<u64>,
    }
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Claims>(&b).ok())
        .and_then(|c| c.exp);
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let lifetime = match exp {
        Some(exp) => Duration::from_secs(exp.saturating_sub(now_unix)),
        None => DEFAULT_LIFETIME,
    };
    Instant::now() + lifetime.saturating_sub(RENEW_EARLY.min(lifetime / 2))
}

/// A fresh ACR refresh token for the registry at `at.origin`.
pub async fn refresh_token(
    azure: &Azure,
    client: &reqwest::Client,
    at: IdentityFor<'_>,
) -> Result<Secret, RegistryError> {
    if let Some(t) = std::env::var(REFRESH_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Secret::new(t));
    }
    exchange(azure, client, at).await
}

/// An ACR refresh token for the registry at `endpoint` with a client of its own: for ARM
/// importImage from an ACR in another tenant (its `source.credentials`).
pub async fn refresh_token_for(
    azure: &Azure,
    registry: &str,
    endpoint: &str,
    host: &str,
) -> Result<Secret, RegistryError> {
    crate::registry::ensure_crypto_provider();
    let client = crate::registry::tls::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RegistryError::Transport {
            registry: registry.to_string(),
            what: "set up an HTTP client".into(),
            source: e,
        })?;
    let at = IdentityFor {
        registry,
        origin: endpoint.trim_end_matches('/'),
        host,
    };
    refresh_token(azure, &client, at).await
}

/// Exchange an Entra ID token for an ACR refresh token at `<origin>/oauth2/exchange`.
async fn exchange(
    azure: &Azure,
    client: &reqwest::Client,
    at: IdentityFor<'_>,
) -> Result<Secret, RegistryError> {
    let IdentityFor {
        registry,
        origin: endpoint,
        host,
    } = at;
    let aad = azure
        .chain
        .token(&azure.endpoints.acr_scope)
        .await
        .map_err(|e| fail(registry, e.to_string()))?;
    let mut form = vec![
        ("grant_type", "access_token".to_string()),
        ("service", host.to_string()),
        ("access_token", aad.token.expose().to_string()),
    ];
    if let Some(t) = std::env::var("AZURE_TENANT_ID")
        .ok()
        .filter(|t| !t.is_empty())
    {
        form.push(("tenant", t));
    }
    let what = "exchange an Azure AD token for an ACR refresh token";
    let resp = client
        .post(format!("{endpoint}/oauth2/exchange"))
        .form(&form)
        .send()
        .await
        .map_err(|e| RegistryError::Transport {
            registry: registry.to_string(),
            what: what.into(),
            source: crate::registry::error::redact_url(e),
        })?;
    if !resp.status().is_success() {
        return Err(fail(
            registry,
            format!(
                "failed to {what}: {} answered {} (does the identity have AcrPull/AcrPush on it?)",
                host,
                resp.status()
            ),
        ));
    }
    #[derive(Deserialize)]
    struct Exchange {
        refresh_token: String,
    }
    let ex: Exchange = resp
        .json()
        .await
        .map_err(|e| fail(registry, format!("failed to {what}: bad answer: {e}")))?;
    Ok(Secret::new(ex.refresh_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_renewed_before_their_exp() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let jwt = |exp: u64| format!("{}.{}.sig", b64("{}"), b64(&format!("{{\"exp\":{exp}}}")));
        let in_3h = renew_at(&jwt(now + 3 * 3600)) - Instant::now();
        assert!(in_3h > Duration::from_secs(3 * 3600 - 6 * 60), "{in_3h:?}");
        assert!(in_3h < Duration::from_secs(3 * 3600 - 4 * 60), "{in_3h:?}");
        // Expired or unreadable: renew now, or after the default hour.
        assert!(renew_at(&jwt(now - 10)) <= Instant::now());
        let opaque = renew_at("not-a-jwt") - Instant::now();
        assert!(opaque > Duration::from_secs(50 * 60), "{opaque:?}");
    }
}
