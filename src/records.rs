//! Verdicts and promotion records as OCI artifacts: pure builders and readers. A record is an
//! in-toto Statement v1 (`subject` = the scanned or live digest, `predicateType`
//! [`VERDICT_PREDICATE`] or [`PROMOTION_PREDICATE`], the document as `predicate`) in a DSSE
//! envelope, signed when a `[signing] key` is configured, stored the way cosign 2.x stores
//! attestations as OCI 1.1 referrers: an image manifest with `artifactType`
//! `application/vnd.dsse.envelope.v1+json`, the OCI empty config, one layer holding the
//! envelope, and `subject` = the digest. Annotations carry hints for the planner (which kind,
//! when, which decision) that nothing trusts: the document is what counts, and with a
//! `public_key` only a verified one.
//!
//! Records written by airlock 0.1 (the plain JSON document as the layer, `artifactType`
//! [`media::VERDICT_ARTIFACT`] / [`media::PROMOTION_ARTIFACT`]) are still read: unsigned.

pub mod binding;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Digest, RawManifest, Severity, media};
use crate::observed::{Decision, FindingSummary, VerdictInfo};
use crate::signing::dsse::{self, Envelope};

pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_DECISION: &str = "dev.airlock.verdict.decision";
pub const ANN_POLICY_HASH: &str = "dev.airlock.verdict.policy-hash";
pub const ANN_FROM: &str = "dev.airlock.promotion.from";
pub const ANN_VERDICT: &str = "dev.airlock.promotion.verdict";
pub const ANN_PLAN: &str = "dev.airlock.promotion.plan";
/// Hint: the statement's predicate type (listing filters by it; reading checks the statement).
pub const ANN_PREDICATE: &str = "dev.airlock.predicate-type";

/// The artifact type and layer media type of a DSSE envelope (cosign 2.x attestations).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const VERDICT_PREDICATE: &str = "https://airlock.dev/verdict/v1";
pub const PROMOTION_PREDICATE: &str = "https://airlock.dev/promotion/v1";

/// Envelopes up to this size are embedded in their layer descriptor too (OCI 1.1 `data`,
/// base64), so a reader holding the artifact manifest needs no blob GET. The layer blob is
/// written all the same (cosign, Kyverno and Ratify read the blob).
pub const EMBED_MAX: usize = 16 << 10;

pub const VERDICT_FORMAT: u32 = 1;
pub const PROMOTION_FORMAT: u32 = 1;

/// One finding of a scanner or policy check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub scanner: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub installed_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fixed_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<String>,
    /// Set when an allow entry covered this finding (it then does not count).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allowed_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannerRun {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<String>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Which platform images the scanner has results for (scanners that report per
    /// platform image, such as Defender); empty for scanners that scan the whole image.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub coverage: Vec<PlatformCoverage>,
}

/// Whether a scanner has results for one platform image of the scanned digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformCoverage {
    /// The platform image's digest (the scanned digest itself for a single-platform image).
    pub digest: Digest,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<String>,
    pub status: CoverageStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoverageStatus {
    /// The scanner reported on this platform image.
    Scanned,
    /// No results yet: the verdict is pending.
    Pending,
    /// Still no results after the scanner's `max_pending`: a blocking finding.
    NotScanned,
}

/// The gate's result for one digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictDocument {
    pub format_version: u32,
    /// The scanned digest (`subject`).
    pub digest: Digest,
    /// The quarantined repository it was scanned in.
    pub repository: String,
    pub decision: Decision,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub policy_hash: Digest,
    pub fail_on: Severity,
    pub scanners: Vec<ScannerRun>,
    /// Counts of findings that count (not allowed) by severity.
    pub counts: BTreeMap<Severity, usize>,
    /// Allow entries that covered at least one finding: `id (expires, reason)`.
    pub exceptions_applied: Vec<String>,
    pub findings: Vec<Finding>,
    pub airlock_version: String,
}

