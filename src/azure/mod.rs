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
//! - `keyvault`: Azure Key Vault keys (`azurekms://`) that sign airlock's records.
//!
//! All of it hangs off one [`Azure`] context built by `commands` per command: no
//! process-global state.
//!
//! The cloud (`cloud = "public" | "china" | "usgov"` on an Azure registry entry, see
//! `config::AzureCloud`) sets the authority host, the Resource Manager endpoint (which also
//! serves Resource Graph and the Defender plans) and the token scopes together. Environment
//! variables override each: `AZURE_AUTHORITY_HOST` (azure_identity's), `AIRLOCK_ARM_ENDPOINT`,
//! `AIRLOCK_ARM_SCOPE`, `AIRLOCK_ACR_SCOPE` (tests and clouds not listed), and, for tests only,
//! `AIRLOCK_KEYVAULT_ENDPOINT` (every Key Vault request to a local stand-in).
//! Nothing here prints a token, a secret or a request body holding one.

pub mod acr;
pub mod arm;
pub mod credential;
pub mod defender;
pub mod keyvault;
pub mod transport;

use std::sync::Arc;

use crate::config::AzureCloud;
use crate::registry::RegistryError;
use arm::{Arm, ChainTokens};
use credential::Chain;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// The cloud's endpoints and token scopes, environment overrides applied (read once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub cloud: AzureCloud,
    /// The scope of the Entra ID token exchanged for an ACR refresh token
    /// (`/oauth2/exchange`): `AIRLOCK_ACR_SCOPE`, else the cloud's.
    pub acr_scope: String,
    /// The scope of Azure Resource Manager tokens (importImage, Resource Graph, pricings):
    /// `AIRLOCK_ARM_SCOPE`, else the cloud's.
    pub arm_scope: String,
    /// The ARM base URL: `AIRLOCK_ARM_ENDPOINT`, else the cloud's.
    pub arm_endpoint: String,
    /// Tests only: `AIRLOCK_KEYVAULT_ENDPOINT` sends every Key Vault request to this base URL
    /// instead of `https://<vault>.<suffix>` (a local stand-in; see `keyvault`).
    pub keyvault_endpoint: Option<String>,
}

