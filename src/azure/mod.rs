//! Azure: what airlock needs from Azure beyond the registry protocol (cargo feature `azure`,
//! on by default).
//!
//! - `transport`: azure_core's `HttpClient` implemented on airlock's own reqwest client
//!   (rustls + ring), so azure_identity needs neither its default reqwest nor aws-lc-rs.
//! - `credential`: the Azure AD credential chain (workload identity, client secret, managed
//!   identity, Azure CLI) built from azure_identity, with a per-scope token cache.
//! - `arm`: Azure Resource Manager calls: `importImage` as a long-running operation
//!   (`transfer = "acr-import"`) and Resource Graph queries.
//! - `defender`: Microsoft Defender for Cloud vulnerability results for a digest, read from
//!   Resource Graph, as gate findings (`format = "defender"`).
//!
//! Endpoints are overridable for tests and sovereign clouds: `AIRLOCK_ARM_ENDPOINT` (ARM,
//! default `https://management.azure.com`) and azure_identity's `AZURE_AUTHORITY_HOST`.
//! Nothing here prints a token, a secret or a request body holding one.

pub mod arm;
pub mod credential;
pub mod defender;
pub mod transport;

/// The scope of ACR data-plane tokens (exchanged at `/oauth2/exchange`).
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// The scope of Azure Resource Manager tokens (importImage, Resource Graph).
pub fn arm_scope() -> String {
    std::env::var("AIRLOCK_ARM_SCOPE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://management.azure.com/.default".to_string())
}

/// The ARM base URL: `AIRLOCK_ARM_ENDPOINT`, else the public cloud's.
pub fn arm_endpoint() -> String {
    std::env::var("AIRLOCK_ARM_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://management.azure.com".to_string())
        .trim_end_matches('/')
        .to_string()
}
