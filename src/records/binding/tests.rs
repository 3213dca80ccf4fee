//! Every way a record can lie, and the referrers-tag exactness helpers.

use std::collections::BTreeMap;

use time::macros::datetime;

use super::*;
use crate::model::{RawManifest, Severity};
use crate::records::{Finding, PROMOTION_FORMAT, VERDICT_FORMAT, promotion_artifact};

const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

fn d(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}

fn want() -> Binding {
    Binding {
        live_registry: "acr".into(),
        live_repository: "live/library/busybox".into(),
        tag: "1.33.0".into(),
        digest: d('a'),
        quarantine_registry: "acr".into(),
        quarantine_repository: "quarantine/library/busybox".into(),
        max_verdict_age: Duration::from_secs(7 * 86400),
        public_key: None,
    }
}

/// An artifact `artifact` of type `kind` about image `d('a')`, read without an envelope.
fn about_a<D>(artifact: char, kind: &str, document: D) -> ReadArtifact<D> {
    ReadArtifact {
        artifact: d(artifact),
        artifact_type: Some(kind.into()),
        subject: Some(d('a')),
        document: Some(document),
        envelope: None,
    }
}

fn record() -> ReadRecord {
    let w = want();
    about_a(
        '1',
        media::PROMOTION_ARTIFACT,
        PromotionRecord {
            format_version: PROMOTION_FORMAT,
            digest: d('a'),
            live: w.live_ref(),
            from: w.from_ref(),
            from_digest: d('a'),
            verdict: d('f'),
            plan_hash: d('e'),
            created: NOW - time::Duration::hours(1),
            airlock_version: "0".into(),
        },
    )
}

fn verdict(decision: Decision, created: OffsetDateTime) -> ReadVerdict {
    about_a(
        'f',
        media::VERDICT_ARTIFACT,
        VerdictDocument {
            format_version: VERDICT_FORMAT,
            digest: d('a'),
            repository: "quarantine/library/busybox".into(),
            decision,
            created,
            policy_hash: d('c'),
            fail_on: Severity::High,
            scanners: vec![],
            counts: BTreeMap::new(),
            exceptions_applied: vec![],
            findings: vec![Finding {
                id: "CVE-2021-42378".into(),
                severity: Severity::Critical,
                scanner: "trivy".into(),
                message: "bad".into(),
                package: None,
                installed_version: None,
                fixed_version: None,
                platform: None,
                allowed_by: None,
            }],
            airlock_version: "0".into(),
        },
    )
}

fn passing() -> ReadVerdict {
    verdict(Decision::Pass, NOW - time::Duration::hours(2))
}

fn lie(f: impl FnOnce(&mut PromotionRecord)) -> ReadRecord {
    let mut r = record();
    f(r.document.as_mut().unwrap());
    r
}

fn problem(r: &ReadRecord, quarantined: bool, v: Option<&ReadVerdict>) -> RecordProblem {
    check(r, quarantined, v, &want()).expect_err("the record must not vouch")
}

#[test]
fn an_honest_record_binds() {
    let r = record();
    let got = check(&r, true, Some(&passing()), &want()).unwrap();
    assert_eq!(
        got.from,
        "acr/quarantine/library/busybox@".to_string() + &d('a').to_string()
    );
    assert_eq!(want().live_ref(), "acr/live/library/busybox:1.33.0");
}

#[test]
fn a_record_copied_from_another_digest_with_its_digest_rewritten_fails() {
    // Copied from the record of b, only `digest` rewritten: from_digest still says b.
    let r = lie(|x| {
        x.from_digest = d('b');
        x.from = from_ref("acr", "quarantine/library/busybox", &d('b'));
    });
    assert!(matches!(
        problem(&r, true, Some(&passing())),
        RecordProblem::FromDigest { .. }
    ));
    // And the digest field itself.
    let r = lie(|x| x.digest = d('b'));
    assert!(matches!(
        problem(&r, true, Some(&passing())),
        RecordProblem::Digest { .. }
    ));
}

#[test]
fn a_record_whose_subject_is_another_digest_fails() {
    let mut r = record();
    r.subject = Some(d('b'));
    let p = problem(&r, true, Some(&passing()));
    assert!(matches!(p, RecordProblem::Subject { .. }), "{p}");
    r.subject = None;
    assert!(
        problem(&r, true, Some(&passing()))
            .to_string()
            .contains("missing")
    );
}

