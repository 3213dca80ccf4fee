//! Plan and apply end to end against real registries: the airlock binary, an upstream
//! Distribution holding the walkthrough's images, a target Distribution for quarantine and
//! live, and skopeo to check the result independently.

use airlock::model::Digest;

use crate::support::airlock::{Workdir, config, digest_of, seed_walkthrough, sources};
use crate::support::client::{RawClient, push_raw};
use crate::support::images::{Content, Format, ImageBuilder, random_layer_blob};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::skopeo::skopeo_digest;

fn actions_of(plan: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn walkthrough_plans_applies_and_converges() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let w = Workdir::new(&config(
        &upstream.url(),
        &target.url(),
        &sources(&images),
        "",
    ));

    // The plan: 6 imports, 6 scans, 6 promotes, with the digests upstream holds.
    let plan = w.run(&["plan", "--format", "json"]).await.expect(0).json();
    for kind in ["import", "scan", "promote"] {
        assert_eq!(actions_of(&plan, kind).len(), 6, "{kind}: {plan:#}");
    }
    for img in &images {
        let key = img.path_tag();
        let import = actions_of(&plan, "import")
            .into_iter()
            .find(|a| a["image"] == key.as_str())
            .unwrap();
        assert_eq!(import["digest"], digest_of(img).to_string(), "{key}");
    }
    w.run(&["plan", "--detailed-exitcode"]).await.expect(2);

    // Apply, then check live independently with skopeo.
    let applied = w.run(&["apply", "--auto-approve"]).await.expect(0);
    assert!(
        applied.stdout.contains("Apply: 18 done"),
        "{}",
        applied.stdout
    );
    for img in &images {
        let live = skopeo_digest(&target.host(), &format!("live/{}", img.path_tag())).await;
        assert_eq!(live, digest_of(img), "{}", img.path_tag());
        let q = skopeo_digest(&target.host(), &format!("quarantine/{}", img.path_tag())).await;
        assert_eq!(q, digest_of(img));
    }
    // Converged: nothing to do, and the audit proves every live tag passed the gate.
    let again = w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    let audit = w.run(&["audit", "--format", "json"]).await.expect(0).json();
    assert_eq!(audit["checked"], 6);
    assert_eq!(audit["violations"], 0);
    // A second apply has nothing to do.
    w.run(&["apply", "--auto-approve"]).await.expect(0);

    // images: pinned live references.
    let list = w.run(&["images"]).await.expect(0);
    for img in &images {
        let want = format!(
            "{}/live/{}@{}",
            target.host(),
            img.path_tag(),
            digest_of(img)
        );
        assert!(list.stdout.contains(&want), "{want} in\n{}", list.stdout);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_within_one_registry_moves_no_blob_bytes() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let w = Workdir::new(&config(
        &upstream.url(),
        &target.url(),
        &sources(&images),
        "",
    ));
    w.run(&["apply", "--auto-approve"]).await.expect(0);

    // Every image blob was uploaded to quarantine once, and never to live: live got mounts.
    let requests = target.requests();
    let mut image_blobs: Vec<Digest> = images
        .iter()
        .flat_map(|i| i.content.blobs().into_iter().map(|b| b.digest))
        .collect();
    image_blobs.sort();
    image_blobs.dedup();
    for d in &image_blobs {
        let digest_param = format!("digest={}", d).replace(':', "%3A");
        let uploads: Vec<&str> = requests
            .iter()
            .filter(|r| {
                r.method == "PUT"
                    && (r.path.contains(&digest_param) || r.path.contains(&format!("digest={d}")))
            })
            .map(|r| r.path.as_str())
            .collect();
        assert!(
            uploads.iter().all(|p| p.starts_with("/v2/quarantine/")),
            "blob {d} uploaded outside quarantine: {uploads:?}"
        );
        assert!(
            uploads.len() <= 1 || image_blobs.len() < 2,
            "blob {d} uploaded {} times: {uploads:?}",
            uploads.len()
        );
    }
    let mounts = target.count_requests("POST", "mount=");
    assert!(
        mounts >= image_blobs.len(),
        "expected mounts for live, got {mounts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_fails_only_that_image() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let proxy = FaultProxy::start(&upstream.url()).await;
    // Corrupt every download of busybox's first layer.
    let busybox = images.iter().find(|i| i.path == "library/busybox").unwrap();
    let layer = busybox.content.blobs()[0].digest.clone();
    let layer = if busybox.content.blobs()[0].media_type.contains("config") {
        busybox.content.blobs()[1].digest.clone()
    } else {
        layer
    };
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &format!("/blobs/{layer}")),
        times: usize::MAX,
        kind: FaultKind::FlipByte(10),
    });
    let w = Workdir::new(&config(&proxy.url(), &target.url(), &sources(&images), ""));
    let run = w.run(&["apply", "--auto-approve"]).await.expect(1);
    assert!(
        run.stdout.contains("import")
            && run.stdout.contains("FAILED")
            && run.stdout.contains("sha256"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("skipped"), "{}", run.stdout);
    // Nothing is tagged for busybox; the five others completed.
    let client = RawClient::new(&target.url(), None);
    assert!(
        client
            .get_manifest("quarantine/library/busybox", "1.33.0")
            .await
            .is_none()
    );
    assert!(
        client
            .get_manifest("live/library/busybox", "1.33.0")
            .await
            .is_none()
    );
    for img in images.iter().filter(|i| i.path != "library/busybox") {
        let live = skopeo_digest(&target.host(), &format!("live/{}", img.path_tag())).await;
        assert_eq!(live, digest_of(img));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_is_stale_when_a_live_tag_moved() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let w = Workdir::new(&config(
        &upstream.url(),
        &target.url(),
        &sources(&images),
        "",
    ));
    w.run(&["plan", "--out", "plan.json"]).await.expect(0);
    assert!(w.path().join("plan.json").exists());
    w.run(&["show", "plan.json", "--format", "markdown"])
        .await
        .expect(0);

    // Someone pushes to a live tag after the plan was made.
    let other = ImageBuilder::new("someone else").build();
    push_raw(
        &target.url(),
        "live/library/busybox",
        "1.33.0",
        &other,
        None,
    )
    .await;
    let run = w.run(&["apply", "plan.json"]).await.expect(4);
    assert!(
        run.stderr.contains("live/library/busybox:1.33.0"),
        "{}",
        run.stderr
    );
    // Nothing was applied.
    let client = RawClient::new(&target.url(), None);
    for img in &images {
        assert!(
            client
                .get_manifest(&format!("quarantine/{}", img.path), img.tag)
                .await
                .is_none()
        );
    }
    assert_eq!(
        skopeo_digest(&target.host(), "live/library/busybox:1.33.0").await,
        other.manifest.digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_without_a_terminal_needs_auto_approve() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let w = Workdir::new(&config(
        &upstream.url(),
        &target.url(),
        &sources(&images[..1]),
        "",
    ));
    let run = w.run(&["apply"]).await.expect(1);
    assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    assert_eq!(target.count_requests("PUT", "/manifests/"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_target_leaves_no_tag_on_missing_content_and_apply_converges() {
    let upstream = TestRegistry::start(Auth::None).await;
    let mut target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    // A larger image so that the crash lands mid-transfer.
    let dir = tempfile::tempdir().unwrap();
    let (big_layer, diff_id) =
        random_layer_blob(&dir.path().join("big.tar"), 96 << 20, 7, Format::Oci);
    let big = ImageBuilder::new("big")
        .layer_blob(big_layer, diff_id)
        .build();
    push_raw(&upstream.url(), "team/big", "1.0", &big, None).await;
    let mut srcs = sources(&images);
    srcs.push("docker.io/team/big:1.0".into());
    let w = Workdir::new(&config(&upstream.url(), &target.url(), &srcs, ""));

    let child = w
        .command(&["apply", "--auto-approve"], &[])
        .spawn()
        .unwrap();
    // Wait until the big blob's upload has started, then kill the target.
    let started = std::time::Instant::now();
    while target.count_requests("POST", "/v2/quarantine/team/big/blobs/uploads/") == 0 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the big upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    target.stop();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    target.restart().await;

    // Every tag that exists points at complete content.
    let client = RawClient::new(&target.url(), None);
    for repo in ["quarantine", "live"] {
        for img in srcs.iter().map(|s| s.split_once('/').unwrap().1) {
            let (path, tag) = img.split_once(':').unwrap();
            if let Some(m) = client.get_manifest(&format!("{repo}/{path}"), tag).await {
                assert_complete(&client, &format!("{repo}/{path}"), &m).await;
            }
        }
    }
    // The next apply converges.
    w.run(&["apply", "--auto-approve"]).await.expect(0);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    assert_eq!(
        skopeo_digest(&target.host(), "live/team/big:1.0").await,
        big.manifest.digest
    );
}

/// Every blob and child manifest a manifest references exists in `repo`.
async fn assert_complete(client: &RawClient, repo: &str, m: &airlock::model::RawManifest) {
    use airlock::model::manifest::Parsed;
    match m.parse().unwrap() {
        Parsed::Index { manifests, .. } => {
            for c in manifests {
                let child = client
                    .get_manifest(repo, &c.digest.to_string())
                    .await
                    .unwrap_or_else(|| panic!("{repo}: child {} missing", c.digest));
                Box::pin(assert_complete(client, repo, &child)).await;
            }
        }
        Parsed::Image { config, layers, .. } => {
            for b in std::iter::once(config).chain(layers) {
                assert!(
                    client.has_blob(repo, &b.digest).await,
                    "{repo}: blob {} missing",
                    b.digest
                );
            }
        }
    }
}
