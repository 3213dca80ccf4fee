//! The images a run could not observe, all of them, reported together: each with where it is
//! declared and the registry's own error code; a cause that is the registry's rather than the
//! image's (unreachable, timed out, throttled, refusing credentials) is one line per registry
//! naming how many images it kept from being observed, not one line per image.
//!
//! Pure, and a leaf (the crate's `Error` names it): built from the failures the observation
//! collected, sorted by image key, so the report is the same whatever order the requests
//! finished in.

use std::collections::BTreeMap;
use std::fmt;

use crate::registry::RegistryError;

/// How many images a grouped line names before "and N more".
const NAMED: usize = 3;

/// Why one image was not observed.
#[derive(Debug)]
pub struct Failure {
    /// The image key (`path:tag`): the order of the report.
    pub key: String,
    /// The source as declared (`host/path:tag[@digest]`).
    pub source: String,
    /// `file:line:col` of the image's entry, when known.
    pub at: Option<String>,
    pub cause: Cause,
}

/// What stopped an image's observation.
#[derive(Debug)]
pub enum Cause {
    /// A registry-wide cause (see [`RegistryError::registry_cause`]) on `registry`; `message`
    /// is the full error as it happened to this image.
    Registry {
        registry: String,
        cause: String,
        message: String,
    },
    /// Something about this image (a missing tag, a denied repository, bad content).
    Image(String),
}

impl Failure {
    /// The failure of the image `key` declared as `source` (at `at`, `file:line:col`).
    pub fn new(key: String, source: String, at: Option<String>, cause: Cause) -> Failure {
        Failure {
            key,
            source,
            at,
            cause,
        }
    }

    /// `source (file:line:col)`.
    fn named(&self) -> String {
        match &self.at {
            Some(at) => format!("{} ({at})", self.source),
            None => self.source.clone(),
        }
    }

    /// The one-line report of this image alone.
    fn line(&self) -> String {
        let message = match &self.cause {
            Cause::Registry { message, .. } | Cause::Image(message) => message,
        };
        let prefix = match &self.at {
            Some(at) => format!("{at}: "),
            None => String::new(),
        };
        if message.contains(&self.source) {
            format!("{prefix}{message}")
        } else {
            format!("{prefix}{}: {message}", self.source)
        }
    }
}

impl Cause {
    /// A registry error (`message`: its text with its causes): the registry's own cause when
    /// it is one ([`RegistryError::registry_cause`]), else the image's.
    pub fn of(e: &RegistryError, message: String) -> Cause {
        match (e.registry(), e.registry_cause()) {
            (Some(registry), Some(cause)) => Cause::Registry {
                registry: registry.to_string(),
                cause,
                message,
            },
            _ => Cause::Image(message),
        }
    }

    /// Not tried: `registry` already failed with `cause` for another image (no request is
    /// spent on a registry known to be down).
    pub fn skipped(registry: &str, cause: &str) -> Cause {
        Cause::Registry {
            registry: registry.to_string(),
            cause: cause.to_string(),
            message: format!("registry `{registry}` {cause}"),
        }
    }
}

/// Every image a run could not observe (at least one), sorted by image key.
#[derive(Debug)]
pub struct Unobserved {
    failures: Vec<Failure>,
}

impl Unobserved {
    pub fn new(mut failures: Vec<Failure>) -> Unobserved {
        failures.sort_by(|a, b| a.key.cmp(&b.key));
        Unobserved { failures }
    }

    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The report, one line per entry (without the `error: ` prefix): per-image failures and
    /// registry causes shared by one image in image order, then one line per registry cause
    /// shared by several images, by registry and cause.
    pub fn lines(&self) -> Vec<String> {
        let mut shared: BTreeMap<(&str, &str), Vec<&Failure>> = BTreeMap::new();
        for f in &self.failures {
            if let Cause::Registry {
                registry, cause, ..
            } = &f.cause
            {
                shared.entry((registry, cause)).or_default().push(f);
            }
        }
        let mut out: Vec<String> = self
            .failures
            .iter()
            .filter(|f| match &f.cause {
                Cause::Registry {
                    registry, cause, ..
                } => shared[&(registry.as_str(), cause.as_str())].len() == 1,
                Cause::Image(_) => true,
            })
            .map(Failure::line)
            .collect();
        for ((registry, cause), images) in shared.iter().filter(|(_, v)| v.len() > 1) {
            let named: Vec<String> = images.iter().take(NAMED).map(|f| f.named()).collect();
            let more = match images.len().saturating_sub(NAMED) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            out.push(format!(
                "registry `{registry}` {cause}: {} images not observed — {}{more}",
                images.len(),
                named.join(", ")
            ));
        }
        out
    }
}