#[test]
fn another_tags_record_fails() {
    for live in [
        "acr/live/library/busybox:latest",
        "acr/live/team/other:1.33.0",
        "prod/live/library/busybox:1.33.0",
        "acr/live/library/busybox:1.33.0 ",
    ] {
        let r = lie(|x| x.live = live.into());
        let p = problem(&r, true, Some(&passing()));
        assert!(matches!(p, RecordProblem::Live { .. }), "{live}: {p}");
        assert!(p.to_string().contains("not this tag"), "{p}");
    }
}

#[test]
fn another_images_quarantine_fails() {
    for from in [
        from_ref("acr", "quarantine/team/other", &d('a')),
        from_ref("acr", "live/library/busybox", &d('a')),
        from_ref("elsewhere", "quarantine/library/busybox", &d('a')),
        format!("acr/quarantine/library/busybox:1.33.0@{}", d('a')),
    ] {
        let r = lie(|x| x.from = from.clone());
        let p = problem(&r, true, Some(&passing()));
        assert!(matches!(p, RecordProblem::From { .. }), "{from}: {p}");
    }
}

#[test]
fn a_digest_gone_from_quarantine_fails() {
    let p = problem(&record(), false, Some(&passing()));
    assert!(matches!(p, RecordProblem::NotQuarantined { .. }), "{p}");
}

#[test]
fn a_missing_or_foreign_verdict_fails() {
    assert!(matches!(
        problem(&record(), true, None),
        RecordProblem::VerdictMissing { .. }
    ));
    // A verdict read for another artifact than the one the record names.
    let mut v = passing();
    v.artifact = d('9');
    assert!(matches!(
        problem(&record(), true, Some(&v)),
        RecordProblem::VerdictMissing { .. }
    ));
    // Not a verdict artifact at all.
    let mut v = passing();
    v.artifact_type = Some(media::PROMOTION_ARTIFACT.into());
    assert!(matches!(
        problem(&record(), true, Some(&v)),
        RecordProblem::NotAVerdict { .. }
    ));
    let mut v = passing();
    v.document = None;
    assert!(matches!(
        problem(&record(), true, Some(&v)),
        RecordProblem::NotAVerdict { .. }
    ));
}

#[test]
fn a_verdict_about_another_digest_or_repository_fails() {
    // The verdict's subject is another image (its document copied, subject kept).
    let mut v = passing();
    v.subject = Some(d('b'));
    assert!(matches!(
        problem(&record(), true, Some(&v)),
        RecordProblem::VerdictSubject { .. }
    ));
    // The document is about another image.
    let mut v = passing();
    v.document.as_mut().unwrap().digest = d('b');
    assert!(matches!(
        problem(&record(), true, Some(&v)),
        RecordProblem::VerdictSubject { .. }
    ));
    // Made in another image's quarantine repository.
    let mut v = passing();
    v.document.as_mut().unwrap().repository = "quarantine/team/other".into();
    assert!(matches!(
        problem(&record(), true, Some(&v)),
        RecordProblem::VerdictRepository { .. }
    ));
}

#[test]
fn a_failing_or_pending_verdict_fails_whatever_the_annotations_said() {
    for decision in [Decision::Fail, Decision::Pending] {
        let v = verdict(decision, NOW - time::Duration::hours(2));
        let p = problem(&record(), true, Some(&v));
        assert!(matches!(p, RecordProblem::VerdictNotPassing { .. }), "{p}");
    }
}

#[test]
fn a_verdict_expired_when_promoted_fails() {
    let v = verdict(Decision::Pass, NOW - time::Duration::days(9));
    let p = problem(&record(), true, Some(&v));
    assert!(matches!(p, RecordProblem::VerdictExpired { .. }), "{p}");
    assert!(p.to_string().contains("max_verdict_age 7days"), "{p}");
}

#[test]
fn something_that_is_not_a_record_fails() {
    let mut r = record();
    r.artifact_type = Some(media::VERDICT_ARTIFACT.into());
    assert!(matches!(
        problem(&r, true, Some(&passing())),
        RecordProblem::NotARecord { .. }
    ));
    let mut r = record();
    r.document = None;
    assert!(matches!(
        problem(&r, true, Some(&passing())),
        RecordProblem::NotARecord { .. }
    ));
}

