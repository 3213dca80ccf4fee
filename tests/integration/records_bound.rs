//! Promotion records bound to what they claim (issue 11, items 2–4), against real
//! Distribution registries: a record copied from another digest, another image's gated
//! content and record pushed under a tag, look-alike `sha256-…` tags, a deleted record, and
//! airlock killed in the middle of a promotion. audit must report each; plan must show the
//! work; apply must repair it; and a converged plan must mean a clean audit.

use std::time::Duration;

use airlock::model::{Digest, RawManifest, media};
use airlock::records::{self, PromotionRecord};

use crate::support::airlock::{Workdir, config, seed_walkthrough};
use crate::support::client::RawClient;
use crate::support::images::{Blob, Content, ImageBuilder, TestImage};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::records::{
    BUSYBOX, KURED, RecordPath, RecordWorld as World, delete_manifest, document_of, finding,
    list_only, listed_records, on_both_paths, violation, world_config,
};
use crate::support::registry::{Auth, TestRegistry};

on_both_paths!(
    a_record_copied_from_another_digest_fails_audit_and_plan_repairs_it,
    a_deleted_record_is_plan_work_and_apply_repairs_it,
);

fn tag_of(path: &str) -> &'static str {
    match path {
        BUSYBOX => "1.33.0",
        KURED => "1.6.1",
        _ => unreachable!(),
    }
}

pub(crate) fn actions(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Push `rec` as a promotion record artifact about `subject` into `repo` and make the
/// tag-schema index `sha256-<subject>` list only it (hiding whatever was listed before).
async fn push_record_only(c: &RawClient, repo: &str, rec: &PromotionRecord, subject: &RawManifest) {
    let a = records::promotion_artifact(rec, None, &subject.media_type, subject.bytes.len() as u64);
    c.push_blob(repo, &Blob::memory(media::OCI_EMPTY, a.config.clone()))
        .await;
    c.push_blob(repo, &Blob::memory(records::DSSE_ENVELOPE, a.layer.clone()))
        .await;
    c.put_manifest(repo, &a.manifest.digest.to_string(), &a.manifest)
        .await;
    list_only(c, repo, &subject.digest, &[&a.manifest]).await;
}

/// Copy a manifest (and its blobs) from one repository of the target to another, by digest.
pub(crate) async fn copy_manifest(c: &RawClient, from: &str, to: &str, m: &RawManifest) {
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    let mut descs = vec![v["config"].clone()];
    descs.extend(v["layers"].as_array().cloned().unwrap_or_default());
    for d in descs {
        let digest: Digest = d["digest"].as_str().unwrap().parse().unwrap();
        let bytes = c.get_blob(from, &digest).await;
        c.push_blob(to, &Blob::memory(d["mediaType"].as_str().unwrap(), bytes))
            .await;
    }
    c.put_manifest(to, &m.digest.to_string(), m).await;
}

/// audit fails (exit 3) on busybox's live tag and kured's is fine: busybox's violation.
async fn busybox_violation(world: &World) -> String {
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    let kured = finding(&report, &format!("live/{KURED}"), "1.6.1");
    assert!(kured["violation"].is_null(), "{report:#}");
    violation(&report, &format!("live/{BUSYBOX}"), "1.33.0")
}

/// The actions (id, reason) of `airlock plan --format json`.
async fn planned(world: &World) -> Vec<(String, String)> {
    actions(
        &world
            .run(&["plan", "--format", "json"])
            .await
            .expect(0)
            .json(),
    )
}

/// Plan shows work, apply repairs it, audit is clean and the next plan has nothing to do.
pub(crate) async fn repaired(w: &Workdir) {
    w.run(&["plan", "--detailed-exitcode"]).await.expect(2);
    w.run(&["apply", "--auto-approve"]).await.expect(0);
    let audit = w.run(&["audit", "--format", "json"]).await.expect(0).json();
    assert_eq!(audit["violations"], 0, "{audit:#}");
    let again = w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
}

async fn a_record_copied_from_another_digest_fails_audit_and_plan_repairs_it(path: RecordPath) {
    let world = World::on(path).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    world.run(&["audit"]).await.expect(0);
    let c = world.client();
    let (b, k) = (world.digest(BUSYBOX), world.digest(KURED));
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));

    // kured's genuine record, with only its `digest` rewritten to busybox's, pushed as the
    // only record about busybox's live digest.
    let kured_record = &world.records(&live_k, &k).await[0];
    let mut forged: PromotionRecord = document_of(&c, &live_k, kured_record).await;
    assert_eq!(forged.digest, k);
    forged.digest = b.clone();
    let subject = c.get_manifest(&live_b, "1.33.0").await.unwrap();
    let a = records::promotion_artifact(
        &forged,
        None,
        &subject.media_type,
        subject.bytes.len() as u64,
    );
    world.push_only(&live_b, &b, &a.manifest, &a.layer).await;

    let v = busybox_violation(&world).await;
    assert!(
        v.contains("promoted") && v.contains(&k.short()) && v.contains(&b.short()),
        "{v}"
    );

    // The plan shows the repair; apply writes a record that binds; then converged and clean.
    let acts = planned(&world).await;
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(acts[0].0, "promote:library/busybox:1.33.0");
    assert!(
        acts[0].1.starts_with("record invalid: the record promoted"),
        "{acts:?}"
    );
    repaired(&world.w).await;
    assert!(!world.records(&live_b, &b).await.is_empty());
    world.check_path();
}

