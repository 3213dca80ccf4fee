//! The `defender` scanner: Microsoft Defender for Cloud scans images pushed to an Azure
//! Container Registry by itself; airlock reads its results for the quarantined digest from
//! Azure Resource Graph (`securityresources`, type
//! `microsoft.security/assessments/subassessments`) and maps each row to a finding.
//!
//! Rows are matched on the image digest — `properties.additionalData.artifactDetails.digest`
//! (Defender Vulnerability Management) or `properties.additionalData.imageDigest` (the older
//! Qualys-based assessment) — for the top digest and, for an index, each platform image's
//! digest (Defender scans platform images), and on the registry host. A row whose
//! `status.code` is `Healthy` says the image was scanned and is clean. No row at all means
//! Defender has not scanned the image yet: the outcome is `Pending`, the verdict pending, and
//! a later plan scans again.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::arm::Arm;
use crate::config::{DesiredState, ScannerSpec};
use crate::gate::Target;
use crate::gate::scanners::Outcome;
use crate::model::manifest::Parsed;
use crate::model::{Digest, RawManifest, Severity};
use crate::records::Finding;

/// The most result pages read for one image.
const MAX_PAGES: usize = 50;

/// Read Defender's results for the target. Errors are messages for the verdict.
pub async fn scan(
    desired: &DesiredState,
    spec: &ScannerSpec,
    t: &Target<'_>,
    top: &RawManifest,
) -> Result<Outcome, String> {
    let arm_resource = desired
        .registries
        .get(t.registry.key())
        .and_then(|r| r.arm.as_ref())
        .ok_or_else(|| {
            format!(
                "registry `{}` has no subscription: the defender scanner cannot query Azure",
                t.registry.key()
            )
        })?;
    let digests = image_digests(t.digest, top);
    let host = t.registry.host();
    let body = query_body(&arm_resource.subscription, &host, &digests);
    let arm = Arm::shared().map_err(|e| e.to_string())?;
    let mut rows: Vec<Value> = Vec::new();
    let mut body = body;
    for _ in 0..MAX_PAGES {
        let page = arm
            .resource_graph(t.registry.key(), &body)
            .await
            .map_err(|e| e.to_string())?;
        rows.extend(page_rows(&page)?);
        match page.get("$skipToken").and_then(Value::as_str) {
            Some(tok) if !tok.is_empty() => body["options"]["$skipToken"] = json!(tok),
            _ => break,
        }
    }
    Ok(outcome(&spec.name, &digests, &rows))
}

/// The digests Defender may report for an image: the top digest and, for an index, its
/// runnable platform images (attestations excluded), each with its platform.
pub fn image_digests(top_digest: &Digest, top: &RawManifest) -> BTreeMap<Digest, Option<String>> {
    let mut out = BTreeMap::new();
    out.insert(top_digest.clone(), None);
    if let Ok(Parsed::Index { manifests, .. }) = top.parse() {
        for m in manifests {
            if m.platform.as_ref().is_some_and(|p| p.os == "unknown") {
                continue;
            }
            out.insert(m.digest.clone(), m.platform.as_ref().map(|p| p.to_string()));
        }
    }
    out
}

/// The Resource Graph request: subassessments of these digests in this registry. Digests are
/// validated hex and the host a registry host, so quoting them into KQL is safe.
pub fn query_body(
    subscription: &str,
    host: &str,
    digests: &BTreeMap<Digest, Option<String>>,
) -> Value {
    let list = digests
        .keys()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        .collect();
    let query = format!(
        "securityresources\n\
         | where type == 'microsoft.security/assessments/subassessments'\n\
         | extend digest = tolower(tostring(coalesce(properties.additionalData.artifactDetails.digest, properties.additionalData.imageDigest)))\n\
         | where digest in ({list})\n\
         | extend registryHost = tostring(coalesce(properties.additionalData.artifactDetails.registryHost, properties.additionalData.registryHost))\n\
         | where isempty(registryHost) or registryHost =~ '{host}'\n\
         | project id, digest, properties\n\
         | order by id asc"
    );
    json!({
        "subscriptions": [subscription],
        "query": query,
        "options": {"resultFormat": "objectArray", "$top": 1000},
    })
}