#[test]
fn the_current_verdict_must_pass_and_be_fresh() {
    let w = want();
    check_current(Some(&passing()), &w, NOW).unwrap();
    assert!(matches!(
        check_current(None, &w, NOW),
        Err(VerdictProblem::Missing { .. })
    ));
    let old = verdict(Decision::Pass, NOW - time::Duration::days(8));
    assert!(matches!(
        check_current(Some(&old), &w, NOW),
        Err(VerdictProblem::Expired { .. })
    ));
    let failing = verdict(Decision::Fail, NOW);
    let p = check_current(Some(&failing), &w, NOW).unwrap_err();
    assert!(p.to_string().contains("CVE-2021-42378 critical"), "{p}");
    let pending = verdict(Decision::Pending, NOW);
    assert!(matches!(
        check_current(Some(&pending), &w, NOW),
        Err(VerdictProblem::Pending { .. })
    ));
    let mut other = passing();
    other.subject = Some(d('b'));
    assert!(matches!(
        check_current(Some(&other), &w, NOW),
        Err(VerdictProblem::Subject { .. })
    ));
    let mut other = passing();
    other.document.as_mut().unwrap().repository = "quarantine/x".into();
    assert!(matches!(
        check_current(Some(&other), &w, NOW),
        Err(VerdictProblem::Repository { .. })
    ));
}

#[test]
fn only_exact_referrers_tags_name_a_subject() {
    let hex = "a".repeat(64);
    assert_eq!(
        referrers_tag_subject(&format!("sha256-{hex}")),
        Some(d('a'))
    );
    for tag in [
        "sha256-evil".to_string(),
        "sha256-".to_string(),
        format!("sha256-{}", "A".repeat(64)),
        format!("sha256-{}", "a".repeat(63)),
        format!("sha256-{}", "a".repeat(65)),
        format!("sha256-{hex}.sig"),
        format!("sha512-{hex}"),
        hex.clone(),
    ] {
        assert_eq!(referrers_tag_subject(&tag), None, "{tag}");
    }
}

fn manifest(v: serde_json::Value) -> RawManifest {
    RawManifest::new(serde_json::to_vec(&v).unwrap(), None).unwrap()
}

#[test]
fn only_non_runnable_artifacts_about_the_subject_are_referrers() {
    let w = want();
    let rec = promotion_artifact(
        record().document.as_ref().unwrap(),
        None,
        media::OCI_MANIFEST,
        100,
    );
    assert!(is_artifact_referrer_of(&rec.manifest, &w.digest));
    assert!(!is_artifact_referrer_of(&rec.manifest, &d('b')));
    let desc = |mt: &str, c: char| serde_json::json!({"mediaType": mt, "digest": d(c).to_string(), "size": 2});
    // A runnable image that claims the subject is still an image.
    let runnable = manifest(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": desc(media::OCI_CONFIG, 'c'),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", '2')],
        "subject": desc(media::OCI_MANIFEST, 'a'),
    }));
    assert!(!is_artifact_referrer_of(&runnable, &w.digest));
    // An artifact without a subject is nobody's referrer.
    let loose = manifest(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::PROMOTION_ARTIFACT,
        "config": desc(media::OCI_EMPTY, 'c'),
        "layers": [desc(media::PROMOTION_ARTIFACT, '2')],
    }));
    assert!(!is_artifact_referrer_of(&loose, &w.digest));
    // An index is never a referrer entry.
    let index = manifest(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [desc(media::OCI_MANIFEST, 'b')],
        "subject": desc(media::OCI_MANIFEST, 'a'),
    }));
    assert!(!is_artifact_referrer_of(&index, &w.digest));
}

/// What a registry read of `a` gives (the manifest's subject, the decoded envelope).
fn read_back<D: crate::records::Document>(a: &crate::records::Artifact) -> ReadArtifact<D> {
    let crate::model::manifest::Parsed::Image {
        artifact_type,
        subject,
        layers,
        ..
    } = a.manifest.parse().unwrap()
    else {
        panic!("an image manifest")
    };
    let decoded =
        crate::records::decode::<D>(artifact_type.as_deref(), &layers[0].media_type, &a.layer);
    ReadArtifact {
        artifact: a.manifest.digest.clone(),
        artifact_type,
        subject: subject.map(|s| s.digest),
        document: decoded.document,
        envelope: decoded.envelope,
    }
}

