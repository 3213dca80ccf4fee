//! The gate, audit and `images` end to end: the airlock binary against two real registries
//! (an "upstream" one seeded with the raw client, and a target one holding quarantine/ and
//! live/), with a real external scanner — a shell script that prints recorded trivy reports,
//! chosen per image by a mode file the test writes (`critical`, `clean`, `exit`, `garbage`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock::model::Digest;
use airlock::records::{self, PromotionRecord, VerdictDocument};

use crate::support::client::{RawClient, push_raw};
use crate::support::config::Config;
use crate::support::images::{Content, ImageBuilder, TestImage};
use crate::support::records::documents;
use crate::support::registry::{Auth, TestRegistry};
use crate::support::skopeo::{skopeo_digest, skopeo_push};

const BUSYBOX: &str = "library/busybox";
const ALPINE: &str = "library/alpine";
const CVE: &str = "CVE-2021-42378";

/// The scanner: logs what it was asked and with which environment, then behaves as the mode
/// file for the image's name says.
const SCANNER: &str = r#"#!/bin/sh
ref="$1"
repo="${ref%@*}"
name="${repo##*/}"
echo "$ref insecure=${TRIVY_INSECURE:-unset} docker_config=${DOCKER_CONFIG:-unset}" >> "$AIRLOCK_TEST_DIR/scanned.log"
if [ -n "$DOCKER_CONFIG" ]; then
  echo "user=$TRIVY_USERNAME grype_user=$GRYPE_REGISTRY_AUTH_USERNAME password_matches=$([ "$TRIVY_PASSWORD" = "$AIRLOCK_TEST_TARGET_PASSWORD" ] && echo yes || echo no)" >> "$AIRLOCK_TEST_DIR/credentials.log"
  cat "$DOCKER_CONFIG/config.json" >> "$AIRLOCK_TEST_DIR/credentials.log"; echo >> "$AIRLOCK_TEST_DIR/credentials.log"
fi
mode=$(cat "$AIRLOCK_TEST_DIR/modes/$name" 2>/dev/null || echo clean)
case "$mode" in
  critical) cat "$AIRLOCK_TEST_FIXTURES/trivy-critical.json" ;;
  clean) cat "$AIRLOCK_TEST_FIXTURES/trivy-clean.json" ;;
  exit) echo "FATAL init error: failed to download vulnerability DB" >&2; exit 1 ;;
  garbage) echo "2026-11-27T10:00:00Z INFO Need to update DB"; echo "not a report" ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"#;

/// What one `airlock` run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Two registries, a config directory and the images seeded upstream.
struct World {
    upstream: TestRegistry,
    target: TestRegistry,
    dir: tempfile::TempDir,
    images: Vec<(&'static str, TestImage)>,
    /// Basic credentials of the target registry, if it wants them.
    creds: Option<(&'static str, &'static str)>,
}

/// The environment variable the target password is read from (`password_env`).
const PASSWORD_ENV: &str = "AIRLOCK_TEST_TARGET_PASSWORD";

struct Gate<'a> {
    prune: bool,
    fail_on: &'a str,
    max_verdict_age: &'a str,
    /// Extra TOML appended after `[gate]` (allow entries).
    extra: &'a str,
}

impl Default for Gate<'_> {
    fn default() -> Self {
        Gate {
            prune: false,
            fail_on: "high",
            max_verdict_age: "7d",
            extra: "",
        }
    }
}

