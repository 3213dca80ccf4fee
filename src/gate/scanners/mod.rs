//! External scanners: run the configured command on the quarantined digest and parse the
//! report it prints (trivy, grype) into findings. The command's placeholders are filled
//! with the pullable quarantine reference; the registry's credentials reach the scanner
//! through its environment and a private `DOCKER_CONFIG`, never through its arguments.
//! Whatever goes wrong (cannot start, non-zero exit, timeout, no or unparsable output) is an
//! `Err(message)`, which the gate turns into a blocking finding: scanners fail closed.

mod grype;
mod run;
mod trivy;

use base64::Engine;

use super::Target;
use crate::config::{AuthSpec, DesiredState, Endpoint, ScannerFormat, ScannerSpec};
use crate::records::Finding;
use crate::registry::credentials::{self, Credential};

pub use run::MAX_STDOUT;

#[derive(Debug)]
pub enum Outcome {
    Findings {
        version: Option<String>,
        findings: Vec<Finding>,
    },
    /// The scanner has not produced results yet (Defender scans after import).
    Pending,
    /// Results per platform image (Defender): the findings reported so far and which
    /// platform images have results; pending while any has none.
    PerPlatform {
        version: Option<String>,
        findings: Vec<Finding>,
        coverage: Vec<crate::records::PlatformCoverage>,
    },
}

/// What a parsed report says.
#[derive(Debug)]
pub struct Report {
    pub version: Option<String>,
    pub findings: Vec<Finding>,
}

/// A finding message: the first line, at most 160 characters.
pub fn short_message(text: &str) -> String {
    const MAX: usize = 160;
    let line = text.trim().lines().next().unwrap_or("").trim();
    if line.chars().count() <= MAX {
        return line.to_string();
    }
    let mut s: String = line.chars().take(MAX - 1).collect();
    s.push('…');
    s
}

/// The output as a JSON document; `run` says how to make the scanner print one.
fn json(bytes: &[u8], run: &str) -> Result<serde_json::Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the output is not JSON ({e}): run {run}"))
}

/// The values of the command placeholders.
pub struct Placeholders<'a> {
    /// `host[:port]` of the quarantine registry.
    pub registry: &'a str,
    pub repository: &'a str,
    pub digest: &'a str,
}

impl Placeholders<'_> {
    /// `{ref}`: `<registry>/<repository>@<digest>`.
    pub fn reference(&self) -> String {
        format!("{}/{}@{}", self.registry, self.repository, self.digest)
    }

    /// The command with `{ref}`, `{registry}`, `{repository}` and `{digest}` filled in.
    pub fn fill(&self, command: &[String]) -> Vec<String> {
        let reference = self.reference();
        command
            .iter()
            .map(|arg| {
                arg.replace("{ref}", &reference)
                    .replace("{registry}", self.registry)
                    .replace("{repository}", self.repository)
                    .replace("{digest}", self.digest)
            })
            .collect()
    }
}

/// How a scanner reaches the quarantine registry: plain HTTP or not, and with which
/// credentials (`None`: anonymous, or the scanner's own login as for `auth = "azure"`).
pub struct Access {
    pub host: String,
    pub insecure: bool,
    pub credential: Option<Credential>,
}

impl Access {
    /// Resolve the quarantine registry's settings and credentials from the configuration.
    pub async fn resolve(desired: &DesiredState, t: &Target<'_>) -> Result<Access, String> {
        let key = t.registry.key();
        let host = t.registry.host();
        let spec = desired.registries.get(key);
        let insecure = spec
            .is_some_and(|s| matches!(&s.endpoint, Endpoint::Url(u) if u.starts_with("http://")));
        let auth = spec.map(|s| s.auth.clone()).unwrap_or(AuthSpec::Docker);
        // Azure: the scanner uses its own login (`az acr login` writes the docker config).
        let credential = credentials::resolve(key, &host, &auth)
            .await
            .map_err(|e| format!("cannot give the scanner credentials for `{key}`: {e}"))?;
        Ok(Access {
            host,
            insecure,
            credential,
        })
    }

