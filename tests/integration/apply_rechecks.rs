//! The steps' re-checks where they are made from the index read a record is merged into
//! (issue 13 item 4: the scan's verdict re-check and the promote's "already live?" check
//! cost no request of their own): a concurrent apply that wrote the verdict, or promoted
//! the image, between this apply's plan and its write is still found, and this apply then
//! adds nothing to the index and writes no tag.
//!
//! The window is made deterministic with the fault proxy: this apply's read of the index
//! is held back while a second apply (same configuration and key) runs to completion.

use std::time::Duration;

use crate::support::airlock::{Run, Workdir, config};
use crate::support::client::RawClient;
use crate::support::images::ImageBuilder;
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::records::openssl_keys;
use crate::support::registry::{Auth, TestRegistry};

const KEY_ENV: &str = "AIRLOCK_TEST_SIGNING_KEY";
const SIGNING: &str =
    "[signing]\nkey = \"env://AIRLOCK_TEST_SIGNING_KEY\"\npublic_key = \"airlock.pub\"\n";

/// One image upstream, a target behind a proxy, a workdir with signing.
async fn setup() -> (TestRegistry, TestRegistry, FaultProxy, Workdir, String) {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let tp = FaultProxy::start(&target.url()).await;
    let img = ImageBuilder::new("bench/one")
        .layer_bytes(b"the one image\n".to_vec())
        .build();
    RawClient::new(&upstream.url(), None)
        .push("bench/one", "1.0", &img)
        .await;
    let text = config(
        &upstream.url(),
        &tp.url(),
        &["docker.io/bench/one:1.0".to_string()],
        SIGNING,
    );
    // A slow registry, not a dead one: deadlines longer than the hold (no retry cuts it).
    let endpoint = format!("endpoint = \"{}\"", tp.url());
    assert!(text.contains(&endpoint), "{text}");
    let w = Workdir::new(&text.replace(
        &endpoint,
        &format!("{endpoint}\ntimeout = \"2m\"\nstall_timeout = \"90s\""),
    ));
    let key = openssl_keys(w.path());
    (upstream, target, tp, w, key)
}

/// How long the first apply's held request waits: the second apply must finish within it.
const HOLD: Duration = Duration::from_secs(25);

/// Apply while the first request matching `held` waits until a second apply has finished;
/// both results, the first apply's first.
async fn apply_racing(tp: &FaultProxy, w: &Workdir, key: &str, held: Match) -> (Run, Run) {
    let env = [(KEY_ENV, key)];
    tp.add_fault(Fault {
        when: held,
        times: 1,
        kind: FaultKind::Delay(HOLD),
    });
    let first = async {
        let run = w.run_env(&["apply", "--auto-approve"], &env).await;
        // The hold was made (exactly once).
        assert_eq!(tp.faults_injected(), 1);
        run
    };
    let second = async {
        let t0 = std::time::Instant::now();
        while tp.faults_injected() == 0 {
            assert!(t0.elapsed() < Duration::from_secs(60), "never held");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held_at = std::time::Instant::now();
        let run = w.run_env(&["apply", "--auto-approve"], &env).await;
        assert!(
            held_at.elapsed() < HOLD,
            "the second apply took {:?}, longer than the hold: the race was not made",
            held_at.elapsed()
        );
        run
    };
    tokio::join!(first, second)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verdict_written_concurrently_before_the_scans_index_read_is_found() {
    let (_u, _t, tp, w, key) = setup().await;
    // The first apply's plan reads the quarantine index once; its scan's read is the next.
    let (first, second) = apply_racing(
        &tp,
        &w,
        &key,
        Match::method_path("GET", "quarantine/bench/one/manifests/sha256-").after(1),
    )
    .await;
    let second = second.expect(0);
    assert!(second.stdout.contains("verdict"), "{}", second.stdout);
    let first = first.expect(0);
    assert!(
        first.stdout.contains("a current verdict exists: pass"),
        "the first apply's scan finds the verdict the second wrote:\n{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("already holds"),
        "and its promote finds the image live:\n{}",
        first.stdout
    );
    // One verdict listed (the second apply's), one record, one tag write each.
    assert_eq!(
        tp.count("PUT", "quarantine/bench/one/manifests/sha256-"),
        1,
        "the quarantine index is written once"
    );
    promoted_once(&tp, &w, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_made_concurrently_before_the_promotes_index_read_is_found() {
    let (_u, _t, tp, w, key) = setup().await;
    // The plan saw no live tag (no record read); the promote's read of the live index is
    // the first.
    let (first, second) = apply_racing(
        &tp,
        &w,
        &key,
        Match::method_path("GET", "live/bench/one/manifests/sha256-"),
    )
    .await;
    let second = second.expect(0);
    assert!(second.stdout.contains("promote"), "{}", second.stdout);
    let first = first.expect(0);
    assert!(
        first.stdout.contains("already holds"),
        "the first apply's promote finds the image live with a record:\n{}",
        first.stdout
    );
    // The second apply's record and tag only: the first wrote neither entry nor tag.
    promoted_once(&tp, &w, &key).await;
}

/// Both applies done: nothing left to plan, and the live index and tag were each written
/// once (by the apply that got there first).
async fn promoted_once(tp: &FaultProxy, w: &Workdir, key: &str) {
    let plan = w
        .run_env(&["plan", "--detailed-exitcode"], &[(KEY_ENV, key)])
        .await;
    let plan = plan.expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    assert_eq!(tp.count("PUT", "live/bench/one/manifests/sha256-"), 1);
    assert_eq!(tp.count("PUT", "live/bench/one/manifests/1.0"), 1);
}