impl World {
    /// Start both registries and push `paths` (as `:1.0`) upstream.
    async fn start(paths: &[&'static str]) -> World {
        World::start_with(paths, None).await
    }

    /// [`World::start`] with a target registry that wants these Basic credentials.
    async fn start_with(
        paths: &[&'static str],
        creds: Option<(&'static str, &'static str)>,
    ) -> World {
        let target_auth = match creds {
            Some((user, pass)) => Auth::Basic { user, pass },
            None => Auth::None,
        };
        let (upstream, target) = tokio::join!(
            TestRegistry::start(Auth::None),
            TestRegistry::start(target_auth)
        );
        let dir = tempfile::Builder::new()
            .prefix("airlock-gate-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("modes")).unwrap();
        std::fs::write(dir.path().join("scanner.sh"), SCANNER).unwrap();
        let mut images = Vec::new();
        for &path in paths {
            let img = ImageBuilder::new(path).user("1000").build();
            push_raw(&upstream.url(), path, "1.0", &img, None).await;
            images.push((path, img));
        }
        World {
            upstream,
            target,
            dir,
            images,
            creds,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("airlock.toml")
    }

    fn digest(&self, path: &str) -> Digest {
        self.images
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, i)| i.top().digest.clone())
            .unwrap()
    }

    /// Write airlock.toml for these gate settings; returns the text.
    fn configure(&self, g: &Gate<'_>) -> String {
        let sources: Vec<String> = self
            .images
            .iter()
            .map(|(path, _)| format!("{}/{path}:1.0", self.upstream.host()))
            .collect();
        let target_auth = match self.creds {
            Some((user, _)) => {
                format!(
                    "auth = \"basic\"\nusername = \"{user}\"\npassword_env = \"{PASSWORD_ENV}\""
                )
            }
            None => "auth = \"anonymous\"".to_string(),
        };
        let text = Config::new("target")
            .anonymous("upstream", &self.upstream.url())
            .registry(
                "target",
                &format!("endpoint = \"{}\"\n{target_auth}", self.target.url()),
            )
            .live(&format!("prune = {}", g.prune))
            .extra(&format!(
                "[gate]\nscanners = [\"policy\", \"trivy\"]\nfail_on = \"{}\"\nmax_verdict_age = \"{}\"\n{}\n[scanners.trivy]\ncommand = [\"sh\", \"{}\", \"{{ref}}\"]\nformat = \"trivy\"\ntimeout = \"60s\"",
                g.fail_on,
                g.max_verdict_age,
                g.extra,
                self.dir.path().join("scanner.sh").display(),
            ))
            .images(&sources)
            .build();
        std::fs::write(self.config_path(), &text).unwrap();
        text
    }

    /// What the scanner prints for the image named `name` (last path component).
    fn scanner_mode(&self, name: &str, mode: &str) {
        std::fs::write(self.dir.path().join("modes").join(name), mode).unwrap();
    }

    fn scanned(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("scanned.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Run the airlock binary with this config (async, so the test runtime keeps serving).
    async fn airlock(&self, args: &[&str]) -> Run {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .env("NO_COLOR", "1")
            .env("AIRLOCK_TEST_DIR", self.dir.path())
            .env(
                "AIRLOCK_TEST_FIXTURES",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scanners"),
            )
            .env_remove("DOCKER_CONFIG")
            .env(PASSWORD_ENV, self.creds.map(|(_, p)| p).unwrap_or(""))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run the airlock binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn apply(&self) -> Run {
        self.airlock(&["apply", "--auto-approve"]).await
    }

    async fn plan_json(&self) -> serde_json::Value {
        let run = self.airlock(&["plan", "--format", "json"]).await;
        assert_eq!(run.code, 0, "{run}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}\n{run}"))
    }

    /// The live tag's digest, read with the raw client (None when absent).
    async fn live(&self, path: &str) -> Option<Digest> {
        RawClient::new(&self.target.url(), self.creds)
            .get_manifest(&format!("live/{path}"), "1.0")
            .await
            .map(|m| m.digest)
    }
}

/// Scan actions of a JSON plan, as image keys.
fn scans(plan: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "scan")
        .map(|a| a["image"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_finding_blocks_until_an_allow_entry_covers_it() {
    let w = World::start(&[BUSYBOX, ALPINE]).await;
    w.scanner_mode("busybox", "critical");
    w.scanner_mode("alpine", "clean");
    w.configure(&Gate::default());

    let run = w.apply().await;
    assert_eq!(run.code, 3, "the gate blocked busybox: {run}");
    assert!(run.stdout.contains(CVE), "the report names the CVE: {run}");
    assert_eq!(w.live(BUSYBOX).await, None, "nothing reached live");
    assert_eq!(w.live(ALPINE).await, Some(w.digest(ALPINE)));
    // The scanner got the pullable quarantine reference by digest and the insecure flag, and
    // an empty private docker config (not the user's logins), though the target is anonymous.
    let scanned = w.scanned();
    let expected = format!(
        "{}/quarantine/{BUSYBOX}@{} insecure=true docker_config=",
        w.target.host(),
        w.digest(BUSYBOX)
    );
    assert!(
        scanned
            .iter()
            .any(|l| l.starts_with(&expected) && !l.ends_with("docker_config=unset")),
        "{scanned:#?}"
    );

    let plan = w.airlock(&["plan"]).await;
    assert_eq!(plan.code, 0, "{plan}");
    assert!(plan.stdout.contains(CVE), "plan names the CVE: {plan}");
    let json = w.plan_json().await;
    assert_eq!(json["summary"]["blocked"], 1, "{json:#}");
    assert!(scans(&json).is_empty(), "the failing verdict is current");

    // An unexpired exception changes the policy hash: both images are scanned again and
    // busybox is promoted.
    w.configure(&Gate {
        extra: &format!(
            "\n[[gate.allow]]\nid = \"{CVE}\"\nimages = [\"{BUSYBOX}\"]\nexpires = \"2999-01-31\"\nreason = \"awk applet not reachable\"\n\n[[gate.allow]]\nid = \"CVE-2022-28391\"\nexpires = \"2999-01-31\"\nreason = \"no netstat in our pods\"\n"
        ),
        ..Gate::default()
    });
    let json = w.plan_json().await;
    assert_eq!(
        scans(&json),
        vec!["library/alpine:1.0", "library/busybox:1.0"],
        "{json:#}"
    );
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(w.live(BUSYBOX).await, Some(w.digest(BUSYBOX)));
    let audit = w.airlock(&["audit"]).await;
    assert_eq!(audit.code, 0, "promoted through the gate: {audit}");

    // An expired exception is a configuration error, with file:line:col, before any call.
    let text = w.configure(&Gate {
        extra: &format!(
            "\n[[gate.allow]]\nid = \"{CVE}\"\nexpires = \"2020-01-31\"\nreason = \"old review\"\n"
        ),
        ..Gate::default()
    });
    let line = text.lines().position(|l| l.contains("2020-01-31")).unwrap() + 1;
    let before = w.target.requests().len();
    let run = w.airlock(&["plan"]).await;
    assert_eq!(run.code, 1, "{run}");
    let at = format!("airlock.toml:{line}:");
    assert!(run.stderr.contains(&at), "names {at}: {run}");
    assert!(run.stderr.contains("expired"), "{run}");
    assert_eq!(w.target.requests().len(), before, "no registry call");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scanner_that_fails_or_prints_garbage_blocks_promotion() {
    let w = World::start(&[BUSYBOX, ALPINE]).await;
    w.scanner_mode("busybox", "exit");
    w.scanner_mode("alpine", "garbage");
    w.configure(&Gate::default());

    let run = w.apply().await;
    assert_eq!(run.code, 3, "{run}");
    // The report says why each scanner could not report.
    assert!(
        run.stdout.contains("failed to download vulnerability DB"),
        "{run}"
    );
    assert!(run.stdout.contains("the output is not JSON"), "{run}");
    assert_eq!(w.live(BUSYBOX).await, None);
    assert_eq!(w.live(ALPINE).await, None);
    assert!(
        RawClient::new(&w.target.url(), None)
            .tags(&format!("live/{BUSYBOX}"))
            .await
            .is_empty()
    );
    // A scanner that could not report is no verdict on the image: the next plan scans both
    // again, saying why, instead of blocking until max_verdict_age.
    let json = w.plan_json().await;
    assert_eq!(json["summary"]["blocked"], 0, "{json:#}");
    assert_eq!(
        scans(&json),
        vec!["library/alpine:1.0", "library/busybox:1.0"],
        "{json:#}"
    );
    let plan = w.airlock(&["plan"]).await;
    assert!(plan.stdout.contains("AIRLOCK-SCANNER-FAILED"), "{plan}");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_names_an_image_pushed_around_the_gate_until_prune_removes_it() {
    let w = World::start(&[BUSYBOX]).await;
    w.configure(&Gate::default());
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    let clean = w.airlock(&["audit"]).await;
    assert_eq!(clean.code, 0, "{clean}");

    let rogue = ImageBuilder::new("team/rogue").build();
    skopeo_push(&rogue, &w.target.host(), "live/team/rogue:latest", None).await;

    let audit = w.airlock(&["audit"]).await;
    assert_eq!(audit.code, 3, "{audit}");
    assert!(
        audit.stdout.contains("live/team/rogue:latest"),
        "names the rogue tag: {audit}"
    );
    let json = w.airlock(&["audit", "--format", "json"]).await;
    assert_eq!(json.code, 3, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("audit JSON");
    assert_eq!(report["violations"], 1, "{report:#}");
    assert_eq!(report["checked"], 2, "{report:#}");
    let bad: Vec<&serde_json::Value> = report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("violation").is_some())
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["repository"], "live/team/rogue");
    assert_eq!(bad[0]["digest"], rogue.top().digest.to_string());

    // Without prune, apply leaves it (a plan does not walk the live catalog without prune)
    // and audit still reports it.
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    let json = w.plan_json().await;
    assert!(
        !json["actions"].to_string().contains("live/team/rogue"),
        "{json:#}"
    );
    assert_eq!(w.airlock(&["audit"]).await.code, 3);

    // With prune it is deleted and the audit is clean.
    w.configure(&Gate {
        prune: true,
        ..Gate::default()
    });
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        RawClient::new(&w.target.url(), None)
            .get_manifest("live/team/rogue", "latest")
            .await
            .is_none(),
        "pruned"
    );
    assert_eq!(w.live(BUSYBOX).await, Some(w.digest(BUSYBOX)), "kept");
    let audit = w.airlock(&["audit"]).await;
    assert_eq!(audit.code, 0, "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gate_change_or_an_old_verdict_rescans_every_image() {
    let w = World::start(&[BUSYBOX, ALPINE]).await;
    w.configure(&Gate::default());
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    let json = w.plan_json().await;
    assert!(json["actions"].as_array().unwrap().is_empty(), "{json:#}");

    let all = vec![
        "library/alpine:1.0".to_string(),
        "library/busybox:1.0".to_string(),
    ];
    w.configure(&Gate {
        fail_on: "critical",
        ..Gate::default()
    });
    assert_eq!(scans(&w.plan_json().await), all, "fail_on changed");
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    assert!(scans(&w.plan_json().await).is_empty(), "renewed");

    // max_verdict_age is not part of the policy hash: only age triggers this renewal. The
    // bound must leave every promotion record valid (a record binds a verdict no older than
    // max_verdict_age when the record was made, and under load a promotion can come seconds
    // after its scan), so it is the longest scan-to-record gap this apply took plus a margin;
    // then wait, on the verdicts' own dates, until the newest is older than the bound by a
    // margin. No fixed sleep, nothing timed.
    let (newest, gap) = verdict_timing(&w).await;
    let max_age = gap.whole_seconds() + 2;
    let max_verdict_age = format!("{max_age}s");
    w.configure(&Gate {
        fail_on: "critical",
        max_verdict_age: &max_verdict_age,
        ..Gate::default()
    });
    while time::OffsetDateTime::now_utc() - newest <= time::Duration::seconds(max_age + 1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let json = w.plan_json().await;
    assert_eq!(scans(&json), all, "{json:#}");
    assert!(
        json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] == "scan"),
        "only renewals, nothing to promote: {json:#}"
    );
}

/// The creation date of the newest verdict of any image, and the longest time between a verdict
/// and a promotion record naming it (record and verdict documents as listed by airlock's own
/// lookup in live and quarantine).
async fn verdict_timing(w: &World) -> (time::OffsetDateTime, time::Duration) {
    let url = w.target.url();
    let mut newest = time::OffsetDateTime::UNIX_EPOCH;
    let mut gap = time::Duration::ZERO;
    for (path, _) in &w.images {
        let d = w.digest(path);
        let q = format!("quarantine/{path}");
        let verdicts: Vec<(Digest, VerdictDocument)> =
            documents(&url, &q, &d, records::VERDICT_PREDICATE).await;
        let recs: Vec<(Digest, PromotionRecord)> = documents(
            &url,
            &format!("live/{path}"),
            &d,
            records::PROMOTION_PREDICATE,
        )
        .await;
        assert!(!verdicts.is_empty() && !recs.is_empty(), "{path}");
        for (_, v) in &verdicts {
            newest = newest.max(v.created);
        }
        for (_, r) in &recs {
            let (_, v) = verdicts
                .iter()
                .find(|(digest, _)| *digest == r.verdict)
                .unwrap_or_else(|| panic!("{path}: the record's verdict {} is listed", r.verdict));
            gap = gap.max(r.created - v.created);
        }
    }
    (newest, gap)
}

#[tokio::test(flavor = "multi_thread")]
async fn images_kustomize_pins_the_live_digests() {
    let w = World::start(&[BUSYBOX, ALPINE]).await;
    w.configure(&Gate::default());
    let before = w.airlock(&["images"]).await;
    assert_eq!(before.code, 1, "nothing in live yet: {before}");
    assert!(before.stderr.contains("not in live yet"), "{before}");
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");

    let out = w.airlock(&["images", "--format", "kustomize"]).await;
    assert_eq!(out.code, 0, "{out}");
    let entries = parse_kustomize_images(&out.stdout);
    assert_eq!(entries.len(), 2, "{}", out.stdout);
    for path in [ALPINE, BUSYBOX] {
        let name = format!("{}/{path}", w.upstream.host());
        let e = entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} in {}", out.stdout));
        assert_eq!(e.new_name, format!("{}/live/{path}", w.target.host()));
        let live = skopeo_digest(&w.target.host(), &format!("live/{path}:1.0")).await;
        assert_eq!(e.digest, live.to_string());
        assert_eq!(live, w.digest(path));
    }
    let list = w.airlock(&["images"]).await;
    assert_eq!(list.code, 0, "{list}");
    assert!(
        list.stdout.contains(&format!(
            "{}/live/{BUSYBOX}:1.0@{}",
            w.target.host(),
            w.digest(BUSYBOX)
        )),
        "{list}"
    );
}

struct KustomizeImage {
    name: String,
    new_name: String,
    digest: String,
}

/// A strict reader for the one YAML shape `images --format kustomize` prints:
/// `images:` then `- name:` items with `newName:` and `digest:` keys, nothing else.
fn parse_kustomize_images(yaml: &str) -> Vec<KustomizeImage> {
    let mut lines = yaml.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(lines.next(), Some("images:"), "{yaml}");
    let mut out: Vec<KustomizeImage> = Vec::new();
    for line in lines {
        let (indent, rest) = line.split_at(line.len() - line.trim_start().len());
        let (item, rest) = match rest.strip_prefix("- ") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (key, value) = rest
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a `key: value` line: {line:?}"));
        assert!(
            !value.is_empty() && !value.contains(": ") && !value.starts_with(['"', '\'', '{', '[']),
            "a plain scalar: {line:?}"
        );
        if item {
            assert_eq!(indent, "  ", "{line:?}");
            assert_eq!(key, "name", "{line:?}");
            out.push(KustomizeImage {
                name: value.into(),
                new_name: String::new(),
                digest: String::new(),
            });
            continue;
        }
        assert_eq!(indent, "    ", "{line:?}");
        let e = out.last_mut().expect("a key inside an item");
        match key {
            "newName" => e.new_name = value.into(),
            "digest" => e.digest = value.into(),
            other => panic!("unexpected key {other}"),
        }
    }
    for e in &out {
        assert!(!e.new_name.is_empty() && e.digest.starts_with("sha256:"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scanner_gets_registry_credentials_through_its_environment_only() {
    let (user, pass) = ("scanner-bot", "pa55-w0rd-never-printed");
    let w = World::start_with(&[BUSYBOX], Some((user, pass))).await;
    w.scanner_mode("busybox", "critical");
    w.configure(&Gate::default());

    let run = w.apply().await;
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stdout.contains(CVE), "{run}");
    assert!(
        !run.stdout.contains(pass) && !run.stderr.contains(pass),
        "the password is never printed"
    );
    // Not on the command line: the scanner's only argument is the reference.
    let scanned = w.scanned();
    assert_eq!(scanned.len(), 1, "{scanned:?}");
    assert!(!scanned[0].contains(pass));
    assert!(
        !scanned[0].contains("docker_config=unset"),
        "a private DOCKER_CONFIG: {scanned:?}"
    );
    let log = std::fs::read_to_string(w.dir.path().join("credentials.log")).unwrap();
    let mut lines = log.lines();
    assert_eq!(
        lines.next(),
        Some(format!("user={user} grype_user={user} password_matches=yes").as_str())
    );
    let config: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let auth = config["auths"][w.target.host()]["auth"].as_str().unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .unwrap(),
        format!("{user}:{pass}").into_bytes()
    );
    // The private config is removed once the scanner is done.
    let dir = scanned[0].split("docker_config=").nth(1).unwrap();
    assert!(!Path::new(dir).exists(), "{dir} was removed");
}

/// Continuous scanning: a live image whose renewed verdict fails is reported loudly by apply
/// (exit 3), by the next plan (blocked, live), and by audit; `on_fail = "demote"` removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_image_whose_renewed_verdict_fails_is_reported_and_can_be_demoted() {
    let w = World::start(&[BUSYBOX]).await;
    w.scanner_mode("busybox", "clean");
    w.configure(&Gate::default());
    let run = w.apply().await;
    assert_eq!(run.code, 0, "{run}");
    assert!(w.live(BUSYBOX).await.is_some());

    // A new CVE: the renewal (verdict older than max_verdict_age) fails.
    w.scanner_mode("busybox", "critical");
    w.configure(&Gate {
        max_verdict_age: "1s",
        ..Gate::default()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = w.apply().await;
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stdout.contains("LIVE IMAGE FAILS THE GATE"), "{run}");
    // Back to a long max_verdict_age (not part of the policy hash): the failing verdict holds.
    w.configure(&Gate::default());
    let json = w.plan_json().await;
    let blocked = json["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 1, "{json:#}");
    assert_eq!(blocked[0]["live"], true);
    assert_eq!(w.airlock(&["audit"]).await.code, 3);

    // Opt in to demotion: the next apply deletes the live tag.
    w.configure(&Gate {
        extra: "on_fail = \"demote\"\n",
        ..Gate::default()
    });
    let json = w.plan_json().await;
    assert!(
        json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "delete"),
        "{json:#}"
    );
    w.apply().await;
    assert!(w.live(BUSYBOX).await.is_none(), "demoted");
}