    /// Environment for the scanner, and the `config.json` text for a private
    /// `DOCKER_CONFIG` when there are credentials.
    pub fn environment(&self) -> (Vec<(String, String)>, Option<String>) {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: &str| env.push((k.to_string(), v.to_string()));
        if self.insecure {
            set("TRIVY_INSECURE", "true");
            set("GRYPE_REGISTRY_INSECURE_USE_HTTP", "true");
        }
        let entry = match &self.credential {
            None => None,
            Some(Credential::UsernamePassword { username, password }) => {
                set("TRIVY_USERNAME", username);
                set("TRIVY_PASSWORD", password.expose());
                set("GRYPE_REGISTRY_AUTH_USERNAME", username);
                set("GRYPE_REGISTRY_AUTH_PASSWORD", password.expose());
                Some(serde_json::json!({
                    "auth": base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose()))
                }))
            }
            Some(Credential::IdentityToken(token)) => {
                Some(serde_json::json!({ "identitytoken": token.expose() }))
            }
        };
        let config = entry.map(|e| {
            serde_json::json!({
                "auths": { credentials::docker_config_key(&self.host): e }
            })
            .to_string()
        });
        (env, config)
    }

    fn secret(&self) -> Option<&str> {
        match &self.credential {
            Some(Credential::UsernamePassword { password, .. }) => Some(password.expose()),
            Some(Credential::IdentityToken(t)) => Some(t.expose()),
            None => None,
        }
    }
}

/// Run one external scanner on the target. Errors are messages for the verdict.
pub async fn run(
    desired: &DesiredState,
    spec: &ScannerSpec,
    t: &Target<'_>,
) -> Result<Outcome, String> {
    if spec.format == ScannerFormat::Defender {
        return Err("the defender scanner needs the azure feature, which this build lacks".into());
    }
    let access = Access::resolve(desired, t).await?;
    let digest = t.digest.to_string();
    let argv = Placeholders {
        registry: &access.host,
        repository: t.repository,
        digest: &digest,
    }
    .fill(&spec.command);
    let (mut env, docker_config) = access.environment();
    // Kept alive until the scanner has finished; removed on drop.
    let _config_dir = match docker_config {
        Some(json) => {
            let dir = tempfile::Builder::new()
                .prefix("airlock-scanner-")
                .tempdir()
                .map_err(|e| format!("cannot create a docker config for the scanner: {e}"))?;
            std::fs::write(dir.path().join("config.json"), json)
                .map_err(|e| format!("cannot write a docker config for the scanner: {e}"))?;
            env.push((
                "DOCKER_CONFIG".into(),
                dir.path().to_string_lossy().into_owned(),
            ));
            Some(dir)
        }
        None => None,
    };
    tracing::info!("scanner `{}`: running {}", spec.name, argv.join(" "));
    let secret: Vec<&str> = access.secret().into_iter().collect();
    let stdout = run::execute(&run::Invocation {
        argv: &argv,
        env: &env,
        timeout: spec.timeout,
        redact: &secret,
    })
    .await?;
    let report = parse(spec, &stdout)?;
    Ok(Outcome::Findings {
        version: report.version,
        findings: report.findings,
    })
}

/// Parse a report in the scanner's format.
pub fn parse(spec: &ScannerSpec, stdout: &[u8]) -> Result<Report, String> {
    let parsed = match spec.format {
        ScannerFormat::Trivy => trivy::parse(&spec.name, stdout),
        ScannerFormat::Grype => grype::parse(&spec.name, stdout),
        ScannerFormat::Defender => {
            Err("defender results are not read from a command's output".into())
        }
    };
    parsed.map_err(|e| {
        let start: String = String::from_utf8_lossy(&stdout[..stdout.len().min(80)])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        format!("{e}; the output starts with `{start}`")
    })
}

