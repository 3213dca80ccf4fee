//! The validated configuration: what the rest of airlock works from. Built only by
//! `config::lower`; every field here has already been checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::model::{Digest, Platform, Reference, Severity};

#[derive(Clone, Debug)]
pub struct DesiredState {
    /// The file this came from, for messages.
    pub file: PathBuf,
    /// Registry entries by their key (an alias such as `acr`, or a host such as `docker.io`).
    pub registries: BTreeMap<String, RegistrySpec>,
    pub quarantine: Area,
    pub live: Area,
    /// Delete undeclared live tags.
    pub prune: bool,
    pub gate: Gate,
    pub scanners: BTreeMap<String, ScannerSpec>,
    /// Declared images, sorted by live path and tag.
    pub images: Vec<ImageSpec>,
    pub admission: Admission,
    /// The Azure cloud of the Azure registry entries (`cloud = "…"`; one per configuration).
    pub azure_cloud: AzureCloud,
    /// Tracked repositories (`track = ">=1.33, <2"`), sorted by source; each run resolves
    /// them into images (`track::expand`).
    pub tracks: Vec<TrackSpec>,
    /// `[signing]`: how records are signed and verified.
    pub signing: crate::signing::Signing,
    /// Where each image is declared in `file`, for messages about one image.
    pub entries: Entries,
}

/// Where the `[[images]]` entries are: the line and column of each entry's `source` value.
#[derive(Clone, Debug, Default)]
pub struct Entries {
    /// Declared images, by image key.
    pub images: BTreeMap<String, (usize, usize)>,
    /// Tracked repositories (`track = …`), by source repository (`host/path`).
    pub tracks: BTreeMap<String, (usize, usize)>,
}

impl Entries {
    /// The entry that declares `spec` (its own, or the track entry it was resolved from).
    pub fn of(&self, spec: &ImageSpec) -> Option<(usize, usize)> {
        self.images
            .get(&spec.key())
            .or_else(|| self.tracks.get(&spec.source.repository()))
            .copied()
    }
}

/// `[admission]`: settings of the policies `airlock admission` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Namespaces the policies do not check (valid namespace names, sorted, no duplicates).
    pub exempt_namespaces: Vec<String>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            exempt_namespaces: vec!["kube-system".to_string()],
        }
    }
}

/// An Azure cloud: where its identity authority, Resource Manager (and Resource Graph) and
/// token audiences are. Environment variables override each value (see `crate::azure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AzureCloud {
    #[default]
    Public,
    China,
    UsGov,
}

impl AzureCloud {
    pub const NAMES: &'static str = "public, china, usgov";

    pub fn parse(s: &str) -> Option<AzureCloud> {
        match s {
            "public" => Some(AzureCloud::Public),
            "china" => Some(AzureCloud::China),
            "usgov" => Some(AzureCloud::UsGov),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AzureCloud::Public => "public",
            AzureCloud::China => "china",
            AzureCloud::UsGov => "usgov",
        }
    }

    /// Microsoft Entra ID's authority host.
    pub fn authority_host(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://login.microsoftonline.com",
            AzureCloud::China => "https://login.chinacloudapi.cn",
            AzureCloud::UsGov => "https://login.microsoftonline.us",
        }
    }

    /// Azure Resource Manager (importImage, pricings; Resource Graph is served here too).
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://management.azure.com",
            AzureCloud::China => "https://management.chinacloudapi.cn",
            AzureCloud::UsGov => "https://management.usgovcloudapi.net",
        }
    }

    /// The scope of ARM tokens.
    pub fn arm_scope(self) -> String {
        format!("{}/.default", self.arm_endpoint())
    }

    /// The DNS suffix of Key Vault hosts (`<vault>.<suffix>`, `azurekms://` keys).
    pub fn keyvault_suffix(self) -> &'static str {
        match self {
            AzureCloud::Public => "vault.azure.net",
            AzureCloud::China => "vault.azure.cn",
            AzureCloud::UsGov => "vault.usgovcloudapi.net",
        }
    }

    /// The scope of Key Vault tokens.
    pub fn keyvault_scope(self) -> String {
        format!("https://{}/.default", self.keyvault_suffix())
    }

    /// The scope of the Entra ID token exchanged for an ACR refresh token. The public cloud
    /// has ACR's own audience; sovereign clouds exchange an ARM token, as `az acr login`
    /// does in every cloud (ACR's exchange accepts both).
    pub fn acr_scope(self) -> String {
        match self {
            AzureCloud::Public => "https://containerregistry.azure.net/.default".to_string(),
            _ => self.arm_scope(),
        }
    }
}

/// A repository whose newest `keep` version tags matching `requirement` are declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSpec {
    /// `host/path`, no tag.
    pub source: Reference,
    pub source_registry: String,
    /// Source path without host.
    pub path: String,
    pub requirement: semver::VersionReq,
    /// The requirement as written.
    pub track: String,
    pub keep: usize,
    /// Pinned versions: tag → digest.
    pub pins: BTreeMap<String, Digest>,
    pub platforms: Option<Vec<Platform>>,
}

