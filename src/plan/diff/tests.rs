use time::macros::datetime;

use super::*;
use crate::model::Severity;
use crate::observed::{FindingSummary, LiveTag, RecordCheck};
use crate::plan::ActionKind;
use crate::plan::fixture::{self, d};

fn now() -> OffsetDateTime {
    datetime!(2026-11-27 12:00 UTC)
}

fn desired(extra: &str) -> DesiredState {
    crate::config::fixture::with_base(&format!(
        "[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\n{extra}"
    ))
}

fn observed(q: Option<char>, l: Option<char>, verdict: Option<VerdictInfo>) -> ObservedState {
    let mut o = ObservedState::default();
    let mut image = fixture::image('a', q, l, verdict);
    // Observed only when live holds S; a converged image has a record that binds it.
    image.record = (l == Some('a')).then_some(RecordCheck::Valid);
    o.images.insert("library/busybox:1.33.0".into(), image);
    o
}

fn verdict(ds: &DesiredState, decision: Decision, created: OffsetDateTime) -> VerdictInfo {
    VerdictInfo {
        digest: d('f'),
        decision,
        created,
        policy_hash: ds.policy_hash(),
        top_findings: vec![FindingSummary {
            id: "CVE-2021-42378".into(),
            severity: Severity::Critical,
            message: Some("busybox: use-after-free in awk".into()),
            package: Some("busybox".into()),
            installed_version: Some("1.33.0-r0".into()),
            fixed_version: Some("1.34.0".into()),
        }],
    }
}

fn kinds(p: &Plan) -> Vec<String> {
    p.actions().iter().map(|a| a.id.clone()).collect()
}

#[test]
fn fresh_image_imports_scans_promotes_in_order() {
    let ds = desired("");
    let p = plan(&ds, &observed(None, None, None), now()).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "import:library/busybox:1.33.0",
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
    assert_eq!(p.dependencies(2), vec![0, 1]);
    assert_eq!(p.dependents(0), vec![1, 2]);
    assert_eq!(p.summary().import, 1);
    assert_eq!(p.live_after.len(), 1);
}

#[test]
fn converged_is_empty() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Pass, now() - time::Duration::days(1));
    let p = plan(&ds, &observed(Some('a'), Some('a'), Some(v)), now()).unwrap();
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert!(p.warnings.is_empty());
}

#[test]
fn failing_verdict_blocks() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Fail, now() - time::Duration::hours(1));
    let p = plan(&ds, &observed(Some('a'), None, Some(v)), now()).unwrap();
    assert!(p.is_empty());
    assert_eq!(p.blocked.len(), 1);
    assert_eq!(p.blocked[0].findings[0].id, "CVE-2021-42378");
}

#[test]
fn expired_verdict_and_policy_change_rescan() {
    let ds = desired("");
    let old = verdict(&ds, Decision::Pass, now() - time::Duration::days(8));
    let p = plan(&ds, &observed(Some('a'), Some('a'), Some(old)), now()).unwrap();
    assert_eq!(kinds(&p), vec!["scan:library/busybox:1.33.0"]);
    assert!(
        p.actions()[0].reason.contains("old"),
        "{}",
        p.actions()[0].reason
    );

    let mut changed = verdict(&ds, Decision::Pass, now());
    changed.policy_hash = d('e');
    let p = plan(&ds, &observed(Some('a'), None, Some(changed)), now()).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
    assert!(p.actions()[0].reason.contains("gate configuration changed"));
}

#[test]
fn upstream_move_replaces_with_warning() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Pass, now());
    let p = plan(&ds, &observed(Some('b'), Some('b'), Some(v)), now()).unwrap();
    let promote = p
        .actions()
        .iter()
        .find(|a| a.kind() == ActionKind::Promote)
        .unwrap();
    assert_eq!(promote.replaces, Some(d('b')));
    assert_eq!(p.summary().replace, 1, "one image, counted once");
    assert!(p.warnings.iter().any(|w| w.contains("moved")));
}

