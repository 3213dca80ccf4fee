//! The gate: runs the configured scanners on a quarantined digest and decides. Built-in
//! policy checks (`policy`) read manifests and configs; external scanners (`scanners`) run a
//! command and parse its report. A scanner that fails fails closed: the verdict is `fail`.

pub mod policy;
pub mod scanners;

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::config::DesiredState;
use crate::model::manifest::Parsed;
use crate::model::{Digest, RawManifest, Severity};
use crate::observed::Decision;
use crate::records::{Finding, ScannerRun, VERDICT_FORMAT, VerdictDocument};
use crate::registry::{Registry, RegistryError};

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
            let config_json: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            out.push(policy::PlatformImage {
                platform,
                config: config_json,
                config_size: config.size,
                layers,
            });
        }
    }
    Ok(out)
}

/// Scan a quarantined digest with every configured scanner and decide.
pub async fn scan(
    desired: &DesiredState,
    t: &Target<'_>,
    top: &RawManifest,
    image_path: &str,
    now: OffsetDateTime,
) -> Result<VerdictDocument, RegistryError> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut runs: Vec<ScannerRun> = Vec::new();
    let mut pending = false;
    for name in &desired.gate.scanners {
        if name == policy::SCANNER {
            let images = platform_images(t, top).await?;
            findings.extend(policy::check(&desired.gate.policy, &images, now));
            runs.push(ScannerRun {
                name: name.clone(),
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
                ok: true,
                error: None,
            });
            continue;
        }
        let Some(spec) = desired.scanners.get(name) else {
            continue;
        };
        // Azure (feature `azure`): Defender results are read from Resource Graph, not from a
        // command's report — src/azure/defender.rs.
        let outcome = if spec.format == crate::config::ScannerFormat::Defender {
            defender(desired, spec, t, top).await
        } else {
            scanners::run(spec, t).await
        };
        match outcome {
            Ok(scanners::Outcome::Findings {
                version,
                findings: f,
            }) => {
                findings.extend(f);
                runs.push(ScannerRun {
                    name: name.clone(),
                    version,
                    ok: true,
                    error: None,
                });
            }
            Ok(scanners::Outcome::Pending) => {
                pending = true;
                runs.push(ScannerRun {
                    name: name.clone(),
                    version: None,
                    ok: true,
                    error: Some("results not available yet".into()),
                });
            }
            Err(e) => {
                // Fail closed: a scanner that cannot report blocks the image.
                findings.push(Finding {
                    id: "AIRLOCK-SCANNER-FAILED".into(),
                    severity: Severity::Critical,
                    scanner: name.clone(),
                    message: e.clone(),
                    package: None,
                    installed_version: None,
                    fixed_version: None,
                    platform: None,
                    allowed_by: None,
                });
                runs.push(ScannerRun {
                    name: name.clone(),
                    version: None,
                    ok: false,
                    error: Some(e),
                });
            }
        }
    }
    Ok(decide(desired, t, image_path, findings, runs, pending, now))
}

#[cfg(feature = "azure")]
async fn defender(
    desired: &DesiredState,
    spec: &crate::config::ScannerSpec,
    t: &Target<'_>,
    top: &RawManifest,
) -> Result<scanners::Outcome, String> {
    crate::azure::defender::scan(desired, spec, t, top).await
}

#[cfg(not(feature = "azure"))]
async fn defender(
    _desired: &DesiredState,
    spec: &crate::config::ScannerSpec,
    _t: &Target<'_>,
    _top: &RawManifest,
) -> Result<scanners::Outcome, String> {
    Err(format!(
        "scanner `{}` (defender) needs airlock built with the `azure` feature",
        spec.name
    ))
}

/// Apply allow entries and the `fail_on` threshold.
pub fn decide(
    desired: &DesiredState,
    t: &Target<'_>,
    image_path: &str,
    mut findings: Vec<Finding>,
    scanners: Vec<ScannerRun>,
    pending: bool,
    now: OffsetDateTime,
) -> VerdictDocument {
    let mut applied: Vec<String> = Vec::new();
    for f in &mut findings {
        if f.id.starts_with("AIRLOCK-SCANNER") {
            continue;
        }
        if let Some(a) = desired
            .gate
            .allow
            .iter()
            .find(|a| a.covers(&f.id, image_path) && a.expires >= now.date())
        {
            f.allowed_by = Some(format!("{} (expires {}): {}", a.id, a.expires, a.reason));
            if !applied.contains(&f.allowed_by.clone().unwrap_or_default()) {
                applied.push(f.allowed_by.clone().unwrap_or_default());
            }
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.id.cmp(&b.id))
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
        digest: t.digest.clone(),
        repository: t.repository.to_string(),
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
