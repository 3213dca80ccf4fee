//! A saved plan is untrusted input, against real registries: a plan file rewritten by an
//! attacker (with its unkeyed plan_hash recomputed, as anyone can) is refused with exit 1
//! naming the action, and nothing is written; the expected hash is never printed; a live tag
//! changed under a plan is called what it is; a failing verdict whose annotation was edited
//! to `pass` does not promote; an honest saved plan still applies.

use std::path::Path;

use airlock::model::{RawManifest, media};
use airlock::plan::{Action, ActionKind, Location, Plan, PlanParts};
use airlock::records;
use airlock::render::{self, ActionView, Format, HumanOptions, PlanView};

use crate::support::airlock::{Walkthrough, digest_of, has_action, move_live_busybox};
use crate::support::client::{RawClient, push_raw};
use crate::support::images::ImageBuilder;
use crate::support::records::{RecordPath, RecordWorld, on_both_paths};
use crate::support::skopeo::skopeo_digest;

on_both_paths!(a_failing_verdict_with_its_annotation_edited_to_pass_does_not_promote);

/// Read a plan file, let `edit` change its actions, and write it back with its plan_hash
/// recomputed exactly as airlock computes it (the hash is unkeyed: an attacker can too).
fn rewrite(dir: &Path, from: &str, to: &str, edit: impl FnOnce(&mut Vec<ActionView>)) -> Plan {
    let view: PlanView = serde_json::from_slice(&std::fs::read(dir.join(from)).unwrap()).unwrap();
    let mut actions = view.actions;
    edit(&mut actions);
    let plan = Plan::new(
        PlanParts {
            actions: actions_of(actions),
            blocked: view.blocked,
            unmanaged: view.unmanaged,
            warnings: view.warnings,
            live_before: view.live_before,
            live_after: view.live_after,
            partial: view.partial,
        },
        view.policy_hash,
    )
    .unwrap();
    let mut out = Vec::new();
    render::render(
        &plan,
        Format::Json,
        &HumanOptions { color: false },
        &mut out,
    )
    .unwrap();
    std::fs::write(dir.join(to), out).unwrap();
    plan
}

/// The plan file's actions as a plan holds them (each well-formed for its kind).
fn actions_of(views: Vec<ActionView>) -> Vec<Action> {
    views
        .into_iter()
        .map(|v| Action::try_from(v).unwrap())
        .collect()
}

fn find<'a>(actions: &'a mut [ActionView], id: &str) -> &'a mut ActionView {
    actions.iter_mut().find(|a| a.id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_plan_is_refused_and_an_honest_one_applies() {
    let Walkthrough {
        upstream,
        target,
        images,
        w,
    } = Walkthrough::start().await;
    // Something nobody declared, upstream.
    let evil = ImageBuilder::new("unscanned payload").build();
    push_raw(&upstream.url(), "evil/thing", "1", &evil, None).await;

    w.run(&["plan", "--out", "plan.json"]).await.expect(0);
    let busybox = "library/busybox:1.33.0";

    // 1. An import of an undeclared image, straight into a live path.
    rewrite(w.path(), "plan.json", "undeclared.json", |actions| {
        actions.push(ActionView {
            id: "import:evil/thing:1".into(),
            kind: ActionKind::Import,
            image: Some("evil/thing:1".into()),
            source: Some(Location {
                registry: "docker.io".into(),
                repository: "evil/thing".into(),
                tag: Some("1".into()),
            }),
            source_digest: Some(evil.manifest.digest.clone()),
            target: Location {
                registry: "target".into(),
                repository: "live/evil/thing".into(),
                tag: Some("1".into()),
            },
            digest: evil.manifest.digest.clone(),
            replaces: None,
            platforms: None,
            size: None,
            platform_count: None,
            preconditions: vec![],
            depends_on: vec![],
            reason: "not in quarantine".into(),
        });
    });
    // 2. A declared image's import retargeted to its live tag (skipping scan and promote).
    rewrite(w.path(), "plan.json", "retargeted.json", |actions| {
        let a = find(actions, &format!("import:{busybox}"));
        a.target.repository = "live/library/busybox".into();
        for p in &mut a.preconditions {
            if p.location.repository.starts_with("quarantine/") {
                p.location.repository = "live/library/busybox".into();
            }
        }
    });
    // 3. A promote that no longer waits for its scan.
    rewrite(w.path(), "plan.json", "no-scan.json", |actions| {
        find(actions, &format!("promote:{busybox}"))
            .depends_on
            .retain(|d| !d.starts_with("scan:"));
    });
    for (file, id) in [
        ("undeclared.json", "import:evil/thing:1".to_string()),
        ("retargeted.json", format!("import:{busybox}")),
        ("no-scan.json", format!("promote:{busybox}")),
    ] {
        let run = w.run(&["apply", file]).await.expect(1);
        assert!(
            run.stderr.contains(&format!("`{id}`")),
            "{file}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("nothing was applied"),
            "{file}: {}",
            run.stderr
        );
        // `show` validates the same way: a reviewer never sees a plan apply would refuse.
        let shown = w.run(&["show", file]).await.expect(1);
        assert!(
            shown.stderr.contains(&format!("`{id}`")),
            "{}",
            shown.stderr
        );
        assert!(shown.stdout.is_empty(), "{}", shown.stdout);
    }
    // Nothing was written anywhere: no manifest, no tag.
    assert_eq!(target.count_requests("PUT", "/manifests/"), 0);
    assert_eq!(target.count_requests("PUT", "/blobs/"), 0);
    assert_eq!(target.count_requests("POST", "/blobs/uploads"), 0);
    let client = RawClient::new(&target.url(), None);
    assert!(client.get_manifest("live/evil/thing", "1").await.is_none());
    assert!(
        client
            .get_manifest("live/library/busybox", "1.33.0")
            .await
            .is_none()
    );

    // An edit without recomputing the hash: refused, and the hash that would be accepted is
    // not printed.
    let honest = rewrite(w.path(), "plan.json", "same.json", |_| {});
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path().join("plan.json")).unwrap()).unwrap();
    let recorded = v["plan_hash"].as_str().unwrap().to_string();
    assert_eq!(recorded, honest.hash().to_string());
    v["actions"][0]["reason"] = "edited".into();
    std::fs::write(
        w.path().join("edited.json"),
        serde_json::to_vec(&v).unwrap(),
    )
    .unwrap();
    let expected = {
        let actions: Vec<ActionView> = serde_json::from_value(v["actions"].clone()).unwrap();
        Plan::new(
            PlanParts {
                actions: actions_of(actions),
                ..honest.parts()
            },
            honest.policy_hash.clone(),
        )
        .unwrap()
        .hash()
    };
    assert_ne!(expected.to_string(), recorded);
    for args in [["apply", "edited.json"], ["show", "edited.json"]] {
        let run = w.run(&args).await.expect(1);
        assert!(run.stderr.contains("modified"), "{}", run.stderr);
        let hex = expected.to_string();
        let short = &hex["sha256:".len().."sha256:".len() + 12];
        for out in [&run.stdout, &run.stderr] {
            assert!(!out.contains(short), "expected hash printed: {out}");
        }
    }

    // An honest file shows and applies; a live tag changed under it is called out as live.
    w.run(&["show", "plan.json"]).await.expect(0);
    move_live_busybox(&target, "pushed around the gate").await;
    let run = w.run(&["apply", "plan.json"]).await.expect(4);
    assert!(
        run.stderr
            .contains("live tag target/live/library/busybox:1.33.0 changed since the plan"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("possible tampering"), "{}", run.stderr);
    assert!(!run.stderr.contains("upstream"), "{}", run.stderr);
    // The next plan says the same (it is not an upstream move), and its file applies.
    let planned = w.run(&["plan", "--out", "plan2.json"]).await.expect(0);
    assert!(
        planned.stdout.contains("possible tampering"),
        "{}",
        planned.stdout
    );
    assert!(
        !planned.stdout.contains("upstream tag"),
        "{}",
        planned.stdout
    );
    w.run(&["apply", "plan2.json"]).await.expect(0);
    for img in &images {
        let live = skopeo_digest(&target.host(), &format!("live/{}", img.path_tag())).await;
        assert_eq!(live, digest_of(img), "{}", img.path_tag());
    }
}

