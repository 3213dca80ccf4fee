//! Plan scenarios from in-memory observed state (no registry: planning is pure), each
//! snapshotted in human, JSON and markdown under `snapshots/`.

use std::path::Path;

use airlock::config::{self, DesiredState};
use airlock::model::{Digest, Severity, media};
use airlock::observed::{
    Decision, FindingSummary, LiveTag, ObservedImage, ObservedState, RecordCheck, SourceInfo,
    VerdictInfo,
};
use airlock::plan::{Plan, diff};
use airlock::render::{self, Format, HumanOptions};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

const WALKTHROUGH: &str = r#"
[registries.acr]
endpoint = "https://acraks0001.azurecr.io"

[quarantine]
registry = "acr"
prefix = "quarantine"

[live]
registry = "acr"
prefix = "live"

[[images]]
source = "ghcr.io/fluxcd/kustomize-controller:v0.6.3"
[[images]]
source = "ghcr.io/fluxcd/source-controller:v0.6.3"
[[images]]
source = "docker.io/falcosecurity/falco:0.26.2"
[[images]]
source = "docker.io/library/busybox:1.33.0"
[[images]]
source = "docker.io/weaveworks/kured:1.6.1"
[[images]]
source = "docker.io/envoyproxy/envoy-alpine:v1.15.0"
"#;

fn desired(src: &str) -> DesiredState {
    config::parse(src, Path::new("airlock.toml"), NOW.date()).unwrap_or_else(|e| panic!("{e}"))
}

fn digest(seed: &str) -> Digest {
    Digest::of(seed.as_bytes())
}

fn source(key: &str) -> SourceInfo {
    let multi = key.starts_with("fluxcd/source-controller");
    SourceInfo {
        digest: digest(key),
        upstream_digest: digest(key),
        upstream_tag_digest: None,
        media_type: if multi {
            media::OCI_INDEX
        } else {
            media::OCI_MANIFEST
        }
        .to_string(),
        size: if multi {
            None
        } else {
            Some(4_200_000 + key.len() as u64 * 1000)
        },
        platforms: multi.then_some(2),
    }
}

fn verdict(d: &DesiredState, key: &str, decision: Decision, age_days: i64) -> VerdictInfo {
    VerdictInfo {
        digest: digest(&format!("verdict {key}")),
        decision: decision.clone(),
        created: NOW - time::Duration::days(age_days),
        policy_hash: d.policy_hash(),
        top_findings: if decision == Decision::Fail {
            vec![
                FindingSummary {
                    id: "CVE-2021-42378".into(),
                    severity: Severity::Critical,
                    message: Some(
                        "busybox: use-after-free in awk leads to denial of service".into(),
                    ),
                    package: Some("busybox".into()),
                    installed_version: Some("1.33.0-r0".into()),
                    fixed_version: Some("1.34.0".into()),
                },
                FindingSummary {
                    id: "CVE-2021-42386".into(),
                    severity: Severity::High,
                    message: Some("busybox: use-after-free in awk (nvalloc)".into()),
                    package: Some("busybox".into()),
                    installed_version: Some("1.33.0-r0".into()),
                    fixed_version: Some("1.34.0".into()),
                },
            ]
        } else {
            vec![]
        },
    }
}

/// Every declared image converged: quarantine and live hold S, a fresh passing verdict, and
/// a promotion record that binds the live tag.
fn converged(d: &DesiredState) -> ObservedState {
    let mut o = ObservedState::default();
    for spec in &d.images {
        let key = spec.key();
        o.images.insert(
            key.clone(),
            ObservedImage {
                source: source(&key),
                quarantine: Some(digest(&key)),
                live: Some(digest(&key)),
                verdict: Some(verdict(d, &key, Decision::Pass, 1)),
                record: Some(RecordCheck::Valid),
            },
        );
    }
    o
}

fn fresh(d: &DesiredState) -> ObservedState {
    let mut o = converged(d);
    for img in o.images.values_mut() {
        img.quarantine = None;
        img.live = None;
        img.verdict = None;
        img.record = None;
    }
    o
}

fn busybox(o: &mut ObservedState) -> &mut ObservedImage {
    o.images.get_mut("library/busybox:1.33.0").unwrap()
}