#[tokio::test(flavor = "multi_thread")]
async fn another_images_gated_content_and_record_under_this_tag_fail_audit() {
    let world = World::start().await;
    world.w.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let k = world.digest(KURED);
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));

    // kured passed the gate as kured. Its content goes under busybox's live tag, with kured's
    // own record next to it (byte for byte, then rewritten claim by claim).
    let kured = c.get_manifest(&live_k, "1.6.1").await.unwrap();
    let kured_record = listed_records(&c, &live_k, &k).await.remove(0);
    copy_manifest(&c, &live_k, &live_b, &kured).await;
    copy_manifest(&c, &live_k, &live_b, &kured_record).await;
    list_only(&c, &live_b, &k, &[&kured_record]).await;
    c.put_manifest(&live_b, "1.33.0", &kured).await;

    let v = busybox_violation(&world).await;
    assert!(
        v.contains("target/live/weaveworks/kured:1.6.1")
            && v.contains("not this tag target/live/library/busybox:1.33.0"),
        "{v}"
    );

    // The record's `live` rewritten to this tag: it still came from kured's quarantine.
    let mut doc = document_of::<PromotionRecord>(&c, &live_k, &kured_record).await;
    doc.live = "target/live/library/busybox:1.33.0".into();
    push_record_only(&c, &live_b, &doc, &kured).await;
    let v = busybox_violation(&world).await;
    assert!(
        v.contains(&format!("target/quarantine/weaveworks/kured@{k}"))
            && v.contains("not from this image's quarantine"),
        "{v}"
    );

    // And `from` rewritten to busybox's quarantine: kured's digest never went through it.
    doc.from = format!("target/quarantine/library/busybox@{k}");
    push_record_only(&c, &live_b, &doc, &kured).await;
    let v = busybox_violation(&world).await;
    assert!(
        v.contains("is not in quarantine (target/quarantine/library/busybox)"),
        "{v}"
    );

    // The plan puts busybox back (the live tag no longer holds what the source says).
    let ids: Vec<String> = planned(&world).await.into_iter().map(|a| a.0).collect();
    assert_eq!(ids, ["promote:library/busybox:1.33.0"]);
    repaired(&world.w).await;
    assert_eq!(
        c.get_manifest(&live_b, "1.33.0").await.unwrap().digest,
        world.digest(BUSYBOX)
    );
}

