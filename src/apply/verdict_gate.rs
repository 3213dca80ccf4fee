//! The gate at promote time: never the plan's word, never an annotation. Apply reads every
//! verdict recorded for the digest — the artifact manifest and its document blob, both
//! verified against their digests — takes the newest document, and decides from the document
//! under the *current* configuration: it must be about this digest and this quarantine
//! repository, made under the current policy hash, unexpired (`max_verdict_age`, and not dated
//! in the future), every configured scanner must have reported, and the decision is
//! recomputed from its findings with the current `fail_on` and allow entries (the document's
//! own `allowed_by` marks are ignored). A verdict that cannot be read fails closed.
//!
//! [`judge`] does the reads; [`evaluate`] is the pure decision, unit-tested here.

use time::OffsetDateTime;

use crate::config::DesiredState;
use crate::gate::{self, SCANNER_FAILED};
use crate::model::manifest::Parsed;
use crate::model::{Digest, media};
use crate::observed::{Decision, FindingSummary};
use crate::records::{self, VERDICT_FORMAT, VerdictDocument};
use crate::registry::{Referrer, Registry, RegistryError};
use crate::signing::{self, Verifier, dsse::Envelope, dsse::SignatureCheck};

/// Verdict documents larger than this are not read.
const MAX_DOCUMENT: u64 = 16 << 20;
/// How far in the future a verdict may be dated (clock skew between machines).
const MAX_SKEW: time::Duration = time::Duration::minutes(5);
/// How many of the worst findings a blocked promotion shows.
const TOP_FINDINGS: usize = 5;

/// What the current verdict document says about a digest.
#[derive(Clone, Debug, PartialEq)]
pub enum Judgement {
    /// A current verdict passes under the current gate configuration.
    Pass { verdict: Digest },
    /// A current verdict fails (or is inconsistent, which fails closed).
    Fails {
        verdict: Digest,
        detail: String,
        findings: Vec<FindingSummary>,
        /// The verdict failed only because a scanner could not run: no verdict on the image,
        /// so a scan makes a new one (a promotion stays blocked).
        outage: bool,
    },
    /// No verdict can be used: none, unreadable, pending, expired, or another configuration.
    Unusable { detail: String },
}

/// Judge the newest verdict for `digest` in quarantine repository `repo` from `referrers`,
/// the listing of `digest`'s referrers just read (by the caller, by a write that re-checks
/// from the read it merges into, or carried from this apply's own verified write of a
/// verdict): every verdict listed is still read and verified. `image_path` scopes allow
/// entries.
pub async fn judge(
    desired: &DesiredState,
    reg: &Registry,
    repo: &str,
    digest: &Digest,
    image_path: &str,
    now: OffsetDateTime,
    referrers: &[Referrer],
) -> Result<Judgement, RegistryError> {
    let key = desired.signing.public_key.as_deref();
    let mut docs: Vec<(Digest, VerdictDocument)> = Vec::new();
    for r in referrers
        .iter()
        .filter(|r| records::is_listed_as::<VerdictDocument>(r))
    {
        match read(reg, repo, &r.digest, digest, key).await? {
            // With a public_key, an unsigned or badly signed verdict is as good as none: it
            // neither vouches nor accuses (anyone who can push could have written it).
            Err(Unbelieved::Unsigned) => continue,
            Err(Unbelieved::Bad(why)) => {
                return Ok(Judgement::Unusable {
                    detail: format!("verdict {}: {why}", r.digest.short()),
                });
            }
            Ok(doc) => docs.push((r.digest.clone(), doc)),
        }
    }
    // Newest first; on a tie, a verdict that does not pass wins, then the digest decides.
    docs.sort_by(|(da, a), (db, b)| {
        b.created
            .cmp(&a.created)
            .then((a.decision == Decision::Pass).cmp(&(b.decision == Decision::Pass)))
            .then(da.cmp(db))
    });
    let Some((artifact, doc)) = docs.into_iter().next() else {
        return Ok(Judgement::Unusable {
            detail: format!("no verdict for {}", digest.short()),
        });
    };
    Ok(evaluate(
        desired, &artifact, &doc, digest, repo, image_path, now,
    ))
}

