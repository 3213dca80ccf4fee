//! The gate against hostile image configs and hostile scanner output, end to end: the airlock
//! binary, two real registries that both want Basic credentials (upstream and target, each
//! with its own `password_env`), and an external scanner (a shell script) that inspects its
//! environment and then prints, per image, a report that echoes the quarantine credentials
//! (raw and base64), repeats a JSON key, or pads a severity with a space.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::support::airlock::{Run, Workdir};
use crate::support::client::{RawClient, push_raw};
use crate::support::config::Config;
use crate::support::images::ImageBuilder;
use crate::support::registry::{Auth, TestRegistry};

const TARGET: (&str, &str) = ("scan-bot", "s3cr3t-Pa55w0rd-for-the-scanner");
const UPSTREAM: (&str, &str) = ("mirror", "upstream-only-secret-value");
const TARGET_ENV: &str = "AIRLOCK_TEST_TARGET_PASSWORD";
const UPSTREAM_ENV: &str = "AIRLOCK_TEST_UPSTREAM_PASSWORD";

/// Logs what it can see, then prints the report its image's mode file names.
const SCANNER: &str = r#"#!/bin/sh
ref="$1"
repo="${ref%@*}"
name="${repo##*/}"
{
  echo "image=$name"
  echo "upstream_password=$([ -n "${AIRLOCK_TEST_UPSTREAM_PASSWORD+x}" ] && echo visible || echo absent)"
  echo "target_password=$([ "$TRIVY_PASSWORD" = "$AIRLOCK_TEST_TARGET_PASSWORD" ] && echo given || echo missing)"
  echo "modes=$(stat -c %a "$DOCKER_CONFIG") $(stat -c %a "$DOCKER_CONFIG/config.json")"
} >> "$AIRLOCK_TEST_DIR/env.log"
auth=$(sed -n 's/.*"auth":"\([^"]*\)".*/\1/p' "$DOCKER_CONFIG/config.json")
urlsafe=$(printf '%s' "$auth" | tr '+/' '-_' | tr -d '=')
shifted=$(printf 'xy%s!' "$TRIVY_PASSWORD" | base64 -w0)
vuln() {
  printf '{"SchemaVersion": 2, "Trivy": {"Version": "%s"}, "Results": [{"Target": "img", "Class": "os-pkgs", "Vulnerabilities": [%s]}]}\n' "$1" "$2"
}
case "$(cat "$AIRLOCK_TEST_DIR/modes/$name" 2>/dev/null || echo clean)" in
  clean) cat "$AIRLOCK_TEST_FIXTURES/trivy-clean.json" ;;
  leak)
    echo "pulling with auth $auth ($TRIVY_PASSWORD)" >&2
    vuln "0.58-$auth" "{\"VulnerabilityID\": \"CVE-2099-0001\", \"Severity\": \"CRITICAL\", \"PkgName\": \"pkg-$TRIVY_PASSWORD\", \"InstalledVersion\": \"$urlsafe\", \"FixedVersion\": \"$shifted\", \"Title\": \"registry said: auth $auth rejected for $TRIVY_USERNAME\"}" ;;
  dupkey)
    vuln "0.58" '{"VulnerabilityID": "CVE-2099-0002", "Severity": "CRITICAL", "Severity": "LOW"}' ;;
  padded)
    vuln "0.58" '{"VulnerabilityID": "CVE-2099-0003", "Severity": "CRITICAL ", "PkgName": "openssl"}' ;;
  failleak)
    echo "FATAL: auth $auth was refused" >&2; exit 1 ;;
esac
"#;

struct World {
    /// Kept running for the life of the test.
    _upstream: TestRegistry,
    target: TestRegistry,
    w: Workdir,
}