/// The rows of one answer (`data` as an object array).
pub fn page_rows(page: &Value) -> Result<Vec<Value>, String> {
    match page.get("data") {
        Some(Value::Array(rows)) => Ok(rows.clone()),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(_) => Err("Resource Graph answered data in an unexpected format".into()),
    }
}

/// Rows → outcome: no row is pending; `Healthy` rows count as scanned and clean; every other
/// row is a finding.
pub fn outcome(
    scanner: &str,
    digests: &BTreeMap<Digest, Option<String>>,
    rows: &[Value],
) -> Outcome {
    if rows.is_empty() {
        return Outcome::Pending;
    }
    let mut findings = Vec::new();
    for row in rows {
        let p = &row["properties"];
        if p["status"]["code"].as_str() == Some("Healthy") {
            continue;
        }
        let extra = &p["additionalData"];
        let s = |v: &Value| v.as_str().filter(|x| !x.is_empty()).map(str::to_string);
        let id = s(&extra["vulnerabilityDetails"]["cveId"])
            .or_else(|| {
                extra["cve"].as_array().and_then(|cves| {
                    cves.iter()
                        .filter_map(|c| c["title"].as_str())
                        .find(|t| t.starts_with("CVE-"))
                        .map(str::to_string)
                })
            })
            .or_else(|| s(&p["id"]))
            .or_else(|| s(&row["id"]))
            .unwrap_or_else(|| "DEFENDER-UNKNOWN".into());
        let severity = s(&extra["vulnerabilityDetails"]["severity"])
            .or_else(|| s(&p["status"]["severity"]))
            .map(|v| Severity::from_report(&v))
            .unwrap_or(Severity::Unknown);
        let soft = &extra["softwareDetails"];
        let digest = s(&row["digest"])
            .or_else(|| s(&extra["artifactDetails"]["digest"]))
            .or_else(|| s(&extra["imageDigest"]));
        let platform = digest
            .and_then(|d| d.parse::<Digest>().ok())
            .and_then(|d| digests.get(&d).cloned().flatten());
        findings.push(Finding {
            id,
            severity,
            scanner: scanner.to_string(),
            message: s(&p["displayName"])
                .or_else(|| s(&p["description"]))
                .unwrap_or_default(),
            package: s(&soft["packageName"]),
            installed_version: s(&soft["version"]),
            fixed_version: s(&soft["fixedVersion"]),
            platform,
            allowed_by: None,
        });
    }
    findings.sort_by(|a, b| {
        (a.id.as_str(), a.package.as_deref(), a.platform.as_deref()).cmp(&(
            b.id.as_str(),
            b.package.as_deref(),
            b.platform.as_deref(),
        ))
    });
    findings.dedup_by(|a, b| a.id == b.id && a.package == b.package && a.platform == b.platform);
    Outcome::Findings {
        version: Some("Microsoft Defender for Cloud (Azure Resource Graph)".into()),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_digests_host_and_subscription() {
        let d = Digest::of(b"x");
        let mut ds = BTreeMap::new();
        ds.insert(d.clone(), None);
        let b = query_body("sub-1", "acraks0001.azurecr.io'; drop", &ds);
        assert_eq!(b["subscriptions"], json!(["sub-1"]));
        let q = b["query"].as_str().unwrap();
        assert!(
            q.contains("type == 'microsoft.security/assessments/subassessments'"),
            "{q}"
        );
        assert!(q.contains(&format!("digest in ('{d}')")), "{q}");
        assert!(
            q.contains("registryHost =~ 'acraks0001.azurecr.iodrop'"),
            "{q}"
        );
        assert_eq!(b["options"]["resultFormat"], "objectArray");
    }
}