/// Why a verdict artifact cannot be believed.
enum Unbelieved {
    /// Not signed by the public_key (none or another key's signatures).
    Unsigned,
    /// Unreadable or not a verdict about this digest (fail closed).
    Bad(String),
}

/// Read one verdict artifact and its document; `Err` says why it cannot be believed.
async fn read(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
    subject: &Digest,
    key: Option<&Verifier>,
) -> Result<Result<VerdictDocument, Unbelieved>, RegistryError> {
    let read = read_document(reg, repo, artifact, subject).await?;
    let (document, envelope) = match read {
        Ok(d) => d,
        Err(why) => return Ok(Err(Unbelieved::Bad(why))),
    };
    if let Some(key) = key
        && signing::dsse::check(envelope.as_ref(), key) != SignatureCheck::Verified
    {
        return Ok(Err(Unbelieved::Unsigned));
    }
    Ok(Ok(document))
}

/// Read one verdict artifact: its document and the envelope it came in (None for 0.1's plain
/// JSON); `Err` says why it cannot be believed.
async fn read_document(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
    subject: &Digest,
) -> Result<Result<(VerdictDocument, Option<Envelope>), String>, RegistryError> {
    // get_manifest by digest verifies the bytes against the digest.
    let Some(m) = reg.get_manifest(repo, &artifact.to_string()).await? else {
        return Ok(Err("the artifact is listed but missing".into()));
    };
    let Ok(Parsed::Image {
        layers,
        subject: Some(s),
        artifact_type,
        ..
    }) = m.parse()
    else {
        return Ok(Err("not a verdict artifact with a subject".into()));
    };
    if &s.digest != subject {
        return Ok(Err(format!(
            "its subject is {}, not {}",
            s.digest.short(),
            subject.short()
        )));
    }
    let known = matches!(
        artifact_type.as_deref(),
        Some(records::DSSE_ENVELOPE | media::VERDICT_ARTIFACT)
    );
    if !known || layers.len() != 1 {
        return Ok(Err(
            "not a verdict artifact (artifactType, one document layer)".into(),
        ));
    }
    let layer = &layers[0];
    if layer.size > MAX_DOCUMENT {
        return Ok(Err(format!(
            "the document is {} bytes, more than {MAX_DOCUMENT}",
            layer.size
        )));
    }
    // Verified against the layer digest while it is read.
    let bytes = match reg.get_blob_bytes(repo, &layer.digest, MAX_DOCUMENT).await {
        Ok(b) => b,
        Err(e @ RegistryError::DigestMismatch { .. }) => return Ok(Err(e.to_string())),
        Err(e) => return Err(e),
    };
    if bytes.len() as u64 != layer.size {
        return Ok(Err(format!(
            "the document is {} bytes, its descriptor says {}",
            bytes.len(),
            layer.size
        )));
    }
    let decoded =
        records::decode::<VerdictDocument>(artifact_type.as_deref(), &layer.media_type, &bytes);
    Ok(match decoded.document {
        Some(doc) if &doc.digest == subject => Ok((doc, decoded.envelope)),
        Some(doc) => Err(format!(
            "its statement is about {}, not {}",
            doc.digest.short(),
            subject.short()
        )),
        None => Err("the document is not a verdict statement".into()),
    })
}

