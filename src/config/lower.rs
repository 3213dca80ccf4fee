//! Lowering: the raw serde structs become a validated `DesiredState`. Every check that can
//! be made without a registry is made here, and every error points at the value it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::defaults::{DEFAULT_MAX_CONCURRENCY, default_endpoint, default_registry};
use super::desired::*;
use super::endpoint;
use super::error::{ConfigError, LineIndex};
use super::schema::*;
use crate::model::finding_id;
use crate::model::reference::valid_path;
use crate::model::size::parse_size;
use crate::model::{Digest, Platform, Reference, Severity};
use crate::signing::{KeyRef, KmsKey, Signing, Verifier};

mod track;

const DEFAULT_SCANNER_TIMEOUT: Duration = Duration::from_secs(600);
/// Defender scans an image within hours of its push; a day without results fails closed.
const DEFAULT_DEFENDER_MAX_PENDING: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_VERDICT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_IMPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Lowerer<'a> {
    file: &'a Path,
    source: &'a str,
    /// Line starts of `source`, so that each error is located in O(log n), not O(n).
    lines: LineIndex,
    base_dir: PathBuf,
    today: time::Date,
    errors: Vec<ConfigError>,
}

impl Lowerer<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<&str>) {
        self.errors.push(ConfigError::at_indexed(
            self.file,
            self.source,
            &self.lines,
            Some(span),
            message,
            help.map(str::to_string),
        ));
    }
}

/// The registry entries by key, and which keys serve a host (by their endpoint), kept in step
/// so that finding the entry for an image's host is a lookup, not a scan of every entry.
#[derive(Default)]
pub(super) struct Registries {
    by_key: BTreeMap<String, RegistrySpec>,
    by_host: BTreeMap<String, BTreeSet<String>>,
}

