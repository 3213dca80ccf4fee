//! CI-friendly output (issue 14 item 4): every image that cannot be observed is named in one
//! run, a dead registry is one error naming its cause, retries are one warning per registry
//! and a summary, `-v` shows each request's outcome without credentials, and heartbeat lines
//! without a terminal show each running transfer's bytes.

use crate::support::airlock::{Walkthrough, Workdir, config, sources};
use crate::support::client::push_raw;
use crate::support::images::{Format, ImageBuilder, random_layer_blob};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::token::TokenServer;

/// The `error:` lines of a run's stderr.
fn errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

/// The log lines at `level` (`WARN`, `INFO`) of a run's stderr.
fn logged<'a>(stderr: &'a str, level: &str) -> Vec<&'a str> {
    let tag = format!(" {level} ");
    stderr.lines().filter(|l| l.contains(&tag)).collect()
}

/// The line number (1-based) of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in\n{text}"))
        + 1
}

#[tokio::test(flavor = "multi_thread")]
async fn every_missing_upstream_tag_is_named_in_one_run() {
    let wt = Walkthrough::start().await;
    let mut srcs = sources(&wt.images);
    let missing = [
        "docker.io/library/busybox:9.9.9",
        "ghcr.io/fluxcd/source-controller:v0.0.0-gone",
        "docker.io/team/never-pushed:1.0",
    ];
    srcs.extend(missing.iter().map(|s| s.to_string()));
    let text = config(&wt.upstream.url(), &wt.target.url(), &srcs, "");
    wt.w.set_config(&text);
    let run = wt.w.run(&["plan"]).await.expect(1);
    let errors = errors(&run.stderr);
    assert_eq!(errors.len(), 3, "{}", run.stderr);
    // By image key: library/busybox, fluxcd/source-controller... sorted, each with its entry.
    let mut expected: Vec<(&str, usize)> = missing
        .iter()
        .map(|s| (*s, line_of(&text, &format!("source = \"{s}\""))))
        .collect();
    expected.sort_by_key(|(s, _)| s.split_once('/').unwrap().1.to_string());
    for (line, (source, at)) in errors.iter().zip(&expected) {
        let config = wt.w.config();
        let at = format!("error: {}:{at}:10: ", config.display());
        assert!(line.starts_with(&at), "{line} should start with {at}");
        assert!(line.contains(source), "{line}");
        assert!(line.contains("MANIFEST_UNKNOWN"), "{line}");
    }
    // Nothing was planned, nothing written.
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(wt.target.count_requests("PUT", ""), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_is_one_error_per_registry_naming_the_cause() {
    let wt = Walkthrough::start().await;
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    let text = std::fs::read_to_string(wt.w.config()).unwrap();
    wt.w.set_config(&text.replace(&wt.upstream.url(), &dead));
    let run = wt.w.run(&["plan"]).await.expect(1);
    let errors = errors(&run.stderr);
    // Six images from two hosts (ghcr.io: 2, docker.io: 4), both mapped to the dead port.
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    for (registry, n) in [("docker.io", 4), ("ghcr.io", 2)] {
        let line = errors
            .iter()
            .find(|l| l.contains(&format!("registry `{registry}` unreachable: ")))
            .unwrap_or_else(|| panic!("{registry}:\n{}", run.stderr));
        assert!(line.contains("connection refused"), "{line}");
        assert!(
            line.contains(&format!(": {n} images not observed — ")),
            "{line}"
        );
        // The first ones are named with their entries.
        assert!(line.contains(":10)"), "{line}");
    }
    // A retry warning at most once per registry, and each registry's retries summarised.
    let warns = logged(&run.stderr, "WARN");
    for registry in ["docker.io", "ghcr.io"] {
        let retrying = warns
            .iter()
            .filter(|l| l.contains("retrying") && l.contains(&format!("`{registry}`")))
            .count();
        assert!(retrying <= 1, "{}", run.stderr);
    }
    assert!(
        warns
            .iter()
            .any(|l| l.contains("registry `docker.io`: ") && l.contains("(connection refused ×")),
        "{}",
        run.stderr
    );
    // The error is the last word.
    assert!(
        run.stderr.lines().last().unwrap().starts_with("error: "),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttling_registry_warns_once_and_its_retries_are_summarised() {
    let wt = Walkthrough::start().await;
    let proxy = FaultProxy::start(&wt.upstream.url()).await;
    // Only docker.io goes through the proxy; its first four manifest reads are throttled.
    let text = config(
        &wt.upstream.url(),
        &wt.target.url(),
        &sources(&wt.images),
        "",
    )
    .replacen(
        &format!(
            "[registries.\"docker.io\"]\nendpoint = \"{}\"",
            wt.upstream.url()
        ),
        &format!("[registries.\"docker.io\"]\nendpoint = \"{}\"", proxy.url()),
        1,
    );
    assert!(text.contains(&proxy.url()), "{text}");
    wt.w.set_config(&text);
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/manifests/"),
        times: 4,
        kind: FaultKind::Status(429, Some(0)),
    });
    let run = wt.w.run(&["plan"]).await.expect(0);
    assert_eq!(proxy.faults_injected(), 4, "{}", run.stderr);
    let warns = logged(&run.stderr, "WARN");
    let retrying: Vec<&&str> = warns.iter().filter(|l| l.contains("retrying")).collect();
    assert_eq!(retrying.len(), 1, "{}", run.stderr);
    assert!(retrying[0].contains("TOOMANYREQUESTS"), "{}", retrying[0]);
    assert!(retrying[0].contains("`docker.io`"), "{}", retrying[0]);
    let summary: Vec<&&str> = warns
        .iter()
        .filter(|l| l.contains("requests retried"))
        .collect();
    assert_eq!(summary.len(), 1, "{}", run.stderr);
    assert!(
        summary[0].ends_with("registry `docker.io`: 4 requests retried (429 TOOMANYREQUESTS ×4)"),
        "{}",
        summary[0]
    );
    // The summary comes at the end, after the first warning.
    let pos = |l: &str| run.stderr.find(l).unwrap();
    assert!(pos(retrying[0]) < pos(summary[0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_shows_each_request_outcome_without_credentials() {
    const PASSWORD: &str = "pa55-do-not-print";
    let ts = TokenServer::start().await;
    ts.add_user("ci", PASSWORD);
    ts.allow(Some("ci"), "", &["pull", "push"]);
    let target = TestRegistry::start(Auth::Token(&ts)).await;
    let upstream = TestRegistry::start(Auth::None).await;
    let images = crate::support::airlock::seed_walkthrough(&upstream).await;
    let text = crate::support::config::Config::new("target")
        .mirror(&upstream.url())
        .registry(
            "target",
            &format!(
                "endpoint = \"{}\"\nauth = \"basic\"\nusername = \"ci\"\npassword_env = \"CI_OUTPUT_PASSWORD\"",
                target.url()
            ),
        )
        .images(&sources(&images[..2]))
        .build();
    let w = Workdir::new(&text);
    let env = [("CI_OUTPUT_PASSWORD", PASSWORD)];
    let quiet = w.run_env(&["plan"], &env).await.expect(0);
    assert!(!quiet.stderr.contains(" → "), "{}", quiet.stderr);

    let run = w.run_env(&["-v", "plan"], &env).await.expect(0);
    let requests: Vec<&str> = logged(&run.stderr, "INFO")
        .into_iter()
        .filter(|l| l.contains(" → "))
        .collect();
    // The target's tags are looked up (not there yet: 404), the upstream's found (200).
    assert!(
        requests
            .iter()
            .any(|l| l.contains("HEAD `target` /v2/quarantine/")
                && l.contains(" → 404 Not Found, 0 B, ")
                && l.ends_with(" ms")),
        "{}",
        run.stderr
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("`ghcr.io` /v2/fluxcd/") && l.contains(" → 200 OK, ")),
        "{}",
        run.stderr
    );
    // The token was needed (a first 401 answered with a token) and is nowhere in the log.
    assert!(ts.count() > 0);
    for secret in [PASSWORD, "Bearer ", "Basic ", "eyJ", "authorization"] {
        assert!(
            !run.stderr.to_lowercase().contains(&secret.to_lowercase()),
            "`{secret}` in\n{}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_lines_show_each_transfers_bytes_without_a_terminal() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let dir = tempfile::tempdir().unwrap();
    let (layer, diff_id) = random_layer_blob(&dir.path().join("l.tar"), 3 << 20, 11, Format::Oci);
    let image = ImageBuilder::new("slow").layer_blob(layer, diff_id).build();
    push_raw(&upstream.url(), "team/slow", "1.0", &image, None).await;
    let proxy = FaultProxy::start(&upstream.url()).await;
    // About 12 s for the 3 MiB layer: one heartbeat (every 10 s) while it flows.
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/blobs/sha256:"),
        times: usize::MAX,
        kind: FaultKind::Throttle(256 << 10),
    });
    let text = config(
        &proxy.url(),
        &target.url(),
        &["docker.io/team/slow:1.0".to_string()],
        "",
    )
    .replace(
        &format!("endpoint = \"{}\"", proxy.url()),
        &format!(
            "endpoint = \"{}\"\ntimeout = \"2m\"\nstall_timeout = \"30s\"",
            proxy.url()
        ),
    );
    let w = Workdir::new(&text);
    let run = w.run(&["apply", "--auto-approve"]).await.expect(0);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("Still running import:team/slow:1.0: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    // `Still running import:team/slow:1.0: 2.4 MiB of 3.0 MiB copied (245.3 KiB/s) [10s elapsed]`
    let rest = line
        .strip_prefix("Still running import:team/slow:1.0: ")
        .unwrap();
    let (done, rest) = rest.split_once(" of ").unwrap_or_else(|| panic!("{line}"));
    assert_ne!(done, "0 B", "{line}");
    assert!(done.ends_with("B"), "{line}");
    let (total, rest) = rest
        .split_once(" copied (")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(total.ends_with(" MiB"), "{line}");
    assert!(
        rest.contains("/s) [") && rest.ends_with("s elapsed]"),
        "{line}"
    );
    let progress = run
        .stderr
        .lines()
        .find(|l| l.starts_with("Progress: 0/3 actions finished, "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(!progress.contains(", 0 B copied"), "{progress}");
}
