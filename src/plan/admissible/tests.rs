use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::model::Platform;
use crate::observed::{Decision, ObservedImage, ObservedState, VerdictInfo};
use crate::plan::fixture::{d, image};
use crate::plan::view::ActionView;
use crate::plan::{Op, PlanError, PlanParts, Precondition, diff};

const IMAGES: &str = r#"
[[images]]
source = "docker.io/library/busybox:1.33.0"
[[images]]
source = "docker.io/library/alpine:3.19"
"#;

const BUSYBOX: &str = "library/busybox:1.33.0";
const ALPINE: &str = "library/alpine:3.19";

fn now() -> OffsetDateTime {
    datetime!(2026-11-27 12:00 UTC)
}

fn desired(extra: &str, images: &str) -> DesiredState {
    crate::config::fixture::with_base(&format!("{extra}{images}"))
}

fn verdict(ds: &DesiredState, decision: Decision, digest: char) -> VerdictInfo {
    VerdictInfo {
        digest: d(digest),
        decision,
        created: now() - time::Duration::hours(1),
        policy_hash: ds.policy_hash(),
        top_findings: vec![],
    }
}

/// Both images fresh: import, scan, promote each.
fn fresh(ds: &DesiredState) -> Plan {
    let mut o = ObservedState::default();
    o.images
        .insert(BUSYBOX.into(), image('a', None, None, None));
    o.images.insert(ALPINE.into(), image('b', None, None, None));
    diff::plan(ds, &o, now()).unwrap()
}

fn problems(ds: &DesiredState, p: &Plan) -> Vec<String> {
    check(ds, p).iter().map(|p| p.to_string()).collect()
}

/// Rebuild `plan` after `f` edits its parts (as an attacker edits the JSON file).
fn edit(plan: &Plan, f: impl FnOnce(&mut PlanParts)) -> Result<Plan, PlanError> {
    let mut parts = plan.parts();
    f(&mut parts);
    Plan::new(parts, plan.policy_hash.clone())
}

fn action<'a>(parts: &'a mut PlanParts, id: &str) -> &'a mut Action {
    parts
        .actions
        .iter_mut()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("no action {id}"))
}

/// The source and the digest an import reads, and its platforms.
fn import_of(a: &mut Action) -> (&mut Location, &mut Digest, &mut Option<Vec<Platform>>) {
    match &mut a.op {
        Op::Import {
            source,
            source_digest,
            platforms,
            ..
        } => (source, source_digest, platforms),
        other => panic!("not an import: {other:?}"),
    }
}

/// Assert exactly the named action (or plan part) is refused, with `needle` in the message.
fn refused(ds: &DesiredState, p: &Plan, what: &str, needle: &str) {
    let got = problems(ds, p);
    assert!(
        got.iter().any(|m| m.contains(what) && m.contains(needle)),
        "expected a problem with `{what}` mentioning `{needle}`, got {got:#?}"
    );
}

#[test]
fn every_plan_the_planner_makes_is_admissible() {
    let plain = desired("", IMAGES);
    let prune_demote = desired("[gate]\non_fail = \"demote\"\n", IMAGES);
    let mut prune_demote = prune_demote;
    prune_demote.prune = true;
    let pinned = desired(
        "",
        &format!(
            "[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\ndigest = \"{}\"\nplatforms = [\"linux/amd64\"]\n",
            d('a')
        ),
    );
    for ds in [&plain, &prune_demote, &pinned] {
        let pass = |c| Some(verdict(ds, Decision::Pass, c));
        let fail = |c| Some(verdict(ds, Decision::Fail, c));
        let states: Vec<Vec<(&str, ObservedImage)>> = vec![
            vec![(BUSYBOX, image('a', None, None, None))],
            vec![(BUSYBOX, image('a', Some('a'), None, pass('f')))],
            vec![(BUSYBOX, image('a', Some('c'), Some('c'), pass('f')))],
            vec![(BUSYBOX, image('a', Some('a'), Some('a'), fail('f')))],
            vec![(BUSYBOX, image('a', Some('c'), Some('a'), fail('f')))],
            vec![(BUSYBOX, image('a', Some('a'), Some('c'), None))],
            vec![
                (BUSYBOX, image('a', None, Some('c'), fail('f'))),
                (ALPINE, image('b', Some('b'), None, pass('e'))),
            ],
        ];
        for s in states {
            let mut o = ObservedState::default();
            for (k, img) in s {
                o.images.insert(k.into(), img);
            }
            if ds.prune {
                o.live_tags = Some(vec![
                    crate::observed::LiveTag {
                        repository: "live/library/busybox".into(),
                        tag: "1.33.0".into(),
                        digest: d('c'),
                    },
                    crate::observed::LiveTag {
                        repository: "live/old/thing".into(),
                        tag: "1".into(),
                        digest: d('9'),
                    },
                ]);
            }
            let p = diff::plan(ds, &o, now()).unwrap();
            assert!(
                problems(ds, &p).is_empty(),
                "{:#?}\n{:#?}",
                problems(ds, &p),
                p.actions()
            );
        }
    }
}

