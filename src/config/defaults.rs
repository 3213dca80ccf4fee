//! The registry a host with no `[registries]` entry gets. One rule, used by configuration
//! lowering and by the registry client's on-demand entries: `https://<host>` (Docker Hub's API
//! host `https://registry-1.docker.io` for `docker.io` and `index.docker.io`), docker
//! credentials, streamed transfers, [`DEFAULT_MAX_CONCURRENCY`], default timeouts. Pure.

use super::desired::{AuthSpec, Endpoint, RegistrySpec, Timeouts, Transfer};
use crate::model::reference::DOCKER_HUB;

/// Concurrency for registries whose entry does not set `max_concurrency`, or have no entry.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// Docker Hub's registry API host.
const DOCKER_HUB_API: &str = "https://registry-1.docker.io";

/// The endpoint a host with no entry (or an entry without `endpoint`) uses.
pub fn default_endpoint(host: &str) -> String {
    if host == DOCKER_HUB || host == "index.docker.io" {
        DOCKER_HUB_API.to_string()
    } else {
        format!("https://{host}")
    }
}

/// The entry a host with no `[registries]` entry gets, keyed by the host.
pub fn default_registry(host: &str) -> RegistrySpec {
    RegistrySpec {
        key: host.to_string(),
        endpoint: Endpoint::Url(default_endpoint(host)),
        auth: AuthSpec::Docker,
        transfer: Transfer::Stream,
        max_concurrency: DEFAULT_MAX_CONCURRENCY,
        timeouts: Timeouts::default(),
        arm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_spellings_use_its_api_host_and_others_their_own() {
        assert_eq!(default_endpoint("docker.io"), DOCKER_HUB_API);
        assert_eq!(default_endpoint("index.docker.io"), DOCKER_HUB_API);
        assert_eq!(default_endpoint("ghcr.io"), "https://ghcr.io");
        assert_eq!(default_endpoint("localhost:5000"), "https://localhost:5000");
    }

    #[test]
    fn a_default_entry_is_keyed_by_its_host_with_docker_credentials() {
        let r = default_registry("quay.io");
        assert_eq!(r.key, "quay.io");
        assert_eq!(r.endpoint, Endpoint::Url("https://quay.io".into()));
        assert_eq!(r.auth, AuthSpec::Docker);
        assert_eq!(r.transfer, Transfer::Stream);
        assert_eq!(r.max_concurrency, DEFAULT_MAX_CONCURRENCY);
        assert!(r.arm.is_none());
    }
}
