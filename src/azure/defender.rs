//! The `defender` scanner: Microsoft Defender for Cloud scans images pushed to an Azure
//! Container Registry by itself; airlock reads its results for the quarantined digest from
//! Azure Resource Graph (`securityresources`, type
//! `microsoft.security/assessments/subassessments`) and maps each row to a finding.
//!
//! - Only the registry-image assessment of Defender Vulnerability Management is read
//!   (assessment key [`REGISTRY_ASSESSMENT`]); the runtime assessment and the retired
//!   Qualys one are filtered out, in the query and again on each row returned.
//! - A row belongs to a platform image by `properties.additionalData.artifactDetails.digest`
//!   or, as Microsoft's own "healthy images" query does, by the `sha256:…` suffix of
//!   `properties.resourceDetails.id` (`…/repositories/<repo>/images/sha256:…`); and to the
//!   registry by the ARM resource id the row's id starts with (and `registryHost`, when given).
//! - `Healthy` says the image was scanned and is clean; `Unhealthy` is a finding;
//!   `NotApplicable` (or cause `Exempt`) is a finding exempted in Defender: recorded in the
//!   verdict with `allowed_by`, not blocking.
//! - Coverage is per platform image: a single-platform image needs rows for its digest; an
//!   index needs rows for every runnable platform image (rows on the index digest itself
//!   are findings but cover no platform). A platform image without rows is pending; once
//!   the scanner's `max_pending` has passed since the first pending verdict for the digest,
//!   it is a blocking finding (`AIRLOCK-SCANNER-NOT-SCANNED`): fail closed, never clean.
//! - Before the first query for a subscription, a pre-flight check reads the Defender plans
//!   (`Microsoft.Security/pricings`): without Defender for Containers (or Defender CSPM) with
//!   registry vulnerability assessment on, no result will ever come, and the scan fails
//!   with what to enable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::arm::Arm;
use crate::config::{ArmResource, DesiredState, ScannerSpec};
use crate::gate::Target;
use crate::gate::scanners::Outcome;
use crate::gate::{ScanError, ScanInput, Scanner};
use crate::model::manifest::Parsed;
use crate::model::{Digest, RawManifest, Severity};
use crate::observed::Decision;
use crate::records::{CoverageStatus, Finding, PlatformCoverage};

/// The most result pages read for one image.
const MAX_PAGES: usize = 50;

/// Defender Vulnerability Management's assessment of Azure Container Registry images.
pub const REGISTRY_ASSESSMENT: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";

/// The finding a platform image left without results past `max_pending` becomes. Allow
/// entries never cover `AIRLOCK-SCANNER-…` findings.
pub const NOT_SCANNED: &str = "AIRLOCK-SCANNER-NOT-SCANNED";

/// `Microsoft.Security/pricings` (GA).
pub const PRICINGS_API_VERSION: &str = "2024-01-01";

/// The Defender plan extension that scans registry images.
const REGISTRY_EXTENSION: &str = "ContainerRegistriesVulnerabilityAssessments";

/// What Defender may report on for one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDigests {
    /// The scanned digest (an index or a single manifest).
    pub top: Digest,
    /// The platform images that need results: the runnable children of an index
    /// (attestations excluded), or the image itself. Never empty.
    pub platforms: BTreeMap<Digest, Option<String>>,
}

impl ImageDigests {
    /// Every digest a row may name: the top digest and the platform images.
    pub fn all(&self) -> BTreeSet<&Digest> {
        let mut s: BTreeSet<&Digest> = self.platforms.keys().collect();
        s.insert(&self.top);
        s
    }
}

/// Defender results read through Azure Resource Manager: the gate's [`Scanner`] for
/// `format = "defender"` (registered by `commands`). It holds its ARM client (built on first
/// use) and the pre-flight answers per subscription, for the life of one command.
pub struct Defender {
    azure: Arc<super::Azure>,
    /// Pre-flight answers by subscription (failures to read the plans are not kept).
    checked: tokio::sync::Mutex<BTreeMap<String, Result<(), String>>>,
}