#[test]
fn an_import_retargeted_to_live_is_refused() {
    let ds = desired("", IMAGES);
    let p = edit(&fresh(&ds), |parts| {
        let a = action(parts, &format!("import:{BUSYBOX}"));
        a.target.repository = "live/library/busybox".into();
        a.preconditions[0].location.repository = "live/library/busybox".into();
    })
    .unwrap();
    refused(&ds, &p, "import:library/busybox", "quarantine tag");
}

#[test]
fn an_undeclared_image_is_refused() {
    let ds = desired("", IMAGES);
    let p = edit(&fresh(&ds), |parts| {
        let mut a = action(parts, &format!("import:{BUSYBOX}")).clone();
        a.id = "import:evil/thing:1".into();
        let Op::Import { image, source, .. } = &mut a.op else {
            panic!("not an import")
        };
        *image = "evil/thing:1".into();
        *source = Location {
            registry: "docker.io".into(),
            repository: "evil/thing".into(),
            tag: Some("1".into()),
        };
        a.target = Location {
            registry: "acr".into(),
            repository: "live/evil/thing".into(),
            tag: Some("1".into()),
        };
        a.preconditions = vec![];
        parts.actions.push(a);
    })
    .unwrap();
    refused(&ds, &p, "import:evil/thing:1", "does not declare");
}

#[test]
fn an_undeclared_source_or_changed_platforms_are_refused() {
    let ds = desired("", IMAGES);
    let id = format!("import:{BUSYBOX}");
    let p = edit(&fresh(&ds), |parts| {
        import_of(action(parts, &id)).0.repository = "evil/busybox".into();
    })
    .unwrap();
    refused(&ds, &p, &id, "declared from");
    let p = edit(&fresh(&ds), |parts| {
        import_of(action(parts, &id)).0.registry = "ghcr.io".into();
    })
    .unwrap();
    refused(&ds, &p, &id, "declared from");
    let p = edit(&fresh(&ds), |parts| {
        *import_of(action(parts, &id)).2 = Some(vec!["linux/amd64".parse().unwrap()]);
    })
    .unwrap();
    refused(&ds, &p, &id, "keeps linux/amd64");
    // The upstream precondition is what binds the digest read to the declared tag.
    let p = edit(&fresh(&ds), |parts| {
        let a = action(parts, &id);
        *import_of(a).1 = d('7');
        a.digest = d('7');
    })
    .unwrap();
    refused(&ds, &p, &id, "its precondition has the upstream tag");
    let p = edit(&fresh(&ds), |parts| {
        action(parts, &id).preconditions.pop();
    })
    .unwrap();
    refused(&ds, &p, &id, "re-checks exactly");
}

#[test]
fn a_pinned_import_reads_only_the_pin() {
    let ds = desired(
        "",
        &format!(
            "[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\ndigest = \"{}\"\n",
            d('a')
        ),
    );
    let mut o = ObservedState::default();
    o.images
        .insert(BUSYBOX.into(), image('a', None, None, None));
    let honest = diff::plan(&ds, &o, now()).unwrap();
    assert!(problems(&ds, &honest).is_empty());
    let id = format!("import:{BUSYBOX}");
    let p = edit(&honest, |parts| {
        let a = action(parts, &id);
        *import_of(a).1 = d('7');
        a.digest = d('7');
    })
    .unwrap();
    refused(&ds, &p, &id, "pinned to");
}