impl World {
    /// Both registries, and `(name, user, mode)` images pushed upstream as `library/<name>:1.0`.
    async fn start(images: &[(&str, &str, &str)]) -> World {
        let (upstream, target) = tokio::join!(
            TestRegistry::start(Auth::Basic {
                user: UPSTREAM.0,
                pass: UPSTREAM.1
            }),
            TestRegistry::start(Auth::Basic {
                user: TARGET.0,
                pass: TARGET.1
            })
        );
        let w = Workdir::new("");
        std::fs::create_dir(w.path().join("modes")).unwrap();
        std::fs::write(w.path().join("scanner.sh"), SCANNER).unwrap();
        let mut sources: Vec<String> = Vec::new();
        for (name, user, mode) in images {
            let img = ImageBuilder::new(&format!("library/{name}"))
                .user(user)
                .build();
            push_raw(
                &upstream.url(),
                &format!("library/{name}"),
                "1.0",
                &img,
                Some(UPSTREAM),
            )
            .await;
            std::fs::write(w.path().join("modes").join(name), mode).unwrap();
            sources.push(format!("{}/library/{name}:1.0", upstream.host()));
        }
        let basic = |url: String, user: &str, env: &str| {
            format!(
                "endpoint = \"{url}\"\nauth = \"basic\"\nusername = \"{user}\"\npassword_env = \"{env}\""
            )
        };
        w.set_config(
            &Config::new("target")
                .registry("upstream", &basic(upstream.url(), UPSTREAM.0, UPSTREAM_ENV))
                .registry("target", &basic(target.url(), TARGET.0, TARGET_ENV))
                .extra(&format!(
                    r#"[gate]
scanners = ["policy", "trivy"]
fail_on = "high"

[gate.policy]
forbid_root = true

[scanners.trivy]
command = ["sh", "{script}", "{{ref}}"]
format = "trivy"
timeout = "60s"
"#,
                    script = w.path().join("scanner.sh").display(),
                ))
                .images(&sources)
                .build(),
        );
        World {
            _upstream: upstream,
            target,
            w,
        }
    }

    async fn airlock(&self, args: &[&str]) -> Run {
        let fixtures = format!("{}/tests/fixtures/scanners", env!("CARGO_MANIFEST_DIR"));
        let dir = self.w.path().display().to_string();
        self.w
            .run_env(
                args,
                &[
                    (TARGET_ENV, TARGET.1),
                    (UPSTREAM_ENV, UPSTREAM.1),
                    ("AIRLOCK_TEST_DIR", &dir),
                    ("AIRLOCK_TEST_FIXTURES", &fixtures),
                    ("RUST_LOG", "airlock=debug"),
                ],
            )
            .await
    }

    async fn live(&self, name: &str) -> bool {
        RawClient::new(&self.target.url(), Some(TARGET))
            .get_manifest(&format!("live/library/{name}"), "1.0")
            .await
            .is_some()
    }

    /// The scanner's environment log, one `key=value` block per run.
    fn env_log(&self) -> String {
        std::fs::read_to_string(self.w.path().join("env.log")).unwrap_or_default()
    }

    /// The blocked entry of a JSON plan for `library/<name>:1.0`.
    fn blocked<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        let key = format!("library/{name}:1.0");
        plan["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["image"] == key.as_str())
            .unwrap_or_else(|| panic!("{key} is not blocked: {plan:#}"))
    }
}

/// Every spelling of the target password a scanner could echo: raw, and base64 of
/// `user:password` and of the password in several alphabets and alignments (the 12 inner
/// characters of each are enough to recognise it).
fn secret_spellings() -> Vec<String> {
    let pair = format!("{}:{}", TARGET.0, TARGET.1);
    let mut v = vec![
        TARGET.1.to_string(),
        STANDARD.encode(&pair),
        URL_SAFE_NO_PAD.encode(&pair),
    ];
    for prefix in ["", "x", "xy"] {
        for enc in [
            STANDARD.encode(format!("{prefix}{}", TARGET.1)),
            URL_SAFE_NO_PAD.encode(format!("{prefix}{}", TARGET.1)),
        ] {
            v.push(enc[4..16].to_string());
        }
    }
    v
}

fn assert_no_secret(what: &str, text: &str) {
    for s in secret_spellings() {
        assert!(!text.contains(&s), "{what} holds `{s}`:\n{text}");
    }
    assert!(
        !text.contains(UPSTREAM.1),
        "{what} holds the upstream password"
    );
}