impl Endpoints {
    /// The cloud's, with the environment's overrides.
    pub fn from_env(cloud: AzureCloud) -> Endpoints {
        Endpoints {
            cloud,
            acr_scope: env("AIRLOCK_ACR_SCOPE").unwrap_or_else(|| cloud.acr_scope()),
            arm_scope: env("AIRLOCK_ARM_SCOPE").unwrap_or_else(|| cloud.arm_scope()),
            arm_endpoint: env("AIRLOCK_ARM_ENDPOINT")
                .unwrap_or_else(|| cloud.arm_endpoint().to_string())
                .trim_end_matches('/')
                .to_string(),
            keyvault_endpoint: env("AIRLOCK_KEYVAULT_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string()),
        }
    }
}

/// azure_identity's cloud setting for Entra ID credentials: None (azure_identity then reads
/// `AZURE_AUTHORITY_HOST`, else the public cloud) when that variable is set or the cloud is
/// public; else the sovereign cloud's.
pub fn identity_cloud(cloud: AzureCloud) -> Option<Arc<azure_core::cloud::CloudConfiguration>> {
    use azure_core::cloud::CloudConfiguration;
    if env("AZURE_AUTHORITY_HOST").is_some() {
        return None;
    }
    match cloud {
        AzureCloud::Public => None,
        AzureCloud::China => Some(Arc::new(CloudConfiguration::AzureChina)),
        AzureCloud::UsGov => Some(Arc::new(CloudConfiguration::AzureGovernment)),
    }
}

/// Airlock's Azure context for one command: the cloud's endpoints, the credential chain (with
/// its choice and token cache) and the ARM client. Built once by `commands` from the
/// configuration's cloud and the environment, and handed to what needs it (the ACR token
/// exchange, acr-import, Defender, Key Vault): nothing here is process-global.
pub struct Azure {
    pub endpoints: Endpoints,
    pub chain: Arc<Chain>,
    arm: Result<Arm, String>,
}

impl std::fmt::Debug for Azure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azure")
            .field("endpoints", &self.endpoints)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl Azure {
    /// The context the environment describes for `cloud` (one process talks to one cloud).
    pub fn from_env(cloud: AzureCloud) -> Azure {
        let endpoints = Endpoints::from_env(cloud);
        Azure::new(endpoints, Arc::new(Chain::from_env(cloud)))
    }

    /// A context of the given endpoints and chain (tests compose their own).
    pub fn new(endpoints: Endpoints, chain: Arc<Chain>) -> Azure {
        let tokens = Arc::new(ChainTokens::new(chain.clone(), &endpoints.arm_scope));
        let arm = Arm::new(&endpoints.arm_endpoint, tokens).map_err(|e| e.to_string());
        Azure {
            endpoints,
            chain,
            arm,
        }
    }

    /// The ARM client (its endpoint and the chain with the ARM scope).
    pub fn arm(&self) -> Result<&Arm, RegistryError> {
        self.arm.as_ref().map_err(|e| RegistryError::Invalid {
            registry: "Azure Resource Manager".into(),
            what: "set up the ARM client".into(),
            message: e.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{AzureCloud, DesiredState};

    fn parse(registries: &str, scanners: &str) -> Result<DesiredState, String> {
        let src = format!(
            "{registries}\n[quarantine]\nregistry = \"acr\"\nprefix = \"quarantine\"\n[live]\nregistry = \"acr\"\nprefix = \"live\"\n{scanners}\n[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\n"
        );
        crate::config::parse(
            &src,
            Path::new("airlock.toml"),
            time::macros::date!(2026 - 11 - 27),
        )
        .map_err(|e| e.to_string())
    }

    const ACR: &str =
        "[registries.acr]\nendpoint = \"https://acraks0001.azurecr.cn\"\nauth = \"azure\"\n";

    #[test]
    fn cloud_sets_authority_arm_and_scopes_together() {
        let d = parse(&format!("{ACR}cloud = \"china\"\n"), "").unwrap();
        assert_eq!(d.azure_cloud, AzureCloud::China);
        assert_eq!(
            d.azure_cloud.authority_host(),
            "https://login.chinacloudapi.cn"
        );
        assert_eq!(
            d.azure_cloud.arm_endpoint(),
            "https://management.chinacloudapi.cn"
        );
        assert_eq!(
            d.azure_cloud.arm_scope(),
            "https://management.chinacloudapi.cn/.default"
        );
        assert_eq!(d.azure_cloud.acr_scope(), d.azure_cloud.arm_scope());
        assert_eq!(parse(ACR, "").unwrap().azure_cloud, AzureCloud::Public);
        assert_eq!(
            AzureCloud::UsGov.arm_endpoint(),
            "https://management.usgovcloudapi.net"
        );
        assert_eq!(
            AzureCloud::Public.acr_scope(),
            "https://containerregistry.azure.net/.default"
        );
    }

    #[test]
    fn cloud_errors_point_at_the_value() {
        let e = parse(&format!("{ACR}cloud = \"mars\"\n"), "").unwrap_err();
        assert!(e.contains("unknown Azure cloud `mars`"), "{e}");
        assert!(e.contains("public, china, usgov"), "{e}");
        let e = parse(
            "[registries.acr]\nendpoint = \"https://r.example\"\ncloud = \"usgov\"\n",
            "",
        )
        .unwrap_err();
        assert!(e.contains("only used by Azure registries"), "{e}");
        let two = format!(
            "{ACR}cloud = \"china\"\n[registries.other]\nendpoint = \"https://o.azurecr.us\"\nauth = \"azure\"\ncloud = \"usgov\"\n"
        );
        let e = parse(&two, "").unwrap_err();
        assert!(e.contains("one cloud"), "{e}");
    }

    #[test]
    fn max_pending_is_a_defender_setting_with_a_day_by_default() {
        let arm = format!("{ACR}subscription = \"s\"\nresource_group = \"rg\"\n");
        let gate = "[gate]\nscanners = [\"policy\", \"defender\"]\n[scanners.defender]\nformat = \"defender\"\n";
        let d = parse(&arm, gate).unwrap();
        assert_eq!(
            d.scanners["defender"].max_pending,
            Some(Duration::from_secs(24 * 3600))
        );
        let d = parse(&arm, &format!("{gate}max_pending = \"2h\"\n")).unwrap();
        assert_eq!(
            d.scanners["defender"].max_pending,
            Some(Duration::from_secs(7200))
        );
        let e = parse(
            &arm,
            "[scanners.trivy]\nformat = \"trivy\"\ncommand = [\"trivy\"]\nmax_pending = \"1h\"\n",
        )
        .unwrap_err();
        assert!(e.contains("only used by the defender scanner"), "{e}");
        let e = parse(&arm, &format!("{gate}max_pending = \"soon\"\n")).unwrap_err();
        assert!(e.contains("invalid max_pending"), "{e}");
    }
}