#[test]
fn a_wrong_quarantine_prefix_is_refused() {
    let ds = desired("", IMAGES);
    let id = format!("scan:{BUSYBOX}");
    let p = edit(&fresh(&ds), |parts| {
        for a in &mut parts.actions {
            if a.image() == Some(BUSYBOX) && a.kind() != ActionKind::Promote {
                a.target.repository = "quarantine2/library/busybox".into();
            }
        }
    })
    .unwrap();
    refused(&ds, &p, &id, "quarantine tag");
    refused(&ds, &p, &format!("import:{BUSYBOX}"), "quarantine tag");
}

#[test]
fn a_promote_from_another_images_quarantine_is_refused() {
    let ds = desired("", IMAGES);
    let id = format!("promote:{BUSYBOX}");
    let p = edit(&fresh(&ds), |parts| {
        let alpine_q = action(parts, &format!("import:{ALPINE}")).target.clone();
        let a = action(parts, &id);
        let Op::Promote { source, .. } = &mut a.op else {
            panic!("not a promote")
        };
        *source = alpine_q;
        a.digest = d('b');
    })
    .unwrap();
    refused(&ds, &p, &id, "own quarantine tag");
    refused(&ds, &p, &id, "the plan imports");
    // Retargeted to another image's live tag.
    let p = edit(&fresh(&ds), |parts| {
        let a = action(parts, &id);
        a.target.repository = "live/library/alpine".into();
        a.target.tag = Some("3.19".into());
    })
    .unwrap();
    refused(&ds, &p, &id, "only to its live tag");
}

#[test]
fn dropped_or_extra_dependencies_are_refused() {
    let ds = desired("", IMAGES);
    let id = format!("promote:{BUSYBOX}");
    let p = edit(&fresh(&ds), |parts| {
        action(parts, &id)
            .depends_on
            .retain(|d| !d.starts_with("scan:"));
    })
    .unwrap();
    refused(&ds, &p, &id, "depend on exactly");
    let p = edit(&fresh(&ds), |parts| {
        action(parts, &id).depends_on.clear();
    })
    .unwrap();
    refused(&ds, &p, &id, "depend on exactly");
    let p = edit(&fresh(&ds), |parts| {
        action(parts, &format!("scan:{BUSYBOX}")).depends_on.clear();
    })
    .unwrap();
    refused(&ds, &p, &format!("scan:{BUSYBOX}"), "depend on exactly");
    let p = edit(&fresh(&ds), |parts| {
        let a = action(parts, &id);
        let dup = a.depends_on[0].clone();
        a.depends_on.push(dup);
    })
    .unwrap();
    refused(&ds, &p, &id, "depend on exactly");
    // Dropping the scan action itself: a promote without a scan is the planner's only when a
    // verdict exists (checked from the document at apply time), but it must still follow
    // its import.
    let p = edit(&fresh(&ds), |parts| {
        parts.actions.retain(|a| a.id != format!("scan:{BUSYBOX}"));
        action(parts, &id).depends_on.clear();
    })
    .unwrap();
    refused(&ds, &p, &id, "depend on exactly");
}

#[test]
fn duplicates_and_cycles_never_become_a_plan() {
    let ds = desired("", IMAGES);
    let dup = edit(&fresh(&ds), |parts| {
        let a = parts.actions[0].clone();
        parts.actions.push(a);
    });
    assert!(matches!(dup, Err(PlanError::DuplicateAction(_))), "{dup:?}");
    let cycle = edit(&fresh(&ds), |parts| {
        let promote = format!("promote:{BUSYBOX}");
        action(parts, &format!("import:{BUSYBOX}"))
            .depends_on
            .push(promote);
    });
    assert!(matches!(cycle, Err(PlanError::Cycle(_))), "{cycle:?}");
}

#[test]
fn unknown_fields_are_refused() {
    let ds = desired("", IMAGES);
    let p = fresh(&ds);
    let view = || serde_json::to_value(ActionView::from(&p.actions()[0])).unwrap();
    let mut v = view();
    v["run_as"] = serde_json::json!("root");
    assert!(serde_json::from_value::<ActionView>(v).is_err());
    let mut v = view();
    v["target"]["insecure"] = serde_json::json!(true);
    assert!(serde_json::from_value::<ActionView>(v).is_err());
    let mut v = view();
    v["preconditions"][0]["skip"] = serde_json::json!(true);
    assert!(serde_json::from_value::<ActionView>(v).is_err());
}

