use super::*;
use crate::plan::fixture::d;

fn loc(registry: &str, repository: &str, tag: Option<&str>) -> Location {
    Location {
        registry: registry.into(),
        repository: repository.into(),
        tag: tag.map(str::to_string),
    }
}

/// A change to a view.
type Edit = fn(&mut ActionView);

/// One action of each kind, with every field its kind may carry set.
fn one_of_each() -> Vec<Action> {
    let q = loc("acr", "quarantine/library/busybox", Some("1.33.0"));
    let l = loc("acr", "live/library/busybox", Some("1.33.0"));
    vec![
        Action {
            id: "import:library/busybox:1.33.0".into(),
            target: q.clone(),
            digest: d('a'),
            replaces: Some(d('0')),
            preconditions: vec![Precondition {
                location: q.clone(),
                digest: Some(d('0')),
            }],
            depends_on: vec![],
            reason: "quarantine tag points elsewhere".into(),
            op: Op::Import {
                image: "library/busybox:1.33.0".into(),
                source: loc("docker.io", "library/busybox", None),
                source_digest: d('b'),
                platforms: Some(vec!["linux/amd64".parse().unwrap()]),
                size: Some(1000),
                platform_count: Some(2),
            },
        },
        Action {
            id: "scan:library/busybox:1.33.0".into(),
            target: q.clone(),
            digest: d('a'),
            replaces: Some(d('f')),
            preconditions: vec![],
            depends_on: vec!["import:library/busybox:1.33.0".into()],
            reason: "rescan requested (--rescan)".into(),
            op: Op::Scan {
                image: "library/busybox:1.33.0".into(),
                size: Some(1000),
                platform_count: None,
            },
        },
        Action {
            id: "promote:library/busybox:1.33.0".into(),
            target: l.clone(),
            digest: d('a'),
            replaces: Some(d('0')),
            preconditions: vec![],
            depends_on: vec!["scan:library/busybox:1.33.0".into()],
            reason: "upstream tag moved".into(),
            op: Op::Promote {
                image: "library/busybox:1.33.0".into(),
                source: q,
                size: None,
                platform_count: Some(1),
            },
        },
        Action {
            id: "delete:live/library/busybox:1.33.0".into(),
            target: l.clone(),
            digest: d('a'),
            replaces: None,
            preconditions: vec![],
            depends_on: vec![],
            reason: "demoted: the renewed verdict fails".into(),
            op: Op::Delete {
                image: Some("library/busybox:1.33.0".into()),
            },
        },
        Action {
            id: "delete:live/old/thing:1".into(),
            target: loc("acr", "live/old/thing", Some("1")),
            digest: d('9'),
            replaces: None,
            preconditions: vec![],
            depends_on: vec![],
            reason: "not declared in the configuration (prune = true)".into(),
            op: Op::Delete { image: None },
        },
    ]
}

fn view_of(kind: ActionKind) -> ActionView {
    let a = one_of_each()
        .into_iter()
        .find(|a| a.kind() == kind)
        .unwrap();
    ActionView::from(&a)
}

/// The conversion refuses `v`, naming the action and mentioning `needle`.
fn refused(v: ActionView, needle: &str) {
    let id = v.id.clone();
    let err = Action::try_from(v).expect_err(needle);
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("action `{id}`: ")), "{msg}");
    assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
}

#[test]
fn every_kind_round_trips_through_the_view_and_its_json() {
    for a in one_of_each() {
        let view = ActionView::from(&a);
        assert_eq!(view.kind, a.kind());
        assert_eq!(view.image.as_deref(), a.image());
        let json = serde_json::to_string(&view).unwrap();
        let back: ActionView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, view, "{json}");
        assert_eq!(Action::try_from(back), Ok(a.clone()), "{json}");
    }
}