fn snapshot(name: &str, plan: &Plan) {
    for format in [Format::Human, Format::Json, Format::Markdown] {
        let mut out = Vec::new();
        render::render(plan, format, &HumanOptions { color: false }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Keep the snapshots stable across releases.
        let text = render::redact_version(&text);
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("scenario_{name}.{}", format.as_str()), text);
        });
    }
    // The JSON form is what `apply plan.json` executes: it must round-trip.
    let mut json = Vec::new();
    render::render(
        plan,
        Format::Json,
        &HumanOptions { color: false },
        &mut json,
    )
    .unwrap();
    let back = render::parse_plan_file(&json).unwrap();
    assert_eq!(back.actions(), plan.actions());
}

fn plan(d: &DesiredState, o: &ObservedState) -> Plan {
    let p = diff::plan(d, o, NOW).unwrap();
    // Every plan the planner makes is one a saved plan may hold.
    let problems = airlock::plan::admissible::check(d, &p);
    assert!(problems.is_empty(), "{problems:#?}");
    p
}

#[test]
fn s01_fresh_registry_walkthrough() {
    let d = desired(WALKTHROUGH);
    let p = plan(&d, &fresh(&d));
    let s = p.summary();
    assert_eq!((s.import, s.scan, s.promote), (6, 6, 6));
    snapshot("01_fresh_registry", &p);
}

#[test]
fn s02_converged_is_empty() {
    let d = desired(WALKTHROUGH);
    let p = plan(&d, &converged(&d));
    assert!(p.is_empty());
    snapshot("02_converged", &p);
}

#[test]
fn s03_quarantined_not_scanned() {
    let d = desired(WALKTHROUGH);
    let mut o = converged(&d);
    let b = busybox(&mut o);
    b.live = None;
    b.verdict = None;
    let p = plan(&d, &o);
    let ids: Vec<&str> = p.actions().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ]
    );
    snapshot("03_quarantined_not_scanned", &p);
}

#[test]
fn s04_failing_verdict_blocks() {
    let d = desired(WALKTHROUGH);
    let mut o = converged(&d);
    let v = verdict(&d, "library/busybox:1.33.0", Decision::Fail, 0);
    let b = busybox(&mut o);
    b.live = None;
    b.verdict = Some(v);
    let p = plan(&d, &o);
    assert!(p.is_empty());
    assert_eq!(p.blocked.len(), 1);
    snapshot("04_failing_verdict_blocked", &p);
}

#[test]
fn s05_expired_verdict_is_renewed() {
    let d = desired(WALKTHROUGH);
    let mut o = converged(&d);
    busybox(&mut o).verdict = Some(verdict(&d, "library/busybox:1.33.0", Decision::Pass, 9));
    let p = plan(&d, &o);
    let ids: Vec<&str> = p.actions().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["scan:library/busybox:1.33.0"]);
    snapshot("05_expired_verdict", &p);
}

#[test]
fn s06_upstream_tag_moved() {
    let d = desired(WALKTHROUGH);
    let mut o = converged(&d);
    let b = busybox(&mut o);
    b.source.digest = digest("busybox moved");
    b.source.upstream_digest = digest("busybox moved");
    b.verdict = None;
    let p = plan(&d, &o);
    assert_eq!(
        p.summary().replace,
        1,
        "one image replaced (its quarantine and live tags)"
    );
    assert!(!p.warnings.is_empty());
    snapshot("06_upstream_tag_moved", &p);
}

#[test]
fn s07_pinned_digest_with_upstream_moved() {
    let pin = digest("library/busybox:1.33.0");
    let d = desired(&WALKTHROUGH.replace(
        "source = \"docker.io/library/busybox:1.33.0\"",
        &format!("source = \"docker.io/library/busybox:1.33.0\"\ndigest = \"{pin}\""),
    ));
    let mut o = converged(&d);
    busybox(&mut o).source.upstream_tag_digest = Some(digest("busybox moved"));
    let p = plan(&d, &o);
    assert!(p.is_empty(), "a pin never moves");
    assert_eq!(p.warnings.len(), 1);
    snapshot("07_pinned_upstream_moved", &p);
}

#[test]
fn s08_platform_subset() {
    let d = desired(&WALKTHROUGH.replace(
        "source = \"ghcr.io/fluxcd/source-controller:v0.6.3\"",
        "source = \"ghcr.io/fluxcd/source-controller:v0.6.3\"\nplatforms = [\"linux/amd64\"]",
    ));
    let mut o = converged(&d);
    let sc = o.images.get_mut("fluxcd/source-controller:v0.6.3").unwrap();
    sc.source.digest = digest("source-controller amd64 subset");
    sc.source.platforms = Some(1);
    sc.quarantine = None;
    sc.live = None;
    sc.verdict = None;
    let p = plan(&d, &o);
    let import = &p.actions()[0];
    let airlock::plan::Op::Import {
        platforms,
        source_digest,
        ..
    } = &import.op
    else {
        panic!("not an import: {import:?}")
    };
    assert_eq!(platforms.as_ref().unwrap().len(), 1);
    assert_ne!(source_digest, &import.digest);
    snapshot("08_platform_subset", &p);
}