/// The gate blocks an image that runs as root; someone with push rights to quarantine
/// pushes its failing verdict again with the annotations saying `pass` (the document, its
/// layer, still says fail), listed alone in the verdict's place; the planner reads
/// annotations, so it plans the promotion, but apply reads the document and blocks it.
async fn a_failing_verdict_with_its_annotation_edited_to_pass_does_not_promote(path: RecordPath) {
    let world = RecordWorld::on(path).await;
    let rooty = ImageBuilder::new("runs as root").user("root").build();
    push_raw(&world.upstream.url(), "library/rooty", "1", &rooty, None).await;
    world.configure(
        &["docker.io/library/rooty:1".to_string()],
        "[gate.policy]\nforbid_root = true\n",
    );
    // The gate blocks it: a critical AIRLOCK-ROOT-USER finding, recorded in the verdict.
    let run = world.run(&["apply", "--auto-approve"]).await.expect(3);
    assert!(run.stdout.contains("AIRLOCK-ROOT-USER"), "{}", run.stdout);
    let client = world.client();
    let (q, live) = ("quarantine/library/rooty", "live/library/rooty");
    assert!(client.get_manifest(live, "1").await.is_none());

    // The verdict's annotations edited to `pass`, the edited manifest the only one listed.
    let subject = rooty.manifest.digest.clone();
    let verdicts = world.listed(q, &subject, records::VERDICT_PREDICATE).await;
    assert_eq!(verdicts.len(), 1);
    let mut body: serde_json::Value = serde_json::from_slice(&verdicts[0].bytes).unwrap();
    assert_eq!(body["annotations"][records::ANN_DECISION], "fail");
    body["annotations"][records::ANN_DECISION] = "pass".into();
    let edited = RawManifest::new(
        serde_json::to_vec(&body).unwrap(),
        Some(media::OCI_MANIFEST),
    )
    .unwrap();
    client
        .put_manifest(q, &edited.digest.to_string(), &edited)
        .await;
    world.list_only(q, &subject, &[&edited]).await;

    // The planner reads annotations, so it now plans the promotion (the attack reaches apply).
    let plan = world
        .run(&["plan", "--format", "json", "--out", "plan.json"])
        .await
        .expect(0)
        .json();
    assert!(has_action(&plan, "promote:library/rooty:1"), "{plan:#}");
    // Apply reads the document: blocked, exit 3, and live stays empty.
    for args in [vec!["apply", "plan.json"], vec!["apply", "--auto-approve"]] {
        let run = world.run(&args).await.expect(3);
        assert!(run.stdout.contains("the verdict fails"), "{}", run.stdout);
        assert!(run.stdout.contains("AIRLOCK-ROOT-USER"), "{}", run.stdout);
        assert!(client.get_manifest(live, "1").await.is_none());
    }
    assert_eq!(
        world.target.count_requests("PUT", "/manifests/1"),
        1,
        "only the quarantine tag"
    );
    world.check_path();
}
