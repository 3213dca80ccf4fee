//! Lowering of `[registries.*]` entries: endpoint or layout, auth, transfer, concurrency,
//! timeouts and the ARM resource; and `Registries`, which finds the entry serving a host.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{Lowerer, parse_duration};
use crate::config::defaults::{DEFAULT_MAX_CONCURRENCY, default_endpoint, default_registry};
use crate::config::desired::*;
use crate::config::endpoint;
use crate::config::schema::RawRegistry;

const DEFAULT_IMPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The registry entries by key, and which keys serve a host (by their endpoint), kept in step
/// so that finding the entry for an image's host is a lookup, not a scan of every entry.
#[derive(Default)]
pub(super) struct Registries {
    pub(super) by_key: BTreeMap<String, RegistrySpec>,
    by_host: BTreeMap<String, BTreeSet<String>>,
}

impl Registries {
    pub(super) fn insert(&mut self, spec: RegistrySpec) {
        if let Endpoint::Url(u) = &spec.endpoint
            && let Some(host) = endpoint_host(u)
        {
            self.by_host
                .entry(host.to_string())
                .or_default()
                .insert(spec.key.clone());
        }
        self.by_key.insert(spec.key.clone(), spec);
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The registry key for an image source's `host` (see [`Registries::for_host`]); a host
    /// with no entry must make a valid default endpoint, else an error at `span`.
    pub(super) fn source_registry(
        &mut self,
        l: &mut Lowerer<'_>,
        span: Range<usize>,
        host: &str,
    ) -> Option<String> {
        if !self.serves(host)
            && let Err(e) = endpoint::check(&default_endpoint(host))
        {
            l.err(
                span,
                format!("the source host `{host}` is not a registry host: {}", e.message),
                Some("write the source with a host such as ghcr.io or localhost:5000, or an alias host defined in [registries]"),
            );
            return None;
        }
        Some(self.for_host(host))
    }

    /// Whether an entry serves `host` (named after it or with its endpoint).
    fn serves(&self, host: &str) -> bool {
        self.contains(host) || self.by_host.contains_key(host)
    }

    /// The registry key serving `host`: an entry named after it, else the first (by key) whose
    /// endpoint has that host, else a default entry added for it.
    fn for_host(&mut self, host: &str) -> String {
        if self.contains(host) {
            return host.to_string();
        }
        if let Some(k) = self.by_host.get(host).and_then(|keys| keys.first()) {
            return k.clone();
        }
        self.insert(default_registry(host));
        host.to_string()
    }
}

/// Whether a registry name is written as a host (has a dot or port, or is localhost).
pub(super) fn looks_like_host(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost"
}

/// The host part of an `http(s)://host[:port][/]` endpoint.
fn endpoint_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.trim_end_matches('/');
    (!host.is_empty() && !host.contains('/')).then_some(host)
}

pub(super) fn lower_registry(
    l: &mut Lowerer,
    key: &Spanned<String>,
    reg: &Spanned<RawRegistry>,
) -> Option<RegistrySpec> {
    let r = reg.get_ref();
    let name = key.get_ref();
    let errors_before = l.errors.len();
    let endpoint = match (&r.endpoint, &r.layout) {
        (Some(_), Some(layout)) => {
            l.err(
                layout.span(),
                format!("registry `{name}` has both endpoint and layout"),
                Some("keep one: endpoint = \"https://…\" for a registry, layout = \"DIR\" for an OCI layout directory"),
            );
            None
        }
        (Some(e), None) => {
            let url = e.get_ref().trim_end_matches('/').to_string();
            match endpoint::check(&url) {
                Ok(_) => Some(Endpoint::Url(url)),
                Err(bad) => {
                    l.err(
                        e.span(),
                        format!("invalid endpoint: {}", bad.message),
                        Some(bad.help),
                    );
                    if let (Some(secret), Some(last)) = (&bad.secret, l.errors.last_mut()) {
                        last.mask(secret);
                    }
                    None
                }
            }
        }
        (None, Some(layout)) => {
            let p = PathBuf::from(layout.get_ref());
            let p = if p.is_absolute() {
                p
            } else {
                l.base_dir.join(p)
            };
            Some(Endpoint::Layout(p))
        }
        (None, None) => {
            if looks_like_host(name) {
                match endpoint::check(&default_endpoint(name)) {
                    Ok(_) => Some(Endpoint::Url(default_endpoint(name))),
                    Err(bad) => {
                        l.err(
                            key.span(),
                            format!("registry `{name}` is not a host and has no endpoint: {}", bad.message),
                            Some("add endpoint = \"https://…\", or name the entry after a host such as \"myregistry.azurecr.io\""),
                        );
                        None
                    }
                }
            } else {
                l.err(
                    reg.span(),
                    format!("registry `{name}` needs an endpoint or a layout"),
                    Some("add endpoint = \"https://myregistry.azurecr.io\" or layout = \"registry-dir\""),
                );
                None
            }
        }
    };
    let auth = match r.auth.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
        None | Some(("docker", _)) => AuthSpec::Docker,
        Some(("anonymous", _)) => AuthSpec::Anonymous,
        Some(("azure", _)) => AuthSpec::Azure,
        Some(("basic", span)) => match (&r.username, &r.password_env) {
            (Some(u), Some(p)) => AuthSpec::Basic {
                username: u.get_ref().clone(),
                password_env: p.get_ref().clone(),
            },
            _ => {
                l.err(
                    span,
                    format!("registry `{name}` uses basic auth without username and password_env"),
                    Some("add username = \"…\" and password_env = \"NAME_OF_ENV_VAR\" (the password itself never goes in the file)"),
                );
                AuthSpec::Anonymous
            }
        },
        Some((other, span)) => {
            l.err(
                span,
                format!("unknown auth `{other}`"),
                Some("use one of: anonymous, docker, basic, azure"),
            );
            AuthSpec::Anonymous
        }
    };
    if !matches!(auth, AuthSpec::Basic { .. }) {
        for (field, v) in [("username", &r.username), ("password_env", &r.password_env)] {
            if let Some(v) = v {
                l.err(
                    v.span(),
                    format!("`{field}` is only used with auth = \"basic\""),
                    Some("set auth = \"basic\" or remove it"),
                );
            }
        }
    }
    let transfer = match r
        .transfer
        .as_ref()
        .map(|t| (t.get_ref().as_str(), t.span()))
    {
        None | Some(("stream", _)) => Transfer::Stream,
        Some(("acr-import", _)) => Transfer::AcrImport,
        Some((other, span)) => {
            l.err(
                span,
                format!("unknown transfer `{other}`"),
                Some("use \"stream\" (default) or \"acr-import\""),
            );
            Transfer::Stream
        }
    };
    let max_concurrency = match &r.max_concurrency {
        None => DEFAULT_MAX_CONCURRENCY,
        Some(m) if (1..=256).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => {
            l.err(
                m.span(),
                format!("max_concurrency {} is out of range", m.get_ref()),
                Some("use a number from 1 to 256"),
            );
            DEFAULT_MAX_CONCURRENCY
        }
    };
    let timeouts = lower_timeouts(l, r);
    let arm = lower_arm(l, name, r, endpoint.as_ref(), transfer);
    if l.errors.len() > errors_before {
        return None;
    }
    Some(RegistrySpec {
        key: name.clone(),
        endpoint: endpoint?,
        auth,
        transfer,
        max_concurrency,
        timeouts,
        arm,
    })
}

