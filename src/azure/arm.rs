//! Azure Resource Manager calls: `importImage` on a registry (a long-running operation) and
//! Resource Graph queries. Bearer tokens come from a `TokenSource` (the credential chain with
//! the ARM scope in production). Throttling (429) and gateway errors are retried honouring
//! `Retry-After`; an operation is polled through `Azure-AsyncOperation` (status
//! InProgress / Succeeded / Failed / Canceled) or else `Location` (202 until done), each wait
//! honouring `Retry-After`, until it ends or `timeout` passes. Request bodies may hold source
//! registry credentials: they are never logged, and errors quote only ARM's code and message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};

use super::transport::ReqwestTransport;
use crate::config::ArmResource;
use crate::registry::RegistryError;
use crate::registry::retry::parse_retry_after;
use crate::secret::Secret;

pub const IMPORT_API_VERSION: &str = "2025-04-01";
pub const RESOURCE_GRAPH_API_VERSION: &str = "2024-04-01";

/// Attempts for one ARM request throttled or failing with a gateway error.
const MAX_ATTEMPTS: usize = 8;

/// Where ARM bearer tokens come from.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self) -> Result<Secret, RegistryError>;
}

/// A credential chain asked for one scope (the ARM scope in production).
pub struct ChainTokens {
    chain: Arc<super::credential::Chain>,
    scope: String,
}

impl ChainTokens {
    pub fn new(chain: Arc<super::credential::Chain>, scope: &str) -> ChainTokens {
        ChainTokens {
            chain,
            scope: scope.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl TokenSource for ChainTokens {
    async fn token(&self) -> Result<Secret, RegistryError> {
        self.chain
            .token(&self.scope)
            .await
            .map(|t| t.token)
            .map_err(|e| RegistryError::Credentials {
                registry: "Azure Resource Manager".into(),
                message: e.to_string(),
            })
    }
}

/// A fixed token (tests).
pub struct StaticToken(pub Secret);

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Secret, RegistryError> {
        Ok(self.0.clone())
    }
}

/// Where an imported image comes from.
#[derive(Clone)]
pub enum ImportSource {
    /// Another registry by host (`docker.io`, `ghcr.io`), with credentials when it needs them.
    Registry {
        uri: String,
        image: String,
        credentials: Option<(String, Secret)>,
    },
    /// An ACR by ARM resource id (the same registry for quarantine → live).
    Resource { id: String, image: String },
}

impl std::fmt::Debug for ImportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportSource::Registry {
                uri,
                image,
                credentials,
            } => f
                .debug_struct("Registry")
                .field("uri", uri)
                .field("image", image)
                .field(
                    "credentials",
                    &credentials.as_ref().map(|(u, _)| format!("{u}:***")),
                )
                .finish(),
            ImportSource::Resource { id, image } => f
                .debug_struct("Resource")
                .field("id", id)
                .field("image", image)
                .finish(),
        }
    }
}

impl ImportSource {
    fn image(&self) -> &str {
        match self {
            ImportSource::Registry { image, .. } | ImportSource::Resource { image, .. } => image,
        }
    }
}

/// One importImage call.
#[derive(Clone, Debug)]
pub struct Import {
    pub source: ImportSource,
    /// `repository:tag` in the target registry.
    pub target_tags: Vec<String>,
    /// Mode Force (replace an existing tag) rather than NoForce.
    pub force: bool,
}

impl Import {
    /// The request body (holds the source password, if any: never log it).
    fn body(&self) -> Value {
        let source = match &self.source {
            ImportSource::Registry {
                uri,
                image,
                credentials,
            } => {
                let mut s = json!({"registryUri": uri, "sourceImage": image});
                if let Some((u, p)) = credentials {
                    s["credentials"] = json!({"username": u, "password": p.expose()});
                }
                s
            }
            ImportSource::Resource { id, image } => json!({"resourceId": id, "sourceImage": image}),
        };
        json!({
            "source": source,
            "targetTags": self.target_tags,
            "mode": if self.force { "Force" } else { "NoForce" },
        })
    }
}

