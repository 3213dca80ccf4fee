//! Credentials for a registry, resolved once per registry from its `auth` setting:
//! `basic` (username + a password read from an environment variable), `docker`
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `credHelpers`, `auths` with
//! base64 `auth` or `identitytoken`, `credsStore`, via the `docker_credential` crate run in
//! `spawn_blocking`), or none. Every secret type here redacts itself in `Debug`, has no
//! `Display`, and no message built here contains one.

use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::error::RegistryError;
use crate::config::AuthSpec;
pub use crate::secret::{Credential, Secret};

/// The key docker uses for a host in config.json (Docker Hub has its historic URL).
pub fn docker_config_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        h => h.to_string(),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// How to provide credentials for a registry, for error messages.
pub fn login_hint(key: &str, host: &str) -> String {
    format!(
        "provide credentials: in [registries.\"{key}\"] set auth = \"basic\" with username and \
         password_env, or set auth = \"docker\" and run `docker login {host}`"
    )
}

/// Resolve the credentials an `auth` setting names. `Ok(None)` means anonymous.
/// Azure credentials are resolved by the token flow in `auth`, not here.
pub async fn resolve(
    registry: &str,
    host: &str,
    auth: &AuthSpec,
) -> Result<Option<Credential>, RegistryError> {
    match auth {
        AuthSpec::Anonymous | AuthSpec::Azure => Ok(None),
        AuthSpec::Basic {
            username,
            password_env,
        } => match std::env::var(password_env) {
            Ok(p) => Ok(Some(Credential::UsernamePassword {
                username: username.clone(),
                password: Secret::new(p),
            })),
            Err(_) => Err(RegistryError::Credentials {
                registry: registry.to_string(),
                message: format!(
                    "environment variable `{password_env}` (password_env) is not set or not UTF-8"
                ),
            }),
        },
        AuthSpec::Docker => {
            let Some(path) = docker_config_path() else {
                return Ok(None);
            };
            let server = docker_config_key(host);
            let registry = registry.to_string();
            let reg = registry.clone();
            tokio::task::spawn_blocking(move || from_docker_config(&reg, &path, &server))
                .await
                .map_err(|e| RegistryError::Credentials {
                    registry,
                    message: format!("credential lookup panicked: {e}"),
                })?
        }
    }
}

/// Look `server` up in a docker config file; a missing file or entry is anonymous.
pub fn from_docker_config(
    registry: &str,
    path: &std::path::Path,
    server: &str,
) -> Result<Option<Credential>, RegistryError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RegistryError::io(format!("read {}", path.display()), e));
        }
    };
    let fail = |message: String| RegistryError::Credentials {
        registry: registry.to_string(),
        message,
    };
    match docker_credential::get_credential_from_reader(&bytes[..], server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Some(Credential::UsernamePassword {
                username,
                password: Secret::new(password),
            }))
        }
        Ok(DockerCredential::IdentityToken(t)) => {
            Ok(Some(Credential::IdentityToken(Secret::new(t))))
        }
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
        Err(CredentialRetrievalError::HelperFailure { helper, stdout, .. }) => {
            // Helpers answer "credentials not found in native keychain" for unknown hosts.
            if stdout
                .to_ascii_lowercase()
                .contains("credentials not found")
            {
                Ok(None)
            } else {
                Err(fail(format!(
                    "`{helper} get` failed for `{server}` (run it by hand to see why)"
                )))
            }
        }
        Err(CredentialRetrievalError::HelperCommunicationError) => Err(fail(format!(
            "could not run the credential helper `docker-credential-{}` that {} names for `{server}`: is it installed and on PATH?",
            helper_name(&bytes, server).unwrap_or_else(|| "?".into()),
            path.display()
        ))),
        Err(CredentialRetrievalError::ConfigReadError) => Err(fail(format!(
            "{} is not a valid docker config file",
            path.display()
        ))),
        Err(e) => Err(fail(format!("{e} (for `{server}` in {})", path.display()))),
    }
}

fn helper_name(config: &[u8], server: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    v.get("credHelpers")
        .and_then(|h| h.get(server))
        .or_else(|| v.get("credsStore"))
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn write(dir: &tempfile::TempDir, json: serde_json::Value) -> PathBuf {
        let p = dir.path().join("config.json");
        std::fs::write(&p, serde_json::to_vec(&json).unwrap()).unwrap();
        p
    }

    #[test]
    fn reads_auths_and_identity_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        let p = write(
            &dir,
            serde_json::json!({
                "auths": {
                    "reg.example:5000": {"auth": b64},
                    "https://index.docker.io/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("hub:pw")},
                    "acr.example": {"auth": base64::engine::general_purpose::STANDARD.encode("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh"}
                }
            }),
        );
        let c = from_docker_config("r", &p, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            Credential::UsernamePassword {
                username: "bob".into(),
                password: Secret::new("s3cret")
            }
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let hub = from_docker_config("r", &p, &docker_config_key("docker.io"))
            .unwrap()
            .unwrap();
        assert!(
            matches!(hub, Credential::UsernamePassword { ref username, .. } if username == "hub")
        );
        let acr = from_docker_config("r", &p, "acr.example").unwrap().unwrap();
        assert_eq!(acr, Credential::IdentityToken(Secret::new("refresh")));
        assert_eq!(format!("{acr:?}"), "IdentityToken(***)");
        assert_eq!(from_docker_config("r", &p, "other.example").unwrap(), None);
    }

    #[test]
    fn missing_file_is_anonymous_and_bad_file_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            from_docker_config("r", &dir.path().join("nope.json"), "x").unwrap(),
            None
        );
        let p = dir.path().join("config.json");
        std::fs::write(&p, b"{not json").unwrap();
        let e = from_docker_config("r", &p, "x").unwrap_err();
        assert!(e.to_string().contains("not a valid docker config"), "{e}");
    }

    #[test]
    fn missing_helper_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            serde_json::json!({"credHelpers": {"x.example": "airlock-test-nonexistent"}}),
        );
        let e = from_docker_config("r", &p, "x.example").unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-airlock-test-nonexistent"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn basic_reads_the_environment_variable_name_only() {
        let e = resolve(
            "r",
            "h",
            &AuthSpec::Basic {
                username: "u".into(),
                password_env: "AIRLOCK_TEST_SURELY_UNSET_VAR".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains("AIRLOCK_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
    }
}
