//! The gate: runs the configured scanners on a quarantined digest and decides. Built-in
//! policy checks (`policy`) read manifests and configs; external scanners (`scanners`) run a
//! command and parse its report. A scanner that fails fails closed: the verdict is `fail`.

pub mod policy;
pub mod scanner;
pub mod scanners;
pub mod user;

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::config::DesiredState;
use crate::model::manifest::Parsed;
use crate::model::{Digest, RawManifest, Severity};
use crate::observed::Decision;
use crate::records::{Finding, ScannerRun, VERDICT_FORMAT, VerdictDocument};
use crate::registry::{Registry, RegistryError};
pub use scanner::{ScanError, ScanInput, Scanner, Scanners};

/// Image configs larger than this are not read.
const MAX_CONFIG: u64 = 8 << 20;

/// Where the image to scan is.
pub struct Target<'a> {
    pub registry: &'a Registry,
    pub repository: &'a str,
    pub digest: &'a Digest,
}

/// Read the platform images of a manifest (an index's children, or the manifest itself).
pub async fn platform_images(
    t: &Target<'_>,
    top: &RawManifest,
) -> Result<Vec<policy::PlatformImage>, RegistryError> {
    let mut out = Vec::new();
    let children: Vec<(Option<crate::model::Platform>, RawManifest)> = match top.parse() {
        Ok(Parsed::Index { manifests, .. }) => {
            let mut v = Vec::new();
            for m in manifests {
                // Attestation manifests (`unknown/unknown`) are not runnable images.
                if m.platform.as_ref().is_some_and(|p| p.os == "unknown") {
                    continue;
                }
                let child = t
                    .registry
                    .get_manifest(t.repository, &m.digest.to_string())
                    .await?
                    .ok_or_else(|| RegistryError::Content {
                        what: format!("{}@{}", t.repository, m.digest),
                        message: "child manifest missing (MANIFEST_UNKNOWN)".into(),
                    })?;
                v.push((m.platform.clone(), child));
            }
            v
        }
        _ => vec![(None, top.clone())],
    };
    for (platform, m) in children {
        if let Ok(Parsed::Image { config, layers, .. }) = m.parse() {
            let bytes = t
                .registry
                .get_blob_bytes(t.repository, &config.digest, MAX_CONFIG)
                .await?;
            out.push(policy::PlatformImage::new(
                platform,
                &bytes,
                config.size,
                layers,
            ));
        }
    }
    Ok(out)
}

