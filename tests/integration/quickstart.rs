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
    // A layout directory has no name a cluster can pull: the host must be given.
    let no_host = w.run(&["images", "--format", "kustomize"]).await.expect(1);
    assert!(
        no_host.stderr.contains("--live-host") && no_host.stdout.is_empty(),
        "{}",
        no_host.stderr
    );
    let no_host = w.run(&["admission", "--format", "vap"]).await.expect(1);
    assert!(no_host.stderr.contains("--live-host"), "{}", no_host.stderr);
    let bad_host = w
        .run(&["admission", "--format", "vap", "--live-host", "registry"])
        .await
        .expect(1);
    assert!(
        bad_host.stderr.contains("Docker Hub"),
        "{}",
        bad_host.stderr
    );
    let vap = w
        .run(&[
            "admission",
            "--format",
            "vap",
            "--live-host",
            "registry.example.com",
        ])
        .await
        .expect(0);
    assert!(
        vap.stdout
            .contains("registry[.]example[.]com/live/demo/hello(?::"),
        "{}",
        vap.stdout
    );
    let k = w
        .run(&[
            "images",
            "--format",
            "kustomize",
            "--live-host",
            "registry.example.com",
        ])
        .await
        .expect(0);
    assert!(
        k.stdout.contains(&format!(
            "newName: registry.example.com/live/demo/hello\n    digest: {hello}"
        )),
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

/// Every example configuration validates (examples/*/airlock.toml).
#[tokio::test(flavor = "multi_thread")]
async fn every_example_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let cfg = e.unwrap().path().join("airlock.toml");
        if cfg.exists() {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
                .args(["-c", cfg.to_str().unwrap(), "validate"])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                cfg.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 2, "found {n} examples");
}

/// Bad configurations exit 1 with file:line:col and a fix, and make no registry call
/// (the endpoint below does not exist: a call would fail differently).
#[tokio::test(flavor = "multi_thread")]
async fn bad_configurations_point_at_the_problem() {
    let base = "[registries.acr]\nendpoint = \"http://127.0.0.1:9\"\n[quarantine]\nregistry = \"acr\"\n[live]\nregistry = \"acr\"\n";
    for (extra, want) in [
        (
            "[[images]]\nsource = \"busybox:1\"\ntagg = \"x\"\n",
            "airlock.toml:9:1: unknown field `tagg`",
        ),
        (
            "[[images]]\nsource = \"ghcr.io/Flux/x:1\"\n",
            "airlock.toml:8:10: invalid image reference",
        ),
        (
            "[[images]]\nsource = \"busybox:1\"\n[[images]]\nsource = \"docker.io/library/busybox:1\"\n",
            "airlock.toml:10:10: two images map to the same live tag",
        ),
    ] {
        let w = Workdir::new(&format!("{base}{extra}"));
        for cmd in ["validate", "plan"] {
            let run = w.run(&[cmd]).await.expect(1);
            assert!(run.stderr.contains(want), "{cmd}: {}", run.stderr);
            assert!(run.stderr.contains("help:"), "{}", run.stderr);
            assert!(
                run.stderr.contains("nothing was read from any registry"),
                "{}",
                run.stderr
            );
        }
    }
}
