//! The README quick start: `examples/quickstart` holds a tiny upstream registry as OCI image
//! layouts, built here (deterministically) and committed. One test checks the committed
//! files are exactly what the builder makes (set AIRLOCK_REGENERATE_QUICKSTART=1 to rewrite
//! them); another runs the quick start's commands on a copy, with no registry server.

use std::path::{Path, PathBuf};

use crate::support::airlock::Workdir;
use crate::support::images::{Content, ImageBuilder, TestIndex, write_oci_layout};
use crate::support::skopeo::skopeo;

fn quickstart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart")
}

/// Write the upstream layouts into `root`.
fn build_upstream(root: &Path) -> (airlock::model::Digest, airlock::model::Digest) {
    let hello = ImageBuilder::new("demo/hello:1.0")
        .layer_files(&[("hello.txt", b"hello from airlock's quick start\n")])
        .user("65532:65532")
        .label(
            "org.opencontainers.image.source",
            "https://example.invalid/demo/hello",
        )
        .created("2026-11-01T00:00:00Z")
        .build();
    let multi = TestIndex::new(
        ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|p| {
                ImageBuilder::new("demo/multi:1.0")
                    .platform(p)
                    .user("65532")
                    .label(
                        "org.opencontainers.image.source",
                        "https://example.invalid/demo/multi",
                    )
                    .created("2026-11-01T00:00:00Z")
                    .build()
            })
            .collect(),
    );
    write_oci_layout(&root.join("demo/hello"), "1.0", &hello);
    write_oci_layout(&root.join("demo/multi"), "1.0", &multi);
    (hello.top().digest.clone(), multi.top().digest.clone())
}

fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn committed_upstream_layouts_are_current() {
    let committed = quickstart_dir().join("upstream");
    if std::env::var_os("AIRLOCK_REGENERATE_QUICKSTART").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        build_upstream(&committed);
    }
    let fresh = tempfile::tempdir().unwrap();
    build_upstream(fresh.path());
    assert!(
        files(&committed) == files(fresh.path()),
        "examples/quickstart/upstream is not what the builder makes; run \
         AIRLOCK_REGENERATE_QUICKSTART=1 cargo test --test integration quickstart and commit"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in files(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_runs_without_a_server() {
    let config = std::fs::read_to_string(quickstart_dir().join("airlock.toml")).unwrap();
    let w = Workdir::new(&config);
    copy_dir(
        &quickstart_dir().join("upstream"),
        &w.path().join("upstream"),
    );
    let (hello, _) = build_upstream(&tempfile::tempdir().unwrap().keep());

    w.run(&["validate"]).await.expect(0);
    let plan = w.run(&["plan", "--detailed-exitcode"]).await.expect(2);
    assert!(
        plan.stdout
            .contains("Plan: 2 to import, 2 to scan, 2 to promote"),
        "{}",
        plan.stdout
    );
    let applied = w.run(&["apply", "--auto-approve"]).await.expect(0);
    assert!(applied.stdout.contains("6 done"), "{}", applied.stdout);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    let audit = w.run(&["audit"]).await.expect(0);
    assert!(
        audit.stdout.contains("2 tag(s) checked, 0 violation(s)"),
        "{}",
        audit.stdout
    );
    let k = w.run(&["images", "--format", "kustomize"]).await.expect(0);
    assert!(
        k.stdout.contains(&format!("digest: {hello}")),
        "{}",
        k.stdout
    );

    // skopeo, an independent client, reads the live layout.
    let layout = w.path().join("registry/live/demo/hello");
    let raw = skopeo(&[
        "inspect".into(),
        "--raw".into(),
        format!("oci:{}:1.0", layout.display()),
    ])
    .await;
    assert_eq!(airlock::model::Digest::of(&raw), hello);
    // The subset index in live has one platform.
    let multi = w.path().join("registry/live/demo/multi");
    let raw = skopeo(&[
        "inspect".into(),
        "--raw".into(),
        format!("oci:{}:1.0", multi.display()),
    ])
    .await;
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
}