/// A recorded scanner report from tests/fixtures/scanners.
#[cfg(test)]
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/scanners/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `id severity package installed -> fixed`, for comparing findings in tests.
#[cfg(test)]
fn summary(f: &Finding) -> String {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    format!(
        "{} {} {} {} -> {}",
        f.id,
        f.severity,
        or(&f.package),
        or(&f.installed_version),
        or(&f.fixed_version)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::credentials::Secret;

    fn spec(format: ScannerFormat, script: &str) -> ScannerSpec {
        ScannerSpec {
            name: "scan".into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "sh".into(),
                "{ref}".into(),
            ],
            format,
            timeout: Duration::from_secs(20),
            max_pending: None,
        }
    }

    #[test]
    fn placeholders_are_filled_everywhere() {
        let p = Placeholders {
            registry: "127.0.0.1:5000",
            repository: "quarantine/library/busybox",
            digest: "sha256:abc",
        };
        let cmd: Vec<String> = [
            "trivy",
            "image",
            "{ref}",
            "--server={registry}",
            "{repository}@{digest}",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            p.fill(&cmd),
            vec![
                "trivy",
                "image",
                "127.0.0.1:5000/quarantine/library/busybox@sha256:abc",
                "--server=127.0.0.1:5000",
                "quarantine/library/busybox@sha256:abc"
            ]
        );
    }

    #[test]
    fn credentials_go_to_the_environment_and_a_docker_config() {
        let a = Access {
            host: "127.0.0.1:5000".into(),
            insecure: true,
            credential: Some(Credential::UsernamePassword {
                username: "ci".into(),
                password: Secret::new("s3cret"),
            }),
        };
        let (env, config) = a.environment();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TRIVY_INSECURE"), Some("true"));
        assert_eq!(get("GRYPE_REGISTRY_INSECURE_USE_HTTP"), Some("true"));
        assert_eq!(get("TRIVY_USERNAME"), Some("ci"));
        assert_eq!(get("TRIVY_PASSWORD"), Some("s3cret"));
        assert_eq!(get("GRYPE_REGISTRY_AUTH_PASSWORD"), Some("s3cret"));
        let config: serde_json::Value = serde_json::from_str(&config.unwrap()).unwrap();
        assert_eq!(
            config["auths"]["127.0.0.1:5000"]["auth"],
            base64::engine::general_purpose::STANDARD.encode("ci:s3cret")
        );

        let token = Access {
            host: "acr.example".into(),
            insecure: false,
            credential: Some(Credential::IdentityToken(Secret::new("rt"))),
        };
        let (env, config) = token.environment();
        assert!(env.is_empty(), "{env:?}");
        assert!(config.unwrap().contains("\"identitytoken\":\"rt\""));

        let anonymous = Access {
            host: "h".into(),
            insecure: false,
            credential: None,
        };
        assert_eq!(anonymous.environment(), (vec![], None));
    }

    #[test]
    fn unparsable_output_is_described_with_its_start() {
        let e = parse(
            &spec(ScannerFormat::Trivy, ""),
            b"2026-11-27T10:00:00Z INFO Need to update DB\n",
        )
        .err()
        .unwrap();
        assert!(e.starts_with("the output is not JSON"), "{e}");
        assert!(e.contains("run trivy with --format json"), "{e}");
        assert!(e.contains("Need to update DB"), "{e}");
    }

    /// Drive the process part with `sh`: the reference arrives as an argument, the
    /// report on stdout, failures as errors.
    #[tokio::test]
    async fn a_command_runs_with_the_reference_and_its_report_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let report = format!(
            "{}/tests/fixtures/scanners/grype.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let seen = dir.path().join("seen");
        let script = format!("echo \"$1\" > {}; cat {report}", seen.display());
        let argv = Placeholders {
            registry: "127.0.0.1:5000",
            repository: "quarantine/x",
            digest: "sha256:abc",
        }
        .fill(&spec(ScannerFormat::Grype, &script).command);
        let out = run::execute(&run::Invocation {
            argv: &argv,
            env: &[],
            timeout: Duration::from_secs(20),
            redact: &[],
        })
        .await
        .unwrap();
        let r = parse(&spec(ScannerFormat::Grype, &script), &out).unwrap();
        assert_eq!(r.findings.len(), 3);
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap().trim(),
            "127.0.0.1:5000/quarantine/x@sha256:abc"
        );
    }

    #[test]
    fn messages_are_one_short_line() {
        assert_eq!(short_message("  first\nsecond"), "first");
        let long = "x".repeat(500);
        let m = short_message(&long);
        assert_eq!(m.chars().count(), 160);
        assert!(m.ends_with('…'));
    }
}
