//! Grype's JSON report (`grype -o json`): every `matches[]` entry is a finding (its
//! `vulnerability` and the `artifact` it was found in); `descriptor.version` names the
//! scanner. A document without a `matches` array is not trusted.

use serde::Deserialize;

use super::{Report, json, short_message};
use crate::model::Severity;
use crate::records::Finding;

#[derive(Deserialize)]
struct GrypeReport {
    matches: Vec<RawMatch>,
    #[serde(default)]
    descriptor: Option<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    version: Option<String>,
}

#[derive(Deserialize)]
struct RawMatch {
    vulnerability: RawVulnerability,
    #[serde(default)]
    artifact: Option<RawArtifact>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVulnerability {
    id: String,
    severity: Option<String>,
    description: Option<String>,
    /// Older grype releases.
    #[serde(default)]
    fixed_versions: Vec<String>,
    #[serde(default)]
    fix: Option<RawFix>,
}

#[derive(Deserialize)]
struct RawFix {
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct RawArtifact {
    name: Option<String>,
    version: Option<String>,
}

/// Parse a grype JSON report into findings attributed to `scanner`.
pub fn parse(scanner: &str, bytes: &[u8]) -> Result<Report, String> {
    let raw: GrypeReport = serde_json::from_value(json(bytes, "grype with -o json")?)
        .map_err(|e| format!("the output is not a grype JSON report: {e}"))?;
    let findings = raw
        .matches
        .into_iter()
        .map(|m| {
            let v = m.vulnerability;
            let fixed = v
                .fix
                .map(|f| f.versions)
                .filter(|f| !f.is_empty())
                .unwrap_or(v.fixed_versions);
            let (package, installed) = m.artifact.map(|a| (a.name, a.version)).unwrap_or_default();
            Finding {
                severity: Severity::from_report(v.severity.as_deref().unwrap_or("")),
                scanner: scanner.to_string(),
                message: short_message(
                    v.description
                        .as_deref()
                        .filter(|d| !d.trim().is_empty())
                        .unwrap_or(&v.id),
                ),
                id: v.id,
                package: package.filter(|p| !p.is_empty()),
                installed_version: installed.filter(|p| !p.is_empty()),
                fixed_version: (!fixed.is_empty()).then(|| fixed.join(", ")),
                platform: None,
                allowed_by: None,
            }
        })
        .collect();
    Ok(Report {
        version: raw
            .descriptor
            .and_then(|d| d.version)
            .filter(|v| !v.is_empty()),
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::scanners::fixture;

    #[test]
    fn matches_become_findings() {
        let r = parse("grype", &fixture("grype.json")).unwrap();
        assert_eq!(r.version.as_deref(), Some("0.74.1"));
        let got: Vec<String> = r.findings.iter().map(super::super::summary).collect();
        assert_eq!(
            got,
            vec![
                "CVE-2021-42378 critical busybox 1.33.1-r3 -> 1.33.1-r6",
                "GHSA-qppj-fm5r-hxr3 medium golang.org/x/net v0.15.0 -> 0.17.0",
                "CVE-2021-36159 low apk-tools 2.12.7-r0 -> -",
            ]
        );
        assert!(r.findings[0].message.starts_with("A use-after-free"));
        assert_eq!(r.findings[2].message, "CVE-2021-36159");
    }

    #[test]
    fn a_clean_report_has_no_findings() {
        let r = parse("grype", &fixture("grype-clean.json")).unwrap();
        assert!(r.findings.is_empty());
    }

    #[test]
    fn what_is_not_a_grype_report_is_an_error() {
        for bad in [
            &b"{}"[..],
            b"null",
            b"NAME INSTALLED FIXED-IN TYPE VULNERABILITY SEVERITY",
            br#"{"matches": [{"artifact": {"name": "x"}}]}"#,
        ] {
            let e = parse("grype", bad).unwrap_err();
            assert!(e.contains("grype"), "{e}");
        }
    }
}
