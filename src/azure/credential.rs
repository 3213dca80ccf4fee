//! The Azure AD credential chain. azure_identity 1.x has no DefaultAzureCredential, so the
//! chain is composed here, in the usual order:
//!
//! 1. `AzurePipelinesCredential` (azure_identity's): in Azure Pipelines, a service
//!    connection's OIDC token asked for from `SYSTEM_OIDCREQUESTURI` each time Entra ID needs
//!    an assertion. Needs `SYSTEM_ACCESSTOKEN` (map `$(System.AccessToken)` into the step),
//!    `AZURESUBSCRIPTION_SERVICE_CONNECTION_ID`, and the service principal's
//!    `AZURESUBSCRIPTION_CLIENT_ID` / `AZURESUBSCRIPTION_TENANT_ID` (the AzureCLI@2 task sets
//!    these three) or `AZURE_CLIENT_ID` / `AZURE_TENANT_ID`;
//! 2. `GitHubActionsCredential`: in GitHub Actions (`permissions: id-token: write`), a fresh
//!    OIDC token from `ACTIONS_ID_TOKEN_REQUEST_URL` (with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`,
//!    audience `api://AzureADTokenExchange`) each time Entra ID needs an assertion (+
//!    AZURE_CLIENT_ID, AZURE_TENANT_ID). GitHub's tokens live five minutes: a token written
//!    to a file once would be stale for any renewal after that;
//! 3. `WorkloadIdentityCredential`: AZURE_FEDERATED_TOKEN_FILE (+ AZURE_CLIENT_ID,
//!    AZURE_TENANT_ID) — AKS workload identity (the kubelet keeps the file fresh);
//! 4. `ClientSecretCredential`: AZURE_CLIENT_SECRET (+ AZURE_CLIENT_ID, AZURE_TENANT_ID);
//! 5. `ManagedIdentityCredential`: App Service style IDENTITY_ENDPOINT + IDENTITY_HEADER, else
//!    the VM metadata endpoint (user-assigned when AZURE_CLIENT_ID is set);
//! 6. `AzureCliCredential`: `az account get-access-token` after `az login`.
//!
//! The first that yields a token wins and is used from then on. When none does, the error
//! names each one tried and why it failed. `AZURE_TOKEN_CREDENTIALS` narrows the chain as in
//! other Azure SDKs: `prod` (1–5), `dev` (6) or one credential's name.
//! Tokens are cached per scope and renewed five minutes before they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use azure_core::credentials::TokenCredential;
use azure_identity::{
    AzureCliCredential, AzurePipelinesCredential, AzurePipelinesCredentialOptions, ClientAssertion,
    ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use time::OffsetDateTime;

use super::transport::{ReqwestTransport, client_options};
use crate::secret::Secret;

/// Renew a cached token this long before it expires.
const RENEW_EARLY: time::Duration = time::Duration::minutes(5);

pub const AZURE_PIPELINES: &str = "AzurePipelinesCredential";
pub const GITHUB_ACTIONS: &str = "GitHubActionsCredential";
pub const WORKLOAD_IDENTITY: &str = "WorkloadIdentityCredential";

/// Every credential of the chain, in order.
const ALL: [&str; 6] = [
    AZURE_PIPELINES,
    GITHUB_ACTIONS,
    WORKLOAD_IDENTITY,
    CLIENT_SECRET,
    MANAGED_IDENTITY,
    AZURE_CLI,
];

/// The audience Entra ID expects of a federated (OIDC) assertion.
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";
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
            "\n  (in Azure Pipelines map SYSTEM_ACCESSTOKEN into an AzureCLI@2 step; in GitHub \
             Actions grant `id-token: write` and set AZURE_CLIENT_ID and AZURE_TENANT_ID; \
             elsewhere set AZURE_CLIENT_ID and AZURE_TENANT_ID with AZURE_FEDERATED_TOKEN_FILE \
             or AZURE_CLIENT_SECRET, run on Azure with a managed identity, or run `az login`)"
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

    /// The chain the environment describes (see the module docs), for `cloud`'s Entra ID.
    pub fn from_env(cloud: crate::config::AzureCloud) -> Chain {
        let transport = match ReqwestTransport::new() {
            Ok(t) => t,
            Err(e) => {
                let why = format!("cannot build an HTTP client: {e}");
                return Chain::new(
                    ALL.iter()
                        .map(|n| (n.to_string(), Err(why.clone())))
                        .collect(),
                );
            }
        };
        let selected: Vec<&str> = match env("AZURE_TOKEN_CREDENTIALS").as_deref() {
            None => ALL.to_vec(),
            Some(v) if v.eq_ignore_ascii_case("prod") => ALL[..5].to_vec(),
            Some(v) if v.eq_ignore_ascii_case("dev") => vec![AZURE_CLI],
            Some(v) => match ALL.into_iter().find(|n| n.eq_ignore_ascii_case(v)) {
                Some(n) => vec![n],
                None => {
                    return Chain::new(vec![(
                        "AZURE_TOKEN_CREDENTIALS".into(),
                        Err(format!(
                            "`{v}` is not one of: prod, dev, {}",
                            ALL.join(", ")
                        )),
                    )]);
                }
            },
        };
        let links = selected
            .into_iter()
            .map(|name| (name.to_string(), build(name, &transport, cloud)))
            .collect();
        Chain::new(links)
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

/// GitHub Actions' OIDC provider as a client assertion: each call asks
/// `ACTIONS_ID_TOKEN_REQUEST_URL` (`&audience=api://AzureADTokenExchange`, bearer
/// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`) for a new token, so an assertion is never older than
/// the Entra ID request it is sent with. `Debug` shows neither the URL's query nor the
/// request token.
pub struct GitHubOidc {
    url: reqwest::Url,
    request_token: Secret,
    client: reqwest::Client,
}

impl fmt::Debug for GitHubOidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubOidc")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl GitHubOidc {
    /// From `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    pub fn from_env(t: &ReqwestTransport) -> Result<GitHubOidc, String> {
        let (Some(url), Some(token)) = (
            env("ACTIONS_ID_TOKEN_REQUEST_URL"),
            env("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) else {
            return Err(not_configured(&[
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN (give the job `permissions: id-token: write`)",
            ]));
        };
        GitHubOidc::new(&url, Secret::new(token), t.client().clone())
    }

    pub fn new(
        url: &str,
        request_token: Secret,
        client: reqwest::Client,
    ) -> Result<GitHubOidc, String> {
        let mut url = reqwest::Url::parse(url)
            .map_err(|e| format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}"))?;
        url.query_pairs_mut()
            .append_pair("audience", FEDERATION_AUDIENCE);
        Ok(GitHubOidc {
            url,
            request_token,
            client,
        })
    }

    /// A fresh OIDC token.
    pub async fn fetch(&self) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Answer {
            value: String,
        }
        let resp = self
            .client
            .get(self.url.clone())
            .bearer_auth(self.request_token.expose())
            .header("accept", "application/json")
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach ACTIONS_ID_TOKEN_REQUEST_URL: {}",
                    crate::registry::error::redact_url(e)
                )
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "ACTIONS_ID_TOKEN_REQUEST_URL answered {status} (does the job have `permissions: id-token: write`?)"
            ));
        }
        let a: Answer = resp
            .json()
            .await
            .map_err(|e| format!("ACTIONS_ID_TOKEN_REQUEST_URL answered without a token: {e}"))?;
        if a.value.is_empty() {
            return Err("ACTIONS_ID_TOKEN_REQUEST_URL answered an empty token".into());
        }
        Ok(a.value)
    }
}

