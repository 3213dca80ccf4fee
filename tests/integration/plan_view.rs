//! A plan file's actions are read through the plan file's own action view and converted
//! strictly: an action carrying a field its kind may not have, or lacking one it needs, is
//! refused by id before anything is contacted or written, even with its plan_hash
//! recomputed (anyone can). The hash is of that view, so the honest file still applies.

use airlock::model::Digest;
use airlock::render::ActionView;

use crate::support::airlock::{Walkthrough, digest_of};
use crate::support::skopeo::skopeo_digest;

/// `plan.json` with `edit` applied to the action `id` and the plan_hash recomputed as
/// airlock computes it: sha256 of the canonical JSON of the action views.
fn hostile(
    plan: &serde_json::Value,
    id: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    let mut v = plan.clone();
    let action = v["actions"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no action {id}"));
    edit(action);
    let views: Vec<ActionView> = serde_json::from_value(v["actions"].clone()).unwrap();
    v["plan_hash"] = Digest::of(&serde_json::to_vec(&views).unwrap())
        .to_string()
        .into();
    serde_json::to_vec(&v).unwrap()
}

/// An edit of one action of the plan file.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

#[tokio::test(flavor = "multi_thread")]
async fn an_action_with_fields_its_kind_cannot_have_is_refused_by_id() {
    // The upstream registry must outlive the test (dropping it stops it).
    let Walkthrough {
        upstream: _upstream,
        target,
        images,
        w,
    } = Walkthrough::start().await;
    w.run(&["plan", "--out", "plan.json"]).await.expect(0);
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path().join("plan.json")).unwrap()).unwrap();
    // The file the planner writes is exactly the views of its actions.
    let views: Vec<ActionView> = serde_json::from_value(plan["actions"].clone()).unwrap();
    assert_eq!(
        plan["plan_hash"],
        Digest::of(&serde_json::to_vec(&views).unwrap()).to_string()
    );

    let busybox = "library/busybox:1.33.0";
    let cases: Vec<(String, &str, Edit)> = vec![
        (
            format!("scan:{busybox}"),
            "a scan has no `platforms`",
            Box::new(|a| a["platforms"] = serde_json::json!(["linux/amd64"])),
        ),
        (
            format!("scan:{busybox}"),
            "a scan has no `source`",
            Box::new(
                |a| a["source"] = serde_json::json!({"registry": "upstream", "repository": "evil/thing", "tag": "1"}),
            ),
        ),
        (
            format!("promote:{busybox}"),
            "a promote copies one digest",
            Box::new(|a| a["source_digest"] = format!("sha256:{}", "7".repeat(64)).into()),
        ),
        (
            format!("import:{busybox}"),
            "an import needs `source_digest`",
            Box::new(|a| {
                a.as_object_mut().unwrap().remove("source_digest");
            }),
        ),
    ];
    for (i, (id, needle, edit)) in cases.into_iter().enumerate() {
        let file = format!("hostile-{i}.json");
        std::fs::write(w.path().join(&file), hostile(&plan, &id, edit)).unwrap();
        for cmd in ["apply", "show"] {
            let run = w.run(&[cmd, &file]).await.expect(1);
            assert!(
                run.stderr.contains(&format!("action `{id}`: ")),
                "{cmd} {file}: {}",
                run.stderr
            );
            assert!(run.stderr.contains(needle), "{cmd} {file}: {}", run.stderr);
            assert!(run.stdout.is_empty(), "{cmd} {file}: {}", run.stdout);
        }
    }
    assert_eq!(target.count_requests("PUT", "/manifests/"), 0);
    assert_eq!(target.count_requests("POST", "/blobs/uploads"), 0);

    // The honest file applies.
    w.run(&["apply", "plan.json"]).await.expect(0);
    for img in &images {
        let live = skopeo_digest(&target.host(), &format!("live/{}", img.path_tag())).await;
        assert_eq!(live, digest_of(img), "{}", img.path_tag());
    }
}