#[test]
fn live_failing_is_reported_and_demoted_on_request() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Fail, now());
    let p = plan(&ds, &observed(Some('a'), Some('a'), Some(v.clone())), now()).unwrap();
    assert!(p.is_empty());
    assert!(p.blocked[0].live);
    let ds = desired("[gate]\non_fail = \"demote\"\n");
    let v = verdict(&ds, Decision::Fail, now());
    let p = plan(&ds, &observed(Some('a'), Some('a'), Some(v)), now()).unwrap();
    assert_eq!(kinds(&p), vec!["delete:live/library/busybox:1.33.0"]);
    assert!(p.live_after.is_empty());
}

#[test]
fn prune_deletes_undeclared_tags_else_lists_them() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Pass, now());
    let mut o = observed(Some('a'), Some('a'), Some(v));
    o.live_tags = Some(vec![
        LiveTag {
            repository: "live/library/busybox".into(),
            tag: "1.33.0".into(),
            digest: d('a'),
        },
        LiveTag {
            repository: "live/old/thing".into(),
            tag: "1".into(),
            digest: d('c'),
        },
    ]);
    let p = plan(&ds, &o, now()).unwrap();
    assert!(p.is_empty());
    assert_eq!(p.unmanaged.len(), 1);
    let ds = {
        let mut x = desired("");
        x.prune = true;
        x
    };
    let p = plan(&ds, &o, now()).unwrap();
    assert_eq!(kinds(&p), vec!["delete:live/old/thing:1"]);
    assert_eq!(p.live_after.len(), 1);
}

#[test]
fn a_live_tag_changed_around_the_gate_is_not_an_upstream_move() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Pass, now());
    // Quarantine holds the source; live holds something else: nobody moved upstream.
    let p = plan(&ds, &observed(Some('a'), Some('c'), Some(v)), now()).unwrap();
    let promote = p
        .actions()
        .iter()
        .find(|a| a.kind() == ActionKind::Promote)
        .unwrap();
    assert!(!promote.reason.contains("upstream"), "{}", promote.reason);
    assert!(
        promote.reason.contains("live tag changed"),
        "{}",
        promote.reason
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("possible tampering")),
        "{:?}",
        p.warnings
    );
    assert!(
        !p.warnings.iter().any(|w| w.contains("upstream")),
        "{:?}",
        p.warnings
    );
}

fn with_record(mut o: ObservedState, record: Option<RecordCheck>) -> ObservedState {
    o.images.get_mut("library/busybox:1.33.0").unwrap().record = record;
    o
}

#[test]
fn live_without_a_valid_record_is_promoted_again() {
    let ds = desired("");
    let v = verdict(&ds, Decision::Pass, now() - time::Duration::days(1));
    for (record, reason) in [
        (Some(RecordCheck::Missing), "record missing".to_string()),
        (None, "record missing".to_string()),
        (
            Some(RecordCheck::Invalid {
                reason: "the record is for acr/live/x:1, not this tag".into(),
            }),
            "record invalid: the record is for acr/live/x:1, not this tag".to_string(),
        ),
    ] {
        let o = with_record(observed(Some('a'), Some('a'), Some(v.clone())), record);
        let p = plan(&ds, &o, now()).unwrap();
        assert_eq!(kinds(&p), vec!["promote:library/busybox:1.33.0"]);
        let a = &p.actions()[0];
        assert_eq!(a.reason, reason);
        assert_eq!(a.digest, d('a'));
        assert_eq!(a.replaces, None, "nothing is replaced: the content is live");
        assert!(a.depends_on.is_empty());
        assert_eq!(
            a.preconditions[0].digest,
            Some(d('a')),
            "the live tag must still hold S"
        );
        assert_eq!(p.summary().replace, 0);
        assert_eq!(
            p.live_before, p.live_after,
            "the live catalog does not change"
        );
    }
}