impl Registries {
    fn insert(&mut self, spec: RegistrySpec) {
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

    fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The registry key for an image source's `host` (see [`Registries::for_host`]); a host
    /// with no entry must make a valid default endpoint, else an error at `span`.
    fn source_registry(
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
fn looks_like_host(s: &str) -> bool {
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

pub fn lower(
    raw: RawConfig,
    file: &Path,
    source: &str,
    today: time::Date,
) -> Result<DesiredState, Vec<ConfigError>> {
    let base_dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut l = Lowerer {
        file,
        source,
        lines: LineIndex::new(source),
        base_dir,
        today,
        errors: Vec::new(),
    };

    let mut registries = Registries::default();
    for (key, reg) in &raw.registries {
        if let Some(spec) = lower_registry(&mut l, key, reg) {
            registries.insert(spec);
        }
    }

    let mut resolve_area_registry = |l: &mut Lowerer, name: &Spanned<String>| -> String {
        let n = name.get_ref();
        if !registries.contains(n) {
            if looks_like_host(n) {
                match endpoint::check(&default_endpoint(n)) {
                    Ok(_) => registries.insert(default_registry(n)),
                    Err(e) => l.err(
                        name.span(),
                        format!("`{n}` is not a registry host: {}", e.message),
                        Some("write an alias defined in [registries], or a host such as `myregistry.azurecr.io` or `localhost:5000`"),
                    ),
                }
            } else {
                let known: Vec<&str> = raw
                    .registries
                    .keys()
                    .map(|k| k.get_ref().as_str())
                    .collect();
                l.err(
                    name.span(),
                    format!("unknown registry alias `{n}`"),
                    Some(&if known.is_empty() {
                        format!("define it as [registries.{n}] with an endpoint, or write a host such as `myregistry.azurecr.io`")
                    } else {
                        format!("use one of: {} — or define [registries.{n}]", known.join(", "))
                    }),
                );
            }
        }
        n.clone()
    };

    let file_span = 0..0;
    let quarantine = match &raw.quarantine {
        Some(q) => {
            let registry = resolve_area_registry(&mut l, &q.get_ref().registry);
            let prefix = lower_prefix(&mut l, q.get_ref().prefix.as_ref(), "quarantine");
            Area { registry, prefix }
        }
        None => {
            l.err(
                file_span.clone(),
                "missing [quarantine] table",
                Some("add [quarantine] with registry = \"<alias or host>\" and prefix = \"quarantine\""),
            );
            Area {
                registry: String::new(),
                prefix: String::new(),
            }
        }
    };
    let (live, prune) = match &raw.live {
        Some(lv) => {
            let registry = resolve_area_registry(&mut l, &lv.get_ref().registry);
            let prefix = lower_prefix(&mut l, lv.get_ref().prefix.as_ref(), "live");
            (Area { registry, prefix }, lv.get_ref().prune)
        }
        None => {
            l.err(
                file_span,
                "missing [live] table",
                Some("add [live] with registry = \"<alias or host>\" and prefix = \"live\""),
            );
            (
                Area {
                    registry: String::new(),
                    prefix: String::new(),
                },
                false,
            )
        }
    };
    if let Some(lv) = &raw.live
        && !quarantine.registry.is_empty()
        && quarantine == live
    {
        l.err(
            lv.span(),
            "quarantine and live are the same registry and prefix",
            Some("give live its own prefix (e.g. prefix = \"live\") or registry"),
        );
    }

    let scanners = lower_scanners(&mut l, &raw.scanners);
    let gate = lower_gate(&mut l, &raw.gate, &scanners);

    let mut images: Vec<ImageSpec> = Vec::new();
    // Image key -> byte offset of the first entry declaring it (its line is only needed for
    // an error).
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut tracks: Vec<TrackSpec> = Vec::new();
    let mut entries = Entries::default();
    for img in &raw.images {
        if img.get_ref().track.is_some() {
            if let Some(t) = track::lower_track(&mut l, img, &mut registries, &tracks) {
                let at = l
                    .lines
                    .line_col(l.source, img.get_ref().source.span().start);
                entries.tracks.insert(t.source.repository(), at);
                tracks.push(t);
            }
            continue;
        }
        track::check_untracked(&mut l, img);
        let Some(spec) = lower_image(&mut l, img, &mut registries) else {
            continue;
        };
        let key = spec.key();
        if let Some(&offset) = seen.get(&key) {
            let first = l.lines.line(offset);
            l.err(
                img.get_ref().source.span(),
                format!(
                    "two images map to the same live tag `{}`",
                    live.repository(&key)
                ),
                Some(&format!(
                    "the [[images]] entry at line {first} already declares it; remove one of them"
                )),
            );
            continue;
        }
        seen.insert(key.clone(), img.span().start);
        let at = l
            .lines
            .line_col(l.source, img.get_ref().source.span().start);
        entries.images.insert(key, at);
        images.push(spec);
    }
    images.sort_by_cached_key(|i| i.key());
    let registries = registries.by_key;
    tracks.sort_by_key(|t| t.source.repository());
    check_azure_uses(&mut l, &raw, &registries, &quarantine, &gate);
    if !cfg!(feature = "azure") {
        for (span, key) in azure_keys(&raw) {
            l.err(
                span,
                format!("{key} needs Azure support: this airlock was built without Azure support"),
                Some("build airlock with the `azure` cargo feature (on by default), or remove the key"),
            );
        }
    }
    let admission = lower_admission(&mut l, &raw.admission);
    let azure_cloud = lower_cloud(&mut l, &raw);
    let signing = lower_signing(&mut l, &raw.signing, azure_cloud);

    if !l.errors.is_empty() {
        return Err(l.errors);
    }
    Ok(DesiredState {
        file: file.to_path_buf(),
        registries,
        quarantine,
        live,
        prune,
        gate,
        scanners,
        images,
        admission,
        azure_cloud,
        tracks,
        signing,
        entries,
    })
}

/// `[signing]`: the key reference must parse (the key itself is read when apply signs, so
/// plan and audit run without it); a public key file is read and parsed now, an
/// `azurekms://` public key only checked (it is read from Key Vault by the commands that
/// verify). `azurekms://` names a key of the configured cloud's Key Vault, and needs a build
/// with the `azure` feature.
fn lower_signing(l: &mut Lowerer, raw: &RawSigning, cloud: AzureCloud) -> Signing {
    let kv_suffix = cfg!(feature = "azure").then(|| cloud.keyvault_suffix());
    let mut out = Signing::default();
    if let Some(k) = &raw.key {
        match KeyRef::parse(k.get_ref(), &l.base_dir, kv_suffix) {
            Ok(r) => out.key = Some(r),
            Err(e) => l.err(
                k.span(),
                e.to_string(),
                Some(
                    "e.g. key = \"env://AIRLOCK_SIGNING_KEY\", key = \"file://airlock.key\" or key = \"azurekms://<vault>.vault.azure.net/<key>\"",
                ),
            ),
        }
    }
    if let Some(p) = &raw.public_key {
        let value = p.get_ref();
        if value.starts_with(crate::signing::kms::SCHEME) {
            let parsed = match kv_suffix {
                None => Err("azurekms:// needs Azure Key Vault, and this airlock was built without the `azure` feature".to_string()),
                Some(suffix) => KmsKey::parse(value, suffix),
            };
            match parsed {
                Ok(k) => out.public_key_kms = Some(k),
                Err(e) => l.err(
                    p.span(),
                    format!("public_key {value:?}: {e}"),
                    Some("public_key = \"azurekms://<vault>.vault.azure.net/<key>\" (the key `key` names)"),
                ),
            }
            return out;
        }
        let path = l.base_dir.join(value);
        match Verifier::load(&path) {
            Ok(v) => out.public_key = Some(std::sync::Arc::new(v)),
            Err(e) => l.err(
                p.span(),
                e.to_string(),
                Some("a PEM `PUBLIC KEY` file: openssl pkey -in airlock.key -pubout -out airlock.pub"),
            ),
        }
    }
    out
}

/// `[admission]`: every exempt namespace must be a valid namespace name (a DNS-1123 label).
fn lower_admission(l: &mut Lowerer, raw: &RawAdmission) -> Admission {
    let Some(list) = &raw.exempt_namespaces else {
        return Admission::default();
    };
    let mut names: Vec<String> = Vec::new();
    for n in list {
        let v = n.get_ref();
        if !valid_namespace(v) {
            l.err(
                n.span(),
                format!("`{v}` is not a valid namespace name"),
                Some("use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit), e.g. \"kube-system\""),
            );
            continue;
        }
        names.push(v.clone());
    }
    names.sort();
    names.dedup();
    Admission {
        exempt_namespaces: names,
    }
}

/// A Kubernetes namespace name: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'-')
}

/// `cloud` on Azure registry entries (`auth = "azure"` or with a subscription): one of
/// public, china, usgov, the same on every entry that sets it (airlock runs as one Azure
/// identity, in one cloud).
fn lower_cloud(l: &mut Lowerer, raw: &RawConfig) -> AzureCloud {
    let mut chosen: Option<(AzureCloud, String)> = None;
    for (name, r) in &raw.registries {
        let r = r.get_ref();
        let Some(c) = &r.cloud else {
            continue;
        };
        let Some(cloud) = AzureCloud::parse(c.get_ref()) else {
            l.err(
                c.span(),
                format!("unknown Azure cloud `{}`", c.get_ref()),
                Some(&format!("use one of: {}", AzureCloud::NAMES)),
            );
            continue;
        };
        let azure =
            r.auth.as_ref().is_some_and(|a| a.get_ref() == "azure") || r.subscription.is_some();
        if !azure {
            l.err(
                c.span(),
                format!(
                    "`cloud` is only used by Azure registries, and `{}` is not one",
                    name.get_ref()
                ),
                Some("add auth = \"azure\" (or subscription and resource_group), or remove cloud"),
            );
            continue;
        }
        match &chosen {
            Some((first, first_name)) if *first != cloud => l.err(
                c.span(),
                format!(
                    "registry `{}` is in the {} cloud but `{first_name}` is in the {} cloud",
                    name.get_ref(),
                    cloud.name(),
                    first.name()
                ),
                Some("airlock runs as one Azure identity in one cloud: use the same cloud on every Azure registry"),
            ),
            Some(_) => {}
            None => chosen = Some((cloud, name.get_ref().clone())),
        }
    }
    chosen.map(|(c, _)| c).unwrap_or_default()
}

/// The values that use Azure (src/azure), in file order: `auth = "azure"`,
/// `transfer = "acr-import"`, `format = "defender"`, and the Azure-only registry keys
/// (`subscription`, `resource_group`, `resource_name`, `import_timeout`, `cloud`). A build
/// without the `azure` feature rejects each at its place.
pub(super) fn azure_keys(raw: &RawConfig) -> Vec<(Range<usize>, String)> {
    let mut out: Vec<(Range<usize>, String)> = Vec::new();
    for (key, reg) in &raw.registries {
        let r = reg.get_ref();
        let name = key.get_ref();
        let mut push = |v: &Spanned<String>, what: String| out.push((v.span(), what));
        if let Some(a) = r.auth.as_ref().filter(|a| a.get_ref() == "azure") {
            push(a, format!("registry `{name}`: auth = \"azure\""));
        }
        if let Some(t) = r.transfer.as_ref().filter(|t| t.get_ref() == "acr-import") {
            push(t, format!("registry `{name}`: transfer = \"acr-import\""));
        }
        for (field, v) in [
            ("subscription", &r.subscription),
            ("resource_group", &r.resource_group),
            ("resource_name", &r.resource_name),
            ("import_timeout", &r.import_timeout),
            ("cloud", &r.cloud),
        ] {
            if let Some(v) = v {
                push(v, format!("registry `{name}`: {field}"));
            }
        }
    }
    for (name, sc) in &raw.scanners {
        let f = &sc.get_ref().format;
        if f.get_ref() == "defender" {
            out.push((
                f.span(),
                format!("scanner `{}`: format = \"defender\"", name.get_ref()),
            ));
        }
    }
    out.sort_by_key(|(span, _)| span.start);
    out
}

/// What Azure features need from the entries they use: the defender scanner reads results
/// for the quarantine registry (its ARM resource must be known); ARM importImage copies whole
/// images (no platform subsets).
fn check_azure_uses(
    l: &mut Lowerer,
    raw: &RawConfig,
    registries: &BTreeMap<String, RegistrySpec>,
    quarantine: &Area,
    gate: &Gate,
) {
    let Some(q) = registries.get(&quarantine.registry) else {
        return;
    };
    for (name, s) in &raw.scanners {
        if s.get_ref().format.get_ref() == "defender"
            && gate.scanners.contains(name.get_ref())
            && q.arm.is_none()
        {
            l.err(
                s.get_ref().format.span(),
                format!(
                    "scanner `{}` reads Defender results for registry `{}`, which has no subscription",
                    name.get_ref(),
                    q.key
                ),
                Some("add subscription = \"…\" and resource_group = \"…\" to the quarantine registry's entry"),
            );
        }
    }
    if q.transfer == Transfer::AcrImport {
        for img in &raw.images {
            if let Some(p) = &img.get_ref().platforms
                && !p.is_empty()
            {
                l.err(
                    p[0].span(),
                    "platforms cannot be selected with transfer = \"acr-import\"",
                    Some("ARM importImage copies whole images: remove platforms, or use transfer = \"stream\" on the quarantine registry"),
                );
            }
        }
    }
}

fn lower_prefix(l: &mut Lowerer, prefix: Option<&Spanned<String>>, default: &str) -> String {
    match prefix {
        None => default.to_string(),
        Some(p) => {
            let v = p.get_ref().trim_matches('/');
            if !v.is_empty() && !valid_path(v) {
                l.err(
                    p.span(),
                    format!("`{}` is not a valid repository prefix", p.get_ref()),
                    Some("use lowercase path components such as \"quarantine\" or \"team/live\""),
                );
            }
            v.to_string()
        }
    }
}

fn lower_registry(
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

fn parse_duration(l: &mut Lowerer, v: &Spanned<String>, what: &str) -> Option<Duration> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        _ => {
            l.err(
                v.span(),
                format!("invalid {what} `{}`", v.get_ref()),
                Some("write a duration such as \"7d\", \"12h\" or \"30m\""),
            );
            None
        }
    }
}

fn lower_scanners(
    l: &mut Lowerer,
    raw: &BTreeMap<Spanned<String>, Spanned<RawScanner>>,
) -> BTreeMap<String, ScannerSpec> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let r = s.get_ref();
        if name.get_ref() == "policy" {
            l.err(
                name.span(),
                "`policy` is the built-in scanner and cannot be redefined",
                Some("give the external scanner another name, e.g. [scanners.trivy]"),
            );
            continue;
        }
        let format = match r.format.get_ref().as_str() {
            "trivy" => ScannerFormat::Trivy,
            "grype" => ScannerFormat::Grype,
            "defender" => ScannerFormat::Defender,
            other => {
                l.err(
                    r.format.span(),
                    format!("unknown scanner format `{other}`"),
                    Some("use one of: trivy, grype, defender"),
                );
                continue;
            }
        };
        match (&format, &r.command) {
            (ScannerFormat::Defender, Some(c)) => l.err(
                c.span(),
                format!("scanner `{}` (defender) takes no command", name.get_ref()),
                Some("Defender for Cloud scans images in the registry itself; airlock reads its results from Azure Resource Graph: remove command"),
            ),
            (ScannerFormat::Defender, None) => {}
            (_, Some(c)) if !c.get_ref().is_empty() && !c.get_ref()[0].trim().is_empty() => {}
            (_, c) => l.err(
                c.as_ref().map(|c| c.span()).unwrap_or(s.span()),
                format!("scanner `{}` has an empty command", name.get_ref()),
                Some("e.g. command = [\"trivy\", \"image\", \"--quiet\", \"--format\", \"json\", \"{ref}\"]"),
            ),
        }
        let timeout = match &r.timeout {
            Some(t) => parse_duration(l, t, "timeout").unwrap_or(DEFAULT_SCANNER_TIMEOUT),
            None => DEFAULT_SCANNER_TIMEOUT,
        };
        // How long Defender may leave an image unscanned before the gate fails it.
        let max_pending = match (&format, &r.max_pending) {
            (ScannerFormat::Defender, Some(t)) => {
                Some(parse_duration(l, t, "max_pending").unwrap_or(DEFAULT_DEFENDER_MAX_PENDING))
            }
            (ScannerFormat::Defender, None) => Some(DEFAULT_DEFENDER_MAX_PENDING),
            (_, Some(t)) => {
                l.err(
                    t.span(),
                    format!(
                        "`max_pending` is only used by the defender scanner (scanner `{}` runs a command)",
                        name.get_ref()
                    ),
                    Some("remove max_pending, or use it on a scanner with format = \"defender\""),
                );
                None
            }
            (_, None) => None,
        };
        out.insert(
            name.get_ref().clone(),
            ScannerSpec {
                name: name.get_ref().clone(),
                command: r
                    .command
                    .as_ref()
                    .map(|c| c.get_ref().clone())
                    .unwrap_or_default(),
                format,
                timeout,
                max_pending,
            },
        );
    }
    out
}

