//! The hand-off to the cluster: the live set (which declared images are in live now, by
//! digest, and why the others are not) and the exports built from it — `images` (a list or a
//! kustomize `images:` list, [`kustomize`]) and the admission policies (`crate::admission`).
//! Everything here is pure except [`read`], the registry reads that produce a [`LiveSet`].

pub mod kustomize;
pub mod read;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Digest, Reference};
use crate::observed::FindingSummary;

/// What the cluster may pull: every declared image with its live digest, or why it is not in
/// live. Sorted by live repository and tag (the order of `DesiredState::images`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSet {
    /// `host[:port]` clusters pull live images from.
    pub host: String,
    /// The live prefix (may be empty).
    pub prefix: String,
    pub images: Vec<LiveImage>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveImage {
    /// The upstream reference as declared (normalised: `docker.io/library/busybox:1.36.1`).
    pub source: Reference,
    /// The tag in quarantine and live.
    pub tag: String,
    /// The live repository: `prefix/path`.
    pub repository: String,
    pub state: LiveState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveState {
    /// The live tag points at this digest.
    Live(Digest),
    /// No live tag.
    Missing(Missing),
}

/// Why a declared image has no live tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Nothing in quarantine under its tag.
    NotImported,
    /// In quarantine, no verdict yet.
    NotScanned,
    /// The newest verdict fails: the gate keeps it out.
    Blocked {
        findings: Vec<FindingSummary>,
        /// The verdict was made under another gate configuration (a new plan rescans).
        other_policy: bool,
    },
    /// A scanner has not reported yet.
    Pending,
    /// Passed the gate, not promoted yet.
    NotPromoted,
}

impl Missing {
    /// Blocked by the gate under the current configuration (nothing airlock can do).
    pub fn is_blocked(&self) -> bool {
        matches!(
            self,
            Missing::Blocked {
                other_policy: false,
                ..
            }
        )
    }

    /// What to tell the user.
    pub fn describe(&self) -> String {
        match self {
            Missing::NotImported => {
                "not imported yet: run `airlock plan` and `airlock apply`".into()
            }
            Missing::NotScanned => "not scanned yet: run `airlock plan` and `airlock apply`".into(),
            Missing::Blocked {
                findings,
                other_policy,
            } => {
                let worst = findings
                    .iter()
                    .map(|f| format!("{} {}", f.id, f.severity))
                    .collect::<Vec<_>>()
                    .join(", ");
                let worst = if worst.is_empty() {
                    String::new()
                } else {
                    format!(" ({worst})")
                };
                if *other_policy {
                    format!(
                        "its verdict failed{worst} under another gate configuration: `airlock plan` rescans it"
                    )
                } else {
                    format!(
                        "blocked by the gate{worst}: fix the image, or add a [[gate.allow]] exception"
                    )
                }
            }
            Missing::Pending => {
                "its verdict is pending (a scanner has not reported yet): run `airlock apply` later"
                    .into()
            }
            Missing::NotPromoted => {
                "passed the gate, not promoted yet: run `airlock plan` and `airlock apply`".into()
            }
        }
    }
}

impl LiveSet {
    /// `host/repository`: the name clusters pull an image by.
    pub fn live_name(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host)
    }

    /// The images in live with their digests.
    pub fn live(&self) -> impl Iterator<Item = (&LiveImage, &Digest)> {
        self.images.iter().filter_map(|i| match &i.state {
            LiveState::Live(d) => Some((i, d)),
            LiveState::Missing(_) => None,
        })
    }

    /// The declared images that are not in live, and why.
    pub fn missing(&self) -> impl Iterator<Item = (&LiveImage, &Missing)> {
        self.images.iter().filter_map(|i| match &i.state {
            LiveState::Live(_) => None,
            LiveState::Missing(m) => Some((i, m)),
        })
    }

    /// Live repository → the digests its declared tags point at now.
    pub fn digests_by_repository(&self) -> BTreeMap<String, BTreeSet<Digest>> {
        let mut out: BTreeMap<String, BTreeSet<Digest>> = BTreeMap::new();
        for (i, d) in self.live() {
            out.entry(i.repository.clone())
                .or_default()
                .insert(d.clone());
        }
        out
    }

    /// One stderr line per declared image that is not in live.
    pub fn missing_report(&self) -> Vec<String> {
        self.missing()
            .map(|(i, m)| {
                format!(
                    "{}:{} is not in live ({}:{}): {}",
                    i.source.repository(),
                    i.tag,
                    self.live_name(&i.repository),
                    i.tag,
                    m.describe()
                )
            })
            .collect()
    }
}

/// Check a `--live-host` value: `host[:port]` as written in image references, lowercase, and
/// recognisably a host (a `.` or a port, or `localhost`): anything else would be read by
/// container runtimes as a Docker Hub path.
pub fn check_live_host(host: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "--live-host `{host}` {why}: write the registry host clusters pull from, e.g. `myregistry.azurecr.io` or `registry.local:5000`"
        ))
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("has an invalid port");
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return bad("is not a lowercase host name (letters, digits, `-`, labels joined by `.`)");
    }
    if !name.contains('.') && port.is_none() && name != "localhost" {
        return bad(
            "has no `.` and no port, so container runtimes would read it as a Docker Hub path",
        );
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_hosts_must_be_recognisable_hosts() {
        for ok in [
            "acraks0001.azurecr.io",
            "registry.local:5000",
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
        ] {
            assert_eq!(check_live_host(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "registry",
            "Registry.example.com",
            "a..b",
            "-a.b",
            "a.b:",
            "a.b:99999x",
            "a.b/live",
            "https://a.b",
            "a b.c",
        ] {
            let e = check_live_host(bad).unwrap_err();
            assert!(e.contains("--live-host"), "{e}");
        }
    }
}
