//! Azure Key Vault keys for `[signing] key = "azurekms://…"` and `public_key =
//! "azurekms://…"`: the [`Kms`] plug-in of `crate::signing`, on the REST API (api-version
//! 7.4) with bearer tokens of the credential chain for the cloud's Key Vault scope
//! (`https://vault.azure.net/.default` in the public cloud).
//!
//! - `GET https://<vault>/keys/<key>[/<version>]` → `{"key": {"kid", "kty": "EC", "crv":
//!   "P-256", "x", "y"}}`: the public key (any other key type, curve or size is refused);
//! - `POST https://<vault>/keys/<key>[/<version>]/sign` with `{"alg": "ES256", "value":
//!   <base64url SHA-256 digest>}` → `{"kid", "value": <base64url raw r‖s>}`. The signer in
//!   `crate::signing` converts `r‖s` to ASN.1 DER and checks it against the public key.
//!
//! Throttling (429) and gateway errors (502/503/504), refused connections and timeouts are
//! retried (honouring `Retry-After`, at most a minute per wait); Key Vault's own error
//! `{"error": {"code", "message"}}` is quoted with its code, and 401/403 say which vault and
//! what the identity needs (the "Key Vault Crypto User" role: keys/get and keys/sign).
//!
//! Tests only: `AIRLOCK_KEYVAULT_ENDPOINT` (see [`super::Endpoints`]) sends the requests to a
//! local stand-in instead of `https://<vault>`; everything else is the same code path.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde::Deserialize;
use serde_json::json;

use super::Azure;
use super::transport::ReqwestTransport;
use crate::registry::retry::parse_retry_after;
use crate::signing::{Kms, KmsKey, RemoteKey, RemoteSignature, Signer, SigningError, Verifier};

pub const API_VERSION: &str = "7.4";

/// Attempts for one request throttled, failing with a gateway error or not answered.
const MAX_ATTEMPTS: usize = 5;
/// The longest single wait between attempts.
const MAX_WAIT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read from Key Vault.
const MAX_ANSWER: usize = 64 * 1024;

/// A Key Vault client for the context's cloud and credential chain.
pub struct KeyVault {
    azure: Arc<Azure>,
    /// The HTTP client, or why it could not be set up (said when a key is used).
    client: Result<reqwest::Client, String>,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct KeyBundle {
    key: JsonWebKey,
}

#[derive(Deserialize)]
struct JsonWebKey {
    kid: Option<String>,
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct SignResult {
    kid: Option<String>,
    value: String,
}

fn kms_error(key: &KmsKey, message: impl std::fmt::Display) -> SigningError {
    SigningError::Kms(format!("Azure Key Vault key {key}: {message}"))
}

/// The public key of a JSON Web Key: EC P-256 with 32-byte coordinates, nothing else.
fn verifying_key(
    key: &KmsKey,
    jwk: &JsonWebKey,
) -> Result<p256::ecdsa::VerifyingKey, SigningError> {
    let kty = jwk.kty.as_deref().unwrap_or("none");
    let crv = jwk.crv.as_deref().unwrap_or("none");
    if !matches!(kty, "EC" | "EC-HSM") || crv != "P-256" {
        return Err(kms_error(
            key,
            format!(
                "is a {kty} key on curve {crv}; airlock signs with ECDSA P-256 (ES256): create \
                 the key with `az keyvault key create --kty EC --curve P-256`"
            ),
        ));
    }
    let coord = |name: &str, v: &Option<String>| -> Result<Vec<u8>, SigningError> {
        let b = v
            .as_deref()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| kms_error(key, format!("the key's `{name}` is not base64url")))?;
        if b.len() != 32 {
            return Err(kms_error(
                key,
                format!("the key's `{name}` is {} bytes, not 32 (P-256)", b.len()),
            ));
        }
        Ok(b)
    };
    let mut sec1 = vec![0x04];
    sec1.extend(coord("x", &jwk.x)?);
    sec1.extend(coord("y", &jwk.y)?);
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
        .map_err(|_| kms_error(key, "the key's x and y are not a point on P-256"))
}

impl KeyVault {
    pub fn new(azure: Arc<Azure>) -> KeyVault {
        let client = ReqwestTransport::new()
            .map(|t| t.client().clone())
            .map_err(|e| e.to_string());
        KeyVault { azure, client }
    }