/// `timeout` and `stall_timeout`: durations, the stall no longer than the whole.
fn lower_timeouts(l: &mut Lowerer, r: &RawRegistry) -> Timeouts {
    let d = Timeouts::default();
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| parse_duration(l, t, "timeout"))
        .unwrap_or(d.timeout);
    let stall_timeout = match &r.stall_timeout {
        None => d.stall_timeout.min(timeout),
        Some(t) => match parse_duration(l, t, "stall_timeout") {
            Some(s) if s > timeout => {
                l.err(
                    t.span(),
                    format!(
                        "stall_timeout `{}` is longer than timeout ({})",
                        t.get_ref(),
                        humantime::format_duration(timeout)
                    ),
                    Some("make stall_timeout at most timeout"),
                );
                d.stall_timeout
            }
            Some(s) => s,
            None => d.stall_timeout,
        },
    };
    Timeouts {
        timeout,
        stall_timeout,
    }
}

/// `subscription`, `resource_group`, `resource_name`, `import_timeout`: the registry as an
/// ARM resource. `acr-import` needs it; the keys go together.
fn lower_arm(
    l: &mut Lowerer,
    name: &str,
    r: &RawRegistry,
    endpoint: Option<&Endpoint>,
    transfer: Transfer,
) -> Option<ArmResource> {
    let ids = [
        ("subscription", &r.subscription),
        ("resource_group", &r.resource_group),
        ("resource_name", &r.resource_name),
    ];
    for (field, v) in ids {
        if let Some(v) = v {
            let s = v.get_ref();
            let ok = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
            if !ok {
                l.err(
                    v.span(),
                    format!("`{s}` is not a valid Azure {field}"),
                    Some("use the plain name or id as `az acr show` prints it (letters, digits, - _ . ( ))"),
                );
            }
        }
    }
    let import_timeout = match &r.import_timeout {
        Some(t) => parse_duration(l, t, "import_timeout").unwrap_or(DEFAULT_IMPORT_TIMEOUT),
        None => DEFAULT_IMPORT_TIMEOUT,
    };
    let url = match endpoint {
        Some(Endpoint::Url(u)) => Some(u.as_str()),
        _ => None,
    };
    match (&r.subscription, &r.resource_group) {
        (Some(sub), Some(rg)) => {
            let Some(url) = url else {
                l.err(
                    sub.span(),
                    format!("registry `{name}` is a layout directory, not an Azure registry"),
                    Some("subscription and resource_group describe an Azure Container Registry endpoint"),
                );
                return None;
            };
            let host = endpoint_host(url).unwrap_or_default();
            let default_name = host
                .split(['.', ':'])
                .next()
                .unwrap_or_default()
                .to_string();
            let name = r
                .resource_name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or(default_name);
            Some(ArmResource {
                subscription: sub.get_ref().clone(),
                resource_group: rg.get_ref().clone(),
                name,
                import_timeout,
            })
        }
        (Some(only), None) | (None, Some(only)) => {
            l.err(
                only.span(),
                format!("registry `{name}` needs both subscription and resource_group"),
                Some("add the missing one: subscription = \"<subscription id>\", resource_group = \"<resource group>\""),
            );
            None
        }
        (None, None) => {
            if transfer == Transfer::AcrImport {
                let span = r.transfer.as_ref().map(|t| t.span()).unwrap_or(0..0);
                l.err(
                    span,
                    format!("registry `{name}` uses acr-import without subscription and resource_group"),
                    Some("ARM importImage needs the registry's resource: add subscription = \"<subscription id>\" and resource_group = \"<resource group>\" (resource_name defaults to the first label of the endpoint host)"),
                );
            } else if let Some(v) = &r.resource_name {
                l.err(
                    v.span(),
                    "`resource_name` is only used with subscription and resource_group",
                    Some("add subscription and resource_group, or remove it"),
                );
            }
            None
        }
    }
}