#[test]
fn a_record_repair_waits_for_a_renewed_verdict_and_the_gate() {
    let ds = desired("");
    // Stale verdict: scan first, then write the record.
    let old = verdict(&ds, Decision::Pass, now() - time::Duration::days(8));
    let o = with_record(
        observed(Some('a'), Some('a'), Some(old)),
        Some(RecordCheck::Missing),
    );
    let p = plan(&ds, &o, now()).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
    assert_eq!(p.dependencies(1), vec![0]);
    // A failing verdict: no record is written; the live image is reported blocked.
    let failing = verdict(&ds, Decision::Fail, now());
    let o = with_record(
        observed(Some('a'), Some('a'), Some(failing)),
        Some(RecordCheck::Missing),
    );
    let p = plan(&ds, &o, now()).unwrap();
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert!(p.blocked[0].live);
    // The quarantine tag moved away: import again, then write the record.
    let v = verdict(&ds, Decision::Pass, now());
    let o = with_record(
        observed(Some('b'), Some('a'), Some(v)),
        Some(RecordCheck::Missing),
    );
    let p = plan(&ds, &o, now()).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "import:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
}

fn scanner_failed(ds: &DesiredState, also: Option<&str>) -> VerdictInfo {
    let mut v = verdict(ds, Decision::Fail, now() - time::Duration::hours(1));
    v.top_findings = vec![FindingSummary {
        id: SCANNER_FAILED.into(),
        severity: Severity::Critical,
        message: Some("trivy: exit status 1: failed to download the vulnerability DB".into()),
        package: None,
        installed_version: None,
        fixed_version: None,
    }];
    if let Some(id) = also {
        v.top_findings.push(FindingSummary {
            id: id.into(),
            severity: Severity::High,
            message: None,
            package: None,
            installed_version: None,
            fixed_version: None,
        });
    }
    v
}

#[test]
fn a_verdict_that_failed_only_for_a_scanner_outage_is_scanned_again() {
    let ds = desired("");
    let p = plan(
        &ds,
        &observed(Some('a'), None, Some(scanner_failed(&ds, None))),
        now(),
    )
    .unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
    assert!(p.blocked.is_empty(), "not a verdict on the image");
    let reason = &p.actions()[0].reason;
    assert!(
        reason.contains("a scanner could not run") && reason.contains(SCANNER_FAILED),
        "{reason}"
    );

    // A real finding besides the outage is a verdict: blocked, no rescan.
    let p = plan(
        &ds,
        &observed(
            Some('a'),
            None,
            Some(scanner_failed(&ds, Some("policy/forbid_root"))),
        ),
        now(),
    )
    .unwrap();
    assert!(p.is_empty(), "{:?}", kinds(&p));
    assert_eq!(p.blocked.len(), 1);
}

#[test]
fn rescan_renews_chosen_current_verdicts_only() {
    let ds = desired("");
    let fresh = verdict(&ds, Decision::Pass, now() - time::Duration::hours(1));
    let o = observed(Some('a'), Some('a'), Some(fresh));
    let opts = |patterns: &[&str]| PlanOptions {
        rescan: crate::select::Selection::parse(
            &patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        )
        .unwrap(),
    };
    let p = plan_with(&ds, &o, now(), &opts(&["library/*"])).unwrap();
    assert_eq!(kinds(&p), vec!["scan:library/busybox:1.33.0"]);
    assert_eq!(p.actions()[0].reason, "rescan requested (--rescan)");
    // It names the verdict it renews, so apply renews that one although it is current; a
    // renewed verdict is not a replaced image.
    assert_eq!(p.actions()[0].replaces, Some(d('f')));
    assert_eq!(p.summary().replace, 0);
    let p = plan_with(&ds, &o, now(), &opts(&["other/*"])).unwrap();
    assert!(p.is_empty(), "{:?}", kinds(&p));
    let all = PlanOptions {
        rescan: Some(crate::select::Selection::all()),
    };
    assert_eq!(kinds(&plan_with(&ds, &o, now(), &all).unwrap()).len(), 1);
    // A failing current verdict renewed on request: the image is no longer blocked by the old
    // verdict; its promotion waits on the new scan.
    let failing = verdict(&ds, Decision::Fail, now() - time::Duration::hours(1));
    let p = plan_with(&ds, &observed(Some('a'), None, Some(failing)), now(), &all).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
}
