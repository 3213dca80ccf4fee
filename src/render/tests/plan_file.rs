//! The plan file read back: versions, hashes, strictness.

use super::*;

#[test]
fn json_round_trips() {
    for (name, plan) in fixtures() {
        let json = rendered(&plan, Format::Json, false);
        let back = parse_plan_file(json.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            PlanView::from_plan(&back),
            PlanView::from_plan(&plan),
            "{name}"
        );
        assert_eq!(back.hash(), plan.hash(), "{name}");
        assert_eq!(rendered(&back, Format::Json, false), json, "{name}");
    }
}

#[test]
fn plan_file_from_a_newer_airlock_is_refused_clearly() {
    let mut v = json_value(&fresh_import());
    v["format_version"] = 2.into();
    v["airlock_version"] = "9.9.9".into();
    v["something_new"] = true.into();
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ViewError::TooNew { found: 2, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("plan format version 2 is newer"), "{msg}");
    assert!(msg.contains("airlock 9.9.9"), "{msg}");

    v["format_version"] = 0.into();
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(
        matches!(err, ViewError::Unsupported { found: 0, .. }),
        "{err:?}"
    );

    // The same check guards `PlanView::into_plan` for callers that deserialised themselves.
    let mut view = PlanView::from_plan(&fresh_import());
    view.format_version = FORMAT_VERSION + 1;
    assert!(matches!(view.into_plan(), Err(ViewError::TooNew { .. })));
}

#[test]
fn plan_file_that_is_not_a_plan_is_refused() {
    assert!(matches!(
        parse_plan_file(b"{\"actions\": []}"),
        Err(ViewError::NoFormatVersion)
    ));
    assert!(matches!(
        parse_plan_file(b"not json"),
        Err(ViewError::Json(_))
    ));
    let mut v = json_value(&fresh_import());
    v.as_object_mut().unwrap().remove("actions");
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("actions"), "{err}");
}

#[test]
fn edited_plan_file_is_refused() {
    let mut v = json_value(&fresh_import());
    v["actions"][0]["digest"] = dg("something else").to_string().into();
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ViewError::HashMismatch), "{err:?}");
    assert!(err.to_string().contains("modified"), "{err}");
    // The hash is unkeyed: the message must not hand out the value that would be accepted.
    let expected = {
        let actions: Vec<ActionView> = serde_json::from_value(v["actions"].clone()).unwrap();
        crate::model::Digest::of(&serde_json::to_vec(&actions).unwrap())
    };
    let hex = expected.to_string();
    let hex = hex.trim_start_matches("sha256:");
    assert!(!err.to_string().contains(&hex[..12]), "{err}");
    assert!(!format!("{err:?}").contains(&hex[..12]), "{err:?}");

    let mut v = json_value(&fresh_import());
    v["actions"][1]["depends_on"] = serde_json::json!(["import:nowhere"]);
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ViewError::Invalid(_)), "{err:?}");
}

#[test]
fn plan_files_with_unknown_fields_or_control_characters_are_refused() {
    let mut v = json_value(&fresh_import());
    v["actions"][0]["execute_anyway"] = true.into();
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ViewError::Json(_)), "{err:?}");
    assert!(err.to_string().contains("execute_anyway"), "{err}");

    let mut v = json_value(&fresh_import());
    v["trusted"] = true.into();
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("trusted"), "{err}");

    let mut v = json_value(&fresh_import());
    v["actions"][0]["reason"] = "fine\u{1b}[2K\u{1b}[1A".into();
    let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, ViewError::ControlCharacter(_)), "{err:?}");
    assert!(err.to_string().contains("actions[0].reason"), "{err}");
}

/// The plan hash is of the plan file's action view: these are the hashes the snapshots of
/// the same fixtures show. A change here changes every saved plan's hash (and what
/// promotion records name): it needs a `FORMAT_VERSION` bump, never an accident.
#[test]
fn plan_hashes_are_pinned() {
    let pinned = [
        (
            "fresh_import",
            "sha256:3fb764a14e97f6ca45b8f1cb7b56a1a575c63cbb1114a010ab80cdfedb156846",
        ),
        (
            "replace_prune_blocked",
            "sha256:1ce63031a25881e8e39b845a1c8ba2fb6dbd65164368f90b790646ec98f8e88c",
        ),
        (
            "empty_with_unmanaged",
            "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
        ),
        (
            "renewal_subset_warnings",
            "sha256:890c7b985d1564824f118871b78d2f1d8a6808a18f3543bc94cbe7270a497ab1",
        ),
    ];
    let plans: std::collections::BTreeMap<&str, Plan> = fixtures().into_iter().collect();
    for (name, hash) in pinned {
        let plan = &plans[name];
        assert_eq!(plan.hash().to_string(), hash, "{name}");
        // It is the hash of the canonical JSON of the views, exactly as the file holds them.
        let view = PlanView::from_plan(plan);
        assert_eq!(
            Digest::of(&serde_json::to_vec(&view.actions).unwrap()),
            plan.hash(),
            "{name}"
        );
    }
    assert_eq!(
        FORMAT_VERSION, 1,
        "a new format version: update the pinned hashes"
    );
}

/// An action whose fields do not fit its kind is refused by name, whatever its hash says.
#[test]
fn plan_files_with_malformed_actions_are_refused_naming_the_action() {
    let index = |v: &serde_json::Value, kind: &str| {
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .position(|a| a["kind"] == kind)
            .unwrap()
    };
    let edits: [(&str, &str, serde_json::Value, &str); 5] = [
        (
            "scan",
            "platforms",
            serde_json::json!(["linux/amd64"]),
            "a scan has no `platforms`",
        ),
        (
            "scan",
            "source_digest",
            serde_json::json!(dg("x").to_string()),
            "a scan has no `source_digest`",
        ),
        (
            "promote",
            "source_digest",
            serde_json::json!(dg("x").to_string()),
            "a promote copies one digest",
        ),
        (
            "import",
            "source",
            serde_json::Value::Null,
            "an import needs `source`",
        ),
        (
            "import",
            "image",
            serde_json::Value::Null,
            "an import needs `image`",
        ),
    ];
    for (kind, field, value, needle) in edits {
        let mut v = json_value(&fresh_import());
        let i = index(&v, kind);
        let id = v["actions"][i]["id"].as_str().unwrap().to_string();
        v["actions"][i][field] = value;
        let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(err, ViewError::Malformed(_)),
            "{kind} {field}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("action `{id}`")), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    // A delete (prune) with a size or a `replaces`.
    for field in ["size", "replaces", "platform_count"] {
        let mut v = json_value(&replace_prune_blocked());
        let i = index(&v, "delete");
        v["actions"][i][field] = if field == "replaces" {
            serde_json::json!(dg("x").to_string())
        } else {
            serde_json::json!(1)
        };
        let err = parse_plan_file(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "action `delete:live/old/thing:1`: a delete has no `{field}`"
            )),
            "{err}"
        );
    }
}
