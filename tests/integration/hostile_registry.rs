//! A hostile or dead registry against the client and `apply`: credentials that must not follow
//! a `Link` to another origin, a `Link` that points back at itself, descriptors that lie about
//! sizes (2^64-1, one byte off), a registry that stops answering (a port that accepts and
//! hangs, a refused connection, a source blob that stalls mid-body), a rejected password, and
//! two applies at once — on one layout directory and against one real registry — which must
//! both converge. Real Distribution registries throughout; hostile answers come from the
//! fault proxy or a small scripted server. Messages are asserted, timings never.

use std::sync::{Arc, Mutex};

use airlock::config::{AuthSpec, Endpoint, RegistrySpec, Timeouts, Transfer};
use airlock::model::{Digest, RawManifest, media};
use airlock::registry::Registry;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::airlock::{Workdir, config, seed_walkthrough, sources};
use crate::support::client::RawClient;
use crate::support::images::{ImageBuilder, TestImage, write_oci_layout};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::token::TokenServer;
use crate::support::{full_body, spawn_server};

fn spec(url: &str, auth: AuthSpec) -> RegistrySpec {
    RegistrySpec {
        key: "hostile".into(),
        endpoint: Endpoint::Url(url.to_string()),
        auth,
        transfer: Transfer::Stream,
        max_concurrency: 4,
        timeouts: Timeouts::default(),
        arm: None,
    }
}

/// Push a tiny image tagged `tag` into `repo` through the library.
async fn push_tag(r: &Registry, repo: &str, tag: &str) {
    let config = r
        .put_blob_bytes(repo, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_EMPTY, "digest": config.to_string(), "size": 2},
        "layers": [],
        "annotations": {"tag": tag},
    });
    let raw = RawManifest::new(serde_json::to_vec(&m).unwrap(), None).unwrap();
    r.put_manifest(repo, tag, &raw).await.unwrap();
}

/// A scripted "other origin": answers every request with a one-tag list and records whether
/// each request carried an Authorization header.
async fn recording_server(tag: &'static str) -> (u16, Arc<Mutex<Vec<bool>>>, impl Drop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let task = spawn_server(
        listener,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let s = s.clone();
            async move {
                s.lock()
                    .unwrap()
                    .push(req.headers().contains_key(hyper::header::AUTHORIZATION));
                let body = json!({"name": "app", "tags": [tag]}).to_string();
                Ok(hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(full_body(body))?)
            }
        },
    );
    (port, seen, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_do_not_follow_a_link_to_another_origin() {
    let ts = TokenServer::start().await;
    ts.allow(None, "", &["pull", "push"]);
    let reg = TestRegistry::start(Auth::Token(&ts)).await;
    let proxy = FaultProxy::start(&reg.url()).await;
    let r = Registry::from_spec(&spec(&proxy.url(), AuthSpec::Anonymous)).unwrap();
    push_tag(&r, "app", "one").await;

    let (other, seen, _server) = recording_server("from-elsewhere").await;
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/v2/app/tags/list"),
        times: 1,
        kind: FaultKind::AddHeader(
            "Link".into(),
            format!("<http://127.0.0.1:{other}/v2/app/tags/list?last=one>; rel=\"next\""),
        ),
    });
    let tags = r.list_tags("app").await.unwrap();
    assert_eq!(tags, vec!["from-elsewhere", "one"]);
    // The registry's own page went with the bearer token; the other origin got none.
    let own: Vec<bool> = proxy
        .requests()
        .iter()
        .filter(|q| q.method == "GET" && q.path.contains("/tags/list"))
        .map(|q| q.authorization)
        .collect();
    assert_eq!(own.last(), Some(&true), "{own:?}");
    assert_eq!(*seen.lock().unwrap(), vec![false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_output_names_the_token_realm_host() {
    let ts = TokenServer::start().await;
    ts.allow(None, "", &["pull", "push"]);
    let target = TestRegistry::start(Auth::Token(&ts)).await;
    let upstream = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let w = Workdir::declaring(&upstream.url(), &target.url(), &images[..1]);
    let run = w.run(&["-v", "plan"]).await.expect(0);
    let realm = reqwest::Url::parse(&ts.realm()).unwrap();
    let host = format!("http://127.0.0.1:{}", realm.port().unwrap());
    assert!(
        run.stderr.contains(&format!("asks for tokens from {host}")),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_self_referencing_link_ends_the_listing() {
    let reg = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::start(&reg.url()).await;
    let r = Registry::from_spec(&spec(&proxy.url(), AuthSpec::Anonymous)).unwrap();
    push_tag(&r, "app", "one").await;
    push_tag(&r, "app", "two").await;
    // Every page says the next one is `?n=1`: read once, then recognised.
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/v2/app/tags/list"),
        times: usize::MAX,
        kind: FaultKind::AddHeader(
            "Link".into(),
            "</v2/app/tags/list?n=1>; rel=\"next\"".into(),
        ),
    });
    let tags = r.list_tags("app").await.unwrap();
    assert_eq!(tags, vec!["one", "two"]);
    assert_eq!(proxy.count("GET", "/v2/app/tags/list"), 2);
    // The catalog too.
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/v2/_catalog"),
        times: usize::MAX,
        kind: FaultKind::AddHeader("Link".into(), "</v2/_catalog?n=1000>; rel=\"next\"".into()),
    });
    assert_eq!(r.catalog().await.unwrap(), vec!["app"]);
    assert_eq!(proxy.count("GET", "/v2/_catalog"), 1);
}