/// Scan a quarantined digest with every configured scanner (the built-in policy, or the
/// scanner `scanners` has for the entry's format) and decide.
pub async fn scan(
    desired: &DesiredState,
    scanners: &Scanners,
    t: &Target<'_>,
    top: &RawManifest,
    image_path: &str,
    now: OffsetDateTime,
) -> Result<VerdictDocument, RegistryError> {
    let mut ev = Evidence::default();
    for name in &desired.gate.scanners {
        let chosen: Result<(&dyn Scanner, Option<&crate::config::ScannerSpec>), String> =
            if name == policy::SCANNER {
                Ok((&scanner::Policy, None))
            } else {
                match desired.scanners.get(name) {
                    Some(spec) => scanners.for_spec(spec).map(|s| (s, Some(spec))),
                    None => Err(format!("scanner `{name}` is not defined")),
                }
            };
        let result = match chosen {
            Ok((s, spec)) => {
                let input = ScanInput {
                    desired,
                    spec,
                    target: t,
                    top,
                    now,
                };
                match s.scan(&input).await {
                    Ok(o) => Ok(o),
                    Err(ScanError::Registry(e)) => return Err(e),
                    Err(ScanError::Failed(e)) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(scanners::Outcome::Findings { version, findings }) => {
                ev.findings.extend(findings);
                ev.scanners.push(ScannerRun {
                    name: name.clone(),
                    version,
                    ok: true,
                    error: None,
                    coverage: Vec::new(),
                });
            }
            Ok(scanners::Outcome::Pending) => {
                ev.pending = true;
                ev.scanners.push(ScannerRun {
                    name: name.clone(),
                    version: None,
                    ok: true,
                    error: Some("results not available yet".into()),
                    coverage: Vec::new(),
                });
            }
            Ok(scanners::Outcome::PerPlatform {
                version,
                findings,
                coverage,
            }) => {
                let waiting = coverage
                    .iter()
                    .filter(|c| c.status == crate::records::CoverageStatus::Pending)
                    .count();
                ev.pending |= waiting > 0;
                ev.findings.extend(findings);
                ev.scanners.push(ScannerRun {
                    name: name.clone(),
                    version,
                    ok: true,
                    error: (waiting > 0).then(|| {
                        format!(
                            "results not available yet for {waiting} of {} platform image(s)",
                            coverage.len()
                        )
                    }),
                    coverage,
                });
            }
            Err(e) => {
                tracing::warn!(
                    "scanner `{name}` failed on {}@{}: {e}",
                    t.repository,
                    t.digest
                );
                // Fail closed: a scanner that cannot report blocks the image.
                ev.findings.push(scanner_failed(name, e.clone()));
                ev.scanners.push(ScannerRun {
                    name: name.clone(),
                    version: None,
                    ok: false,
                    error: Some(e),
                    coverage: Vec::new(),
                });
            }
        }
    }
    Ok(decide(desired, t.digest, t.repository, image_path, ev, now))
}

/// What the scanners said about one digest.
#[derive(Default)]
pub struct Evidence {
    pub findings: Vec<Finding>,
    pub scanners: Vec<ScannerRun>,
    /// A scanner has not reported yet.
    pub pending: bool,
}

/// The finding that blocks an image whose scanner could not report (fail closed). Allow
/// entries never cover it.
fn scanner_failed(scanner: &str, message: String) -> Finding {
    Finding {
        id: SCANNER_FAILED.into(),
        severity: Severity::Critical,
        scanner: scanner.to_string(),
        message,
        package: None,
        installed_version: None,
        fixed_version: None,
        platform: None,
        allowed_by: None,
    }
}

/// The id of the finding a failed scanner leaves.
pub use crate::model::finding_id::SCANNER_FAILED;

/// Decide (pure): allow entries that cover a finding (same id, the image's path in scope or
/// no scope, not expired at `now`) make it not count; any counting finding at or above
/// `fail_on` fails the verdict; otherwise a pending scanner makes it pending, else it passes.
/// The verdict records the exceptions used and the policy hash it was made under.
pub fn decide(
    desired: &DesiredState,
    digest: &Digest,
    repository: &str,
    image_path: &str,
    evidence: Evidence,
    now: OffsetDateTime,
) -> VerdictDocument {
    let Evidence {
        mut findings,
        scanners,
        pending,
    } = evidence;
    let mut applied: Vec<String> = Vec::new();
    for f in &mut findings {
        // Configuration refuses such entries; this holds even for a hand-built state.
        if crate::model::finding_id::is_airlock(&f.id)
            && !crate::model::finding_id::ALLOWABLE.contains(&f.id.as_str())
        {
            continue;
        }
        if let Some(a) = desired
            .gate
            .allow
            .iter()
            .find(|a| a.covers(&f.id, image_path) && a.expires >= now.date())
        {
            let used = format!("{} (expires {}): {}", a.id, a.expires, a.reason);
            f.allowed_by = Some(used.clone());
            applied.push(used);
        }
    }
    applied.sort();
    applied.dedup();
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.id.cmp(&b.id))
            .then(a.package.cmp(&b.package))
            .then(a.platform.cmp(&b.platform))
    });
    let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
    for f in findings.iter().filter(|f| f.allowed_by.is_none()) {
        *counts.entry(f.severity).or_default() += 1;
    }
    let blocking = findings
        .iter()
        .any(|f| f.allowed_by.is_none() && f.severity >= desired.gate.fail_on);
    let decision = if blocking {
        Decision::Fail
    } else if pending {
        Decision::Pending
    } else {
        Decision::Pass
    };
    VerdictDocument {
        format_version: VERDICT_FORMAT,
        digest: digest.clone(),
        repository: repository.to_string(),
        decision,
        created: now,
        policy_hash: desired.policy_hash(),
        fail_on: desired.gate.fail_on,
        scanners,
        counts,
        exceptions_applied: applied,
        findings,
        airlock_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[cfg(test)]
mod tests {

    use time::macros::datetime;

    use super::*;
    use crate::config::fixture::gated as desired;

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            scanner: "trivy".into(),
            message: format!("{id} message"),
            package: Some("busybox".into()),
            installed_version: None,
            fixed_version: None,
            platform: None,
            allowed_by: None,
        }
    }

    fn verdict(
        d: &DesiredState,
        path: &str,
        findings: Vec<Finding>,
        pending: bool,
    ) -> VerdictDocument {
        decide(
            d,
            &Digest::of(b"image"),
            "quarantine/library/busybox",
            path,
            Evidence {
                findings,
                scanners: vec![],
                pending,
            },
            NOW,
        )
    }

    #[test]
    fn fail_on_is_the_lowest_blocking_severity() {
        let high = desired("fail_on = \"high\"");
        let v = verdict(
            &high,
            "library/busybox",
            vec![finding("CVE-M", Severity::Medium)],
            false,
        );
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(v.counts.get(&Severity::Medium), Some(&1));
        let v = verdict(
            &high,
            "library/busybox",
            vec![finding("CVE-H", Severity::High)],
            false,
        );
        assert_eq!(v.decision, Decision::Fail);
        let low = desired("fail_on = \"low\"");
        let v = verdict(
            &low,
            "library/busybox",
            vec![finding("CVE-L", Severity::Low)],
            false,
        );
        assert_eq!(v.decision, Decision::Fail);
        // Unknown severities are recorded but never block.
        let v = verdict(
            &low,
            "library/busybox",
            vec![finding("CVE-U", Severity::Unknown)],
            false,
        );
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(v.policy_hash, low.policy_hash());
        assert_eq!(v.fail_on, Severity::Low);
        assert_ne!(low.policy_hash(), high.policy_hash());
    }

    #[test]
    fn allow_entries_are_scoped_by_id_and_image_path() {
        let d = desired(
            r#"fail_on = "high"
[[gate.allow]]
id = "CVE-2021-42378"
images = ["library/busybox"]
expires = "2027-01-31"
reason = "awk not reachable"
[[gate.allow]]
id = "CVE-ANY"
expires = "2026-11-27"
reason = "everywhere, last day"
"#,
        );
        let findings = vec![
            finding("CVE-2021-42378", Severity::Critical),
            finding("CVE-2021-42378", Severity::Critical),
            finding("CVE-ANY", Severity::High),
        ];
        let v = verdict(&d, "library/busybox", findings.clone(), false);
        assert_eq!(v.decision, Decision::Pass, "{:?}", v.findings);
        assert!(v.counts.is_empty(), "allowed findings do not count");
        assert_eq!(
            v.exceptions_applied,
            vec![
                "CVE-2021-42378 (expires 2027-01-31): awk not reachable".to_string(),
                "CVE-ANY (expires 2026-11-27): everywhere, last day".to_string()
            ]
        );
        assert!(v.findings.iter().all(|f| f.allowed_by.is_some()));
        // Another image: the scoped entry does not apply, the unscoped one does.
        let v = verdict(&d, "library/alpine", findings.clone(), false);
        assert_eq!(v.decision, Decision::Fail);
        assert_eq!(v.counts.get(&Severity::Critical), Some(&2));
        assert_eq!(
            v.exceptions_applied,
            vec!["CVE-ANY (expires 2026-11-27): everywhere, last day".to_string()]
        );
        assert_eq!(v.top_findings(5)[0].id, "CVE-2021-42378");
        // An entry that expires while the config is loaded no longer applies the next day.
        let later = decide(
            &d,
            &Digest::of(b"image"),
            "quarantine/library/busybox",
            "library/busybox",
            Evidence {
                findings: vec![finding("CVE-ANY", Severity::High)],
                ..Evidence::default()
            },
            datetime!(2026-11-28 00:00 UTC),
        );
        assert_eq!(later.decision, Decision::Fail);
        assert!(later.exceptions_applied.is_empty());
    }

    #[test]
    fn a_failed_scanner_is_never_allowed_and_pending_never_passes() {
        // Configuration refuses this entry; decide ignores it even when it is there.
        let mut d = desired("fail_on = \"critical\"");
        d.gate.allow.push(crate::config::Allow {
            id: SCANNER_FAILED.into(),
            images: vec![],
            expires: time::macros::date!(2027 - 01 - 31),
            reason: "trying to silence the gate".into(),
        });
        let v = verdict(
            &d,
            "library/busybox",
            vec![scanner_failed(
                "trivy",
                "`trivy` failed (exit status 1)".into(),
            )],
            false,
        );
        assert_eq!(v.decision, Decision::Fail);
        assert!(v.exceptions_applied.is_empty());
        let v = verdict(&d, "library/busybox", vec![], true);
        assert_eq!(v.decision, Decision::Pending);
        let v = verdict(
            &d,
            "library/busybox",
            vec![finding("CVE-C", Severity::Critical)],
            true,
        );
        assert_eq!(
            v.decision,
            Decision::Fail,
            "a known blocker decides before pending"
        );
    }

    #[test]
    fn findings_are_sorted_worst_first() {
        let d = desired("fail_on = \"high\"");
        let v = verdict(
            &d,
            "library/busybox",
            vec![
                finding("CVE-B", Severity::Low),
                finding("CVE-A", Severity::Low),
                finding("CVE-Z", Severity::Critical),
            ],
            false,
        );
        let ids: Vec<&str> = v.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["CVE-Z", "CVE-A", "CVE-B"]);
    }
}