/// Where a registry is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySpec {
    /// The key: alias or host.
    pub key: String,
    pub endpoint: Endpoint,
    pub auth: AuthSpec,
    pub transfer: Transfer,
    pub max_concurrency: usize,
    /// Deadlines of every request to the registry (`timeout`, `stall_timeout`).
    pub timeouts: Timeouts,
    /// Where the registry is in Azure Resource Manager, when the entry says so
    /// (`subscription` + `resource_group`); needed by `acr-import` and the defender scanner.
    pub arm: Option<ArmResource>,
}

/// Deadlines of every request to an HTTP registry: a dead registry (killed, a port that
/// accepts and never answers, an answer that stalls mid-body) fails within `timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `timeout`: the overall deadline of one operation, every retry included, up to its
    /// response (for a blob download or upload: until its bytes start to flow; the body
    /// itself is bounded by `stall_timeout` only, so big blobs take what they take; once an
    /// upload body is sent, its answer must come within `timeout`).
    pub timeout: Duration,
    /// `stall_timeout`: the longest wait for a connection, for response headers, or for
    /// the next bytes of a body in either direction.
    pub stall_timeout: Duration,
}

impl Timeouts {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            timeout: Timeouts::DEFAULT_TIMEOUT,
            stall_timeout: Timeouts::DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// An Azure Container Registry as an ARM resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmResource {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    /// The longest wait for one importImage long-running operation.
    pub import_timeout: Duration,
}

impl ArmResource {
    /// `/subscriptions/…/resourceGroups/…/providers/Microsoft.ContainerRegistry/registries/…`.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://host[:port]` or an explicit `http://…`; no trailing slash.
    Url(String),
    /// An OCI image-layout directory root; each repository is `DIR/<repository path>`.
    Layout(PathBuf),
}

#[derive(Clone, PartialEq, Eq)]
pub enum AuthSpec {
    Anonymous,
    /// docker config.json and credential helpers (the default).
    Docker,
    Basic {
        username: String,
        password_env: String,
    },
    Azure,
}

impl std::fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthSpec::Anonymous => f.write_str("anonymous"),
            AuthSpec::Docker => f.write_str("docker"),
            AuthSpec::Basic {
                username,
                password_env,
            } => {
                write!(
                    f,
                    "basic(username={username}, password from ${password_env})"
                )
            }
            AuthSpec::Azure => f.write_str("azure"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Stream blobs through airlock (mount within one registry).
    Stream,
    /// ACR server-side importImage.
    AcrImport,
}

/// Quarantine or live: a registry key and a repository prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Area {
    pub registry: String,
    pub prefix: String,
}

impl Area {
    /// `prefix/path`.
    pub fn repository(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.prefix, path)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// Report a live image whose renewed verdict fails.
    Report,
    /// Also delete its live tag.
    Demote,
}

#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub scanners: Vec<String>,
    pub fail_on: Severity,
    #[serde(skip)]
    pub max_verdict_age: Duration,
    pub allow: Vec<Allow>,
    pub policy: Policy,
    pub on_fail: OnFail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Allow {
    pub id: String,
    /// Paths the exception is scoped to; empty = every image.
    pub images: Vec<String>,
    #[serde(serialize_with = "ser_date")]
    pub expires: time::Date,
    pub reason: String,
}

fn ser_date<S: serde::Serializer>(d: &time::Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

impl Allow {
    pub fn covers(&self, id: &str, path: &str) -> bool {
        self.id == id && (self.images.is_empty() || self.images.iter().any(|p| p == path))
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Policy {
    pub platforms: Vec<Platform>,
    pub forbid_root: bool,
    pub max_size: Option<u64>,
    pub required_labels: Vec<String>,
    /// Images whose config `created` is older than this fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerFormat {
    Trivy,
    Grype,
    Defender,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScannerSpec {
    pub name: String,
    /// Empty for `defender` (no command: results are read from Azure Resource Graph).
    pub command: Vec<String>,
    pub format: ScannerFormat,
    #[serde(skip)]
    pub timeout: Duration,
    /// Defender: how long a platform image may stay without results before the gate fails
    /// it (fail closed). Part of the policy hash; None for command scanners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<Duration>,
}

/// One declared image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub source: Reference,
    /// Registry key that serves the source host.
    pub source_registry: String,
    pub pin: Option<Digest>,
    pub platforms: Option<Vec<Platform>>,
    /// Source path without host: the path under quarantine and live prefixes.
    pub path: String,
    /// Tag used in quarantine and live.
    pub tag: String,
}

impl ImageSpec {
    /// `path:tag`: the image's key everywhere (plans, observations, reports).
    pub fn key(&self) -> String {
        format!("{}:{}", self.path, self.tag)
    }
}

impl DesiredState {
    pub fn registry(&self, key: &str) -> &RegistrySpec {
        self.registries
            .get(key)
            .unwrap_or_else(|| panic!("registry `{key}` was validated at load time"))
    }

    /// The policy hash: sha256 of the canonical JSON of everything that decides a verdict
    /// (scanners and their commands, fail_on, allow entries, policy checks).
    pub fn policy_hash(&self) -> Digest {
        let scanners: Vec<&ScannerSpec> = self
            .gate
            .scanners
            .iter()
            .filter_map(|n| self.scanners.get(n))
            .collect();
        let doc = serde_json::json!({
            "scanners": self.gate.scanners,
            "scanner_specs": scanners,
            "fail_on": self.gate.fail_on,
            "allow": self.gate.allow,
            "policy": self.gate.policy,
        });
        Digest::of(doc.to_string().as_bytes())
    }
}