/// The signature of `doc`'s statement by the local key `signer`, if any.
fn signature<D: crate::records::Document>(
    doc: &D,
    signer: Option<&crate::signing::Signer>,
) -> Option<dsse::Signature> {
    let statement = crate::records::statement(doc);
    signer.map(|s| dsse::Signature::by_local(s, dsse::IN_TOTO, &statement).expect("a local key"))
}

fn signed_pair(signer: Option<&crate::signing::Signer>) -> (ReadRecord, ReadVerdict) {
    let doc = passing().document.unwrap();
    let v =
        crate::records::verdict_artifact(&doc, signature(&doc, signer), media::OCI_MANIFEST, 100);
    let mut rec = record().document.unwrap();
    rec.verdict = v.manifest.digest.clone();
    let r = promotion_artifact(&rec, signature(&rec, signer), media::OCI_MANIFEST, 100);
    (read_back(&r), read_back(&v))
}

fn keyed() -> Binding {
    Binding {
        public_key: Some(std::sync::Arc::new(
            crate::signing::Signer::for_tests(7).verifier(),
        )),
        ..want()
    }
}

#[test]
fn with_a_public_key_only_signed_records_and_verdicts_bind() {
    let key = crate::signing::Signer::for_tests(7);
    let (r, v) = signed_pair(Some(&key));
    check(&r, true, Some(&v), &keyed()).unwrap();
    check_current(Some(&v), &keyed(), NOW).unwrap();
    // Without a public key the same record binds too (signatures unchecked).
    check(&r, true, Some(&v), &want()).unwrap();

    // Unsigned (an envelope without signatures, or 0.1's plain JSON).
    let (ur, uv) = signed_pair(None);
    check(&ur, true, Some(&uv), &want()).unwrap();
    assert!(matches!(
        check(&ur, true, Some(&uv), &keyed()),
        Err(RecordProblem::Unsigned { .. })
    ));
    assert!(matches!(
        check(&record(), true, Some(&passing()), &keyed()),
        Err(RecordProblem::Unsigned { .. })
    ));
    assert!(
        check(&ur, true, Some(&uv), &keyed())
            .unwrap_err()
            .to_string()
            .starts_with("unsigned")
    );
    // A signed record naming an unsigned verdict does not bind either.
    let mut rec_only = r.clone();
    rec_only.document.as_mut().unwrap().verdict = uv.artifact.clone();
    let (r2, _) = {
        let mut doc = r.document.clone().unwrap();
        doc.verdict = uv.artifact.clone();
        let a = promotion_artifact(&doc, signature(&doc, Some(&key)), media::OCI_MANIFEST, 100);
        (read_back::<PromotionRecord>(&a), ())
    };
    let p = check(&r2, true, Some(&uv), &keyed()).unwrap_err();
    assert!(p.to_string().contains("unsigned"), "{p}");
    let p = check_current(Some(&uv), &keyed(), NOW).unwrap_err();
    assert!(p.to_string().contains("unsigned"), "{p}");

    // Another key's signature.
    let other = crate::signing::Signer::for_tests(9);
    let (or, ov) = signed_pair(Some(&other));
    let p = check(&or, true, Some(&ov), &keyed()).unwrap_err();
    assert!(matches!(p, RecordProblem::BadSignature { .. }), "{p}");
    assert!(p.to_string().starts_with("bad signature"));
    let p = check_current(Some(&ov), &keyed(), NOW).unwrap_err();
    assert!(p.to_string().contains("bad signature"), "{p}");
    let _ = rec_only;
}

/// `r` with its signed statement edited to name another tag, its signature kept, and the
/// document a reader would decode from the edited envelope.
fn retagged(r: &ReadRecord) -> ReadRecord {
    use base64::Engine as _;
    let mut edited = r.clone();
    let env = edited.envelope.as_mut().unwrap();
    let body = String::from_utf8(env.payload_bytes().unwrap()).unwrap();
    let body = body.replace(":1.33.0", ":latest");
    env.payload = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    edited.document = crate::records::from_statement(body.as_bytes());
    edited
}

#[test]
fn an_edited_signed_record_does_not_verify() {
    let key = crate::signing::Signer::for_tests(7);
    let (r, v) = signed_pair(Some(&key));
    // Edit the signed statement: point it at another tag, keep the signature.
    let edited = retagged(&r);
    let p = check(&edited, true, Some(&v), &keyed()).unwrap_err();
    assert!(matches!(p, RecordProblem::BadSignature { .. }), "{p}");
}