/// Pseudo-random (incompressible) bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Write `image` into the layout at `dir` under `tag`, with its first layer's descriptor
/// claiming `claimed` bytes (the manifest is rewritten, so its digest changes).
fn write_lying_layout(dir: &std::path::Path, tag: &str, image: &TestImage, claimed: u64) {
    write_oci_layout(dir, tag, image);
    let mut m: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    m["layers"][0]["size"] = json!(claimed);
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = Digest::of(&bytes);
    std::fs::write(dir.join("blobs/sha256").join(digest.hex()), &bytes).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": media::OCI_MANIFEST,
        "digest": digest.to_string(),
        "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptors_that_lie_about_sizes_fail_and_tag_nothing() {
    let up = tempfile::tempdir().unwrap();
    let target = TestRegistry::start(Auth::None).await;
    let huge = ImageBuilder::new("sizes/huge").build();
    let huge_real = huge.layers[0].size;
    write_lying_layout(&up.path().join("sizes/huge"), "1", &huge, u64::MAX);
    // Big enough to stream (more than 64 KiB compressed), one byte longer than declared.
    let long = ImageBuilder::new("sizes/long")
        .layer_bytes(noise(200_000, 7))
        .build();
    let long_real = long.layers[0].size;
    assert!(long_real > 64 << 10);
    write_lying_layout(&up.path().join("sizes/long"), "1", &long, long_real - 1);
    // Small (copied through memory), one byte shorter than declared.
    let short = ImageBuilder::new("sizes/short").build();
    let short_real = short.layers[0].size;
    write_lying_layout(&up.path().join("sizes/short"), "1", &short, short_real + 1);
    assert!(huge_real > 0);

    let cfg = crate::support::config::Config::new("target")
        .registry(
            "up.example",
            &format!("layout = \"{}\"", up.path().display()),
        )
        .anonymous("target", &target.url())
        .images(&[
            "up.example/sizes/huge:1",
            "up.example/sizes/long:1",
            "up.example/sizes/short:1",
        ])
        .build();
    let w = Workdir::new(&cfg);
    let run = w.run(&["apply", "--auto-approve"]).await;
    assert_ne!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = format!("{}\n{}", run.stdout, run.stderr);
    assert!(!out.contains("panicked"), "{out}");
    for (name, claimed) in [
        ("huge", u64::MAX),
        ("long", long_real - 1),
        ("short", short_real + 1),
    ] {
        let msg = format!("descriptor says {claimed} bytes");
        assert!(out.contains(&msg), "no `{msg}` for {name}:\n{out}");
    }
    // Nothing tagged anywhere: no import finished, so nothing was promoted either.
    let client = RawClient::new(&target.url(), None);
    for area in ["quarantine", "live"] {
        for name in ["huge", "long", "short"] {
            let tags = client.tags(&format!("{area}/sizes/{name}")).await;
            assert!(tags.is_empty(), "{area}/sizes/{name}: {tags:?}");
        }
    }
}