fn pruning() -> (DesiredState, Plan) {
    let mut ds = desired("", IMAGES);
    ds.prune = true;
    let mut o = ObservedState::default();
    let v = verdict(&ds, Decision::Pass, 'f');
    o.images
        .insert(BUSYBOX.into(), image('a', Some('a'), Some('a'), Some(v)));
    o.live_tags = Some(vec![crate::observed::LiveTag {
        repository: "live/old/thing".into(),
        tag: "1".into(),
        digest: d('9'),
    }]);
    let p = diff::plan(&ds, &o, now()).unwrap();
    assert_eq!(p.actions().len(), 1);
    assert!(problems(&ds, &p).is_empty());
    (ds, p)
}

fn retarget_delete(p: &Plan, repo: &str, tag: &str, digest: Digest) -> Plan {
    edit(p, |parts| {
        let a = &mut parts.actions[0];
        a.id = format!("delete:{repo}:{tag}");
        a.target.repository = repo.into();
        a.target.tag = Some(tag.into());
        a.digest = digest.clone();
        a.preconditions = vec![Precondition {
            location: a.target.clone(),
            digest: Some(digest.clone()),
        }];
        parts.live_before.push(CatalogEntry {
            repository: repo.into(),
            tag: tag.into(),
            digest,
        });
    })
    .unwrap()
}

#[test]
fn deleting_a_declared_tag_is_refused() {
    let (ds, p) = pruning();
    let p = retarget_delete(&p, "live/library/busybox", "1.33.0", d('a'));
    refused(
        &ds,
        &p,
        "delete:live/library/busybox:1.33.0",
        "declared live tag",
    );
}

#[test]
fn deleting_outside_the_live_prefix_is_refused() {
    let (ds, p) = pruning();
    for repo in ["quarantine/library/busybox", "livex/thing", "live"] {
        let p = retarget_delete(&p, repo, "1.33.0", d('a'));
        refused(
            &ds,
            &p,
            &format!("delete:{repo}:1.33.0"),
            "not under the live prefix",
        );
    }
    let p2 = edit(&p, |parts| {
        parts.actions[0].target.registry = "docker.io".into()
    })
    .unwrap();
    refused(
        &ds,
        &p2,
        "delete:live/old/thing:1",
        "not under the live prefix",
    );
}

#[test]
fn pruning_with_prune_off_is_refused() {
    let (mut ds, p) = pruning();
    ds.prune = false;
    refused(&ds, &p, "delete:live/old/thing:1", "prune is off");
}

#[test]
fn pruning_a_look_alike_referrers_tag_is_admissible() {
    // `sha256-<hex>` tags can hold anything (audit reports them); whether one is a genuine
    // referrers index is checked by the delete step against the registry, not here.
    let (ds, p) = pruning();
    let tag = format!("sha256-{}", "a".repeat(64));
    let p = retarget_delete(&p, "live/library/busybox", &tag, d('3'));
    let problems = check(&ds, &p);
    assert!(
        !problems.iter().any(|x| x.what.contains(&tag)),
        "{problems:?}"
    );
}

#[test]
fn a_demote_needs_on_fail_demote_and_the_images_own_tag() {
    let ds = desired("[gate]\non_fail = \"demote\"\n", IMAGES);
    let mut o = ObservedState::default();
    let v = verdict(&ds, Decision::Fail, 'f');
    o.images
        .insert(BUSYBOX.into(), image('a', Some('a'), Some('a'), Some(v)));
    let p = diff::plan(&ds, &o, now()).unwrap();
    let id = "delete:live/library/busybox:1.33.0";
    assert_eq!(p.actions()[0].id, id);
    assert!(problems(&ds, &p).is_empty());
    let report = desired("", IMAGES);
    refused(&report, &p, id, "on_fail is not \"demote\"");
    let other = edit(&p, |parts| {
        parts.actions[0].op = Op::Delete {
            image: Some(ALPINE.into()),
        }
    })
    .unwrap();
    refused(&ds, &other, id, "not that declared image's live tag");
}