impl VerdictDocument {
    /// The worst counting findings, worst first.
    pub fn top_findings(&self, n: usize) -> Vec<FindingSummary> {
        let mut v: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.allowed_by.is_none() && f.severity >= self.fail_on)
            .collect();
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        v.dedup_by(|a, b| a.id == b.id && a.package == b.package);
        v.into_iter()
            .take(n)
            .map(|f| FindingSummary {
                id: f.id.clone(),
                severity: f.severity,
                message: FindingSummary::short_message(&f.message),
                package: f.package.clone(),
                installed_version: f.installed_version.clone(),
                fixed_version: f.fixed_version.clone(),
            })
            .collect()
    }
}

/// What a promotion did, pushed with `subject` = the live digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub format_version: u32,
    /// Live digest (`subject`).
    pub digest: Digest,
    pub live: String,
    /// `registry/repository@digest` of the quarantined image it came from.
    pub from: String,
    pub from_digest: Digest,
    pub verdict: Digest,
    pub plan_hash: Digest,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub airlock_version: String,
}

/// An artifact ready to push: its manifest and the one layer blob it references.
pub struct Artifact {
    pub manifest: RawManifest,
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("a valid time formats")
}

/// A document airlock records: a verdict or a promotion record.
pub trait Document: Serialize + serde::de::DeserializeOwned {
    /// The `predicateType` of its statement.
    const PREDICATE: &'static str;
    /// The `artifactType` airlock 0.1 wrote it with (plain JSON layer).
    const LEGACY_ARTIFACT: &'static str;
    /// The digest it is about (the statement's subject).
    fn subject(&self) -> &Digest;
    /// The statement subject's `name`.
    fn subject_name(&self) -> &str;
}

impl Document for VerdictDocument {
    const PREDICATE: &'static str = VERDICT_PREDICATE;
    const LEGACY_ARTIFACT: &'static str = media::VERDICT_ARTIFACT;
    fn subject(&self) -> &Digest {
        &self.digest
    }
    fn subject_name(&self) -> &str {
        &self.repository
    }
}

impl Document for PromotionRecord {
    const PREDICATE: &'static str = PROMOTION_PREDICATE;
    const LEGACY_ARTIFACT: &'static str = media::PROMOTION_ARTIFACT;
    fn subject(&self) -> &Digest {
        &self.digest
    }
    fn subject_name(&self) -> &str {
        &self.live
    }
}

#[derive(Serialize, Deserialize)]
struct StatementSubject {
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement<P> {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<StatementSubject>,
    predicate_type: String,
    predicate: P,
}

/// The in-toto statement of `doc` (JSON bytes).
pub fn statement<D: Document>(doc: &D) -> Vec<u8> {
    let subject = doc.subject();
    let st = Statement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![StatementSubject {
            name: doc.subject_name().to_string(),
            digest: BTreeMap::from([("sha256".to_string(), subject.hex().to_string())]),
        }],
        predicate_type: D::PREDICATE.into(),
        predicate: doc,
    };
    serde_json::to_vec(&st).expect("a statement serialises")
}

/// The document of a statement: None unless it is an in-toto Statement v1 with exactly one
/// subject, of predicate type `D::PREDICATE`, whose subject digest is the document's.
pub fn from_statement<D: Document>(bytes: &[u8]) -> Option<D> {
    let st: Statement<D> = serde_json::from_slice(bytes).ok()?;
    if st.type_ != STATEMENT_TYPE || st.predicate_type != D::PREDICATE || st.subject.len() != 1 {
        return None;
    }
    let want = st.predicate.subject();
    let digests = &st.subject[0].digest;
    (digests.len() == 1 && digests.get("sha256").map(String::as_str) == Some(want.hex()))
        .then_some(st.predicate)
}

/// A document as read from an artifact: what it says (when it is one of type `D`) and the
/// envelope it came in (None for a 0.1 plain-JSON document, which is unsigned).
pub struct Decoded<D> {
    pub document: Option<D>,
    pub envelope: Option<Envelope>,
}