/// A configuration whose target registry is `target` with these deadlines.
fn config_with_deadlines(upstream: &str, target: &str, images: &[String]) -> String {
    config(upstream, target, images, "").replace(
        "[registries.target]\n",
        "[registries.target]\ntimeout = \"4s\"\nstall_timeout = \"1s\"\n",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_registry_fails_within_its_deadline_with_the_cause_named() {
    let upstream = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let srcs = sources(&images[..1]);

    // A port that accepts and never answers.
    let target = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::start(&target.url()).await;
    proxy.add_fault(Fault {
        when: Match::any(),
        times: usize::MAX,
        kind: FaultKind::Hang,
    });
    let w = Workdir::new(&config_with_deadlines(&upstream.url(), &proxy.url(), &srcs));
    let run = w.run(&["plan"]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(
        run.stderr.contains("(timeout)") || run.stderr.contains("(stall_timeout)"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("error sending request"),
        "{}",
        run.stderr
    );

    // Nothing listening at all.
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    w.set_config(&config_with_deadlines(&upstream.url(), &dead, &srcs));
    let run = w.run(&["plan"]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_source_blob_is_the_sources_failure() {
    let upstream = TestRegistry::start(Auth::None).await;
    let big = ImageBuilder::new("stall/big")
        .layer_bytes(noise(300_000, 11))
        .build();
    crate::support::client::push_raw(&upstream.url(), "stall/big", "1", &big, None).await;
    let layer = big.layers[0].digest.clone();
    let proxy = FaultProxy::start(&upstream.url()).await;
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &format!("/blobs/{layer}")),
        times: usize::MAX,
        kind: FaultKind::StallAfter(1000),
    });
    let target = TestRegistry::start(Auth::None).await;
    let cfg = config(
        &proxy.url(),
        &target.url(),
        &["ghcr.io/stall/big:1".to_string()],
        "",
    )
    .replace(
        "[registries.\"ghcr.io\"]\n",
        "[registries.\"ghcr.io\"]\ntimeout = \"4s\"\nstall_timeout = \"1s\"\n",
    )
    .replace(
        "[registries.target]\n",
        "[registries.target]\ntimeout = \"4s\"\nstall_timeout = \"1s\"\n",
    );
    let w = Workdir::new(&cfg);
    let run = w.run(&["apply", "--auto-approve"]).await;
    assert_ne!(run.code, 0);
    let line = run
        .stderr
        .lines()
        .chain(run.stdout.lines())
        .find(|l| l.contains(&layer.to_string()) && l.contains("timed out"))
        .unwrap_or_else(|| panic!("no stall reported:\n{}\n{}", run.stdout, run.stderr))
        .to_string();
    assert!(line.contains("get blob"), "{line}");
    assert!(line.contains("`ghcr.io`"), "{line}");
    assert!(!line.contains("upload"), "{line}");
    assert!(
        client_tags_empty(&target, "quarantine/stall/big").await,
        "nothing tagged"
    );
}

async fn client_tags_empty(reg: &TestRegistry, repo: &str) -> bool {
    RawClient::new(&reg.url(), None).tags(repo).await.is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_password_is_reported_as_rejected() {
    let upstream = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let target = TestRegistry::start(Auth::Basic {
        user: "ci",
        pass: "right-password",
    })
    .await;
    let cfg = config(&upstream.url(), &target.url(), &sources(&images[..1]), "");
    let cfg = cfg.replacen(
        &format!("endpoint = \"{}\"\nauth = \"anonymous\"", target.url()),
        &format!(
            "endpoint = \"{}\"\nauth = \"basic\"\nusername = \"ci\"\npassword_env = \"AIRLOCK_TEST_PW\"",
            target.url()
        ),
        1,
    );
    let w = Workdir::new(&cfg);
    let run = w
        .run_env(&["plan"], &[("AIRLOCK_TEST_PW", "wrong-password")])
        .await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("rejected the credentials"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("provide credentials"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-password"), "{}", run.stderr);
}

/// Images `app:1`…`app:n` in one upstream layout repository (one index.json for all).
fn layout_images(dir: &std::path::Path, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let img = ImageBuilder::new(&format!("many/app-{i}")).build();
            write_oci_layout(&dir.join("team/app"), &i.to_string(), &img);
            format!("up.example/team/app:{i}")
        })
        .collect()
}

fn layout_config(up: &std::path::Path, target: &std::path::Path, images: &[String]) -> String {
    crate::support::config::Config::new("local")
        .registry("up.example", &format!("layout = \"{}\"", up.display()))
        .registry("local", &format!("layout = \"{}\"", target.display()))
        .images(images)
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_applies_on_one_layout_keep_every_tag() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("upstream");
    let target = dir.path().join("target");
    let all = layout_images(&up, 8);
    // Overlapping halves: both write the same index.json files at once.
    let a = Workdir::new(&layout_config(&up, &target, &all[..5]));
    let b = Workdir::new(&layout_config(&up, &target, &all[3..]));
    let (ra, rb) = tokio::join!(
        a.run(&["apply", "--auto-approve"]),
        b.run(&["apply", "--auto-approve"])
    );
    ra.expect(0);
    rb.expect(0);
    let local = Registry::from_spec(&RegistrySpec {
        key: "local".into(),
        endpoint: Endpoint::Layout(target.clone()),
        auth: AuthSpec::Anonymous,
        transfer: Transfer::Stream,
        max_concurrency: 4,
        timeouts: Timeouts::default(),
        arm: None,
    })
    .unwrap();
    let want: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
    for area in ["quarantine", "live"] {
        let tags: Vec<String> = local
            .list_tags(&format!("{area}/team/app"))
            .await
            .unwrap()
            .into_iter()
            .filter(|t| !t.starts_with("sha256-"))
            .collect();
        assert_eq!(tags, want, "{area}");
    }
    let union = Workdir::new(&layout_config(&up, &target, &all));
    union.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    let audit = union
        .run(&["audit", "--format", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(audit["violations"], 0, "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_applies_against_one_registry_both_converge() {
    let upstream = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    for round in 0..3 {
        let target = TestRegistry::start(Auth::None).await;
        let cfg = config(&upstream.url(), &target.url(), &sources(&images), "");
        let a = Workdir::new(&cfg);
        let b = Workdir::new(&cfg);
        let (ra, rb) = tokio::join!(
            a.run(&["apply", "--auto-approve"]),
            b.run(&["apply", "--auto-approve"])
        );
        assert_eq!(ra.code, 0, "round {round} A:\n{}\n{}", ra.stdout, ra.stderr);
        assert_eq!(rb.code, 0, "round {round} B:\n{}\n{}", rb.stdout, rb.stderr);
        a.run(&["plan", "--detailed-exitcode"]).await.expect(0);
        let audit = a.run(&["audit", "--format", "json"]).await.expect(0).json();
        assert_eq!(audit["violations"], 0, "round {round}: {audit}");
    }
}