#[test]
fn the_view_writes_exactly_the_fields_of_its_kind() {
    let keys = |kind| -> Vec<String> {
        let v = serde_json::to_value(view_of(kind)).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    let common = [
        "id",
        "kind",
        "target",
        "digest",
        "preconditions",
        "depends_on",
        "reason",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(keys(ActionKind::Import)),
        with(&[
            "image",
            "source",
            "source_digest",
            "replaces",
            "platforms",
            "size",
            "platform_count"
        ])
    );
    assert_eq!(
        sorted(keys(ActionKind::Scan)),
        with(&["image", "replaces", "size"])
    );
    assert_eq!(
        sorted(keys(ActionKind::Promote)),
        with(&[
            "image",
            "source",
            "source_digest",
            "replaces",
            "platform_count"
        ])
    );
    assert_eq!(sorted(keys(ActionKind::Delete)), with(&["image"]));
    // A promotion reads the digest it tags: the view says so in `source_digest`.
    let p = view_of(ActionKind::Promote);
    assert_eq!(p.source_digest, Some(p.digest.clone()));
}

#[test]
fn an_import_needs_its_image_source_and_source_digest() {
    for (field, clear) in [
        (
            "image",
            (|v: &mut ActionView| v.image = None) as fn(&mut ActionView),
        ),
        ("source", |v| v.source = None),
        ("source_digest", |v| v.source_digest = None),
    ] {
        let mut v = view_of(ActionKind::Import);
        clear(&mut v);
        refused(v, &format!("an import needs `{field}`"));
    }
    // What an import may leave out.
    let mut v = view_of(ActionKind::Import);
    (v.replaces, v.platforms, v.size, v.platform_count) = (None, None, None, None);
    assert!(Action::try_from(v).is_ok());
}

#[test]
fn a_scan_carries_no_source_or_platforms_and_needs_its_image() {
    let mut v = view_of(ActionKind::Scan);
    v.source = Some(loc("docker.io", "evil/thing", Some("1")));
    refused(v, "a scan has no `source`");
    let mut v = view_of(ActionKind::Scan);
    v.source_digest = Some(d('7'));
    refused(v, "a scan has no `source_digest`");
    let mut v = view_of(ActionKind::Scan);
    v.platforms = Some(vec!["linux/amd64".parse().unwrap()]);
    refused(v, "a scan has no `platforms`");
    let mut v = view_of(ActionKind::Scan);
    v.image = None;
    refused(v, "a scan needs `image`");
}

#[test]
fn a_promote_reads_the_digest_it_tags_from_a_source() {
    let mut v = view_of(ActionKind::Promote);
    v.source = None;
    refused(v, "a promote needs `source`");
    let mut v = view_of(ActionKind::Promote);
    v.source_digest = None;
    refused(v, "a promote needs `source_digest`");
    let mut v = view_of(ActionKind::Promote);
    v.image = None;
    refused(v, "a promote needs `image`");
    let mut v = view_of(ActionKind::Promote);
    v.source_digest = Some(d('7'));
    refused(v, "a promote copies one digest");
    let mut v = view_of(ActionKind::Promote);
    v.platforms = Some(vec!["linux/amd64".parse().unwrap()]);
    refused(v, "a promote has no `platforms`");
}

#[test]
fn a_delete_carries_nothing_but_its_target_and_maybe_an_image() {
    let fields: [(&str, Edit); 6] = [
        ("source", |v| {
            v.source = Some(loc("acr", "quarantine/x", Some("1")))
        }),
        ("source_digest", |v| v.source_digest = Some(d('7'))),
        ("replaces", |v| v.replaces = Some(d('7'))),
        ("platforms", |v| {
            v.platforms = Some(vec!["linux/amd64".parse().unwrap()])
        }),
        ("size", |v| v.size = Some(1)),
        ("platform_count", |v| v.platform_count = Some(1)),
    ];
    for (field, set) in fields {
        let mut v = view_of(ActionKind::Delete);
        set(&mut v);
        refused(v, &format!("a delete has no `{field}`"));
    }
    // A prune names no image.
    let mut v = view_of(ActionKind::Delete);
    v.image = None;
    assert_eq!(Action::try_from(v).unwrap().op, Op::Delete { image: None });
}

#[test]
fn every_problem_of_an_action_is_named_at_once() {
    let mut v = view_of(ActionKind::Scan);
    v.image = None;
    v.source_digest = Some(d('7'));
    v.platforms = Some(vec![]);
    let err = Action::try_from(v).unwrap_err();
    assert_eq!(err.id, "scan:library/busybox:1.33.0");
    assert_eq!(
        err.problems,
        [
            "a scan needs `image`",
            "a scan has no `source_digest`",
            "a scan has no `platforms`"
        ]
    );
}
