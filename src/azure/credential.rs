//! The Azure AD credential chain. azure_identity 1.x has no DefaultAzureCredential, so the
//! chain is composed here, in the usual order:
//!
//! 1. `WorkloadIdentityCredential`: AZURE_FEDERATED_TOKEN_FILE (+ AZURE_CLIENT_ID,
//!    AZURE_TENANT_ID) — AKS workload identity, GitHub Actions / Azure Pipelines OIDC;
//! 2. `ClientSecretCredential`: AZURE_CLIENT_SECRET (+ AZURE_CLIENT_ID, AZURE_TENANT_ID);
//! 3. `ManagedIdentityCredential`: App Service style IDENTITY_ENDPOINT + IDENTITY_HEADER, else
//!    the VM metadata endpoint (user-assigned when AZURE_CLIENT_ID is set);
//! 4. `AzureCliCredential`: `az account get-access-token` after `az login`.
//!
//! The first that yields a token wins and is used from then on. When none does, the error
//! names each one tried and why it failed. `AZURE_TOKEN_CREDENTIALS` narrows the chain as in
//! other Azure SDKs: `prod` (1–3), `dev` (4) or one credential's name.
//! Tokens are cached per scope and renewed five minutes before they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use azure_core::credentials::TokenCredential;
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use time::OffsetDateTime;

use super::transport::{ReqwestTransport, client_options};
use crate::registry::credentials::Secret;

/// Renew a cached token this long before it expires.
const RENEW_EARLY: time::Duration = time::Duration::minutes(5);

pub const WORKLOAD_IDENTITY: &str = "WorkloadIdentityCredential";
pub const CLIENT_SECRET: &str = "ClientSecretCredential";
pub const MANAGED_IDENTITY: &str = "ManagedIdentityCredential";
pub const AZURE_CLI: &str = "AzureCliCredential";

/// An Azure AD access token. `Debug` shows only its expiry.
#[derive(Clone)]
pub struct AadToken {
    pub token: Secret,
    pub expires_on: OffsetDateTime,
}

impl fmt::Debug for AadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AadToken")
            .field("token", &self.token)
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

/// No credential of the chain produced a token: each one tried, in order, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    pub attempts: Vec<(String, String)>,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no Azure credential produced a token; tried, in order:")?;
        for (name, why) in &self.attempts {
            // azure_core errors may span lines; keep one line per credential.
            let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
            write!(f, "\n  - {name}: {why}")?;
        }
        write!(
            f,
            "\n  (set AZURE_CLIENT_ID and AZURE_TENANT_ID with AZURE_FEDERATED_TOKEN_FILE or \
             AZURE_CLIENT_SECRET, run on Azure with a managed identity, or run `az login`)"
        )
    }
}

impl std::error::Error for ChainError {}

/// A credential of the chain, or why it could not be set up.
pub type Credential = Result<Arc<dyn TokenCredential>, String>;

/// One link of the chain: a credential, or why it could not be set up.
struct Link {
    name: String,
    credential: Credential,
}