/// Every file the target registry stores (blobs: manifests, verdicts, records).
fn stored_files(registry: &TestRegistry) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                // A DSSE envelope (signed records and verdicts) stores its statement in
                // base64: its decoded payload is checked too.
                if let Ok(env) = serde_json::from_slice::<serde_json::Value>(&bytes)
                    && env.get("payloadType").is_some()
                    && let Some(payload) = env.get("payload").and_then(|v| v.as_str())
                    && let Ok(decoded) = STANDARD.decode(payload)
                {
                    out.push((format!("{}#payload", p.display()), decoded));
                }
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(&registry.data_dir(), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_configs_and_scanner_reports_are_blocked_and_secrets_stay_hidden() {
    let w = World::start(&[
        ("clean", "1000", "clean"),
        ("rooty", "00", "clean"),
        ("leaky", "1000", "leak"),
        ("dupes", "1000", "dupkey"),
        ("padded", "1000", "padded"),
        ("failing", "1000", "failleak"),
    ])
    .await;

    let human = w.airlock(&["apply", "--auto-approve", "-v"]).await;
    assert_eq!(human.code, 3, "the gate blocked images: {human:?}");
    assert!(w.live("clean").await, "{human:?}");
    for name in ["rooty", "leaky", "dupes", "padded", "failing"] {
        assert!(!w.live(name).await, "{name} reached live: {human:?}");
    }

    let plan = w
        .airlock(&["plan", "--format", "json"])
        .await
        .expect(0)
        .json();
    let ids = |name: &str| World::blocked(&plan, name)["findings"].to_string();
    // `00` is uid 0 to the runtime.
    assert!(ids("rooty").contains("AIRLOCK-ROOT-USER"), "{plan:#}");
    // A repeated key fails the scan closed, naming the key; nothing was read from it. Like
    // any scanner failure it is no verdict on the image: the next plan scans again (and the
    // image stays out of live until a scan passes).
    let rescans = |name: &str| {
        plan["actions"].as_array().unwrap().iter().any(|a| {
            a["id"] == format!("scan:library/{name}:1.0").as_str()
                && a["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("AIRLOCK-SCANNER-FAILED"))
        })
    };
    assert!(rescans("dupes"), "{plan:#}");
    assert!(
        human
            .stdout
            .contains("duplicate key `Severity` in the object at Results[0].Vulnerabilities[0]"),
        "{human:?}"
    );
    // `"CRITICAL "` is critical.
    let padded = &World::blocked(&plan, "padded")["findings"][0];
    assert_eq!(padded["id"], "CVE-2099-0003", "{plan:#}");
    assert_eq!(padded["severity"], "critical", "{plan:#}");
    // The leaking report still blocks; the failing scanner's stderr tail is kept, masked.
    assert!(ids("leaky").contains("CVE-2099-0001"), "{plan:#}");
    assert!(rescans("failing"), "{plan:#}");
    assert!(human.stdout.contains("auth *** was refused"), "{human:?}");

    // The stored verdicts say why.
    let files = stored_files(&w.target);
    let stored = |needle: &str| {
        files
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .find(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no stored blob holds {needle}"))
    };
    assert!(stored("AIRLOCK-ROOT-USER").contains("config User is `00`: uid 0"));
    let dupes = stored("duplicate key `Severity`");
    assert!(dupes.contains("AIRLOCK-SCANNER-FAILED"), "{dupes}");
    assert!(!dupes.contains("CVE-2099-0002"), "{dupes}");
    let leaky = stored("CVE-2099-0001");
    assert!(leaky.contains("pkg-***"), "{leaky}");
    assert!(
        leaky.contains("registry said: auth *** rejected for scan-bot"),
        "{leaky}"
    );

    // Nothing printed or stored holds the password in any spelling: not the human report
    // with debug logs, not the JSON report, not the plan, not any blob in the registry.
    assert_no_secret("apply stdout", &human.stdout);
    assert_no_secret("apply stderr", &human.stderr);
    let json = w
        .airlock(&["apply", "--auto-approve", "--format", "json"])
        .await;
    assert_no_secret("JSON report", &json.stdout);
    assert_no_secret("JSON report stderr", &json.stderr);
    assert_no_secret("plan", &plan.to_string());
    assert!(
        files.len() > 10,
        "the registry stored blobs: {}",
        files.len()
    );
    let verdicts = files
        .iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("CVE-2099-0001"))
        .count();
    assert!(verdicts >= 1, "the leaky image's verdict is stored");
    for (path, bytes) in &files {
        assert_no_secret(path, &String::from_utf8_lossy(bytes));
    }

    // The scanner saw the quarantine's credentials, not the upstream's password, through a
    // private docker config created 0700/0600.
    let log = w.env_log();
    assert!(log.contains("image=leaky"), "{log}");
    assert!(!log.contains("upstream_password=visible"), "{log}");
    assert!(log.contains("upstream_password=absent"), "{log}");
    assert!(!log.contains("target_password=missing"), "{log}");
    let modes: Vec<&str> = log.lines().filter(|l| l.starts_with("modes=")).collect();
    assert!(!modes.is_empty(), "{log}");
    assert!(modes.iter().all(|m| *m == "modes=700 600"), "{modes:?}");
}
