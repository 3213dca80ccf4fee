//! Large blobs between registries: the target's upload session is opened while the source
//! answers its GET (the two round trips overlap). When the source then fails, or its bytes
//! do not hash to the digest, the session is cancelled, nothing is tagged and the error
//! names the source.

use crate::support::airlock::{Workdir, config};
use crate::support::client::push_raw;
use crate::support::images::{Format, ImageBuilder, random_layer_blob};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::registry::{Auth, TestRegistry};

/// An upstream (behind a fault proxy) holding `team/big:1.0`, one 1 MiB layer (above the
/// small-blob size, so it is streamed), and an empty target. Returns the layer's digest.
async fn big_image() -> (TestRegistry, FaultProxy, TestRegistry, Workdir, String) {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::start(&upstream.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let (layer, diff_id) = random_layer_blob(&dir.path().join("big.tar"), 1 << 20, 11, Format::Oci);
    let digest = layer.digest.to_string();
    let big = ImageBuilder::new("big").layer_blob(layer, diff_id).build();
    push_raw(&upstream.url(), "team/big", "1.0", &big, None).await;
    let w = Workdir::new(&config(
        &proxy.url(),
        &target.url(),
        &["docker.io/team/big:1.0".to_string()],
        "",
    ));
    (upstream, proxy, target, w, digest)
}

/// Every upload session the target opened for `repo` (POST without a mount) was closed:
/// by a blob PUT or a DELETE. And no manifest was written there.
fn no_session_left_open(target: &TestRegistry, repo: &str) {
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    let log = target.requests();
    let opened = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == uploads)
        .count();
    let mounts_declined = log
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with(&format!("{uploads}?mount="))
                && r.status == 202
        })
        .count();
    // Closed: a blob PUT that stored it (201), or a DELETE (a PUT cut short by a failing
    // source may be logged as well; the DELETE after it is what closes the session).
    let closed = log
        .iter()
        .filter(|r| {
            ((r.method == "PUT" && r.status == 201) || r.method == "DELETE")
                && r.path.starts_with(&uploads)
                && r.path.len() > uploads.len()
        })
        .count();
    assert!(opened > 0, "the layer's upload was started: {log:?}");
    assert_eq!(
        opened + mounts_declined,
        closed,
        "every session closed: {log:?}"
    );
    assert!(
        !log.iter()
            .any(|r| r.method == "PUT" && r.path.starts_with(&format!("/v2/{repo}/manifests/"))),
        "nothing tagged: {log:?}"
    );
}

#[tokio::test]
async fn a_source_refusing_a_large_blob_cancels_the_upload_it_overlapped() {
    let (_up, proxy, target, w, digest) = big_image().await;
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &format!("/blobs/{digest}")),
        times: usize::MAX,
        kind: FaultKind::Respond(
            404,
            "application/json".into(),
            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
                .to_vec(),
        ),
    });
    let run = w.run(&["apply", "--auto-approve"]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("BLOB_UNKNOWN"),
        "the source's error is named:\n{out}"
    );
    no_session_left_open(&target, "quarantine/team/big");
}

#[tokio::test]
async fn a_large_blob_whose_bytes_do_not_hash_to_its_digest_is_never_stored() {
    let (_up, proxy, target, w, digest) = big_image().await;
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &format!("/blobs/{digest}")),
        times: usize::MAX,
        kind: FaultKind::FlipByte(4096),
    });
    let run = w.run(&["apply", "--auto-approve"]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("failed to verify blob") && out.contains(&format!("expected {digest}")),
        "a verification error naming the digest:\n{out}"
    );
    no_session_left_open(&target, "quarantine/team/big");
    let stored = target
        .requests()
        .iter()
        .any(|r| r.method == "HEAD" && r.path.ends_with(&digest) && r.status == 200);
    assert!(!stored, "the corrupted layer never became present");
}
