//! Trivy's JSON report (`trivy image --format json`, `SchemaVersion` 2): every
//! `Results[].Vulnerabilities[]` is a finding, and so is every failed
//! `Results[].Misconfigurations[]` entry. A report without `SchemaVersion` 2 is not trusted.

use serde::Deserialize;

use super::{Report, json, short_message};
use crate::model::Severity;
use crate::records::Finding;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyReport {
    schema_version: Option<u64>,
    #[serde(default)]
    results: Option<Vec<RawResult>>,
    /// Newer trivy releases name themselves here.
    #[serde(default)]
    trivy: Option<RawTrivy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTrivy {
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawResult {
    #[serde(default)]
    target: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    vulnerabilities: Option<Vec<RawVulnerability>>,
    #[serde(default)]
    misconfigurations: Option<Vec<RawMisconfiguration>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    pkg_name: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    severity: Option<String>,
    title: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawMisconfiguration {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "AVDID")]
    avd_id: Option<String>,
    title: Option<String>,
    message: Option<String>,
    severity: Option<String>,
    status: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Parse a trivy JSON report into findings attributed to `scanner`.
pub fn parse(scanner: &str, bytes: &[u8]) -> Result<Report, String> {
    let raw: TrivyReport = serde_json::from_value(json(bytes, "trivy with --format json")?)
        .map_err(|e| format!("the output is not a trivy JSON report: {e}"))?;
    match raw.schema_version {
        Some(2) => {}
        Some(v) => {
            return Err(format!(
                "the trivy report has SchemaVersion {v}; airlock reads SchemaVersion 2"
            ));
        }
        None => {
            return Err(
                "the output is not a trivy JSON report (no SchemaVersion): run trivy with --format json"
                    .into(),
            );
        }
    }
    let mut findings = Vec::new();
    for result in raw.results.unwrap_or_default() {
        // Language packages are found in files: say which one.
        let context = (result.class != "os-pkgs" && !result.target.is_empty())
            .then(|| format!(" (in {})", result.target));
        for v in result.vulnerabilities.unwrap_or_default() {
            let text = non_empty(v.title).or(non_empty(v.description));
            findings.push(Finding {
                severity: Severity::from_report(v.severity.as_deref().unwrap_or("")),
                scanner: scanner.to_string(),
                message: format!(
                    "{}{}",
                    short_message(text.as_deref().unwrap_or(&v.vulnerability_id)),
                    context.as_deref().unwrap_or("")
                ),
                id: v.vulnerability_id,
                package: non_empty(v.pkg_name),
                installed_version: non_empty(v.installed_version),
                fixed_version: non_empty(v.fixed_version),
                platform: None,
                allowed_by: None,
            });
        }
        for m in result.misconfigurations.unwrap_or_default() {
            if m.status.as_deref().is_some_and(|s| s != "FAIL") {
                continue;
            }
            let Some(id) = non_empty(m.avd_id).or(non_empty(m.id)) else {
                continue;
            };
            let text = [non_empty(m.title), non_empty(m.message)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            findings.push(Finding {
                severity: Severity::from_report(m.severity.as_deref().unwrap_or("")),
                scanner: scanner.to_string(),
                message: format!(
                    "{} (in {})",
                    short_message(if text.is_empty() { &id } else { &text }),
                    result.target
                ),
                id,
                package: None,
                installed_version: None,
                fixed_version: None,
                platform: None,
                allowed_by: None,
            });
        }
    }
    Ok(Report {
        version: raw.trivy.and_then(|t| non_empty(t.version)),
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::scanners::fixture;

    #[test]
    fn vulnerabilities_become_findings() {
        let r = parse("trivy", &fixture("trivy-critical.json")).unwrap();
        assert_eq!(r.version, None);
        let got: Vec<String> = r.findings.iter().map(super::super::summary).collect();
        assert_eq!(
            got,
            vec![
                "CVE-2021-42378 critical busybox 1.33.1-r3 -> 1.33.1-r6",
                "CVE-2022-28391 high busybox 1.33.1-r3 -> 1.33.1-r7",
                "CVE-2021-36159 low apk-tools 2.12.7-r0 -> -",
            ]
        );
        assert!(r.findings.iter().all(|f| f.scanner == "trivy"));
        // A long title is shortened; a missing title falls back to the description.
        assert!(r.findings[0].message.starts_with("busybox: use-after-free"));
        assert!(r.findings[0].message.chars().count() <= 160);
        assert!(r.findings[2].message.starts_with("libfetch before"));
    }

    #[test]
    fn a_clean_report_has_no_findings() {
        let r = parse("trivy", &fixture("trivy-clean.json")).unwrap();
        assert!(r.findings.is_empty());
        let r = parse(
            "trivy",
            br#"{"SchemaVersion": 2, "ArtifactName": "x", "Trivy": {"Version": "0.58.1"}}"#,
        )
        .unwrap();
        assert!(r.findings.is_empty());
        assert_eq!(r.version.as_deref(), Some("0.58.1"));
    }

    #[test]
    fn failed_misconfigurations_are_findings() {
        let r = parse("trivy", &fixture("trivy-misconfig.json")).unwrap();
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(f.id, "AVD-DS-0002");
        assert_eq!(f.severity, Severity::High);
        assert!(f.message.contains("should not be 'root'"), "{}", f.message);
        assert!(f.message.ends_with("(in Dockerfile)"), "{}", f.message);
    }

    #[test]
    fn what_is_not_a_trivy_report_is_an_error() {
        for bad in [
            &b"{}"[..],
            b"[]",
            b"Downloading vulnerability DB...",
            br#"{"SchemaVersion": 1, "Results": []}"#,
            br#"{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"Severity": "HIGH"}]}]}"#,
            b"{\"SchemaVersion\": 2, \"Results\": [",
        ] {
            let e = parse("trivy", bad).unwrap_err();
            assert!(e.contains("trivy"), "{e}");
        }
    }
}