impl Scanner for Defender {
    fn scan<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<Outcome, ScanError>> {
        Box::pin(async move {
            let spec = input
                .spec
                .ok_or_else(|| "the defender scanner needs its [scanners] entry".to_string())?;
            Ok(self
                .scan(input.desired, spec, input.target, input.top, input.now)
                .await?)
        })
    }
}

impl Defender {
    pub fn new(azure: Arc<super::Azure>) -> Defender {
        Defender {
            azure,
            checked: Default::default(),
        }
    }

    async fn arm(&self) -> Result<&Arm, String> {
        self.azure.arm().map_err(|e| e.to_string())
    }

    /// Read Defender's results for the target. Errors are messages for the verdict.
    pub async fn scan(
        &self,
        desired: &DesiredState,
        spec: &ScannerSpec,
        t: &Target<'_>,
        top: &RawManifest,
        now: OffsetDateTime,
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
        let arm = self.arm().await?;
        self.preflight(arm, t.registry.key(), &arm_resource.subscription)
            .await?;
        let digests = image_digests(t.digest, top);
        let host = t.registry.host();
        let mut body = query_body(arm_resource, &host, &digests);
        let mut rows: Vec<Value> = Vec::new();
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
        let since = pending_since(t, now).await?;
        let max_pending = spec.max_pending.unwrap_or(Duration::from_secs(24 * 3600));
        Ok(outcome(
            &spec.name,
            &Scope {
                registry: arm_resource,
                host: &host,
            },
            &digests,
            &rows,
            &Clock {
                now,
                pending_since: since,
                max_pending,
            },
        ))
    }
}

/// When the digest was first found pending: the oldest pending verdict recorded for it
/// (its `created` annotation), else now. Never later than now.
async fn pending_since(t: &Target<'_>, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let referrers = t
        .registry
        .referrers(t.repository, t.digest, None)
        .await
        .map_err(|e| {
            format!("cannot read earlier verdicts to tell how long Defender has been pending: {e}")
        })?;
    Ok(referrers
        .iter()
        .filter(|r| crate::records::is_listed_as::<crate::records::VerdictDocument>(r))
        .filter_map(|r| crate::records::verdict_from_annotations(&r.digest, &r.annotations))
        .filter(|v| v.decision == Decision::Pending)
        .map(|v| v.created)
        .min()
        .unwrap_or(now)
        .min(now))
}

/// The digests Defender may report for an image (see [`ImageDigests`]).
pub fn image_digests(top_digest: &Digest, top: &RawManifest) -> ImageDigests {
    let mut platforms = BTreeMap::new();
    if let Ok(Parsed::Index { manifests, .. }) = top.parse() {
        for m in manifests {
            if m.platform.as_ref().is_some_and(|p| p.os == "unknown") {
                continue;
            }
            platforms.insert(m.digest.clone(), m.platform.as_ref().map(|p| p.to_string()));
        }
    }
    if platforms.is_empty() {
        platforms.insert(top_digest.clone(), None);
    }
    ImageDigests {
        top: top_digest.clone(),
        platforms,
    }
}

/// Keep only characters that cannot end a KQL string literal.
fn kql_safe(s: &str) -> String {
    s.chars()
        .filter(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/' | '(' | ')')
        })
        .collect()
}