#[test]
fn a_signed_record_copied_to_another_digest_or_tag_does_not_bind() {
    let key = crate::signing::Signer::for_tests(7);
    let (r, v) = signed_pair(Some(&key));
    // Copied as a referrer of another digest: the manifest subject changes, the signed
    // statement still names the original.
    let mut copied = r.clone();
    copied.subject = Some(d('b'));
    let other = Binding {
        digest: d('b'),
        ..keyed()
    };
    assert!(matches!(
        check(&copied, true, Some(&v), &other),
        Err(RecordProblem::Digest { .. })
    ));
    // Swapped onto another tag of the same digest: `live` is signed.
    let swapped = Binding {
        tag: "latest".into(),
        ..keyed()
    };
    assert!(matches!(
        check(&r, true, Some(&v), &swapped),
        Err(RecordProblem::Live { .. })
    ));
}

#[test]
fn statements_are_in_toto_v1_with_one_subject() {
    let rec = record().document.unwrap();
    let st: serde_json::Value = serde_json::from_slice(&crate::records::statement(&rec)).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], crate::records::PROMOTION_PREDICATE);
    assert_eq!(st["subject"][0]["digest"]["sha256"], d('a').hex());
    assert_eq!(st["predicate"]["live"], rec.live);
    // A statement whose subject is not the predicate's digest is not a record.
    let mut bad = st.clone();
    bad["subject"][0]["digest"]["sha256"] = serde_json::json!(d('b').hex());
    let bytes = serde_json::to_vec(&bad).unwrap();
    assert!(crate::records::from_statement::<PromotionRecord>(&bytes).is_none());
    // Nor is a verdict statement read as a record, or two subjects.
    let mut kind = st.clone();
    kind["predicateType"] = serde_json::json!(crate::records::VERDICT_PREDICATE);
    assert!(
        crate::records::from_statement::<PromotionRecord>(&serde_json::to_vec(&kind).unwrap())
            .is_none()
    );
    let mut two = st.clone();
    two["subject"] = serde_json::json!([st["subject"][0], st["subject"][0]]);
    assert!(
        crate::records::from_statement::<PromotionRecord>(&serde_json::to_vec(&two).unwrap())
            .is_none()
    );
    assert!(
        crate::records::from_statement::<PromotionRecord>(&serde_json::to_vec(&st).unwrap())
            .is_some()
    );
}

/// One binding (one shared public key and its verification cache) judging records in the
/// order a run does: good ones first, then bad ones whose envelopes reuse the good signatures.
/// A cached outcome never lets an unsigned, foreign or edited record bind.
#[test]
fn cached_verifications_still_refuse_unsigned_foreign_and_edited_records() {
    let key = crate::signing::Signer::for_tests(7);
    let want = keyed();
    let (r, v) = signed_pair(Some(&key));
    for _ in 0..2 {
        check(&r, true, Some(&v), &want).unwrap();
        check_current(Some(&v), &want, NOW).unwrap();
    }
    let (ur, uv) = signed_pair(None);
    let (or, ov) = signed_pair(Some(&crate::signing::Signer::for_tests(9)));
    // The good record's signature on an edited statement.
    let edited = retagged(&r);
    // The foreign record carrying the good record's signature next to its own.
    let mut grafted = or.clone();
    let good_sig = r.envelope.as_ref().unwrap().signatures[0].clone();
    grafted.envelope.as_mut().unwrap().signatures.push(good_sig);
    for _ in 0..2 {
        assert!(matches!(
            check(&ur, true, Some(&uv), &want),
            Err(RecordProblem::Unsigned { .. })
        ));
        assert!(matches!(
            check(&or, true, Some(&ov), &want),
            Err(RecordProblem::BadSignature { .. })
        ));
        assert!(matches!(
            check(&edited, true, Some(&v), &want),
            Err(RecordProblem::BadSignature { .. })
        ));
        assert!(matches!(
            check(&grafted, true, Some(&v), &want),
            Err(RecordProblem::BadSignature { .. })
        ));
        // A good record naming a verdict that is not signed by the key.
        assert!(check_current(Some(&ov), &want, NOW).is_err());
        // And the good pair still binds.
        check(&r, true, Some(&v), &want).unwrap();
    }
}