impl fmt::Display for Unobserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.lines().iter().map(|l| format!("error: {l}")).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for Unobserved {}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(key: &str, cause: Cause) -> Failure {
        Failure {
            key: key.to_string(),
            source: format!("docker.io/{key}"),
            at: Some(format!("airlock.toml:{}:10", key.len())),
            cause,
        }
    }

    fn down(registry: &str, key: &str) -> Failure {
        failure(
            key,
            Cause::Registry {
                registry: registry.into(),
                cause: "unreachable: connection refused".into(),
                message: format!("failed to read {key} on `{registry}`: connection refused"),
            },
        )
    }

    #[test]
    fn one_line_per_image_fault_and_one_per_registry_cause() {
        let mut failures: Vec<Failure> = (0..200)
            .map(|i| down("hub", &format!("i/{i:03}:1")))
            .collect();
        failures.push(failure(
            "a/missing:2",
            Cause::Image("source docker.io/a/missing:2 not found (MANIFEST_UNKNOWN)".into()),
        ));
        failures.push(failure("a/denied:1", Cause::Image("403 DENIED: no".into())));
        failures.push(down("quay", "z/lonely:1"));
        failures.reverse();
        let lines = Unobserved::new(failures).lines();
        assert_eq!(
            lines,
            [
                // The message names the source: not repeated.
                "airlock.toml:10:10: docker.io/a/denied:1: 403 DENIED: no",
                "airlock.toml:11:10: source docker.io/a/missing:2 not found (MANIFEST_UNKNOWN)",
                // A registry cause of one image is reported as that image's error.
                "airlock.toml:10:10: docker.io/z/lonely:1: failed to read z/lonely:1 on `quay`: \
                 connection refused",
                "registry `hub` unreachable: connection refused: 200 images not observed — \
                 docker.io/i/000:1 (airlock.toml:7:10), docker.io/i/001:1 (airlock.toml:7:10), \
                 docker.io/i/002:1 (airlock.toml:7:10) and 197 more",
            ]
        );
    }

    #[test]
    fn a_registry_error_is_the_registry_s_or_the_image_s() {
        let api = |status, code: &str| RegistryError::Api {
            registry: "hub".into(),
            what: "get manifest a:1".into(),
            status,
            code: code.into(),
            message: "m".into(),
            retry_after: None,
        };
        for (status, code) in [(404, "MANIFEST_UNKNOWN"), (403, "DENIED"), (400, "X")] {
            let c = Cause::of(&api(status, code), "m".into());
            assert!(matches!(c, Cause::Image(_)), "{status}: {c:?}");
        }
        for (status, code, want) in [
            (503, "UNAVAILABLE", "answers 503 UNAVAILABLE"),
            (429, "TOOMANYREQUESTS", "answers 429 TOOMANYREQUESTS"),
        ] {
            match Cause::of(&api(status, code), "m".into()) {
                Cause::Registry {
                    registry, cause, ..
                } => assert_eq!((registry.as_str(), cause.as_str()), ("hub", want)),
                c => panic!("{status}: {c:?}"),
            }
        }
        // An image skipped because of a registry's cause is counted with the one that failed.
        let first = Cause::of(
            &api(503, "UNAVAILABLE"),
            "failed to get manifest a:1".into(),
        );
        let Cause::Registry { cause, .. } = &first else {
            panic!()
        };
        let skipped = Cause::skipped("hub", cause);
        let lines = Unobserved::new(vec![failure("a:1", first), failure("b:1", skipped)]).lines();
        assert_eq!(
            lines,
            [
                "registry `hub` answers 503 UNAVAILABLE: 2 images not observed — \
              docker.io/a:1 (airlock.toml:3:10), docker.io/b:1 (airlock.toml:3:10)"
            ]
        );
    }

    #[test]
    fn the_report_does_not_depend_on_the_order_failures_arrive() {
        let make = || {
            vec![
                down("hub", "b:1"),
                failure("a:1", Cause::Image("x".into())),
                down("hub", "c:1"),
                down("gcr", "d:1"),
            ]
        };
        let mut reversed = make();
        reversed.reverse();
        assert_eq!(
            Unobserved::new(make()).lines(),
            Unobserved::new(reversed).lines()
        );
        let text = Unobserved::new(make()).to_string();
        assert!(text.lines().all(|l| l.starts_with("error: ")), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
