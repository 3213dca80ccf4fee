//! Interrupted runs: SIGTERM/SIGINT during apply and plan, against real registries. A slow
//! upstream (the fault proxy delaying one blob) keeps a transfer in flight when the signal
//! lands, so the test does not depend on timing.

use std::time::Duration;

use crate::support::airlock::{
    ProxiedWalkthrough, Workdir, config, has_action, seed_walkthrough, sources,
};
use crate::support::client::{RawClient, push_raw};
use crate::support::images::{Content, ImageBuilder, TestImage};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::registry::{Auth, TestRegistry};

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Wait for `cond`, failing after a generous bound (a hang guard, not a timing assertion).
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// An upstream with the walkthrough images and one more whose layer downloads slowly
/// (through `proxy`), and an apply of all of them with this grace period, caught once the
/// slow layer's download has begun: its import is in flight.
struct SlowApply {
    _upstream: TestRegistry,
    target: TestRegistry,
    proxy: FaultProxy,
    slow: TestImage,
    /// The walkthrough images' blob digests.
    blobs: Vec<String>,
    w: Workdir,
    child: tokio::process::Child,
    pid: u32,
}

impl SlowApply {
    async fn start(grace_period: &str) -> SlowApply {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let images = seed_walkthrough(&upstream).await;
        let slow = ImageBuilder::new("slow")
            .layer_bytes(vec![7u8; 256 * 1024])
            .build();
        push_raw(&upstream.url(), "team/slow", "1.0", &slow, None).await;
        let proxy = FaultProxy::start(&upstream.url()).await;
        let layer = slow.layers[0].digest.clone();
        proxy.add_fault(Fault {
            when: Match::method_path("GET", &format!("/blobs/{layer}")),
            times: usize::MAX,
            kind: FaultKind::Delay(Duration::from_secs(120)),
        });
        let mut srcs = sources(&images);
        srcs.push("docker.io/team/slow:1.0".into());
        let blobs = images
            .iter()
            .flat_map(|i| i.content.blobs())
            .map(|b| b.digest.to_string())
            .collect();
        let w = Workdir::new(&config(&proxy.url(), &target.url(), &srcs, ""));
        let child = w
            .command(
                &["apply", "--auto-approve", "--grace-period", grace_period],
                &[],
            )
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let layer = layer.to_string();
        wait_for("the slow download", || proxy.count("GET", &layer) > 0).await;
        SlowApply {
            _upstream: upstream,
            target,
            proxy,
            slow,
            blobs,
            w,
            child,
            pid,
        }
    }
}

/// The digests tagged `team/slow:1.0` in quarantine and in live.
async fn slow_tags(target: &TestRegistry) -> [Option<airlock::model::Digest>; 2] {
    let client = RawClient::new(&target.url(), None);
    let mut out = [None, None];
    for (i, repo) in ["quarantine", "live"].into_iter().enumerate() {
        out[i] = client
            .get_manifest(&format!("{repo}/team/slow"), "1.0")
            .await
            .map(|m| m.digest);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_apply_cleanly_and_the_next_apply_converges() {
    let run = SlowApply::start("1s").await;
    let (pid, child) = (run.pid, run.child); // the rest of `run` lives on
    signal(pid, "TERM");
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{stderr}");
    assert!(stdout.contains("Interrupted by SIGTERM"), "{stdout}");
    assert!(
        stdout.contains("interrupted before it finished"),
        "{stdout}"
    );
    assert!(stdout.contains("not started"), "{stdout}");

    // No tag points at the slow image, in quarantine or live.
    assert_eq!(slow_tags(&run.target).await, [None, None]);

    // The next plan shows the remaining work; the next apply finishes it, uploading only
    // blobs that were missing.
    run.proxy.clear_faults();
    let uploads_before = run.target.count_requests("PUT", "digest=");
    let plan = run
        .w
        .run(&["plan", "--format", "json"])
        .await
        .expect(0)
        .json();
    assert!(has_action(&plan, "import:team/slow:1.0"), "{plan:#}");
    run.w.run(&["apply", "--auto-approve"]).await.expect(0);
    run.w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    // Every image blob uploaded in the second run was not in quarantine before.
    let second: Vec<String> = run
        .target
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("digest="))
        .skip(uploads_before)
        .filter(|r| {
            run.blobs
                .iter()
                .any(|d| r.path.contains(d.as_str()) || r.path.contains(&d.replace(':', "%3A")))
        })
        .map(|r| r.path)
        .collect();
    for path in &second {
        assert!(
            !imported_in_first_run(&stdout, path),
            "re-uploaded after the interruption: {path}"
        );
    }
    assert_eq!(
        slow_tags(&run.target).await[1].as_ref(),
        Some(&run.slow.top().digest)
    );
}

/// Whether the first run's report says the import of the repository in `path` completed.
fn imported_in_first_run(report: &str, path: &str) -> bool {
    let repo = path
        .trim_start_matches("/v2/quarantine/")
        .split("/blobs/")
        .next()
        .unwrap_or("");
    report
        .lines()
        .any(|l| l.starts_with("✓ import") && l.contains(&format!("{repo}:")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_stops_at_once() {
    let run = SlowApply::start("10m").await;
    let (pid, child) = (run.pid, run.child); // the rest of `run` lives on
    signal(pid, "INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(pid, "INT");
    // With a 10 minute grace period and a 2 minute delay on the slow layer, only the second
    // signal can end the run before the slow import finishes.
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("airlock exits after the second SIGINT")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(slow_tags(&run.target).await[0], None, "not in quarantine");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_plan_writes_no_plan_file() {
    let wt = ProxiedWalkthrough::start().await;
    let (images, proxy) = (&wt.images, &wt.proxy);
    proxy.add_fault(Fault {
        when: Match::method_path("HEAD", "/manifests/"),
        times: usize::MAX,
        kind: FaultKind::Delay(Duration::from_secs(120)),
    });
    let w = wt.workdir(images);
    let child = w
        .command(&["plan", "--out", "plan.json"], &[])
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    wait_for("the first HEAD", || proxy.count("HEAD", "/manifests/") > 0).await;
    signal(pid, "INT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("plan exits on SIGINT")
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let leftovers: Vec<_> = std::fs::read_dir(w.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("plan"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
