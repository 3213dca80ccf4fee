//! The TOML schema, mirrored one to one in serde structs. Every table denies unknown keys;
//! values that need checking keep their span so `lower` can point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub registries: BTreeMap<S<String>, S<RawRegistry>>,
    pub quarantine: Option<S<RawArea>>,
    pub live: Option<S<RawLive>>,
    #[serde(default)]
    pub gate: RawGate,
    #[serde(default)]
    pub scanners: BTreeMap<S<String>, S<RawScanner>>,
    #[serde(default)]
    pub images: Vec<S<RawImage>>,
    #[serde(default)]
    pub admission: RawAdmission,
    #[serde(default)]
    pub signing: RawSigning,
}

/// `[signing]`: the key records are signed with and the public key they are verified with.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    /// `env://VAR` or `file://path`: a PKCS#8 PEM ECDSA P-256 private key.
    pub key: Option<S<String>>,
    /// A PEM public key file (relative to the configuration file).
    pub public_key: Option<S<String>>,
}

/// `[admission]`: what `airlock admission` policies leave alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    pub exempt_namespaces: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub endpoint: Option<S<String>>,
    pub layout: Option<S<String>>,
    pub auth: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub transfer: Option<S<String>>,
    pub max_concurrency: Option<S<i64>>,
    /// Azure: the subscription holding the registry (ARM importImage, Defender results).
    pub subscription: Option<S<String>>,
    pub resource_group: Option<S<String>>,
    /// The ACR resource name; defaults to the first label of the endpoint host.
    pub resource_name: Option<S<String>>,
    /// The longest wait for one ARM importImage operation (`transfer = "acr-import"`).
    pub import_timeout: Option<S<String>>,
    /// Azure: `public`, `china` or `usgov` (authority, Resource Manager, token scopes).
    pub cloud: Option<S<String>>,
    /// The overall deadline of one request, retries included (default 30s).
    pub timeout: Option<S<String>>,
    /// The longest wait for any progress of a request (default 10s).
    pub stall_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArea {
    pub registry: S<String>,
    pub prefix: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLive {
    pub registry: S<String>,
    pub prefix: Option<S<String>>,
    #[serde(default)]
    pub prune: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub scanners: Option<S<Vec<S<String>>>>,
    pub fail_on: Option<S<String>>,
    pub max_verdict_age: Option<S<String>>,
    pub on_fail: Option<S<String>>,
    #[serde(default)]
    pub allow: Vec<S<RawAllow>>,
    #[serde(default)]
    pub policy: RawPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    pub id: S<String>,
    pub images: Option<Vec<S<String>>>,
    /// A TOML date (`2027-01-31`) or a string holding one.
    pub expires: S<toml::Value>,
    pub reason: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub platforms: Vec<S<String>>,
    #[serde(default)]
    pub forbid_root: bool,
    pub max_size: Option<S<String>>,
    #[serde(default)]
    pub required_labels: Vec<S<String>>,
    pub max_age: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScanner {
    /// Required for trivy and grype; absent for defender (results are read from Azure).
    pub command: Option<S<Vec<String>>>,
    pub format: S<String>,
    pub timeout: Option<S<String>>,
    /// Defender: how long an image may stay unscanned before the gate fails it.
    pub max_pending: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub source: S<String>,
    pub digest: Option<S<String>>,
    pub platforms: Option<Vec<S<String>>>,
    /// Tag tracking: a semver requirement over the repository's version tags.
    pub track: Option<S<String>>,
    /// With `track`: how many of the newest matching versions are kept (default 1).
    pub keep: Option<S<i64>>,
    /// With `track`: pinned versions, tag → digest (written by `airlock pin`).
    pub pins: Option<S<BTreeMap<S<String>, S<String>>>>,
}