fn undeclared(o: &mut ObservedState, d: &DesiredState) {
    let mut tags: Vec<LiveTag> = d
        .images
        .iter()
        .map(|s| LiveTag {
            repository: d.live.repository(&s.path),
            tag: s.tag.clone(),
            digest: digest(&s.key()),
        })
        .collect();
    tags.push(LiveTag {
        repository: "live/library/busybox".into(),
        tag: "1.32.0".into(),
        digest: digest("busybox 1.32.0"),
    });
    tags.push(LiveTag {
        repository: "live/someone/pushed-directly".into(),
        tag: "latest".into(),
        digest: digest("direct push"),
    });
    o.live_tags = Some(tags);
}

#[test]
fn s09_prune_on_deletes_undeclared() {
    let d = desired(&WALKTHROUGH.replace("prefix = \"live\"", "prefix = \"live\"\nprune = true"));
    let mut o = converged(&d);
    undeclared(&mut o, &d);
    let p = plan(&d, &o);
    assert_eq!(p.summary().delete, 2);
    snapshot("09_prune_on", &p);
}

#[test]
fn s10_prune_off_lists_unmanaged() {
    let d = desired(WALKTHROUGH);
    let mut o = converged(&d);
    undeclared(&mut o, &d);
    let p = plan(&d, &o);
    assert!(p.is_empty());
    assert_eq!(p.unmanaged.len(), 2);
    snapshot("10_prune_off", &p);
}

#[test]
fn s11_gate_config_changed_rescans_everything() {
    let before = desired(WALKTHROUGH);
    let o = converged(&before);
    let after = desired(&format!("{WALKTHROUGH}\n[gate]\nfail_on = \"medium\"\n"));
    let p = plan(&after, &o);
    assert_eq!(p.summary().scan, 6);
    assert_eq!(p.summary().promote, 0);
    snapshot("11_gate_config_changed", &p);
}

#[test]
fn s12_two_registries() {
    let d = desired(&WALKTHROUGH.replace(
        "[live]\nregistry = \"acr\"",
        "[registries.prod]\nendpoint = \"https://acrprod0001.azurecr.io\"\n\n[live]\nregistry = \"prod\"",
    ));
    assert_eq!(d.live.registry, "prod");
    let mut o = converged(&d);
    for img in o.images.values_mut() {
        img.live = None;
    }
    let p = plan(&d, &o);
    assert_eq!(p.summary().promote, 6);
    assert!(p.actions().iter().all(|a| a.target.registry == "prod"));
    snapshot("12_two_registries", &p);
}

#[test]
fn s13_live_image_fails_renewed_verdict_demote() {
    let d = desired(&format!("{WALKTHROUGH}\n[gate]\non_fail = \"demote\"\n"));
    let mut o = converged(&d);
    busybox(&mut o).verdict = Some(verdict(&d, "library/busybox:1.33.0", Decision::Fail, 0));
    let p = plan(&d, &o);
    assert_eq!(p.summary().delete, 1);
    assert!(p.blocked[0].live);
    snapshot("13_live_fails_demote", &p);
}

/// A crash after the live tag but before its record, or a record deleted or tampered with:
/// the content is live, so the plan writes the record again (a promote without a replace).
#[test]
fn s14_live_without_a_valid_record_is_repaired() {
    let d = desired(WALKTHROUGH);
    let mut o = converged(&d);
    busybox(&mut o).record = Some(RecordCheck::Missing);
    o.images
        .get_mut("weaveworks/kured:1.6.1")
        .unwrap()
        .record = Some(RecordCheck::Invalid {
        reason: "the record is for acr/live/library/busybox:1.33.0, not this tag acr/live/weaveworks/kured:1.6.1".into(),
    });
    let p = plan(&d, &o);
    let s = p.summary();
    assert_eq!((s.import, s.scan, s.promote, s.replace), (0, 0, 2, 0));
    assert_eq!(p.live_before, p.live_after);
    snapshot("14_live_without_record", &p);
}
