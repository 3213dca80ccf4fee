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
//! The cloud (`cloud = "public" | "china" | "usgov"` on an Azure registry entry, see
//! `config::AzureCloud`) sets the authority host, the Resource Manager endpoint (which also
//! serves Resource Graph and the Defender plans) and the token scopes together. Environment
//! variables override each: `AZURE_AUTHORITY_HOST` (azure_identity's), `AIRLOCK_ARM_ENDPOINT`,
//! `AIRLOCK_ARM_SCOPE`, `AIRLOCK_ACR_SCOPE` (tests and clouds not listed).
//! Nothing here prints a token, a secret or a request body holding one.

pub mod acr;
pub mod arm;
pub mod credential;
pub mod defender;
pub mod transport;

use std::sync::OnceLock;

use crate::config::AzureCloud;

static CLOUD: OnceLock<AzureCloud> = OnceLock::new();

/// Select the process's Azure cloud (from the configuration, once, before any Azure call).
/// A later different choice is ignored: one process talks to one cloud.
pub fn select_cloud(cloud: AzureCloud) {
    let _ = CLOUD.set(cloud);
}

/// The process's Azure cloud (public unless selected).
pub fn cloud() -> AzureCloud {
    CLOUD.get().copied().unwrap_or_default()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// The scope of the Entra ID token exchanged for an ACR refresh token (`/oauth2/exchange`):
/// `AIRLOCK_ACR_SCOPE`, else the cloud's.
pub fn acr_scope() -> String {
    env("AIRLOCK_ACR_SCOPE").unwrap_or_else(|| cloud().acr_scope())
}

/// The scope of Azure Resource Manager tokens (importImage, Resource Graph, pricings):
/// `AIRLOCK_ARM_SCOPE`, else the cloud's.
pub fn arm_scope() -> String {
    env("AIRLOCK_ARM_SCOPE").unwrap_or_else(|| cloud().arm_scope())
}

/// The ARM base URL: `AIRLOCK_ARM_ENDPOINT`, else the cloud's.
pub fn arm_endpoint() -> String {
    env("AIRLOCK_ARM_ENDPOINT")
        .unwrap_or_else(|| cloud().arm_endpoint().to_string())
        .trim_end_matches('/')
        .to_string()
}

/// azure_identity's cloud setting for Entra ID credentials: None (azure_identity then reads
/// `AZURE_AUTHORITY_HOST`, else the public cloud) when that variable is set or the cloud is
/// public; else the sovereign cloud's.
pub fn identity_cloud() -> Option<std::sync::Arc<azure_core::cloud::CloudConfiguration>> {
    use azure_core::cloud::CloudConfiguration;
    if env("AZURE_AUTHORITY_HOST").is_some() {
        return None;
    }
    match cloud() {
        AzureCloud::Public => None,
        AzureCloud::China => Some(std::sync::Arc::new(CloudConfiguration::AzureChina)),
        AzureCloud::UsGov => Some(std::sync::Arc::new(CloudConfiguration::AzureGovernment)),
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