/// The Resource Graph request: the MDVM registry-image subassessments of this registry
/// that name one of these digests (by artifact digest or resource id suffix). Digests are
/// validated hex; the other values pass [`kql_safe`].
pub fn query_body(registry: &ArmResource, host: &str, digests: &ImageDigests) -> Value {
    let list = digests
        .all()
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let host = kql_safe(host);
    let registry_id = kql_safe(&registry.id());
    let query = format!(
        "securityresources\n\
         | where type == 'microsoft.security/assessments/subassessments'\n\
         | extend assessmentKey = tolower(extract(@'(?i)/providers/Microsoft.Security/assessments/([^/]*)/', 1, id))\n\
         | where assessmentKey == '{REGISTRY_ASSESSMENT}'\n\
         | where id startswith '{registry_id}/'\n\
         | extend artifactDigest = tolower(tostring(properties.additionalData.artifactDetails.digest))\n\
         | extend resourceDigest = tolower(extract(@'/images/(sha256:[0-9a-fA-F]{{64}})$', 1, tostring(properties.resourceDetails.id)))\n\
         | where artifactDigest in ({list}) or resourceDigest in ({list})\n\
         | extend registryHost = tostring(properties.additionalData.artifactDetails.registryHost)\n\
         | where isempty(registryHost) or registryHost =~ '{host}'\n\
         | project id, properties\n\
         | order by id asc"
    );
    json!({
        "subscriptions": [registry.subscription],
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

/// Where rows must come from.
pub struct Scope<'a> {
    pub registry: &'a ArmResource,
    /// `host[:port]` of the registry.
    pub host: &'a str,
}

/// Time for the pending rule.
pub struct Clock {
    pub now: OffsetDateTime,
    /// When the digest was first found pending (now, if never).
    pub pending_since: OffsetDateTime,
    pub max_pending: Duration,
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
}

/// The digest a row is about, if it names one: `artifactDetails.digest`, else the
/// `sha256:…` after `/images/` at the end of `resourceDetails.id`.
pub fn row_digest(row: &Value) -> Option<Digest> {
    let p = &row["properties"];
    if let Some(d) = text(&p["additionalData"]["artifactDetails"]["digest"]) {
        return d.to_ascii_lowercase().parse().ok();
    }
    let id = text(&p["resourceDetails"]["id"])?;
    let (_, last) = id.rsplit_once("/images/")?;
    last.to_ascii_lowercase().parse().ok()
}

/// Whether a row is the registry-image assessment of this registry (not the runtime or the
/// Qualys assessment, not another registry).
fn row_in_scope(row: &Value, scope: &Scope<'_>) -> bool {
    let Some(id) = row["id"].as_str() else {
        return false;
    };
    let id = id.to_ascii_lowercase();
    let prefix = format!(
        "{}/providers/microsoft.security/assessments/{REGISTRY_ASSESSMENT}/",
        scope.registry.id().to_ascii_lowercase()
    );
    if !id.starts_with(&prefix) {
        return false;
    }
    match text(&row["properties"]["additionalData"]["artifactDetails"]["registryHost"]) {
        Some(h) => h.eq_ignore_ascii_case(scope.host),
        None => true,
    }
}

/// Rows → outcome (pure): findings from the rows of this registry's registry-image
/// assessment about these digests (other rows are ignored), and the coverage of each
/// platform image.
pub fn outcome(
    scanner: &str,
    scope: &Scope<'_>,
    digests: &ImageDigests,
    rows: &[Value],
    clock: &Clock,
) -> Outcome {
    let known = digests.all();
    let mut covered: BTreeSet<Digest> = BTreeSet::new();
    let mut findings = Vec::new();
    for row in rows {
        if !row_in_scope(row, scope) {
            tracing::debug!(id = ?row["id"].as_str(), "Resource Graph row of another assessment or registry ignored");
            continue;
        }
        let Some(digest) = row_digest(row).filter(|d| known.contains(d)) else {
            tracing::debug!(id = ?row["id"].as_str(), "Resource Graph row about another image ignored");
            continue;
        };
        let p = &row["properties"];
        let extra = &p["additionalData"];
        let code = text(&p["status"]["code"]).unwrap_or_default();
        let cause = text(&p["status"]["cause"]).unwrap_or_default();
        let vuln = text(&extra["vulnerabilityDetails"]["cveId"]).or_else(|| text(&p["id"]));
        let exempt = code.eq_ignore_ascii_case("NotApplicable")
            || code.eq_ignore_ascii_case("Exempt")
            || cause.eq_ignore_ascii_case("Exempt");
        let healthy = code.eq_ignore_ascii_case("Healthy");
        // Healthy and Unhealthy rows say Defender scanned the image; an exempted row does
        // when it names the vulnerability it exempts.
        if !exempt || vuln.is_some() {
            covered.insert(digest.clone());
        }
        if healthy {
            continue;
        }
        let id = vuln
            .clone()
            .or_else(|| text(&row["id"]))
            .unwrap_or_else(|| "DEFENDER-UNKNOWN".into());
        let severity = text(&extra["vulnerabilityDetails"]["severity"])
            .or_else(|| text(&p["status"]["severity"]))
            .map(|v| Severity::from_report(&v))
            .unwrap_or(Severity::Unknown);
        let soft = &extra["softwareDetails"];
        let allowed_by = exempt.then(|| {
            let why = [
                cause.as_str(),
                text(&p["status"]["description"])
                    .unwrap_or_default()
                    .as_str(),
            ]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(": ");
            format!(
                "exempted in Microsoft Defender for Cloud (status {code}{})",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(", {why}")
                }
            )
        });
        findings.push(Finding {
            id,
            severity,
            scanner: scanner.to_string(),
            message: crate::gate::scanners::short_message(
                &text(&p["displayName"])
                    .or_else(|| text(&p["description"]))
                    .unwrap_or_default(),
            ),
            package: text(&soft["packageName"]),
            installed_version: text(&soft["version"]),
            fixed_version: text(&soft["fixedVersion"]),
            platform: digests.platforms.get(&digest).cloned().flatten(),
            allowed_by,
        });
    }
    let waited = clock.now - clock.pending_since;
    let expired =
        waited >= time::Duration::try_from(clock.max_pending).unwrap_or(time::Duration::MAX);
    let mut coverage = Vec::new();
    for (digest, platform) in &digests.platforms {
        let status = if covered.contains(digest) {
            CoverageStatus::Scanned
        } else if expired {
            findings.push(Finding {
                id: NOT_SCANNED.into(),
                severity: Severity::Critical,
                scanner: scanner.to_string(),
                message: format!(
                    "Defender for Cloud reported no results for {digest}{} within max_pending ({}) since the first pending verdict: images with an unsupported OS or base are not scanned, and registry scanning may be off",
                    platform.as_ref().map(|p| format!(" ({p})")).unwrap_or_default(),
                    humantime::format_duration(clock.max_pending)
                ),
                package: None,
                installed_version: None,
                fixed_version: None,
                platform: platform.clone(),
                allowed_by: None,
            });
            CoverageStatus::NotScanned
        } else {
            CoverageStatus::Pending
        };
        coverage.push(PlatformCoverage {
            digest: digest.clone(),
            platform: platform.clone(),
            status,
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
    Outcome::PerPlatform {
        version: Some("Microsoft Defender for Cloud (Azure Resource Graph)".into()),
        findings,
        coverage,
    }
}

/// Why a Defender plan (`Microsoft.Security/pricings/<plan>` answer) does not scan registry
/// images, or None when it does: the tier must be Standard and the registry extension, when
/// listed, enabled.
pub fn plan_gap(pricing: &Value) -> Option<String> {
    let p = &pricing["properties"];
    let tier = text(&p["pricingTier"]).unwrap_or_else(|| "unknown".into());
    if !tier.eq_ignore_ascii_case("Standard") {
        return Some(format!("pricingTier {tier}"));
    }
    let off = p["extensions"].as_array().is_some_and(|exts| {
        exts.iter().any(|e| {
            e["name"].as_str() == Some(REGISTRY_EXTENSION)
                && !e["isEnabled"]
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case("True"))
        })
    });
    off.then(|| format!("its {REGISTRY_EXTENSION} extension is off"))
}

impl Defender {
    /// Pre-flight: Defender for Containers (or Defender CSPM) with registry vulnerability
    /// assessment must be on for the subscription, else no result will ever come. Checked once
    /// per subscription and command (a failure to read the plans is not remembered).
    async fn preflight(&self, arm: &Arm, key: &str, subscription: &str) -> Result<(), String> {
        // Held across the check: concurrent scans of one subscription share one answer.
        let mut checked = self.checked.lock().await;
        if let Some(r) = checked.get(subscription) {
            return r.clone();
        }
        let mut gaps = Vec::new();
        let mut result = Err(String::new());
        for (plan, label) in [
            ("Containers", "Defender for Containers"),
            ("CloudPosture", "Defender CSPM"),
        ] {
            let path = format!(
                "/subscriptions/{subscription}/providers/Microsoft.Security/pricings/{plan}?api-version={PRICINGS_API_VERSION}"
            );
            let what = format!("read the {label} plan of subscription {subscription}");
            let answer = arm.get(key, &what, &path).await.map_err(|e| {
            format!("{e} (the pre-flight check of the defender scanner needs Microsoft.Security/pricings/read, e.g. Security Reader)")
        })?;
            match answer.as_ref().map(plan_gap) {
                Some(None) => {
                    result = Ok(());
                    break;
                }
                Some(Some(gap)) => gaps.push(format!("{label} ({plan}): {gap}")),
                None => gaps.push(format!("{label} ({plan}): not found")),
            }
        }
        if result.is_err() {
            result = Err(format!(
                "Microsoft Defender for Cloud does not scan the images of registry `{key}`: in subscription {subscription}, {}. Enable Defender for Containers with registry vulnerability assessment (az security pricing create -n Containers --tier Standard --extensions name={REGISTRY_EXTENSION} isEnabled=True, or Defender for Cloud → Environment settings → Defender plans), or remove `defender` from [gate] scanners",
                gaps.join("; ")
            ));
        }
        checked.insert(subscription.to_string(), result.clone());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acr() -> ArmResource {
        ArmResource {
            subscription: "sub-1".into(),
            resource_group: "rg".into(),
            name: "acraks0001".into(),
            import_timeout: Duration::from_secs(60),
        }
    }

    fn single(d: &Digest) -> ImageDigests {
        let mut platforms = BTreeMap::new();
        platforms.insert(d.clone(), None);
        ImageDigests {
            top: d.clone(),
            platforms,
        }
    }

    #[test]
    fn the_query_filters_on_assessment_registry_and_digests() {
        let d = Digest::of(b"x");
        let b = query_body(&acr(), "acraks0001.azurecr.io'; drop", &single(&d));
        assert_eq!(b["subscriptions"], json!(["sub-1"]));
        let q = b["query"].as_str().unwrap();
        assert!(
            q.contains("type == 'microsoft.security/assessments/subassessments'"),
            "{q}"
        );
        assert!(
            q.contains(&format!("assessmentKey == '{REGISTRY_ASSESSMENT}'")),
            "{q}"
        );
        assert!(
            q.contains(&format!("id startswith '{}/'", acr().id())),
            "{q}"
        );
        assert!(q.contains(&format!("artifactDigest in ('{d}')")), "{q}");
        assert!(q.contains(&format!("resourceDigest in ('{d}')")), "{q}");
        assert!(q.contains("properties.resourceDetails.id"), "{q}");
        assert!(
            q.contains("registryHost =~ 'acraks0001.azurecr.iodrop'"),
            "{q}"
        );
        assert_eq!(b["options"]["resultFormat"], "objectArray");
    }

    #[test]
    fn plan_gaps_name_what_is_off() {
        assert_eq!(
            plan_gap(&json!({"properties": {"pricingTier": "Standard"}})),
            None
        );
        assert_eq!(
            plan_gap(&json!({"properties": {"pricingTier": "Free"}})).unwrap(),
            "pricingTier Free"
        );
        let off = json!({"properties": {"pricingTier": "Standard", "extensions": [
            {"name": REGISTRY_EXTENSION, "isEnabled": "False"}]}});
        assert!(plan_gap(&off).unwrap().contains(REGISTRY_EXTENSION));
        let on = json!({"properties": {"pricingTier": "Standard", "extensions": [
            {"name": REGISTRY_EXTENSION, "isEnabled": "True"}]}});
        assert_eq!(plan_gap(&on), None);
        assert!(plan_gap(&json!({})).is_some());
    }
}