/// The chain with its choice and token cache.
pub struct Chain {
    links: Vec<Link>,
    /// The link that produced the first token.
    chosen: Mutex<Option<usize>>,
    cache: Mutex<HashMap<String, AadToken>>,
    /// Serialises token requests so concurrent callers share one.
    fetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field(
                "links",
                &self.links.iter().map(|l| &l.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn not_configured(missing: &[&str]) -> String {
    format!("not configured ({} not set)", missing.join(", "))
}

impl Chain {
    /// A chain of the given credentials, in order (tests compose their own).
    pub fn new(links: Vec<(String, Credential)>) -> Chain {
        Chain {
            links: links
                .into_iter()
                .map(|(name, credential)| Link { name, credential })
                .collect(),
            chosen: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The chain the environment describes (see the module docs).
    pub fn from_env() -> Chain {
        let transport = match ReqwestTransport::new() {
            Ok(t) => t,
            Err(e) => {
                let why = format!("cannot build an HTTP client: {e}");
                return Chain::new(
                    [
                        WORKLOAD_IDENTITY,
                        CLIENT_SECRET,
                        MANAGED_IDENTITY,
                        AZURE_CLI,
                    ]
                    .iter()
                    .map(|n| (n.to_string(), Err(why.clone())))
                    .collect(),
                );
            }
        };
        let selected: Vec<&str> = match env("AZURE_TOKEN_CREDENTIALS").as_deref() {
            None => vec![
                WORKLOAD_IDENTITY,
                CLIENT_SECRET,
                MANAGED_IDENTITY,
                AZURE_CLI,
            ],
            Some(v) if v.eq_ignore_ascii_case("prod") => {
                vec![WORKLOAD_IDENTITY, CLIENT_SECRET, MANAGED_IDENTITY]
            }
            Some(v) if v.eq_ignore_ascii_case("dev") => vec![AZURE_CLI],
            Some(v) => {
                match [
                    WORKLOAD_IDENTITY,
                    CLIENT_SECRET,
                    MANAGED_IDENTITY,
                    AZURE_CLI,
                ]
                .into_iter()
                .find(|n| n.eq_ignore_ascii_case(v))
                {
                    Some(n) => vec![n],
                    None => {
                        return Chain::new(vec![(
                            "AZURE_TOKEN_CREDENTIALS".into(),
                            Err(format!(
                                "`{v}` is not one of: prod, dev, {WORKLOAD_IDENTITY}, \
                                 {CLIENT_SECRET}, {MANAGED_IDENTITY}, {AZURE_CLI}"
                            )),
                        )]);
                    }
                }
            }
        };
        let links = selected
            .into_iter()
            .map(|name| (name.to_string(), build(name, &transport)))
            .collect();
        Chain::new(links)
    }

    /// The process-wide chain, built from the environment on first use.
    pub fn shared() -> &'static Chain {
        static CHAIN: OnceLock<Chain> = OnceLock::new();
        CHAIN.get_or_init(Chain::from_env)
    }

    /// A token for `scope`: cached until five minutes before expiry, else from the chosen
    /// credential, else from the first credential of the chain that yields one.
    pub async fn token(&self, scope: &str) -> Result<AadToken, ChainError> {
        if let Some(t) = self.cached(scope) {
            return Ok(t);
        }
        let _guard = self.fetching.lock().await;
        if let Some(t) = self.cached(scope) {
            return Ok(t);
        }
        let chosen = *self.chosen.lock().expect("chain lock");
        let order: Vec<usize> = match chosen {
            Some(i) => vec![i],
            None => (0..self.links.len()).collect(),
        };
        let mut attempts = Vec::new();
        for i in order {
            let link = &self.links[i];
            let cred = match &link.credential {
                Ok(c) => c,
                Err(why) => {
                    attempts.push((link.name.clone(), why.clone()));
                    continue;
                }
            };
            match cred.get_token(&[scope], None).await {
                Ok(t) => {
                    tracing::debug!(credential = %link.name, "Azure AD token obtained");
                    *self.chosen.lock().expect("chain lock") = Some(i);
                    let token = AadToken {
                        token: Secret::new(t.token.secret()),
                        expires_on: t.expires_on,
                    };
                    self.cache
                        .lock()
                        .expect("chain lock")
                        .insert(scope.to_string(), token.clone());
                    return Ok(token);
                }
                Err(e) => {
                    tracing::debug!(credential = %link.name, "no Azure AD token: {e}");
                    attempts.push((link.name.clone(), describe(&e)));
                }
            }
        }
        Err(ChainError { attempts })
    }

    fn cached(&self, scope: &str) -> Option<AadToken> {
        let cache = self.cache.lock().expect("chain lock");
        cache
            .get(scope)
            .filter(|t| OffsetDateTime::now_utc() < t.expires_on - RENEW_EARLY)
            .cloned()
    }
}

/// An azure_core error with its causes (the retry policy's message alone hides them).
fn describe(e: &azure_core::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let m = cause.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        source = cause.source();
    }
    out
}

/// Build one credential from the environment, or say why it cannot be used.
fn build(name: &str, t: &ReqwestTransport) -> Credential {
    let tenant = env("AZURE_TENANT_ID");
    let client_id = env("AZURE_CLIENT_ID");
    match name {
        WORKLOAD_IDENTITY => {
            let file = env("AZURE_FEDERATED_TOKEN_FILE")
                .ok_or_else(|| not_configured(&["AZURE_FEDERATED_TOKEN_FILE"]))?;
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                return Err(not_configured(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]));
            };
            let c = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(t),
                },
                client_id: Some(client_id),
                tenant_id: Some(tenant),
                token_file_path: Some(file.into()),
            }))
            .map_err(|e| e.to_string())?;
            Ok(c)
        }
        CLIENT_SECRET => {
            let secret = env("AZURE_CLIENT_SECRET")
                .ok_or_else(|| not_configured(&["AZURE_CLIENT_SECRET"]))?;
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                return Err(not_configured(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]));
            };
            let c = ClientSecretCredential::new(
                &tenant,
                client_id,
                secret.into(),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(t),
                }),
            )
            .map_err(|e| e.to_string())?;
            Ok(c)
        }
        MANAGED_IDENTITY => {
            let c = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                client_options: client_options(t),
            }))
            .map_err(|e| e.to_string())?;
            Ok(c)
        }
        _ => {
            let c = AzureCliCredential::new(None).map_err(|e| e.to_string())?;
            Ok(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::{AccessToken, TokenRequestOptions};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A credential that fails with a message, or yields a token valid for an hour.
    #[derive(Debug)]
    struct Fake {
        token: Option<&'static str>,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Fake {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            assert_eq!(scopes, &["scope/.default"]);
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.token {
                Some(t) => Ok(AccessToken::new(
                    t,
                    OffsetDateTime::now_utc() + time::Duration::hours(1),
                )),
                None => Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "the endpoint said no",
                )),
            }
        }
    }

    fn fake(token: Option<&'static str>) -> Arc<Fake> {
        Arc::new(Fake {
            token,
            calls: AtomicUsize::new(0),
        })
    }

    /// The chain's order and its error listing, composed from stand-in credentials (the
    /// real ones are exercised against local AAD-protocol servers in tests/integration/azure.rs).
    #[tokio::test]
    async fn first_credential_that_yields_wins_and_is_kept() {
        let failing = fake(None);
        let first = fake(Some("t1"));
        let second = fake(Some("t2"));
        let chain = Chain::new(vec![
            (
                WORKLOAD_IDENTITY.into(),
                Err(not_configured(&["AZURE_FEDERATED_TOKEN_FILE"])),
            ),
            (CLIENT_SECRET.into(), Ok(failing.clone() as Arc<_>)),
            (MANAGED_IDENTITY.into(), Ok(first.clone() as Arc<_>)),
            (AZURE_CLI.into(), Ok(second.clone() as Arc<_>)),
        ]);
        let t = chain.token("scope/.default").await.unwrap();
        assert_eq!(t.token.expose(), "t1");
        assert_eq!(format!("{t:?}").matches("t1").count(), 0, "Debug redacts");
        // Cached: nobody is asked again.
        chain.token("scope/.default").await.unwrap();
        assert_eq!(first.calls.load(Ordering::SeqCst), 1);
        assert_eq!(failing.calls.load(Ordering::SeqCst), 1);
        assert_eq!(second.calls.load(Ordering::SeqCst), 0);
        // Expired: the chosen credential is asked, not the chain from the start.
        chain
            .cache
            .lock()
            .unwrap()
            .get_mut("scope/.default")
            .unwrap()
            .expires_on = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        chain.token("scope/.default").await.unwrap();
        assert_eq!(first.calls.load(Ordering::SeqCst), 2);
        assert_eq!(failing.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn when_nothing_yields_every_attempt_is_listed_in_order() {
        let chain = Chain::new(vec![
            (
                WORKLOAD_IDENTITY.into(),
                Err(not_configured(&["AZURE_FEDERATED_TOKEN_FILE"])),
            ),
            (CLIENT_SECRET.into(), Ok(fake(None) as Arc<_>)),
            (MANAGED_IDENTITY.into(), Ok(fake(None) as Arc<_>)),
            (AZURE_CLI.into(), Err("az: not found".into())),
        ]);
        let e = chain.token("scope/.default").await.unwrap_err();
        let names: Vec<&str> = e.attempts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                WORKLOAD_IDENTITY,
                CLIENT_SECRET,
                MANAGED_IDENTITY,
                AZURE_CLI
            ]
        );
        let msg = e.to_string();
        assert!(
            msg.contains(
                "- WorkloadIdentityCredential: not configured (AZURE_FEDERATED_TOKEN_FILE not set)"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("- ClientSecretCredential: the endpoint said no"),
            "{msg}"
        );
        assert!(msg.contains("- AzureCliCredential: az: not found"), "{msg}");
        assert!(msg.contains("az login"), "{msg}");
    }
}