/// An ARM client.
pub struct Arm {
    base: String,
    client: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    /// The wait between polls when ARM gives no `Retry-After`.
    pub poll_interval: Duration,
    /// The longest single wait (a `Retry-After` is capped to this).
    pub max_wait: Duration,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ArmErrorBody {
    error: Option<ArmErrorDetail>,
}

#[derive(Deserialize)]
struct ArmErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct AsyncOperation {
    status: String,
    error: Option<ArmErrorDetail>,
}

impl Arm {
    pub fn new(base: &str, tokens: Arc<dyn TokenSource>) -> Result<Arm, RegistryError> {
        let t = ReqwestTransport::new().map_err(|e| RegistryError::Transport {
            registry: "Azure Resource Manager".into(),
            what: "set up the ARM client".into(),
            source: e,
        })?;
        Ok(Arm {
            base: base.trim_end_matches('/').to_string(),
            client: t.client().clone(),
            tokens,
            poll_interval: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Run `importImage` on `target` and wait for it to finish, at most `timeout`.
    /// `key` names the registry in errors.
    pub async fn import_image(
        &self,
        key: &str,
        target: &ArmResource,
        import: &Import,
        timeout: Duration,
    ) -> Result<(), RegistryError> {
        let what = format!(
            "import {} as {} (ARM importImage)",
            import.source.image(),
            import.target_tags.join(", ")
        );
        let deadline = Instant::now() + timeout;
        let url = format!(
            "{}{}/importImage?api-version={IMPORT_API_VERSION}",
            self.base,
            target.id()
        );
        let body = import.body();
        tracing::info!(registry = key, source = ?import.source, tags = ?import.target_tags, force = import.force, "ARM importImage");
        let resp = self
            .send(key, &what, deadline, timeout, || {
                self.client.post(&url).json(&body)
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::OK || status == StatusCode::CREATED {
            return Ok(());
        }
        if status != StatusCode::ACCEPTED {
            return Err(api_error(key, &what, resp).await);
        }
        let headers = resp.headers().clone();
        let op = header(&headers, "azure-asyncoperation");
        let location = header(&headers, LOCATION.as_str());
        let mut wait = self.wait_for(&headers);
        match (op, location) {
            (Some(op), _) => loop {
                self.sleep_until(key, &what, deadline, timeout, wait)
                    .await?;
                let resp = self
                    .send(key, &what, deadline, timeout, || self.client.get(&op))
                    .await?;
                if !resp.status().is_success() {
                    return Err(api_error(key, &what, resp).await);
                }
                wait = self.wait_for(resp.headers());
                let status_code = resp.status().as_u16();
                let body: AsyncOperation = resp.json().await.map_err(|e| {
                    RegistryError::invalid(key, &what, format!("bad operation status: {e}"))
                })?;
                match body.status.as_str() {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" => {
                        let (code, message) = match body.error {
                            Some(d) => (d.code, d.message),
                            None => (None, None),
                        };
                        return Err(RegistryError::Api {
                            registry: key.to_string(),
                            what,
                            status: status_code,
                            code: code.unwrap_or_else(|| body.status.clone()),
                            message: format!(
                                "the operation {}: {}",
                                body.status.to_lowercase(),
                                message.unwrap_or_else(|| "no message".into())
                            ),
                            retry_after: None,
                        });
                    }
                    other => tracing::debug!(registry = key, status = other, "import in progress"),
                }
            },
            (None, Some(loc)) => loop {
                self.sleep_until(key, &what, deadline, timeout, wait)
                    .await?;
                let resp = self
                    .send(key, &what, deadline, timeout, || self.client.get(&loc))
                    .await?;
                match resp.status() {
                    StatusCode::ACCEPTED => wait = self.wait_for(resp.headers()),
                    s if s.is_success() => return Ok(()),
                    _ => return Err(api_error(key, &what, resp).await),
                }
            },
            (None, None) => Err(RegistryError::invalid(
                key,
                &what,
                "ARM answered 202 without Azure-AsyncOperation or Location to follow",
            )),
        }
    }

    /// POST a Resource Graph query; the parsed answer.
    pub async fn resource_graph(&self, key: &str, body: &Value) -> Result<Value, RegistryError> {
        let what = "query Azure Resource Graph";
        let url = format!(
            "{}/providers/Microsoft.ResourceGraph/resources?api-version={RESOURCE_GRAPH_API_VERSION}",
            self.base
        );
        let timeout = Duration::from_secs(120);
        let deadline = Instant::now() + timeout;
        let resp = self
            .send(key, what, deadline, timeout, || {
                self.client.post(&url).json(body)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(api_error(key, what, resp).await);
        }
        resp.json()
            .await
            .map_err(|e| RegistryError::invalid(key, what, format!("bad answer: {e}")))
    }

    /// GET an ARM resource (`path` from the ARM base, with its api-version); None when ARM
    /// answers 404.
    pub async fn get(
        &self,
        key: &str,
        what: &str,
        path: &str,
    ) -> Result<Option<Value>, RegistryError> {
        let url = format!("{}{path}", self.base);
        let timeout = Duration::from_secs(60);
        let deadline = Instant::now() + timeout;
        let resp = self
            .send(key, what, deadline, timeout, || self.client.get(&url))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(api_error(key, what, resp).await);
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| RegistryError::invalid(key, what, format!("bad answer: {e}")))
    }

    /// Send with a bearer token; retry 429 and gateway errors (honouring `Retry-After`)
    /// while attempts and time remain. Other answers are returned as they are.
    async fn send(
        &self,
        key: &str,
        what: &str,
        deadline: Instant,
        timeout: Duration,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.tokens.token().await?;
            let sent = build().bearer_auth(token.expose()).send().await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if attempt < MAX_ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    let d = backoff(attempt);
                    tracing::warn!("{what}: {e}; retrying in {:.1}s", d.as_secs_f64());
                    self.sleep_until(key, what, deadline, timeout, d).await?;
                    continue;
                }
                Err(e) => {
                    return Err(RegistryError::Transport {
                        registry: key.to_string(),
                        what: what.to_string(),
                        source: crate::registry::error::redact_url(e),
                    });
                }
            };
            let s = resp.status().as_u16();
            if matches!(s, 429 | 502 | 503 | 504) && attempt < MAX_ATTEMPTS {
                let d = header(resp.headers(), RETRY_AFTER.as_str())
                    .and_then(|v| parse_retry_after(&v))
                    .unwrap_or_else(|| backoff(attempt))
                    .min(self.max_wait);
                tracing::warn!(
                    "{what}: ARM answered {s}; retrying in {:.1}s",
                    d.as_secs_f64()
                );
                self.sleep_until(key, what, deadline, timeout, d).await?;
                continue;
            }
            return Ok(resp);
        }
    }

    fn wait_for(&self, headers: &HeaderMap) -> Duration {
        header(headers, RETRY_AFTER.as_str())
            .and_then(|v| parse_retry_after(&v))
            .unwrap_or(self.poll_interval)
            .min(self.max_wait)
    }

    /// Sleep `d`, or fail when that would pass the deadline.
    async fn sleep_until(
        &self,
        key: &str,
        what: &str,
        deadline: Instant,
        timeout: Duration,
        d: Duration,
    ) -> Result<(), RegistryError> {
        let now = Instant::now();
        if now >= deadline || deadline - now < d {
            // Sleep what is left, then give up: the operation may still finish in Azure.
            tokio::time::sleep(deadline.saturating_duration_since(now)).await;
            return Err(RegistryError::Invalid {
                registry: key.to_string(),
                what: what.to_string(),
                message: format!(
                    "the operation did not finish within {} (import_timeout); it may still \
                     complete in Azure: run plan again to see where it stands",
                    humantime::format_duration(timeout)
                ),
            });
        }
        tokio::time::sleep(d).await;
        Ok(())
    }
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(500u64 << attempt.min(6)).min(Duration::from_secs(30))
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An ARM error answer as a `RegistryError::Api` with ARM's own code and message.
async fn api_error(key: &str, what: &str, resp: reqwest::Response) -> RegistryError {
    let status = resp.status();
    let retry_after =
        header(resp.headers(), RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v));
    let body = resp.bytes().await.unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ArmErrorBody>(&body) {
        Ok(ArmErrorBody { error: Some(d) }) => (d.code, d.message),
        _ => (None, None),
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return RegistryError::Unauthorized {
            registry: key.to_string(),
            what: what.to_string(),
            code: Some(format!("{} {}", status.as_u16(), code.unwrap_or_default())),
            hint: format!(
                "{}the identity needs Microsoft.ContainerRegistry/registries/importImage/action on \
                 the target registry (e.g. Contributor), and Reader for Resource Graph",
                message.map(|m| format!("{m}. ")).unwrap_or_default()
            ),
        };
    }
    RegistryError::Api {
        registry: key.to_string(),
        what: what.to_string(),
        status: status.as_u16(),
        code: code.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
        message: message.unwrap_or_default(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_bodies_follow_the_documented_shape() {
        let i = Import {
            source: ImportSource::Registry {
                uri: "docker.io".into(),
                image: "library/busybox@sha256:abc".into(),
                credentials: Some(("bot".into(), Secret::new("s3cret"))),
            },
            target_tags: vec!["quarantine/library/busybox:1.33.0".into()],
            force: false,
        };
        assert_eq!(
            i.body(),
            json!({
                "source": {"registryUri": "docker.io", "sourceImage": "library/busybox@sha256:abc",
                           "credentials": {"username": "bot", "password": "s3cret"}},
                "targetTags": ["quarantine/library/busybox:1.33.0"],
                "mode": "NoForce"
            })
        );
        assert!(!format!("{i:?}").contains("s3cret"), "Debug redacts");
        let p = Import {
            source: ImportSource::Resource {
                id: "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r".into(),
                image: "quarantine/x@sha256:abc".into(),
            },
            target_tags: vec!["live/x:1".into()],
            force: true,
        };
        assert_eq!(p.body()["mode"], "Force");
        assert_eq!(p.body()["source"]["sourceImage"], "quarantine/x@sha256:abc");
        assert!(p.body()["source"]["resourceId"].is_string());
    }
}