/// Decode the one layer of an artifact of `artifact_type` (whose layer has `layer_media_type`):
/// a DSSE envelope holding a statement about a `D`, or a 0.1 plain-JSON `D`.
pub fn decode<D: Document>(
    artifact_type: Option<&str>,
    layer_media_type: &str,
    bytes: &[u8],
) -> Decoded<D> {
    if artifact_type == Some(DSSE_ENVELOPE) && layer_media_type == DSSE_ENVELOPE {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes) else {
            return Decoded {
                document: None,
                envelope: None,
            };
        };
        let document = (envelope.payload_type == dsse::IN_TOTO)
            .then(|| envelope.payload_bytes())
            .flatten()
            .and_then(|p| from_statement::<D>(&p));
        return Decoded {
            document,
            envelope: Some(envelope),
        };
    }
    let document = (artifact_type == Some(D::LEGACY_ARTIFACT))
        .then(|| serde_json::from_slice(bytes).ok())
        .flatten();
    Decoded {
        document,
        envelope: None,
    }
}

/// Whether a listed referrer is (by its hints) an airlock document of type `D`: the DSSE
/// artifact type with `D`'s predicate hint, or 0.1's artifact type.
pub fn is_listed_as<D: Document>(r: &crate::registry::Referrer) -> bool {
    match r.artifact_type.as_deref() {
        Some(DSSE_ENVELOPE) => {
            r.annotations.get(ANN_PREDICATE).map(String::as_str) == Some(D::PREDICATE)
        }
        Some(t) => t == D::LEGACY_ARTIFACT,
        None => false,
    }
}

fn build<D: Document>(
    doc: &D,
    signature: Option<dsse::Signature>,
    subject: (&Digest, &str, u64),
    mut annotations: BTreeMap<String, String>,
) -> Artifact {
    let envelope = Envelope::seal(dsse::IN_TOTO, &statement(doc), signature);
    let document = serde_json::to_vec(&envelope).expect("an envelope serialises");
    annotations.insert(ANN_PREDICATE.to_string(), D::PREDICATE.to_string());
    let artifact_type = DSSE_ENVELOPE;
    let config = b"{}".to_vec();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": media::OCI_EMPTY,
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": artifact_type,
            "digest": Digest::of(&document).to_string(),
            "size": document.len(),
        }],
        "subject": {
            "mediaType": subject.1,
            "digest": subject.0.to_string(),
            "size": subject.2,
        },
        "annotations": annotations,
    });
    let mut body = body;
    if document.len() <= EMBED_MAX {
        use base64::Engine as _;
        body["layers"][0]["data"] =
            serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&document));
    }
    let bytes = serde_json::to_vec(&body).expect("manifest serialises");
    Artifact {
        manifest: RawManifest::new(bytes, Some(media::OCI_MANIFEST)).expect("valid manifest"),
        layer: document,
        config,
    }
}

/// The verdict artifact for `doc`, whose subject is the scanned manifest; `signature` (over
/// [`statement`]`(doc)`, see [`dsse::Signature::by`]) when it is signed.
pub fn verdict_artifact(
    doc: &VerdictDocument,
    signature: Option<dsse::Signature>,
    subject_media_type: &str,
    subject_size: u64,
) -> Artifact {
    let mut ann = BTreeMap::new();
    ann.insert(ANN_CREATED.to_string(), rfc3339(doc.created));
    ann.insert(
        ANN_DECISION.to_string(),
        serde_json::to_value(&doc.decision)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    );
    ann.insert(ANN_POLICY_HASH.to_string(), doc.policy_hash.to_string());
    build(
        doc,
        signature,
        (&doc.digest, subject_media_type, subject_size),
        ann,
    )
}