    /// `https://<vault>/keys/<key>[/<version>]<op>?api-version=7.4` (or the test endpoint).
    fn url(&self, key: &KmsKey, op: &str) -> String {
        let base = match &self.azure.endpoints.keyvault_endpoint {
            Some(e) => e.clone(),
            None => format!("https://{}", key.vault),
        };
        format!("{base}/{}{op}?api-version={API_VERSION}", key.path())
    }

    /// Send with a bearer token for the Key Vault scope; retry throttling, gateway errors and
    /// unanswered requests. Error answers become errors quoting Key Vault's code.
    async fn send(
        &self,
        key: &KmsKey,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, SigningError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| kms_error(key, format!("cannot set up an HTTP client: {e}")))?;
        let scope = self.azure.endpoints.cloud.keyvault_scope();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token =
                self.azure.chain.token(&scope).await.map_err(|e| {
                    kms_error(key, format!("no token to {what} (scope {scope}): {e}"))
                })?;
            let sent = build(client)
                .bearer_auth(token.token.expose())
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if attempt < MAX_ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    let d = backoff(attempt);
                    tracing::warn!(
                        "Key Vault {}: {what}: {e}; retrying in {:.1}s",
                        key.vault,
                        d.as_secs_f64()
                    );
                    tokio::time::sleep(d).await;
                    continue;
                }
                Err(e) => {
                    let e = crate::registry::error::redact_url(e);
                    return Err(kms_error(key, format!("failed to {what}: {e}")));
                }
            };
            let status = resp.status();
            if matches!(status.as_u16(), 429 | 502 | 503 | 504) && attempt < MAX_ATTEMPTS {
                let d = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                    .unwrap_or_else(|| backoff(attempt))
                    .min(MAX_WAIT);
                tracing::warn!(
                    "Key Vault {}: {what}: answered {status}; retrying in {:.1}s",
                    key.vault,
                    d.as_secs_f64()
                );
                tokio::time::sleep(d).await;
                continue;
            }
            let body = read_capped(resp).await.map_err(|why| {
                kms_error(key, format!("failed to read the answer to {what}: {why}"))
            })?;
            if status.is_success() {
                return Ok(body);
            }
            return Err(self.error(key, what, status, &body));
        }
    }

    fn error(&self, key: &KmsKey, what: &str, status: StatusCode, body: &[u8]) -> SigningError {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error: Some(d) }) => (d.code, d.message),
            _ => (None, None),
        };
        let code = code.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").into());
        let message = message
            .map(|m| format!(": {}", m.split_whitespace().collect::<Vec<_>>().join(" ")))
            .unwrap_or_default();
        let hint = match status {
            StatusCode::UNAUTHORIZED => format!(
                "; the vault {} did not accept the identity's token (is the vault in the \
                 identity's tenant, and the cloud right?)",
                key.vault
            ),
            StatusCode::FORBIDDEN => format!(
                "; the identity may not use keys of the vault {}: give it the \"Key Vault \
                 Crypto User\" role there (keys/get and keys/sign), or a vault access policy \
                 with the key permissions get and sign",
                key.vault
            ),
            StatusCode::NOT_FOUND => {
                format!("; no such key (or version) in the vault {}", key.vault)
            }
            _ => String::new(),
        };
        kms_error(
            key,
            format!(
                "failed to {what}: Key Vault answered {} {code}{message}{hint}",
                status.as_u16()
            ),
        )
    }

    /// The key's public key, known by its `kid`.
    pub async fn public_key(&self, key: &KmsKey) -> Result<Verifier, SigningError> {
        let body = self
            .send(key, "read the public key (keys/get)", |c| {
                c.get(self.url(key, ""))
            })
            .await?;
        let bundle: KeyBundle = serde_json::from_slice(&body)
            .map_err(|e| kms_error(key, format!("the key answer is not a key bundle: {e}")))?;
        let vk = verifying_key(key, &bundle.key)?;
        let kid = bundle.key.kid.unwrap_or_else(|| key.to_string());
        Ok(Verifier::with_keyid(vk, kid))
    }

    /// ES256 over `digest`: the raw `r‖s` and the kid Key Vault names.
    pub async fn sign(
        &self,
        key: &KmsKey,
        digest: &[u8; 32],
    ) -> Result<RemoteSignature, SigningError> {
        let body = json!({"alg": "ES256", "value": URL_SAFE_NO_PAD.encode(digest)});
        let answer = self
            .send(key, "sign (keys/sign)", |c| {
                c.post(self.url(key, "/sign")).json(&body)
            })
            .await?;
        let r: SignResult = serde_json::from_slice(&answer).map_err(|e| {
            kms_error(
                key,
                format!("the sign answer is not a key operation result: {e}"),
            )
        })?;
        let raw = URL_SAFE_NO_PAD
            .decode(r.value.trim_end_matches('='))
            .map_err(|_| kms_error(key, "the signature Key Vault answered is not base64url"))?;
        Ok(RemoteSignature { raw, kid: r.kid })
    }
}