/// An index tagged `tag` whose one entry is a runnable image (no platform, like a referrer).
async fn push_trick_index(c: &RawClient, repo: &str, tag: &str, img: &TestImage) {
    for blob in img.blobs() {
        c.push_blob(repo, &blob).await;
    }
    c.put_manifest(repo, &img.manifest.digest.to_string(), &img.manifest)
        .await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": img.manifest.media_type,
            "digest": img.manifest.digest.to_string(),
            "size": img.manifest.bytes.len(),
            "artifactType": media::PROMOTION_ARTIFACT,
        }],
    });
    let index = RawManifest::new(serde_json::to_vec(&index).unwrap(), None).unwrap();
    c.put_manifest(repo, tag, &index).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn look_alike_referrer_tags_are_live_tags_for_audit_and_prune() {
    let world = World::start().await;
    world.w.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let live_b = format!("live/{BUSYBOX}");
    let evil = ImageBuilder::new("evil").build();
    let runnable = ImageBuilder::new("runnable").build();
    let hidden = ImageBuilder::new("hidden").build();
    // `sha256-evil`; `sha256-<64 hex>` holding a runnable image; `sha256-<64 hex>` holding an
    // index that lists a runnable image as if it were a referrer of that digest.
    let hex_tag = runnable.manifest.digest.referrers_tag();
    let trick_tag = world.digest(KURED).referrers_tag();
    c.push(&live_b, "sha256-evil", &evil).await;
    c.push(&live_b, &hex_tag, &runnable).await;
    push_trick_index(&c, &live_b, &trick_tag, &hidden).await;
    let genuine = world.digest(BUSYBOX).referrers_tag();
    assert!(c.tags(&live_b).await.contains(&genuine));

    let (run, report) = world.audit().await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert_eq!(report["violations"], 3, "{report:#}");
    assert_eq!(
        report["checked"], 5,
        "two declared tags and three look-alikes"
    );
    for tag in ["sha256-evil", hex_tag.as_str(), trick_tag.as_str()] {
        let f = finding(&report, &live_b, tag);
        assert_eq!(f["declared"], false);
        assert!(
            f["violation"]
                .as_str()
                .unwrap()
                .contains("no promotion record"),
            "{f:#}"
        );
    }
    assert!(
        !report.to_string().contains(&genuine),
        "the genuine referrers index is not a live tag: {report:#}"
    );
    let human = world.w.run(&["audit"]).await.expect(3);
    assert!(
        human
            .stdout
            .lines()
            .any(|l| l.contains("busybox:sha256-evil @") && l.contains("(undeclared)")),
        "{}",
        human.stdout
    );

    // With prune, the plan deletes exactly the three, and the records survive (audit clean).
    world.w.set_config(
        &world
            .config("")
            .replace("prefix = \"live\"", "prefix = \"live\"\nprune = true"),
    );
    let mut ids: Vec<String> = planned(&world).await.into_iter().map(|a| a.0).collect();
    ids.sort();
    let mut want = vec![
        format!("delete:{live_b}:sha256-evil"),
        format!("delete:{live_b}:{hex_tag}"),
        format!("delete:{live_b}:{trick_tag}"),
    ];
    want.sort();
    assert_eq!(ids, want);
    world.w.run(&["apply", "--auto-approve"]).await.expect(0);
    let tags = c.tags(&live_b).await;
    assert!(
        !tags
            .iter()
            .any(|t| t == "sha256-evil" || *t == hex_tag || *t == trick_tag),
        "{tags:?}"
    );
    assert!(tags.contains(&genuine), "{tags:?}");
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 0, "{report:#}");
    assert_eq!(report["checked"], 2);
    world
        .w
        .run(&["plan", "--detailed-exitcode"])
        .await
        .expect(0);

    // busybox no longer declared (prune off): its tag is still judged by its own record, and
    // that record binds it to its own quarantine repository: undeclared, not a violation.
    world.w.set_config(&config(
        &world.upstream.url(),
        &world.target.url(),
        &["docker.io/weaveworks/kured:1.6.1".to_string()],
        "",
    ));
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 0, "{report:#}");
    let f = finding(&report, &live_b, "1.33.0");
    assert_eq!(f["declared"], false);
    assert!(f["violation"].is_null(), "{f:#}");
    assert_eq!(
        finding(&report, &format!("live/{KURED}"), "1.6.1")["declared"],
        true
    );
}