/// The promotion record artifact, whose subject is the live manifest; `signature` (over
/// [`statement`]`(rec)`, see [`dsse::Signature::by`]) when it is signed.
pub fn promotion_artifact(
    rec: &PromotionRecord,
    signature: Option<dsse::Signature>,
    subject_media_type: &str,
    subject_size: u64,
) -> Artifact {
    let mut ann = BTreeMap::new();
    ann.insert(ANN_CREATED.to_string(), rfc3339(rec.created));
    ann.insert(ANN_FROM.to_string(), rec.from.clone());
    ann.insert(ANN_VERDICT.to_string(), rec.verdict.to_string());
    ann.insert(ANN_PLAN.to_string(), rec.plan_hash.to_string());
    build(
        rec,
        signature,
        (&rec.digest, subject_media_type, subject_size),
        ann,
    )
}

/// Summary of a verdict from a referrer's annotations (no blob read). None when the
/// annotations are missing or malformed: such a referrer is not a verdict airlock trusts.
pub fn verdict_from_annotations(
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Option<VerdictInfo> {
    let created = OffsetDateTime::parse(
        annotations.get(ANN_CREATED)?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    let decision = match annotations.get(ANN_DECISION)?.as_str() {
        "pass" => Decision::Pass,
        "fail" => Decision::Fail,
        "pending" => Decision::Pending,
        _ => return None,
    };
    Some(VerdictInfo {
        digest: digest.clone(),
        decision,
        created,
        policy_hash: annotations.get(ANN_POLICY_HASH)?.parse().ok()?,
        top_findings: vec![],
    })
}

/// Pick the newest verdict among several (ties broken by digest for determinism).
pub fn newest(verdicts: Vec<VerdictInfo>) -> Option<VerdictInfo> {
    verdicts
        .into_iter()
        .max_by(|a, b| a.created.cmp(&b.created).then(a.digest.cmp(&b.digest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Parsed;

    #[test]
    fn verdict_round_trips_through_annotations() {
        let doc = VerdictDocument {
            format_version: VERDICT_FORMAT,
            digest: Digest::of(b"image"),
            repository: "quarantine/library/busybox".into(),
            decision: Decision::Fail,
            created: time::macros::datetime!(2026-11-27 10:00 UTC),
            policy_hash: Digest::of(b"policy"),
            fail_on: Severity::High,
            scanners: vec![],
            counts: BTreeMap::new(),
            exceptions_applied: vec![],
            findings: vec![Finding {
                id: "CVE-1".into(),
                severity: Severity::Critical,
                scanner: "trivy".into(),
                message: "bad".into(),
                package: Some("busybox".into()),
                installed_version: None,
                fixed_version: Some("2".into()),
                platform: None,
                allowed_by: None,
            }],
            airlock_version: "0".into(),
        };
        let a = verdict_artifact(&doc, None, media::OCI_MANIFEST, 100);
        let Parsed::Image {
            subject,
            artifact_type,
            layers,
            ..
        } = a.manifest.parse().unwrap()
        else {
            panic!()
        };
        assert_eq!(subject.unwrap().digest, doc.digest);
        assert_eq!(artifact_type.as_deref(), Some(DSSE_ENVELOPE));
        let back: Decoded<VerdictDocument> = decode(Some(DSSE_ENVELOPE), DSSE_ENVELOPE, &a.layer);
        assert_eq!(back.document.as_ref(), Some(&doc));
        assert!(back.envelope.unwrap().signatures.is_empty());
        assert_eq!(layers[0].digest, Digest::of(&a.layer));
        let v: serde_json::Value = serde_json::from_slice(&a.manifest.bytes).unwrap();
        let ann: BTreeMap<String, String> =
            serde_json::from_value(v["annotations"].clone()).unwrap();
        let info = verdict_from_annotations(&a.manifest.digest, &ann).unwrap();
        assert_eq!(info.decision, Decision::Fail);
        assert_eq!(info.policy_hash, doc.policy_hash);
        assert_eq!(doc.top_findings(5)[0].id, "CVE-1");
    }
}