fn lower_gate(l: &mut Lowerer, g: &RawGate, scanners: &BTreeMap<String, ScannerSpec>) -> Gate {
    let names: Vec<String> = match &g.scanners {
        None => vec!["policy".to_string()],
        Some(list) if list.get_ref().is_empty() => {
            l.err(
                list.span(),
                "scanners is empty: with no checks every image would pass the gate",
                Some("list at least one scanner, e.g. scanners = [\"policy\"] (the built-in checks) or [\"policy\", \"trivy\"]; remove the key for the default [\"policy\"]"),
            );
            Vec::new()
        }
        Some(list) => {
            let mut v = Vec::new();
            for s in list.get_ref() {
                let n = s.get_ref();
                if n != "policy" && !scanners.contains_key(n) {
                    let mut known = vec!["policy".to_string()];
                    known.extend(scanners.keys().cloned());
                    l.err(
                        s.span(),
                        format!("unknown scanner `{n}`"),
                        Some(&format!(
                            "use one of: {} — or define [scanners.{n}] with command and format",
                            known.join(", ")
                        )),
                    );
                } else if !v.contains(n) {
                    v.push(n.clone());
                }
            }
            v
        }
    };
    let fail_on = match &g.fail_on {
        None => Severity::High,
        Some(f) => {
            f.get_ref()
                .parse()
                .unwrap_or_else(|e: crate::model::severity::SeverityError| {
                    l.err(f.span(), e.to_string(), Some("e.g. fail_on = \"high\""));
                    Severity::High
                })
        }
    };
    let max_verdict_age = match &g.max_verdict_age {
        None => DEFAULT_MAX_VERDICT_AGE,
        Some(a) => parse_duration(l, a, "max_verdict_age").unwrap_or(DEFAULT_MAX_VERDICT_AGE),
    };
    let on_fail = match g.on_fail.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
        None | Some(("report", _)) => OnFail::Report,
        Some(("demote", _)) => OnFail::Demote,
        Some((other, span)) => {
            l.err(
                span,
                format!("unknown on_fail `{other}`"),
                Some("use \"report\" (default) or \"demote\" (delete the live tag of an image whose renewed verdict fails)"),
            );
            OnFail::Report
        }
    };
    let mut allow = Vec::new();
    for a in &g.allow {
        let r = a.get_ref();
        let id = r.id.get_ref();
        if id.trim().is_empty() {
            l.err(
                r.id.span(),
                "an allow entry needs a finding id",
                Some("e.g. id = \"CVE-2021-42378\""),
            );
        } else if id.trim().eq_ignore_ascii_case(finding_id::SCANNER_FAILED) {
            l.err(
                r.id.span(),
                format!("`{id}` can never be allowed: a scanner that could not report blocks the image (the gate fails closed)"),
                Some("fix the scanner (the verdict says why it failed), or remove it from gate.scanners; then remove this entry"),
            );
        } else if finding_id::is_airlock(id) && !finding_id::ALLOWABLE.contains(&id.as_str()) {
            let close = finding_id::ALLOWABLE
                .iter()
                .find(|k| k.eq_ignore_ascii_case(id.trim()));
            l.err(
                r.id.span(),
                format!("`{id}` is not a finding airlock reports, so this entry would never apply"),
                Some(&match close {
                    Some(k) => format!("ids are case-sensitive: write `{k}`"),
                    None => format!(
                        "the built-in ids an entry may name are: {}",
                        finding_id::ALLOWABLE.join(", ")
                    ),
                }),
            );
        }
        if r.reason.get_ref().trim().is_empty() {
            l.err(
                r.reason.span(),
                "an allow entry needs a reason",
                Some("say why the finding is acceptable; reviewers read it"),
            );
        }
        let mut images = Vec::new();
        for p in r.images.iter().flatten() {
            let path = p.get_ref().trim_matches('/');
            let normalised = if path.contains('/') {
                path.to_string()
            } else {
                format!("library/{path}")
            };
            if !valid_path(&normalised) {
                l.err(
                    p.span(),
                    format!("`{}` is not an image path", p.get_ref()),
                    Some("write the source path without host or tag, e.g. \"library/busybox\""),
                );
            }
            images.push(normalised);
        }
        let expires = match parse_date(r.expires.get_ref()) {
            Some(d) => d,
            None => {
                l.err(
                    r.expires.span(),
                    "invalid expires date",
                    Some("write a date as YYYY-MM-DD, e.g. expires = \"2027-01-31\""),
                );
                continue;
            }
        };
        if expires < l.today {
            l.err(
                r.expires.span(),
                format!(
                    "the allow entry for `{}` expired on {expires}",
                    r.id.get_ref()
                ),
                Some("an expired exception no longer applies: remove the entry, or extend expires after a new review"),
            );
        }
        allow.push(Allow {
            id: r.id.get_ref().clone(),
            images,
            expires,
            reason: r.reason.get_ref().clone(),
        });
    }
    let p = &g.policy;
    let mut platforms = Vec::new();
    for s in &p.platforms {
        match s.get_ref().parse::<Platform>() {
            Ok(pl) => platforms.push(pl),
            Err(e) => l.err(s.span(), e.to_string(), None),
        }
    }
    let max_size = p
        .max_size
        .as_ref()
        .and_then(|s| match parse_size(s.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                l.err(s.span(), e.to_string(), None);
                None
            }
        });
    let max_age_days = p
        .max_age
        .as_ref()
        .and_then(|a| parse_duration(l, a, "max_age"))
        .map(|d| d.as_secs().div_ceil(86400));
    Gate {
        scanners: names,
        fail_on,
        max_verdict_age,
        allow,
        policy: Policy {
            platforms,
            forbid_root: p.forbid_root,
            max_size,
            required_labels: p
                .required_labels
                .iter()
                .map(|s| s.get_ref().clone())
                .collect(),
            max_age_days,
        },
        on_fail,
    }
}