async fn a_deleted_record_is_plan_work_and_apply_repairs_it(path: RecordPath) {
    let world = World::on(path).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let (b, k) = (world.digest(BUSYBOX), world.digest(KURED));
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));

    // busybox: the record manifest deleted (a tag-schema index still lists it). kured: the
    // whole tag-schema index deleted, or, with the referrers API, its record.
    let rec = world.records(&live_b, &b).await.remove(0);
    delete_manifest(&c, &live_b, &rec.digest).await;
    let gone = match path {
        RecordPath::TagSchema => c.get_manifest(&live_k, &k.referrers_tag()).await.unwrap(),
        RecordPath::ReferrersApi => world.records(&live_k, &k).await.remove(0),
    };
    delete_manifest(&c, &live_k, &gone.digest).await;

    let (run, report) = world.audit().await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert_eq!(report["violations"], 2, "{report:#}");
    for (repo, tag) in [(&live_b, "1.33.0"), (&live_k, "1.6.1")] {
        assert!(violation(&report, repo, tag).contains("no promotion record"));
    }

    assert_eq!(
        planned(&world).await,
        [
            (
                "promote:library/busybox:1.33.0".to_string(),
                "record missing".to_string()
            ),
            (
                "promote:weaveworks/kured:1.6.1".to_string(),
                "record missing".to_string()
            ),
        ]
    );
    let human = world.run(&["plan"]).await.expect(0);
    assert!(human.stdout.contains("0 to replace"), "{}", human.stdout);
    let before = world.target.requests().len();
    let applied = world.run(&["apply", "--auto-approve"]).await.expect(0);
    assert!(
        applied.stdout.contains("promotion record"),
        "{}",
        applied.stdout
    );
    // Only the records were written: no image blob moved, no tag was rewritten.
    let image_blobs: Vec<String> = [BUSYBOX, KURED]
        .iter()
        .flat_map(|p| world.image(p).content.blobs())
        .map(|b| b.digest.hex().to_string())
        .collect();
    let puts: Vec<String> = world.target.requests()[before..]
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path.clone())
        .collect();
    for p in &puts {
        assert!(
            !p.ends_with("/manifests/1.33.0") && !p.ends_with("/manifests/1.6.1"),
            "a tag was rewritten: {puts:#?}"
        );
        assert!(
            !image_blobs.iter().any(|d| p.contains(d.as_str())),
            "an image blob was uploaded: {puts:#?}"
        );
    }
    for (repo, d) in [(&live_b, &b), (&live_k, &k)] {
        assert_eq!(world.records(repo, d).await.len(), 1, "{repo}");
    }
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 0, "{report:#}");
    assert_eq!(report["violations"], 0);
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    world.check_path();
}

fn kill(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -KILL {pid}");
}

/// airlock killed (SIGKILL, no grace) while a promotion waits on its last write — busybox on
/// the live tag, kured on the record's referrers-index update: neither live tag exists, and
/// the next plan/apply converge to a clean audit.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_during_promotion_leaves_no_live_tag_without_a_record() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let proxy = FaultProxy::start(&target.url()).await;
    let (tag_put, index_put) = (
        format!("/v2/live/{BUSYBOX}/manifests/{}", tag_of(BUSYBOX)),
        format!("/v2/live/{KURED}/manifests/sha256-"),
    );
    for path in [&tag_put, &index_put] {
        proxy.add_fault(Fault {
            when: Match::method_path("PUT", path),
            times: usize::MAX,
            kind: FaultKind::Delay(Duration::from_secs(600)),
        });
    }
    let w = Workdir::new(&world_config(&upstream.url(), &proxy.url(), ""));
    let child = w
        .command(&["apply", "--auto-approve"], &[])
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    for _ in 0..3000 {
        if proxy.count("PUT", &tag_put) > 0 && proxy.count("PUT", &index_put) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.count("PUT", &tag_put) > 0 && proxy.count("PUT", &index_put) > 0);
    kill(pid);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), None, "killed by a signal");

    let c = RawClient::new(&target.url(), None);
    let busybox = images.iter().find(|i| i.path == BUSYBOX).unwrap();
    let b = busybox.content.top().digest.clone();
    // The content and busybox's record are there; no live tag.
    assert!(
        c.get_manifest(&format!("live/{BUSYBOX}"), "1.33.0")
            .await
            .is_none()
    );
    assert!(
        c.get_manifest(&format!("live/{BUSYBOX}"), &b.to_string())
            .await
            .is_some()
    );
    assert_eq!(
        listed_records(&c, &format!("live/{BUSYBOX}"), &b)
            .await
            .len(),
        1
    );
    assert!(
        c.get_manifest(&format!("live/{KURED}"), "1.6.1")
            .await
            .is_none()
    );

    // The same configuration, straight to the target (the registry keys are unchanged).
    let direct = Workdir::new(&world_config(&upstream.url(), &target.url(), ""));
    let audit = direct
        .run(&["audit", "--format", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(audit["checked"], 0, "nothing reached live: {audit:#}");
    let plan = direct
        .run(&["plan", "--format", "json"])
        .await
        .expect(0)
        .json();
    let acts = actions(&plan);
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert!(
        acts.iter()
            .all(|(id, reason)| id.starts_with("promote:") && reason == "not in live")
    );
    repaired(&direct).await;
}