/// An answer's body, refused beyond [`MAX_ANSWER`] bytes (Key Vault's answers are a few
/// hundred bytes; a hostile endpoint must not make airlock buffer without limit).
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::registry::error::redact_url(e).to_string())?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(500u64 << attempt.min(6)).min(Duration::from_secs(30))
}

/// One Key Vault key to sign with.
struct VaultKey {
    vault: Arc<KeyVault>,
    key: KmsKey,
}

impl RemoteKey for VaultKey {
    fn sign_digest<'a>(
        &'a self,
        digest: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<RemoteSignature, SigningError>> {
        Box::pin(self.vault.sign(&self.key, digest))
    }
}

/// The [`Kms`] plug-in: a shared [`KeyVault`].
pub struct Vaults(pub Arc<KeyVault>);

impl Kms for Vaults {
    fn public_key<'a>(&'a self, key: &'a KmsKey) -> BoxFuture<'a, Result<Verifier, SigningError>> {
        Box::pin(self.0.public_key(key))
    }

    fn signer<'a>(&'a self, key: &'a KmsKey) -> BoxFuture<'a, Result<Signer, SigningError>> {
        Box::pin(async move {
            let verifier = self.0.public_key(key).await?;
            let remote = Arc::new(VaultKey {
                vault: self.0.clone(),
                key: key.clone(),
            });
            Ok(Signer::remote(remote, verifier, key.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KmsKey {
        KmsKey::parse("azurekms://kv1.vault.azure.net/k", "vault.azure.net").unwrap()
    }

    fn jwk(kty: &str, crv: &str, x: &[u8], y: &[u8]) -> JsonWebKey {
        JsonWebKey {
            kid: None,
            kty: Some(kty.into()),
            crv: Some(crv.into()),
            x: Some(URL_SAFE_NO_PAD.encode(x)),
            y: Some(URL_SAFE_NO_PAD.encode(y)),
        }
    }

    #[test]
    fn only_p256_ec_keys_are_accepted() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());
        assert_eq!(
            verifying_key(&key(), &jwk("EC", "P-256", &x, &y)).unwrap(),
            *sk.verifying_key()
        );
        let e = verifying_key(&key(), &jwk("RSA", "none", &x, &y)).unwrap_err();
        assert!(e.to_string().contains("RSA key"), "{e}");
        let e = verifying_key(&key(), &jwk("EC", "P-384", &x, &y)).unwrap_err();
        assert!(e.to_string().contains("P-384"), "{e}");
        let e = verifying_key(&key(), &jwk("EC", "P-256", &x[1..], &y)).unwrap_err();
        assert!(e.to_string().contains("31 bytes"), "{e}");
        let mut off = y.clone();
        off[31] ^= 1;
        let e = verifying_key(&key(), &jwk("EC", "P-256", &x, &off)).unwrap_err();
        assert!(e.to_string().contains("not a point"), "{e}");
    }
}
