//! Smoke tests of the harness itself, against real processes: registries start, stop and
//! restart with their data; content pushed by skopeo or the raw client reads back byte-exact
//! through the other; Basic and token authentication are enforced; the proxy injects faults
//! and counts requests.

use std::io::Read;

use airlock::model::{Digest, media};
use reqwest::{StatusCode, header};

use crate::support::client::{RawClient, push_raw};
use crate::support::images::{
    Content, Format, ImageBuilder, TestContent, TestIndex, random_layer_blob, walkthrough_images,
    write_oci_layout, write_random_layer,
};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::skopeo::{
    skopeo_copy_to, skopeo_digest, skopeo_push, skopeo_raw, skopeo_raw_as,
};
use crate::support::token::TokenServer;
use crate::support::{http_client, missing_tools};

#[test]
fn missing_tools_are_named_with_the_install_command() {
    let msg = missing_tools(Some("/nonexistent-dir".into())).expect_err("nothing is on that PATH");
    assert!(
        msg.contains("docker-registry") && msg.contains("skopeo"),
        "{msg}"
    );
    assert!(
        msg.contains("apt-get install -y docker-registry skopeo"),
        "{msg}"
    );
    missing_tools(std::env::var_os("PATH")).expect("the tools are installed on this machine");
}

#[tokio::test]
async fn registry_starts_answers_and_stops() {
    let started = std::time::Instant::now();
    let mut reg = TestRegistry::start(Auth::None).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(reg.host().starts_with("127.0.0.1:"));
    let resp = http_client()
        .get(format!("{}/v2/", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(reg.is_running());
    assert!(reg.data_dir().is_dir());
    assert!(
        reg.count_requests("GET", "/v2/") >= 2,
        "probe and our GET are logged"
    );

    reg.stop();
    assert!(!reg.is_running());
    assert!(
        http_client()
            .get(format!("{}/v2/", reg.url()))
            .send()
            .await
            .is_err(),
        "nothing answers after stop"
    );
}

#[tokio::test]
async fn an_index_pushed_by_skopeo_reads_back_byte_exact() {
    let reg = TestRegistry::start(Auth::None).await;
    for (format, repo) in [(Format::Oci, "oci/app"), (Format::Docker, "docker/app")] {
        let index = TestIndex::two_platform(repo, format);
        assert_eq!(index.index.media_type, format.index_type());
        if format == Format::Oci {
            let layout = tempfile::tempdir().unwrap();
            write_oci_layout(layout.path(), "v1", &index);
            skopeo_copy_to(layout.path(), "v1", &reg.host(), &format!("{repo}:v1")).await;
        } else {
            skopeo_push(&index, &reg.host(), &format!("{repo}:v1"), None).await;
        }

        let image = format!("{repo}:v1");
        assert_eq!(skopeo_digest(&reg.host(), &image).await, index.index.digest);
        assert_eq!(skopeo_raw(&reg.host(), &image).await, index.index.bytes);
        for child in &index.images {
            let by_digest = format!("{repo}@{}", child.manifest.digest);
            assert_eq!(
                skopeo_raw(&reg.host(), &by_digest).await,
                child.manifest.bytes
            );
        }
        let raw = RawClient::new(&reg.url(), None);
        let got = raw.get_manifest(repo, "v1").await.unwrap();
        assert_eq!(got, index.index);
        let arm = &index.images[1];
        assert_eq!(arm.config_json()["architecture"], "arm64");
        assert_eq!(
            raw.get_blob(repo, &arm.config.0).await.to_vec(),
            arm.config.1
        );
    }
}

#[tokio::test]
async fn an_image_pushed_raw_reads_back_identical_through_skopeo() {
    let reg = TestRegistry::start(Auth::None).await;
    let img = ImageBuilder::new("raw/app")
        .layer_files(&[("etc/app.conf", b"x=1\n"), ("bin/app", b"#!/bin/sh\n")])
        .layer_bytes(b"second layer".to_vec())
        .user("1000")
        .label(
            "org.opencontainers.image.source",
            "https://example.test/app",
        )
        .docker()
        .build();
    push_raw(&reg.url(), "raw/app", "1.0", &img, None).await;

    assert_eq!(
        skopeo_digest(&reg.host(), "raw/app:1.0").await,
        img.manifest.digest
    );
    assert_eq!(
        skopeo_raw(&reg.host(), "raw/app:1.0").await,
        img.manifest.bytes
    );
    assert_eq!(img.manifest.media_type, media::DOCKER_MANIFEST);
    assert_eq!(
        reg.count_requests("PUT", "/blobs/uploads/"),
        3,
        "config and two layers"
    );
    assert_eq!(reg.count_requests("PUT", "/manifests/1.0"), 1);

    // Pushing again uploads nothing: every blob is already there.
    push_raw(&reg.url(), "raw/app", "1.0", &img, None).await;
    assert_eq!(reg.count_requests("PUT", "/blobs/uploads/"), 3);

    // The layers are real gzip tars whose diff_ids are in the config.
    let cfg = img.config_json();
    assert_eq!(cfg["config"]["User"], "1000");
    for (layer, diff_id) in img
        .layers
        .iter()
        .zip(cfg["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&layer.bytes()[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Digest::of(&tar).to_string(), diff_id.as_str().unwrap());
        assert!(tar::Archive::new(&tar[..]).entries().unwrap().count() >= 2);
    }
}

#[test]
fn images_are_deterministic() {
    let build = || {
        ImageBuilder::new("det/app")
            .platform("linux/arm64")
            .label("a", "b")
            .build()
    };
    assert_eq!(build().manifest, build().manifest);
    let other = ImageBuilder::new("det/app").build();
    assert_ne!(build().manifest.digest, other.manifest.digest);
    let w = walkthrough_images();
    assert_eq!(w.len(), 6);
    let mut tops: Vec<Digest> = w.iter().map(|i| i.content.top().digest.clone()).collect();
    tops.sort();
    tops.dedup();
    assert_eq!(tops.len(), 6, "six distinct images");
    for i in &w {
        let size: u64 = i.content.blobs().iter().map(|b| b.size).sum();
        assert!(size < 16 * 1024, "{} is small: {size}", i.path);
    }
    assert!(matches!(&w[1].content, TestContent::Index(ix) if ix.images.len() == 2));
}

#[tokio::test]
async fn walkthrough_images_push_and_read_back() {
    let reg = TestRegistry::start(Auth::None).await;
    for w in walkthrough_images() {
        push_raw(&reg.url(), w.path, w.tag, &w.content, None).await;
    }
    for w in walkthrough_images() {
        let d = skopeo_digest(&reg.host(), &w.path_tag()).await;
        assert_eq!(d, w.content.top().digest, "{}", w.path_tag());
    }
}

#[tokio::test]
async fn random_layers_are_deterministic_incompressible_and_stream_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (a, size) = write_random_layer(&dir.path().join("a"), 3 << 20, 7);
    let (b, _) = write_random_layer(&dir.path().join("b"), 3 << 20, 7);
    let (c, _) = write_random_layer(&dir.path().join("c"), 3 << 20, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(size, std::fs::metadata(dir.path().join("a")).unwrap().len());
    assert_eq!(Digest::of(&std::fs::read(dir.path().join("a")).unwrap()), a);
    let data = std::fs::read(dir.path().join("c")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &data[..1 << 20]).unwrap();
    let compressed = gz.finish().unwrap().len();
    assert!(
        compressed > (1 << 20) * 99 / 100,
        "incompressible: {compressed}"
    );

    let reg = TestRegistry::start(Auth::None).await;
    let (blob, diff_id) = random_layer_blob(&dir.path().join("big"), 5 << 20, 1, Format::Oci);
    let img = ImageBuilder::new("big/app")
        .layer_blob(blob.clone(), diff_id)
        .build();
    push_raw(&reg.url(), "big/app", "1", &img, None).await;
    assert_eq!(
        skopeo_digest(&reg.host(), "big/app:1").await,
        img.manifest.digest
    );
    let got = RawClient::new(&reg.url(), None)
        .get_blob("big/app", &blob.digest)
        .await;
    assert_eq!(Digest::of(&got), blob.digest);
}

#[tokio::test]
async fn basic_auth_rejects_anonymous_and_accepts_the_user() {
    let reg = TestRegistry::start(Auth::Basic {
        user: "ci",
        pass: "s3cret",
    })
    .await;
    let http = http_client();
    let anon = http.get(format!("{}/v2/", reg.url())).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anon.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    for (password, status) in [
        ("nope", StatusCode::UNAUTHORIZED),
        ("s3cret", StatusCode::OK),
    ] {
        let r = http
            .get(format!("{}/v2/", reg.url()))
            .basic_auth("ci", Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "password {password}");
    }

    let img = ImageBuilder::new("private/app").build();
    push_raw(&reg.url(), "private/app", "1", &img, Some(("ci", "s3cret"))).await;
    let raw = skopeo_raw_as(&reg.host(), "private/app:1", Some(("ci", "s3cret"))).await;
    assert_eq!(raw, img.manifest.bytes);
}

/// A token-protected request's status and registry error codes.
async fn with_token(method: reqwest::Method, url: &str, token: &str) -> (StatusCode, String) {
    let resp = http_client()
        .request(method, url)
        .bearer_auth(token)
        .header(header::ACCEPT, media::MANIFEST_ACCEPT)
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn token_auth_enforces_the_granted_actions() {
    let ts = TokenServer::start().await;
    ts.add_user("puller", "p");
    ts.add_user("pusher", "q");
    ts.allow(Some("puller"), "team/", &["pull"]);
    ts.allow(Some("pusher"), "team/", &["pull", "push"]);
    let reg = TestRegistry::start(Auth::Token(&ts)).await;
    let challenge = http_client()
        .get(format!("{}/v2/", reg.url()))
        .send()
        .await
        .unwrap();
    let www = challenge.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        www.contains(&ts.realm()) && www.contains(ts.service()),
        "{www}"
    );

    // The pusher seeds through the challenge → GET /token (Basic) → Bearer flow.
    let img = ImageBuilder::new("team/app").build();
    push_raw(&reg.url(), "team/app", "1", &img, Some(("pusher", "q"))).await;
    let pusher_reqs: Vec<_> = ts
        .requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some("pusher"))
        .collect();
    assert!(!pusher_reqs.is_empty());
    // Distribution lists a challenge's actions in map order: pull,push or push,pull.
    assert!(
        pusher_reqs
            .iter()
            .any(|r| r.granted == ["repository:team/app:pull,push"]
                || r.granted == ["repository:team/app:push,pull"]),
        "{pusher_reqs:?}"
    );

    // Pull-only: asking for pull,push is granted pull alone; pulling works, pushing does not.
    let token = ts.issue(Some("puller"), &["repository:team/app:pull,push"]);
    let manifest = format!("{}/v2/team/app/manifests/1", reg.url());
    assert_eq!(
        with_token(reqwest::Method::GET, &manifest, &token).await.0,
        StatusCode::OK
    );
    let upload = format!("{}/v2/team/app/blobs/uploads/", reg.url());
    let (status, body) = with_token(reqwest::Method::POST, &upload, &token).await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "{status}"
    );
    assert!(
        body.contains("DENIED") || body.contains("UNAUTHORIZED"),
        "{body}"
    );

    // Pull+push may push; outside its prefix it may do nothing.
    let token = ts.issue(Some("pusher"), &["repository:team/app:pull,push"]);
    assert_eq!(
        with_token(reqwest::Method::POST, &upload, &token).await.0,
        StatusCode::ACCEPTED
    );
    let token = ts.issue(Some("pusher"), &["repository:other/app:pull"]);
    let other = format!("{}/v2/other/app/manifests/1", reg.url());
    assert_eq!(
        with_token(reqwest::Method::GET, &other, &token).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The GET endpoint: wrong password 401, anonymous gets a token with no access.
    let http = http_client();
    let bad = http
        .get(ts.realm())
        .query(&[
            ("service", ts.service()),
            ("scope", "repository:team/app:pull"),
        ])
        .basic_auth("puller", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let anon: serde_json::Value = http
        .get(ts.realm())
        .query(&[
            ("service", ts.service()),
            ("scope", "repository:team/app:pull"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = anon["token"].as_str().unwrap();
    assert_eq!(
        with_token(reqwest::Method::GET, &manifest, token).await.0,
        StatusCode::UNAUTHORIZED
    );

    // OAuth2: password grant with a refresh token, then the refresh_token grant.
    let form = |extra: &[(&str, &str)]| {
        let mut f = vec![
            ("service", ts.service()),
            ("scope", "repository:team/app:pull"),
            ("client_id", "airlock-test"),
        ];
        f.extend_from_slice(extra);
        f.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let first: serde_json::Value = http
        .post(ts.realm())
        .form(&form(&[
            ("grant_type", "password"),
            ("username", "puller"),
            ("password", "p"),
            ("access_type", "offline"),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let second = http
        .post(ts.realm())
        .form(&form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let second: serde_json::Value = second.json().await.unwrap();
    let token = second["access_token"].as_str().unwrap();
    assert_eq!(
        with_token(reqwest::Method::GET, &manifest, token).await.0,
        StatusCode::OK
    );
    let bogus = http
        .post(ts.realm())
        .form(&form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "nope"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);
    assert!(ts.count() >= 6);
}

#[tokio::test]
async fn the_proxy_injects_faults_and_counts_requests() {
    let reg = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::start(&reg.url()).await;
    let img = ImageBuilder::new("proxied/app").build();
    // Pushing through the proxy works: upload Locations are rewritten to the proxy.
    push_raw(&proxy.url(), "proxied/app", "1", &img, None).await;
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 2);
    assert_eq!(reg.count_requests("PUT", "/blobs/uploads/"), 2);

    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/manifests/"),
        times: 1,
        kind: FaultKind::Status(429, Some(1)),
    });
    let layer = img.layers[0].clone();
    let blob_path = format!("/blobs/{}", layer.digest);
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &blob_path),
        times: 1,
        kind: FaultKind::Status(503, None),
    });
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &blob_path).after(1),
        times: 1,
        kind: FaultKind::FlipByte(10),
    });
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &blob_path).after(2),
        times: 1,
        kind: FaultKind::Truncate(5),
    });
    proxy.add_fault(Fault {
        when: Match::method_path("GET", &blob_path).after(3),
        times: 1,
        kind: FaultKind::Reset,
    });

    let http = http_client();
    let manifest_url = format!("{}/v2/proxied/app/manifests/1", proxy.url());
    let get_manifest = || {
        http.get(&manifest_url)
            .header(header::ACCEPT, media::MANIFEST_ACCEPT)
            .send()
    };
    let throttled = get_manifest().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()[header::RETRY_AFTER], "1");
    assert!(throttled.text().await.unwrap().contains("TOOMANYREQUESTS"));
    let ok = get_manifest().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.bytes().await.unwrap().to_vec(), img.manifest.bytes);

    let blob_url = format!("{}/v2/proxied/app{blob_path}", proxy.url());
    let get_blob = || http.get(&blob_url).send();
    let r = get_blob().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let flipped = get_blob().await.unwrap().bytes().await.unwrap();
    assert_eq!(flipped.len() as u64, layer.size);
    assert_ne!(Digest::of(&flipped), layer.digest, "one byte flipped");
    let truncated = get_blob().await.unwrap().bytes().await;
    assert!(truncated.is_err(), "truncated body is an error");
    assert!(get_blob().await.is_err(), "connection reset");
    let clean = get_blob().await.unwrap().bytes().await.unwrap();
    assert_eq!(Digest::of(&clean), layer.digest);

    assert_eq!(proxy.count("GET", "/manifests/"), 2);
    assert_eq!(proxy.count("GET", &blob_path), 5);
    assert_eq!(proxy.faults_injected(), 5);
    // Only forwarded requests reach the registry.
    assert_eq!(reg.count_requests("GET", "/manifests/1"), 1);
}

#[tokio::test]
async fn restart_keeps_port_data_and_open_uploads() {
    let mut reg = TestRegistry::start(Auth::None).await;
    let img = ImageBuilder::new("durable/app").build();
    push_raw(&reg.url(), "durable/app", "1", &img, None).await;
    let url = reg.url();
    let http = http_client();
    let started = http
        .post(format!("{url}/v2/durable/app/blobs/uploads/"))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();

    reg.restart().await;
    assert_eq!(reg.url(), url);
    assert_eq!(
        skopeo_digest(&reg.host(), "durable/app:1").await,
        img.manifest.digest
    );
    let data = b"finished after a restart".to_vec();
    let done = http
        .put(format!("{location}&digest={}", Digest::of(&data)))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::CREATED,
        "upload state survives the restart"
    );
    assert!(
        reg.count_requests("GET", "/v2/") >= 2,
        "the log spans both runs"
    );
}
