//! Day two (issue 15): `outdated` against a real registry holding tags of every kind, read
//! through a server that pages the tag list; `pin` rewriting airlock.toml (comments kept, the
//! file validates, a moved upstream tag no longer moves the image); the Renovate regex
//! manager of examples/renovate.json applied to the example configurations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock::model::{Digest, Reference};
use hyper::Response;
use serde_json::json;

use crate::support::airlock::{Workdir, config};
use crate::support::client::RawClient;
use crate::support::images::{Content, Format, ImageBuilder, TestIndex};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::{HttpBody, ServerTask, full_body, spawn_server};

/// Page size of [`PagingServer`].
const PAGE: usize = 4;

/// A front for a real registry that answers `GET /v2/<name>/tags/list` in pages of
/// [`PAGE`] tags with `Link: <…?n=4&last=…>; rel="next"` (what Docker Hub, GHCR and
/// Distribution 3 do; Distribution 2.8 ignores `n`), and forwards GET and HEAD otherwise.
struct PagingServer {
    port: u16,
    pages: Arc<AtomicUsize>,
    _task: ServerTask,
}

impl PagingServer {
    async fn start(upstream: &str) -> PagingServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pages = Arc::new(AtomicUsize::new(0));
        let (up, p) = (upstream.to_string(), pages.clone());
        let http = reqwest::Client::new();
        let task = spawn_server(listener, move |req| {
            let (up, p, http) = (up.clone(), p.clone(), http.clone());
            async move {
                let path = req.uri().path().to_string();
                let query: BTreeMap<String, String> =
                    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                if let Some(name) = path
                    .strip_prefix("/v2/")
                    .and_then(|r| r.strip_suffix("/tags/list"))
                {
                    p.fetch_add(1, Ordering::SeqCst);
                    let r = http.get(format!("{up}{path}")).send().await?;
                    if !r.status().is_success() {
                        return Ok(Response::builder()
                            .status(r.status().as_u16())
                            .header("content-type", "application/json")
                            .body(full_body(r.bytes().await?))?);
                    }
                    let all: serde_json::Value = r.json().await?;
                    let mut tags: Vec<String> =
                        serde_json::from_value(all["tags"].clone()).unwrap_or_default();
                    tags.sort();
                    let start = match query.get("last") {
                        Some(l) => tags.iter().position(|t| t > l).unwrap_or(tags.len()),
                        None => 0,
                    };
                    let page: Vec<String> = tags.iter().skip(start).take(PAGE).cloned().collect();
                    let mut resp = Response::builder()
                        .status(200)
                        .header("content-type", "application/json");
                    if start + PAGE < tags.len() {
                        let last = page.last().unwrap();
                        resp = resp.header(
                            "link",
                            format!("</v2/{name}/tags/list?n={PAGE}&last={last}>; rel=\"next\""),
                        );
                    }
                    let body = json!({"name": name, "tags": page}).to_string();
                    return Ok::<Response<HttpBody>, crate::support::BoxError>(
                        resp.body(full_body(body))?,
                    );
                }
                let mut fwd = http.request(
                    req.method().clone(),
                    format!("{up}{}", req.uri().path_and_query().unwrap()),
                );
                for (k, v) in req.headers() {
                    if k != "host" {
                        fwd = fwd.header(k, v);
                    }
                }
                let r = fwd.send().await?;
                let mut resp = Response::builder().status(r.status().as_u16());
                for (k, v) in r.headers() {
                    resp = resp.header(k, v);
                }
                Ok(resp.body(full_body(r.bytes().await?))?)
            }
        });
        PagingServer {
            port,
            pages,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A small image whose content differs with `n`.
fn image(n: u8) -> crate::support::images::TestImage {
    ImageBuilder::new(&format!("day-two-{n}"))
        .layer_bytes(vec![n; 64])
        .build()
}

/// Push `content` once and tag it under every tag of `tags`.
async fn push_tags(reg: &TestRegistry, repo: &str, tags: &[&str], content: &impl Content) {
    let c = RawClient::new(&reg.url(), None);
    c.push(repo, tags[0], content).await;
    for t in &tags[1..] {
        c.put_manifest(repo, t, content.top()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outdated_reads_every_page_and_compares_like_semver() {
    let upstream = TestRegistry::start(Auth::None).await;
    let busybox = [
        "latest",
        "stable",
        "musl",
        "sha-1a2b3c4",
        "1.2.3.4",
        "1.33.0",
        "1.33.1",
        "1.34.0",
        "1.36.1",
        "v1.36.1",
        "1.37.0-rc.1",
        "1.37.0-rc.2",
        "1.33.0-alpine",
        "1.34.0-alpine",
        "1.36.1-alpine3.18",
        "1.37.0-slim",
        "1.33",
        "1.36",
    ];
    push_tags(&upstream, "library/busybox", &busybox, &image(1)).await;
    push_tags(
        &upstream,
        "fluxcd/source-controller",
        &["v0.6.3", "v0.7.0", "v0.8.0-rc.1", "main"],
        &image(2),
    )
    .await;
    let pager = PagingServer::start(&upstream.url()).await;
    let declared: Vec<String> = [
        "docker.io/library/busybox:1.33.0",
        "docker.io/library/busybox:1.33.0-alpine",
        "docker.io/library/busybox:1.37.0-rc.1",
        "docker.io/library/busybox:1.33",
        "docker.io/library/busybox:latest",
        "ghcr.io/fluxcd/source-controller:v0.6.3",
    ]
    .map(String::from)
    .to_vec();
    let w = Workdir::new(&config(&pager.url(), &upstream.url(), &declared, ""));

    let run = w.run(&["outdated", "--format", "json"]).await.expect(0);
    assert_eq!(
        run.json(),
        json!({"images": [
            {"image": "fluxcd/source-controller:v0.6.3", "source": "ghcr.io/fluxcd/source-controller",
             "current": "v0.6.3", "latest": "v0.7.0", "newer": ["v0.7.0"]},
            {"image": "library/busybox:1.33", "source": "docker.io/library/busybox",
             "current": "1.33", "latest": "1.36", "newer": ["1.36"]},
            {"image": "library/busybox:1.33.0", "source": "docker.io/library/busybox",
             "current": "1.33.0", "latest": "1.36.1", "newer": ["1.33.1", "1.34.0", "1.36.1"]},
            {"image": "library/busybox:1.33.0-alpine", "source": "docker.io/library/busybox",
             "current": "1.33.0-alpine", "latest": "1.34.0-alpine", "newer": ["1.34.0-alpine"]},
            {"image": "library/busybox:1.37.0-rc.1", "source": "docker.io/library/busybox",
             "current": "1.37.0-rc.1", "latest": "1.37.0-rc.2", "newer": ["1.37.0-rc.2"]},
            {"image": "library/busybox:latest", "source": "docker.io/library/busybox",
             "current": "latest", "latest": null, "newer": []},
        ]})
    );
    // busybox: 18 tags in pages of 4 (5 requests), flux: 1; each repository listed once.
    assert_eq!(pager.pages.load(Ordering::SeqCst), 6);
    assert!(
        run.stderr
            .contains("warning: docker.io/library/busybox:latest: `latest` moves"),
        "{}",
        run.stderr
    );

    w.run(&["outdated", "--detailed-exitcode"]).await.expect(2);
    let human = w.run(&["outdated"]).await.expect(0);
    assert!(
        human
            .stdout
            .contains("1.33.0 → 1.36.1  (3 newer: 1.33.1, 1.34.0, 1.36.1)"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("5 of 6 images have newer versions upstream."),
        "{}",
        human.stdout
    );
    let md = w.run(&["outdated", "--format", "markdown"]).await.expect(0);
    assert!(
        md.stdout.contains(
            "| `library/busybox:1.33.0` | `docker.io/library/busybox` | `1.33.0` | `1.36.1` | `1.33.1` `1.34.0` `1.36.1` |"
        ),
        "{}",
        md.stdout
    );

    // Up to date: exit 0 with --detailed-exitcode.
    w.set_config(&config(
        &pager.url(),
        &upstream.url(),
        &["docker.io/library/busybox:1.36.1".to_string()],
        "",
    ));
    let run = w
        .run(&["outdated", "--format", "json", "--detailed-exitcode"])
        .await
        .expect(0);
    assert_eq!(run.json()["images"][0]["newer"], json!([]));

    // A repository that does not exist upstream lists no tags: nothing newer, no error.
    w.set_config(&config(
        &pager.url(),
        &upstream.url(),
        &["docker.io/library/nothing:1.0.0".to_string()],
        "",
    ));
    let run = w.run(&["outdated", "--format", "json"]).await.expect(0);
    assert_eq!(run.json()["images"][0]["latest"], json!("1.0.0"));
}

/// A registry error (here: credentials required, none configured) stops `outdated` with
/// the registry's own code: a partial answer would hide newer versions.
#[tokio::test(flavor = "multi_thread")]
async fn outdated_fails_on_a_registry_error() {
    let locked = TestRegistry::start(Auth::Basic {
        user: "u",
        pass: "p",
    })
    .await;
    let w = Workdir::new(&config(
        &locked.url(),
        &locked.url(),
        &["docker.io/library/busybox:1.33.0".to_string()],
        "",
    ));
    let run = w.run(&["outdated", "--format", "json"]).await.expect(1);
    assert!(run.stderr.contains("UNAUTHORIZED"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

const PINNED_CONFIG_TAIL: &str = r#"
# Busybox: utility container.
[[images]]
source = "docker.io/library/busybox:1.33.0"   # the walkthrough's

# Two platforms upstream; amd64 only in live.
[[images]]
platforms = ["linux/amd64"]
source = "ghcr.io/demo/multi:1.0"
# a comment between keys
"#;

#[tokio::test(flavor = "multi_thread")]
async fn pin_writes_digests_and_a_moved_tag_no_longer_moves_the_image() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let first = image(10);
    let moved = image(11);
    push_tags(&upstream, "library/busybox", &["1.33.0"], &first).await;
    let multi = TestIndex::two_platform("multi", Format::Oci);
    push_tags(&upstream, "demo/multi", &["1.0"], &multi).await;
    let original = format!(
        "{}{PINNED_CONFIG_TAIL}",
        config(&upstream.url(), &target.url(), &[], "# gate defaults\n")
    );
    let w = Workdir::new(&original);
    let read = || std::fs::read_to_string(w.config()).unwrap();

    // Unpinned: warnings, and the CI lint fails without touching the file or a registry.
    let v = w.run(&["validate"]).await.expect(0);
    assert!(
        v.stderr
            .contains("warning: docker.io/library/busybox:1.33.0 is not pinned"),
        "{}",
        v.stderr
    );
    let before = upstream.requests().len();
    let check = w.run(&["pin", "--check"]).await.expect(1);
    assert!(
        check
            .stdout
            .contains("unpinned: docker.io/library/busybox:1.33.0"),
        "{}",
        check.stdout
    );
    assert!(check.stderr.contains("2 images are not pinned"));
    assert_eq!(
        upstream.requests().len(),
        before,
        "--check reads no registry"
    );
    assert_eq!(read(), original);

    // A pattern that selects nothing is an error; nothing written.
    w.run(&["pin", "--image", "library/busybo"]).await.expect(1);
    assert_eq!(read(), original);

    // Pin: each entry gets its digest right after `source`; nothing else changes.
    let run = w.run(&["pin"]).await.expect(0);
    let pinned = read();
    let want = original
        .replace(
            "source = \"docker.io/library/busybox:1.33.0\"   # the walkthrough's\n",
            &format!(
                "source = \"docker.io/library/busybox:1.33.0\"   # the walkthrough's\ndigest = \"{}\"\n",
                first.manifest.digest
            ),
        )
        .replace(
            "source = \"ghcr.io/demo/multi:1.0\"\n",
            &format!(
                "source = \"ghcr.io/demo/multi:1.0\"\ndigest = \"{}\"\n",
                multi.index.digest
            ),
        );
    assert_eq!(pinned, want, "{}", run.stdout);
    assert!(run.stdout.contains("2 digests written"), "{}", run.stdout);
    // The platform subset keeps the upstream index digest, as skopeo sees it.
    assert_eq!(
        crate::support::skopeo::skopeo_digest(&upstream.host(), "demo/multi:1.0").await,
        multi.index.digest
    );
    let v = w.run(&["validate"]).await.expect(0);
    assert!(!v.stderr.contains("not pinned"), "{}", v.stderr);
    w.run(&["pin", "--check"]).await.expect(0);
    let leftovers: Vec<_> = std::fs::read_dir(w.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    w.run(&["apply", "--auto-approve"]).await.expect(0);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);

    // The upstream tag moves: the pinned image does not.
    push_tags(&upstream, "library/busybox", &["1.33.0"], &moved).await;
    let plan = w
        .run(&["plan", "--detailed-exitcode", "--format", "json"])
        .await
        .expect(0);
    let v = plan.json();
    assert_eq!(v["summary"]["import"], 0, "{}", plan.stdout);
    assert_eq!(v["actions"], json!([]), "{}", plan.stdout);
    assert!(
        v["warnings"][0].as_str().unwrap().contains("the pin keeps"),
        "{}",
        plan.stdout
    );
    // pin keeps existing pins; --update moves them to where the tag is now.
    let run = w.run(&["pin"]).await.expect(0);
    assert!(run.stdout.contains("0 digests written"), "{}", run.stdout);
    assert_eq!(read(), pinned);
    let run = w
        .run(&["pin", "--update", "--image", "docker.io/library/*"])
        .await
        .expect(0);
    assert!(run.stdout.contains("1 digest written"), "{}", run.stdout);
    assert_eq!(
        read(),
        pinned.replace(
            &first.manifest.digest.to_string(),
            &moved.manifest.digest.to_string()
        )
    );
    let plan = w
        .run(&["plan", "--detailed-exitcode", "--format", "json"])
        .await
        .expect(2);
    assert!(
        plan.stdout.contains(&moved.manifest.digest.to_string()),
        "{}",
        plan.stdout
    );
}

/// A tag that does not exist upstream fails the whole pin: nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn pin_writes_nothing_when_a_tag_is_missing() {
    let upstream = TestRegistry::start(Auth::None).await;
    push_tags(&upstream, "library/busybox", &["1.33.0"], &image(20)).await;
    let original = config(
        &upstream.url(),
        &upstream.url(),
        &[
            "docker.io/library/busybox:1.33.0".to_string(),
            "docker.io/library/busybox:9.9.9".to_string(),
        ],
        "",
    );
    let w = Workdir::new(&original);
    let run = w.run(&["pin"]).await.expect(1);
    assert!(run.stderr.contains("MANIFEST_UNKNOWN"), "{}", run.stderr);
    assert!(run.stderr.contains("busybox:9.9.9"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(w.config()).unwrap(), original);
}

/// The regex manager of examples/renovate.json, applied with the `regex` crate (Renovate's
/// named groups `(?<name>…)` are valid here too) to every example configuration: one match
/// per `[[images]]` entry, and depName:currentValue / currentDigest read exactly what
/// airlock reads as the source and the pin.
#[test]
fn renovate_regex_reads_what_airlock_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("renovate.json")).unwrap()).unwrap();
    let manager = &cfg["customManagers"][0];
    assert_eq!(manager["customType"], "regex");
    assert_eq!(manager["datasourceTemplate"], "docker");
    let file_pattern = manager["managerFilePatterns"][0].as_str().unwrap();
    let file_re = regex::Regex::new(file_pattern.trim_matches('/')).unwrap();
    // README.md shows the same manager.
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let block = readme
        .split("```json\n")
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("customManagers"))
        .expect("README shows the Renovate config");
    let shown: serde_json::Value = serde_json::from_str(block).unwrap();
    assert_eq!(
        shown["customManagers"][0]["matchStrings"],
        manager["matchStrings"]
    );
    let strings = manager["matchStrings"].as_array().unwrap();
    assert_eq!(strings.len(), 1);
    let re = regex::Regex::new(strings[0].as_str().unwrap()).unwrap();

    let read = |text: &str| -> Vec<(Reference, Option<Digest>)> {
        let mut v: Vec<(Reference, Option<Digest>)> = re
            .captures_iter(text)
            .map(|c| {
                let r: Reference = format!("{}:{}", &c["depName"], &c["currentValue"])
                    .parse()
                    .unwrap();
                (
                    r,
                    c.name("currentDigest").map(|d| d.as_str().parse().unwrap()),
                )
            })
            .collect();
        v.sort();
        v
    };
    let airlock_reads = |text: &str, base: &Path| -> Vec<(Reference, Option<Digest>)> {
        let d = airlock::config::parse(
            text,
            &base.join("airlock.toml"),
            time::macros::date!(2026 - 01 - 01),
        )
        .unwrap();
        let mut v: Vec<(Reference, Option<Digest>)> =
            d.images.into_iter().map(|s| (s.source, s.pin)).collect();
        v.sort();
        v
    };

    let mut pinned = 0;
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        let file = dir.join("airlock.toml");
        if !file.exists() {
            continue;
        }
        assert!(
            file_re.is_match(file.to_str().unwrap()),
            "{}",
            file.display()
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let want = airlock_reads(&text, &dir);
        assert!(!want.is_empty());
        assert_eq!(read(&text), want, "{}", file.display());
        pinned += want.iter().filter(|(_, d)| d.is_some()).count();
        n += 1;
    }
    assert!(n >= 3, "found {n} examples");
    assert!(pinned >= 2, "an example shows pinned entries");
    assert!(!file_re.is_match("airlock.toml.bak") && file_re.is_match("airlock.toml"));

    // Shapes the examples do not show: keys and comments between source and digest, an
    // entry without digest followed by one with (its digest is not borrowed), a host with a
    // port, inline tables of another section.
    let d1 = format!("sha256:{}", "1".repeat(64));
    let d2 = format!("sha256:{}", "2".repeat(64));
    let text = format!(
        r#"[registries."localhost:5000"]
endpoint = "http://localhost:5000"
[quarantine]
registry = "localhost:5000"
[live]
registry = "localhost:5000"

[[images]]
source = "localhost:5000/team/app:v2.1.0-alpine"
# amd64 only
platforms = ["linux/amd64"]

digest = "{d1}"   # pinned by airlock pin

[[images]]
source = "docker.io/library/busybox:1.33.0"

[[images]]
source  =  "ghcr.io/fluxcd/source-controller:v0.6.3"
digest = "{d2}"
"#
    );
    let got = read(&text);
    assert_eq!(got, airlock_reads(&text, Path::new(".")));
    assert_eq!(got.iter().filter(|(_, d)| d.is_some()).count(), 2);
}

/// The ids of a JSON plan's actions, sorted.
fn action_ids(plan: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// `track` + `keep` across runs: the first plan imports the newest two matching versions
/// (not `latest`, a prerelease, a variant or 2.0.0); a new version upstream is an import in
/// the next plan and, with prune, the oldest leaves live; `pin` writes a pin per version
/// into `pins`, after which a moved upstream tag no longer moves that version.
#[tokio::test(flavor = "multi_thread")]
async fn track_follows_a_range_and_keep_with_prune_retires_the_oldest() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let (a, b, c, moved) = (image(30), image(31), image(32), image(33));
    push_tags(&upstream, "library/busybox", &["1.33.0", "latest"], &a).await;
    push_tags(&upstream, "library/busybox", &["1.34.0", "1.35.0-rc.1"], &b).await;
    push_tags(
        &upstream,
        "library/busybox",
        &["2.0.0", "1.34.0-alpine"],
        &c,
    )
    .await;
    let text = format!(
        "{}[[images]]\nsource = \"docker.io/library/busybox\"   # follows 1.x\ntrack = \">=1.33, <2\"\nkeep = 2\n",
        config(&upstream.url(), &target.url(), &[], "prune = true\n")
    );
    let w = Workdir::new(&text);
    w.run(&["validate"]).await.expect(0);

    let plan = w
        .run(&["plan", "--format", "json", "--detailed-exitcode"])
        .await
        .expect(2)
        .json();
    let imports: Vec<String> = action_ids(&plan)
        .into_iter()
        .filter(|i| i.starts_with("import:"))
        .collect();
    assert_eq!(
        imports,
        [
            "import:library/busybox:1.33.0",
            "import:library/busybox:1.34.0"
        ]
    );
    w.run(&["apply", "--auto-approve"]).await.expect(0);
    let live = RawClient::new(&target.url(), None);
    // Version tags in live (promotion records hang off `sha256-…` referrer tags).
    let live_versions = || async {
        live.tags("live/library/busybox")
            .await
            .into_iter()
            .filter(|t| !t.starts_with("sha256-"))
            .collect::<Vec<_>>()
    };
    assert_eq!(live_versions().await, ["1.33.0", "1.34.0"]);

    // A new version appears upstream: imported, and 1.33.0 falls out of keep = 2.
    push_tags(&upstream, "library/busybox", &["1.36.1"], &c).await;
    let plan = w
        .run(&["plan", "--format", "json", "--detailed-exitcode"])
        .await
        .expect(2)
        .json();
    let ids = action_ids(&plan);
    assert!(
        ids.contains(&"import:library/busybox:1.36.1".to_string()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"delete:live/library/busybox:1.33.0".to_string()),
        "{ids:?}"
    );
    assert!(!ids.iter().any(|i| i.contains("1.34.0")), "{ids:?}");
    let import = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "import:library/busybox:1.36.1")
        .unwrap();
    assert_eq!(
        import["source_digest"],
        json!(c.manifest.digest.to_string())
    );
    w.run(&["apply", "--auto-approve"]).await.expect(0);
    assert_eq!(live_versions().await, ["1.34.0", "1.36.1"]);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);

    // Pins per version, written into `pins`; the file still validates.
    let check = w.run(&["pin", "--check"]).await.expect(1);
    assert!(
        check
            .stdout
            .contains("unpinned: docker.io/library/busybox:1.36.1 (track >=1.33, <2)"),
        "{}",
        check.stdout
    );
    let run = w.run(&["pin"]).await.expect(0);
    assert!(run.stdout.contains("2 digests written"), "{}", run.stdout);
    let pinned = std::fs::read_to_string(w.config()).unwrap();
    assert!(
        pinned.contains(&format!(
            "keep = 2\npins = {{ \"1.34.0\" = \"{}\", \"1.36.1\" = \"{}\" }}\n",
            b.manifest.digest, c.manifest.digest
        )),
        "{pinned}"
    );
    assert!(pinned.contains("source = \"docker.io/library/busybox\"   # follows 1.x\n"));
    w.run(&["validate"]).await.expect(0);
    w.run(&["pin", "--check"]).await.expect(0);

    // 1.36.1 moves upstream: the pinned version does not.
    push_tags(&upstream, "library/busybox", &["1.36.1"], &moved).await;
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
}