#[async_trait::async_trait]
impl ClientAssertion for GitHubOidc {
    async fn secret(
        &self,
        _: Option<azure_core::http::ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        self.fetch().await.map_err(|m| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, m)
        })
    }
}

/// Build one credential from the environment, or say why it cannot be used.
fn build(name: &str, t: &ReqwestTransport, cloud: crate::config::AzureCloud) -> Credential {
    let tenant = env("AZURE_TENANT_ID");
    let client_id = env("AZURE_CLIENT_ID");
    match name {
        AZURE_PIPELINES => {
            let oidc = env("SYSTEM_OIDCREQUESTURI");
            let connection = env("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID");
            let access = env("SYSTEM_ACCESSTOKEN");
            let tenant = env("AZURESUBSCRIPTION_TENANT_ID").or(tenant);
            let client_id = env("AZURESUBSCRIPTION_CLIENT_ID").or(client_id);
            let missing: Vec<&str> = [
                ("SYSTEM_OIDCREQUESTURI", oidc.is_some()),
                (
                    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
                    connection.is_some(),
                ),
                ("SYSTEM_ACCESSTOKEN", access.is_some()),
                (
                    "AZURESUBSCRIPTION_TENANT_ID or AZURE_TENANT_ID",
                    tenant.is_some(),
                ),
                (
                    "AZURESUBSCRIPTION_CLIENT_ID or AZURE_CLIENT_ID",
                    client_id.is_some(),
                ),
            ]
            .into_iter()
            .filter(|(_, set)| !set)
            .map(|(n, _)| n)
            .collect();
            let (Some(_), Some(connection), Some(access), Some(tenant), Some(client_id)) =
                (oidc, connection, access, tenant, client_id)
            else {
                return Err(not_configured(&missing));
            };
            let c = AzurePipelinesCredential::new(
                tenant,
                client_id,
                &connection,
                access,
                Some(AzurePipelinesCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(t, cloud),
                    },
                }),
            )
            .map_err(|e| e.to_string())?;
            Ok(c)
        }
        GITHUB_ACTIONS => {
            let oidc = GitHubOidc::from_env(t)?;
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                return Err(not_configured(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]));
            };
            let c = ClientAssertionCredential::new(
                tenant,
                client_id,
                oidc,
                Some(ClientAssertionCredentialOptions {
                    client_options: client_options(t, cloud),
                }),
            )
            .map_err(|e| e.to_string())?;
            Ok(c)
        }
        WORKLOAD_IDENTITY => {
            let file = env("AZURE_FEDERATED_TOKEN_FILE")
                .ok_or_else(|| not_configured(&["AZURE_FEDERATED_TOKEN_FILE"]))?;
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                return Err(not_configured(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]));
            };
            let c = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(t, cloud),
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
                    client_options: client_options(t, cloud),
                }),
            )
            .map_err(|e| e.to_string())?;
            Ok(c)
        }
        MANAGED_IDENTITY => {
            let c = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                client_options: client_options(t, cloud),
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

    /// A local GitHub-style OIDC endpoint: each GET answers a new assertion that lives
    /// `ttl` seconds (`exp` in its claims); the requests are counted and must carry the
    /// request token and the federation audience.
    async fn oidc_endpoint(ttl: u64) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/oidc?api-version=2.0",
            listener.local_addr().unwrap()
        );
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let ok = req.contains("audience=api%3a%2f%2fazureadtokenexchange")
                    && req.contains("authorization: bearer request-token");
                let k = c.fetch_add(1, Ordering::SeqCst);
                let exp = OffsetDateTime::now_utc().unix_timestamp() as u64 + ttl;
                let b64 = |v: &str| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
                };
                let jwt = format!(
                    "{}.{}.sig",
                    b64("{}"),
                    b64(&format!("{{\"exp\":{exp},\"n\":{k}}}"))
                );
                let (status, body) = if ok {
                    ("200 OK", format!("{{\"count\":1,\"value\":\"{jwt}\"}}"))
                } else {
                    ("401 Unauthorized", "{}".to_string())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        (url, count)
    }

    /// Entra ID's token endpoint, at the transport: it refuses an assertion past its `exp`
    /// (AADSTS700024, as Entra ID does) and issues access tokens that live one second, so
    /// every token request needs a new assertion.
    #[derive(Debug, Default)]
    struct EntraStandIn {
        requests: AtomicUsize,
        refused: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl azure_core::http::HttpClient for EntraStandIn {
        async fn execute_request(
            &self,
            request: &azure_core::http::Request,
        ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
            use azure_core::http::{AsyncRawResponse, Body, headers::Headers};
            use base64::Engine as _;
            self.requests.fetch_add(1, Ordering::SeqCst);
            assert!(request.url().path().ends_with("/oauth2/v2.0/token"));
            let Body::Bytes(body) = request.body() else {
                panic!("form body")
            };
            let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
            let exp = form["client_assertion"]
                .split('.')
                .nth(1)
                .and_then(|p| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(p)
                        .ok()
                })
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|c| c["exp"].as_i64())
                .unwrap();
            let (status, body) = if exp <= OffsetDateTime::now_utc().unix_timestamp() {
                self.refused.fetch_add(1, Ordering::SeqCst);
                (400u16, r#"{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range."}"#.to_string())
            } else {
                (200, r#"{"token_type":"Bearer","expires_in":1,"ext_expires_in":1,"access_token":"aad-token"}"#.to_string())
            };
            Ok(AsyncRawResponse::from_bytes(
                status.into(),
                Headers::new(),
                bytes::Bytes::from(body),
            ))
        }
    }

    /// GitHub Actions: an "apply" that needs Entra ID tokens over a span longer than the
    /// assertions live (one-second assertions here, five minutes on GitHub) gets each one
    /// with a fresh assertion from the OIDC endpoint; Entra ID never sees a stale one.
    /// The control: one assertion fetched once (a token file written by hand) is refused
    /// once it has expired.
    #[tokio::test]
    async fn github_assertions_are_fetched_fresh_for_every_token() {
        use azure_core::http::{ClientOptions, Transport};
        let (url, oidc_requests) = oidc_endpoint(1).await;
        let transport = ReqwestTransport::new().unwrap();
        let entra = Arc::new(EntraStandIn::default());
        let options = || ClientAssertionCredentialOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(entra.clone())),
                ..ClientOptions::default()
            },
        };
        let oidc = GitHubOidc::new(
            &url,
            Secret::new("request-token"),
            transport.client().clone(),
        )
        .unwrap();
        assert!(!format!("{oidc:?}").contains("request-token"));
        let cred = ClientAssertionCredential::new(
            "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            "11111111-2222-3333-4444-555555555555".into(),
            oidc,
            Some(options()),
        )
        .unwrap();
        let chain = Chain::new(vec![(
            GITHUB_ACTIONS.into(),
            Ok(cred as Arc<dyn TokenCredential>),
        )]);
        for _ in 0..3 {
            chain.token("scope/.default").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        }
        assert_eq!(oidc_requests.load(Ordering::SeqCst), 3);
        assert_eq!(entra.requests.load(Ordering::SeqCst), 3);
        assert_eq!(entra.refused.load(Ordering::SeqCst), 0);

        /// An assertion read once, as a token file written by hand would be.
        #[derive(Debug)]
        struct Once(String);
        #[async_trait::async_trait]
        impl ClientAssertion for Once {
            async fn secret(
                &self,
                _: Option<azure_core::http::ClientMethodOptions<'_>>,
            ) -> azure_core::Result<String> {
                Ok(self.0.clone())
            }
        }
        let once = GitHubOidc::new(
            &url,
            Secret::new("request-token"),
            transport.client().clone(),
        )
        .unwrap()
        .fetch()
        .await
        .unwrap();
        let stale = ClientAssertionCredential::new(
            "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            "11111111-2222-3333-4444-555555555555".into(),
            Once(once),
            Some(options()),
        )
        .unwrap();
        stale.get_token(&["scope/.default"], None).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let e = stale
            .get_token(&["scope/.default"], None)
            .await
            .unwrap_err();
        assert!(describe(&e).contains("AADSTS700024"), "{e}");
    }

    /// The pipeline credentials say which variables they miss.
    #[test]
    fn pipeline_credentials_name_what_is_missing() {
        let t = ReqwestTransport::new().unwrap();
        // The test environment is no pipeline.
        let e = build(AZURE_PIPELINES, &t, Default::default()).expect_err("not configured");
        assert!(
            e.contains("SYSTEM_OIDCREQUESTURI") || e.contains("SYSTEM_ACCESSTOKEN"),
            "{e}"
        );
        let e = build(GITHUB_ACTIONS, &t, Default::default()).expect_err("not configured");
        assert!(e.contains("ACTIONS_ID_TOKEN_REQUEST_URL"), "{e}");
    }
}