/// Decide from the document alone, under the current configuration (pure).
pub fn evaluate(
    desired: &DesiredState,
    artifact: &Digest,
    doc: &VerdictDocument,
    digest: &Digest,
    repo: &str,
    image_path: &str,
    now: OffsetDateTime,
) -> Judgement {
    let unusable = |detail: String| Judgement::Unusable {
        detail: format!("verdict {}: {detail}", artifact.short()),
    };
    if doc.format_version != VERDICT_FORMAT {
        return unusable(format!(
            "verdict format {} is not {VERDICT_FORMAT}",
            doc.format_version
        ));
    }
    if &doc.digest != digest {
        return unusable(format!(
            "the document is about {}, not {}",
            doc.digest.short(),
            digest.short()
        ));
    }
    if doc.repository != repo {
        return unusable(format!(
            "the document was made in {}, not in {repo}",
            doc.repository
        ));
    }
    let policy = desired.policy_hash();
    if doc.policy_hash != policy {
        return unusable(format!(
            "made under another gate configuration (policy hash {} → {}); run `airlock plan` to scan again",
            doc.policy_hash.short(),
            policy.short()
        ));
    }
    if doc.created > now + MAX_SKEW {
        return unusable(format!(
            "the document is dated in the future ({})",
            doc.created
        ));
    }
    if crate::model::freshness::expired(doc.created, now, desired.gate.max_verdict_age) {
        return unusable("older than max_verdict_age; run `airlock plan` to scan again".into());
    }
    // Recompute from the findings: the document's allow marks and counts are not believed.
    let mut findings = doc.findings.clone();
    for f in &mut findings {
        f.allowed_by = None;
    }
    let pending = doc.scanners.iter().any(|s| s.ok && s.error.is_some());
    let recomputed = gate::decide(
        desired,
        digest,
        repo,
        image_path,
        gate::Evidence {
            findings,
            scanners: doc.scanners.clone(),
            pending,
        },
        now,
    );
    let top = recomputed.top_findings(TOP_FINDINGS);
    let only_outage = top.iter().all(|f| f.id == SCANNER_FAILED);
    let fails_as = |detail: String, outage: bool| Judgement::Fails {
        verdict: artifact.clone(),
        detail: format!("verdict {}: {detail}", artifact.short()),
        findings: top.clone(),
        outage,
    };
    let fails = |detail: String| fails_as(detail, false);
    if let Some(s) = doc.scanners.iter().find(|s| !s.ok) {
        return fails_as(
            format!(
                "scanner `{}` could not report{}",
                s.name,
                s.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            only_outage,
        );
    }
    for name in &desired.gate.scanners {
        if !doc.scanners.iter().any(|s| &s.name == name) {
            return fails(format!("no result from scanner `{name}`"));
        }
    }
    if recomputed.decision == Decision::Fail {
        return fails(format!(
            "a finding at or above fail_on = {} counts under the current gate",
            desired.gate.fail_on
        ));
    }
    match doc.decision {
        Decision::Fail => fails("the document says fail".into()),
        Decision::Pending => unusable("pending: a scanner has not reported yet".into()),
        Decision::Pass if recomputed.decision == Decision::Pending => {
            unusable("pending: a scanner has not reported yet".into())
        }
        Decision::Pass => Judgement::Pass {
            verdict: artifact.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::datetime;

    use super::*;
    use crate::config::fixture::gated as desired;
    use crate::model::Severity;
    use crate::records::{Finding, ScannerRun};

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);
    const REPO: &str = "quarantine/library/busybox";
    const PATH: &str = "library/busybox";

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            scanner: "policy".into(),
            message: id.into(),
            package: None,
            installed_version: None,
            fixed_version: None,
            platform: None,
            allowed_by: None,
        }
    }

    fn digest() -> Digest {
        Digest::of(b"image")
    }

    fn artifact() -> Digest {
        Digest::of(b"artifact")
    }

    /// A document as the gate makes it.
    fn doc(d: &DesiredState, findings: Vec<Finding>, created: OffsetDateTime) -> VerdictDocument {
        gate::decide(
            d,
            &digest(),
            REPO,
            PATH,
            gate::Evidence {
                findings,
                scanners: vec![ScannerRun {
                    name: "policy".into(),
                    version: None,
                    ok: true,
                    error: None,
                    coverage: vec![],
                }],
                pending: false,
            },
            created,
        )
    }

    fn eval(d: &DesiredState, v: &VerdictDocument) -> Judgement {
        evaluate(d, &artifact(), v, &digest(), REPO, PATH, NOW)
    }

    fn is_pass(j: &Judgement) -> bool {
        matches!(j, Judgement::Pass { .. })
    }

    #[test]
    fn an_honest_passing_verdict_passes() {
        let d = desired("");
        let v = doc(&d, vec![finding("CVE-LOW", Severity::Low)], NOW);
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(
            eval(&d, &v),
            Judgement::Pass {
                verdict: artifact()
            }
        );
    }

    #[test]
    fn a_failing_document_never_passes_whatever_else_says_pass() {
        let d = desired("");
        let mut v = doc(&d, vec![finding("CVE-CRIT", Severity::Critical)], NOW);
        assert_eq!(v.decision, Decision::Fail);
        let j = eval(&d, &v);
        assert!(
            matches!(&j, Judgement::Fails { findings, .. } if findings[0].id == "CVE-CRIT"),
            "{j:?}"
        );
        // The document's decision edited to pass: recomputed from the findings.
        v.decision = Decision::Pass;
        v.counts = BTreeMap::new();
        assert!(matches!(eval(&d, &v), Judgement::Fails { .. }));
        // An allow mark written into the document is not an allow entry in airlock.toml.
        v.findings[0].allowed_by = Some("CVE-CRIT (expires 2099-01-01): trust me".into());
        assert!(matches!(eval(&d, &v), Judgement::Fails { .. }));
        // Its fail_on edited: the current configuration decides.
        v.fail_on = Severity::Unknown;
        assert!(matches!(eval(&d, &v), Judgement::Fails { .. }));
    }

    #[test]
    fn current_allow_entries_and_fail_on_decide() {
        let allow = desired(
            r#"[[gate.allow]]
id = "CVE-CRIT"
images = ["library/busybox"]
expires = "2027-01-31"
reason = "not reachable"
"#,
        );
        let v = doc(&allow, vec![finding("CVE-CRIT", Severity::Critical)], NOW);
        assert!(is_pass(&eval(&allow, &v)));
        // The same document judged as another image's (the allow entry is scoped).
        let j = evaluate(
            &allow,
            &artifact(),
            &v,
            &digest(),
            REPO,
            "library/alpine",
            NOW,
        );
        assert!(matches!(j, Judgement::Fails { .. }), "{j:?}");
    }

    #[test]
    fn another_configuration_digest_or_repository_is_unusable() {
        let d = desired("");
        let v = doc(&d, vec![], NOW);
        let stricter = desired("fail_on = \"low\"");
        let j = eval(&stricter, &v);
        assert!(
            matches!(&j, Judgement::Unusable { detail } if detail.contains("another gate configuration")),
            "{j:?}"
        );
        let j = evaluate(&d, &artifact(), &v, &Digest::of(b"other"), REPO, PATH, NOW);
        assert!(
            matches!(&j, Judgement::Unusable { detail } if detail.contains("about")),
            "{j:?}"
        );
        let j = evaluate(
            &d,
            &artifact(),
            &v,
            &digest(),
            "quarantine/library/alpine",
            PATH,
            NOW,
        );
        assert!(
            matches!(&j, Judgement::Unusable { detail } if detail.contains("made in")),
            "{j:?}"
        );
    }

    #[test]
    fn expired_or_future_verdicts_are_unusable() {
        let d = desired("max_verdict_age = \"7d\"");
        let old = doc(&d, vec![], NOW - time::Duration::days(8));
        assert!(
            matches!(eval(&d, &old), Judgement::Unusable { detail } if detail.contains("max_verdict_age"))
        );
        let future = doc(&d, vec![], NOW + time::Duration::days(365));
        assert!(
            matches!(eval(&d, &future), Judgement::Unusable { detail } if detail.contains("future"))
        );
        let skewed = doc(&d, vec![], NOW + time::Duration::minutes(1));
        assert!(is_pass(&eval(&d, &skewed)));
    }

    #[test]
    fn missing_failed_or_pending_scanners_never_pass() {
        let d = desired("");
        let mut v = doc(&d, vec![], NOW);
        v.scanners.clear();
        assert!(
            matches!(eval(&d, &v), Judgement::Fails { detail, .. } if detail.contains("no result from scanner `policy`"))
        );
        let mut v = doc(&d, vec![], NOW);
        v.scanners[0].ok = false;
        v.scanners[0].error = Some("exit 1".into());
        assert!(matches!(eval(&d, &v), Judgement::Fails { .. }));
        let mut v = doc(&d, vec![], NOW);
        v.scanners[0].error = Some("results not available yet".into());
        assert!(
            matches!(eval(&d, &v), Judgement::Unusable { detail } if detail.contains("pending"))
        );
        let mut v = doc(&d, vec![], NOW);
        v.decision = Decision::Pending;
        assert!(matches!(eval(&d, &v), Judgement::Unusable { .. }));
        let mut v = doc(&d, vec![], NOW);
        v.format_version = 99;
        assert!(matches!(eval(&d, &v), Judgement::Unusable { .. }));
    }
}