fn parse_date(v: &toml::Value) -> Option<time::Date> {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        _ => return None,
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt).ok()
}

fn lower_image(
    l: &mut Lowerer,
    img: &Spanned<RawImage>,
    registries: &mut Registries,
) -> Option<ImageSpec> {
    let r = img.get_ref();
    let source: Reference = match r.source.get_ref().parse() {
        Ok(s) => s,
        Err(e) => {
            l.err(
                r.source.span(),
                e.to_string(),
                Some("write host/path:tag, e.g. \"ghcr.io/fluxcd/kustomize-controller:v0.6.3\" or \"docker.io/library/busybox:1.33.0\""),
            );
            return None;
        }
    };
    let Some(tag) = source.tag.clone() else {
        l.err(
            r.source.span(),
            format!("image `{}` has no tag", r.source.get_ref()),
            Some("live tags are named after the source tag: add one (pin content with digest = \"sha256:…\")"),
        );
        return None;
    };
    let mut pin = source.digest.clone();
    if let Some(d) = &r.digest {
        match d.get_ref().parse::<Digest>() {
            Ok(dd) => {
                if let Some(p) = &pin
                    && p != &dd
                {
                    l.err(
                        d.span(),
                        "digest differs from the digest in source",
                        Some(
                            "keep one pin: either source = \"…@sha256:…\" or digest = \"sha256:…\"",
                        ),
                    );
                }
                pin = Some(dd);
            }
            Err(e) => {
                l.err(
                    d.span(),
                    format!("the pin is not a digest: {e}"),
                    Some("pin with digest = \"sha256:<64 hex>\" (see `skopeo inspect --raw`)"),
                );
                return None;
            }
        }
    }
    let platforms = match &r.platforms {
        None => None,
        Some(list) if list.is_empty() => {
            l.err(
                img.span(),
                "platforms is empty",
                Some("remove it to keep every platform, or list some, e.g. [\"linux/amd64\"]"),
            );
            None
        }
        Some(list) => {
            let mut v = Vec::new();
            for s in list {
                match s.get_ref().parse::<Platform>() {
                    Ok(p) => v.push(p),
                    Err(e) => l.err(s.span(), e.to_string(), None),
                }
            }
            v.sort();
            v.dedup();
            Some(v)
        }
    };
    let source_registry = registries.source_registry(l, r.source.span(), &source.host)?;
    Some(ImageSpec {
        path: source.path.clone(),
        tag,
        source_registry,
        pin,
        platforms,
        source,
    })
}