#[test]
fn a_scan_or_promote_of_another_digest_is_refused() {
    let ds = desired("", IMAGES);
    let mut o = ObservedState::default();
    o.images
        .insert(BUSYBOX.into(), image('a', Some('a'), None, None));
    let honest = diff::plan(&ds, &o, now()).unwrap();
    assert!(problems(&ds, &honest).is_empty());
    let p = edit(&honest, |parts| {
        for a in &mut parts.actions {
            a.digest = d('7');
        }
        parts.live_after[0].digest = d('7');
    })
    .unwrap();
    refused(
        &ds,
        &p,
        &format!("scan:{BUSYBOX}"),
        "the quarantine tag held",
    );
    refused(
        &ds,
        &p,
        &format!("promote:{BUSYBOX}"),
        "the quarantine tag held",
    );
}

#[test]
fn preconditions_observe_each_tag_once() {
    let ds = desired("", IMAGES);
    let p = edit(&fresh(&ds), |parts| {
        action(parts, &format!("promote:{BUSYBOX}")).preconditions[1].digest = Some(d('5'));
    })
    .unwrap();
    refused(
        &ds,
        &p,
        &format!("promote:{BUSYBOX}"),
        "one plan observes a tag once",
    );
}

#[test]
fn a_catalog_that_lies_is_refused() {
    let ds = desired("", IMAGES);
    let p = edit(&fresh(&ds), |parts| parts.live_after.clear()).unwrap();
    refused(&ds, &p, "live_after", "not what its actions produce");
    let p = edit(&fresh(&ds), |parts| {
        parts.live_before.push(CatalogEntry {
            repository: "live/library/busybox".into(),
            tag: "1.33.0".into(),
            digest: d('a'),
        })
    })
    .unwrap();
    refused(&ds, &p, &format!("promote:{BUSYBOX}"), "live_before shows");
}

#[test]
fn a_forged_id_is_refused() {
    let ds = desired("", IMAGES);
    let p = edit(&fresh(&ds), |parts| {
        let a = action(parts, &format!("import:{BUSYBOX}"));
        a.id = "import:nice".into();
        for b in &mut parts.actions {
            for d in &mut b.depends_on {
                if d == &format!("import:{BUSYBOX}") {
                    *d = "import:nice".into();
                }
            }
        }
    })
    .unwrap();
    refused(&ds, &p, "import:nice", "has the id");
}

#[test]
fn locations_are_classified_by_kind() {
    let ds = desired("", IMAGES);
    let k = LocationKinds::new(&ds);
    let loc = |r: &str, repo: &str, t: &str| Location {
        registry: r.into(),
        repository: repo.into(),
        tag: Some(t.into()),
    };
    assert_eq!(
        k.kind(&loc("acr", "live/library/busybox", "1.33.0")),
        Some(LocationKind::Live)
    );
    assert_eq!(
        k.kind(&loc("acr", "live/undeclared/x", "1")),
        Some(LocationKind::Live)
    );
    assert_eq!(
        k.kind(&loc("acr", "quarantine/library/busybox", "1.33.0")),
        Some(LocationKind::Quarantine)
    );
    assert_eq!(
        k.kind(&loc("docker.io", "library/busybox", "1.33.0")),
        Some(LocationKind::Upstream)
    );
    assert_eq!(k.kind(&loc("acr", "elsewhere/x", "1")), None);
}

#[test]
fn a_blocked_image_is_declared_and_not_promoted() {
    let ds = desired("", IMAGES);
    let mut o = ObservedState::default();
    let v = verdict(&ds, Decision::Fail, 'f');
    o.images
        .insert(BUSYBOX.into(), image('a', Some('a'), None, Some(v)));
    o.images.insert(ALPINE.into(), image('b', None, None, None));
    let honest = diff::plan(&ds, &o, now()).unwrap();
    assert_eq!(honest.blocked.len(), 1);
    assert!(problems(&ds, &honest).is_empty());
    let p = edit(&honest, |parts| {
        parts.blocked[0].image = "evil/thing:1".into()
    })
    .unwrap();
    refused(&ds, &p, "blocked `evil/thing:1`", "not an image");
    let p = edit(&honest, |parts| parts.blocked[0].image = ALPINE.into()).unwrap();
    refused(
        &ds,
        &p,
        "blocked `library/alpine:3.19`",
        "both blocks and promotes",
    );
    refused(
        &ds,
        &p,
        "blocked `library/alpine:3.19`",
        "not this image's quarantine tag",
    );
}
