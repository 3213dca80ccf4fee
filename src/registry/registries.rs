//! The registries of a configuration by key: each built on first use and shared, so token
//! caches and connection pools are reused; a host without an entry gets a default one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::{ClientOptions, Registry, RegistryError, auth};
use crate::config::{DesiredState, Endpoint, RegistrySpec};

/// The registries of a configuration, built on demand and shared per key so token caches
/// and connection pools are reused. Hosts without an entry get `https://<host>` (Docker
/// Hub: `https://registry-1.docker.io`) with `auth = "docker"`.
pub struct Registries {
    specs: BTreeMap<String, RegistrySpec>,
    opts: ClientOptions,
    built: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Registries {
    /// Cancel open upload sessions on every registry used so far.
    pub async fn abort_open_uploads(&self) -> usize {
        let regs: Vec<Arc<Registry>> = self
            .built
            .lock()
            .expect("registries lock")
            .values()
            .cloned()
            .collect();
        let mut n = 0;
        for r in regs {
            n += r.abort_open_uploads().await;
        }
        n
    }
}

impl Registries {
    /// One line per registry used so far that retried requests (see
    /// [`Registry::retry_summary`]), by registry key.
    pub fn retry_summaries(&self) -> Vec<String> {
        // Also called on drop: never panic here.
        let Ok(built) = self.built.lock() else {
            return Vec::new();
        };
        let mut by_key: BTreeMap<&str, &Arc<Registry>> = BTreeMap::new();
        for r in built.values() {
            by_key.insert(r.key(), r);
        }
        by_key.values().filter_map(|r| r.retry_summary()).collect()
    }
}

/// The end of a command's registries: their retries, summarised once per registry (the
/// first retry of each was a warning as it happened).
impl Drop for Registries {
    fn drop(&mut self) {
        for line in self.retry_summaries() {
            tracing::warn!("{line}");
        }
    }
}

impl fmt::Debug for Registries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registries")
            .field("specs", &self.specs.keys())
            .finish_non_exhaustive()
    }
}

impl Registries {
    pub fn new(specs: &BTreeMap<String, RegistrySpec>) -> Registries {
        Registries::with_options(specs, ClientOptions::default())
    }

    pub fn with_options(specs: &BTreeMap<String, RegistrySpec>, opts: ClientOptions) -> Registries {
        Registries {
            specs: specs.clone(),
            opts,
            built: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_desired(desired: &DesiredState) -> Registries {
        Registries::new(&desired.registries)
    }

    /// The registries of `desired`, with `identity` for `auth = "azure"` entries.
    pub fn with_identity(
        desired: &DesiredState,
        identity: Option<Arc<dyn auth::IdentitySource>>,
    ) -> Registries {
        Registries::with_options(
            &desired.registries,
            ClientOptions {
                identity,
                ..ClientOptions::default()
            },
        )
    }

    /// The entry for `key`, or the on-demand default for a host without one.
    pub fn spec(&self, key: &str) -> Result<RegistrySpec, RegistryError> {
        if let Some(s) = self.specs.get(key) {
            return Ok(s.clone());
        }
        if let Some(s) = self
            .specs
            .values()
            .find(|s| endpoint_host(&s.endpoint).as_deref() == Some(key))
        {
            return Ok(s.clone());
        }
        default_spec(key)
    }

    /// The shared registry for a key (alias or host).
    pub fn get(&self, key: &str) -> Result<Arc<Registry>, RegistryError> {
        let mut built = self.built.lock().expect("registries lock");
        if let Some(r) = built.get(key) {
            return Ok(r.clone());
        }
        let spec = self.spec(key)?;
        let r = match built.get(&spec.key) {
            Some(r) => r.clone(),
            None => Arc::new(Registry::from_spec_with(&spec, &self.opts)?),
        };
        built.insert(spec.key.clone(), r.clone());
        built.insert(key.to_string(), r.clone());
        Ok(r)
    }
}

fn endpoint_host(e: &Endpoint) -> Option<String> {
    let Endpoint::Url(u) = e else { return None };
    let url = reqwest::Url::parse(u).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// A host without an entry: [`crate::config::default_registry`], once the key is a host name.
fn default_spec(host: &str) -> Result<RegistrySpec, RegistryError> {
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(RegistryError::invalid(
            host,
            "find the registry",
            "no [registries] entry has this key and it is not a host name",
        ));
    }
    Ok(crate::config::default_registry(host))
}
