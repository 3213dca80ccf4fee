//! The registry client (`airlock::registry`) and its callers against real Docker Distribution
//! registries: the library API driven directly (push, pull, tags, mounts, deletes, chunked
//! uploads, referrers, Basic and token authentication), then `airlock plan` / `apply` with
//! htpasswd Basic auth, token auth from a docker config.json, a credential helper, transient
//! faults and a corrupted manifest under the fault proxy, the request count of a no-op plan
//! of 200 images, and the OCI-layout backend checked with skopeo.

use std::time::{Duration, Instant};

use airlock::config::{AuthSpec, Endpoint, RegistrySpec, Transfer};
use airlock::model::{Digest, RawManifest, media};
use airlock::registry::{BlobStream, ClientOptions, Registry, RegistryError};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use crate::support::airlock::{
    ProxiedWalkthrough, Run, Workdir, config, digest_of, seed_walkthrough, sources,
};
use crate::support::client::RawClient;
use crate::support::images::{Content, Format, ImageBuilder, TestIndex, write_oci_layout};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match, ProxyRequest};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::skopeo::{skopeo, skopeo_copy, skopeo_digest, skopeo_digest_as, skopeo_raw};
use crate::support::token::TokenServer;

// ---------------------------------------------------------------------------------------
// The library API against real registries.
// ---------------------------------------------------------------------------------------

fn spec(url: &str, auth: AuthSpec, max_concurrency: usize) -> RegistrySpec {
    RegistrySpec {
        key: "local".into(),
        endpoint: Endpoint::Url(url.to_string()),
        auth,
        transfer: Transfer::Stream,
        max_concurrency,
        timeouts: Default::default(),
        arm: None,
    }
}

/// The in-process client reads `password_env` from this process's environment, and tests
/// must not `set_var` (other tests run in parallel threads). So the password is the value
/// of a variable every test process has: HOME.
const PASSWORD_ENV: &str = "HOME";

fn env_password() -> String {
    std::env::var(PASSWORD_ENV)
        .expect("HOME must be set: the in-process auth tests use its value as the password")
}

fn basic(user: &str, password_env: &str) -> AuthSpec {
    AuthSpec::Basic {
        username: user.into(),
        password_env: password_env.into(),
    }
}

fn chunks(b: &[u8], n: usize) -> BlobStream {
    let parts: Vec<Result<Bytes, RegistryError>> =
        b.chunks(n).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(parts).boxed()
}

fn image(config: &Digest, config_size: usize, layer: &Digest, layer_size: usize) -> RawManifest {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_size}],
    });
    // Pretty-printed: the client must keep the exact bytes, never re-serialise.
    RawManifest::new(serde_json::to_vec_pretty(&v).unwrap(), None).unwrap()
}

#[tokio::test]
async fn client_pushes_pulls_tags_mounts_and_deletes() {
    let reg = TestRegistry::start(Auth::None).await;
    let r = Registry::from_spec(&spec(&reg.url(), AuthSpec::Anonymous, 1)).unwrap();
    let repo = "quarantine/library/busybox";

    let config_bytes = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let config = r.put_blob_bytes(repo, config_bytes.clone()).await.unwrap();
    let layer_bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let layer = Digest::of(&layer_bytes);
    r.put_blob(repo, &layer, 200_000, chunks(&layer_bytes, 7000))
        .await
        .unwrap();
    assert_eq!(r.blob_exists(repo, &layer).await.unwrap(), Some(200_000));

    let m = image(&config, config_bytes.len(), &layer, layer_bytes.len());
    assert!(
        !r.put_manifest(repo, "1.0", &m)
            .await
            .unwrap()
            .subject_indexed
    );
    let head = r.head_manifest(repo, "1.0").await.unwrap().unwrap();
    assert_eq!(head.digest, m.digest);
    assert_eq!(head.media_type, media::OCI_MANIFEST);
    assert_eq!(head.size, m.bytes.len() as u64);
    let got = r.get_manifest(repo, &m.digest.to_string()).await.unwrap();
    assert_eq!(got.as_ref(), Some(&m), "byte-exact manifest");
    assert!(r.get_manifest(repo, "nope").await.unwrap().is_none());
    assert!(r.head_manifest("no/such", "1").await.unwrap().is_none());
    r.put_manifest(repo, "0.9", &m).await.unwrap();
    assert_eq!(r.list_tags(repo).await.unwrap(), vec!["0.9", "1.0"]);
    assert!(r.list_tags("no/such").await.unwrap().is_empty());
    // skopeo, an independent client, reads the same bytes.
    assert_eq!(
        skopeo_digest(&reg.host(), &format!("{repo}:1.0")).await,
        m.digest
    );

    // Stream a copy into another repository of the same registry holding one permit.
    let blob = r.get_blob(repo, &layer).await.unwrap();
    assert_eq!(blob.size, 200_000);
    tokio::time::timeout(
        Duration::from_secs(20),
        r.put_blob("other/copy", &layer, blob.size, blob.stream),
    )
    .await
    .expect("no deadlock with max_concurrency = 1")
    .unwrap();
    let copied = r
        .get_blob_bytes("other/copy", &layer, 1 << 20)
        .await
        .unwrap();
    assert_eq!(copied, layer_bytes);
    assert!(
        r.get_blob_bytes(repo, &layer, 10).await.is_err(),
        "over max"
    );

    // Mounts: 201 for known blobs, declined (202, session cancelled) for an unknown one.
    let live = "live/library/busybox";
    assert!(r.mount_blob(live, &layer, repo).await.unwrap());
    assert!(r.mount_blob(live, &config, repo).await.unwrap());
    assert!(
        !r.mount_blob(live, &Digest::of(b"none"), repo)
            .await
            .unwrap()
    );
    assert_eq!(reg.count_requests("DELETE", "/blobs/uploads/"), 1);
    r.put_manifest(live, "1.0", &m).await.unwrap();
    assert_eq!(
        r.catalog().await.unwrap(),
        vec![live, "other/copy", repo],
        "sorted catalog"
    );

    // A wrong digest never lands, and the error says so.
    let wrong = Digest::of(b"something else");
    let e = r
        .put_blob(repo, &wrong, 11, chunks(b"hello world", 4))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert_eq!(r.blob_exists(repo, &wrong).await.unwrap(), None);
    let e = r
        .put_blob(repo, &wrong, 20, chunks(b"hello world", 4))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Truncated { .. }), "{e}");

    // Delete by digest removes the tags; deleting again is fine.
    r.delete_manifest(repo, &m.digest).await.unwrap();
    assert!(r.head_manifest(repo, "1.0").await.unwrap().is_none());
    r.delete_manifest(repo, &m.digest).await.unwrap();
    let e = r.get_manifest(repo, "bad:tag").await.unwrap_err();
    assert!(matches!(e, RegistryError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("local"), "{e}");
}

#[tokio::test]
async fn client_uploads_in_chunks_and_keeps_referrers_in_the_tag_schema() {
    let reg = TestRegistry::start(Auth::None).await;
    let opts = ClientOptions {
        chunk_threshold: 1000,
        chunk_size: 3000,
        ..ClientOptions::default()
    };
    let r = Registry::from_spec_with(&spec(&reg.url(), AuthSpec::Anonymous, 4), &opts).unwrap();
    let repo = "q/app";
    let layer_bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 13) as u8).collect();
    let layer = Digest::of(&layer_bytes);
    r.put_blob(repo, &layer, 10_000, chunks(&layer_bytes, 999))
        .await
        .unwrap();
    // 999-byte stream pieces gathered into PATCHes of at least 3 000 bytes: three of them.
    assert_eq!(reg.count_requests("PATCH", "/v2/q/app/blobs/uploads/"), 3);
    let back: Vec<Bytes> = r
        .get_blob(repo, &layer)
        .await
        .unwrap()
        .stream
        .try_collect()
        .await
        .unwrap();
    assert_eq!(back.concat(), layer_bytes);
    let e = r
        .put_blob(repo, &Digest::of(b"x"), 10_000, chunks(&layer_bytes, 999))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");

    let config = r
        .put_blob_bytes(repo, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let child = image(&config, 2, &layer, 10_000);
    r.put_manifest(repo, &child.digest.to_string(), &child)
        .await
        .unwrap();
    let idx = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": child.digest.to_string(), "size": child.bytes.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}]
    });
    let index = RawManifest::new(serde_json::to_vec(&idx).unwrap(), None).unwrap();
    r.put_manifest(repo, "v1", &index).await.unwrap();
    let got = r.get_manifest(repo, "v1").await.unwrap().unwrap();
    assert_eq!(got.digest, index.digest);
    assert!(got.is_index());

    let verdict = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::VERDICT_ARTIFACT,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2}],
        "subject": {"mediaType": media::OCI_INDEX, "digest": index.digest.to_string(), "size": index.bytes.len()},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    });
    let verdict = RawManifest::new(serde_json::to_vec(&verdict).unwrap(), None).unwrap();
    r.push_referrer(repo, &verdict, &index.digest)
        .await
        .unwrap();
    r.push_referrer(repo, &verdict, &index.digest)
        .await
        .unwrap();
    let refs = r
        .referrers(repo, &index.digest, Some(media::VERDICT_ARTIFACT))
        .await
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, verdict.digest);
    assert!(
        r.referrers(repo, &index.digest, Some("other/type"))
            .await
            .unwrap()
            .is_empty()
    );
    // Distribution 2.8 has no referrers API: the tag-schema index holds the verdict, and
    // skopeo reads it as an ordinary tag.
    let tag = index.digest.referrers_tag();
    let schema: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&reg.host(), &format!("{repo}:{tag}")).await).unwrap();
    assert_eq!(schema["manifests"][0]["digest"], verdict.digest.to_string());
    // The API was probed once; the answer (404, no registry error code) is remembered.
    assert_eq!(reg.count_requests("GET", "/referrers/"), 1);
}

#[tokio::test]
async fn client_basic_auth_with_htpasswd() {
    let password = env_password();
    let reg = TestRegistry::start(Auth::Basic {
        user: "bob",
        pass: &password,
    })
    .await;

    let anon = Registry::from_spec(&spec(&reg.url(), AuthSpec::Anonymous, 2)).unwrap();
    let e = anon.list_tags("x").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("password_env"), "{e}");

    let wrong = Registry::from_spec(&spec(&reg.url(), basic("bob", "PATH"), 2)).unwrap();
    let e = wrong.list_tags("x").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(
        !e.to_string().contains(&std::env::var("PATH").unwrap()),
        "{e}"
    );

    let unset = basic("bob", "AIRLOCK_TEST_SURELY_UNSET_PASSWORD");
    let e = Registry::from_spec(&spec(&reg.url(), unset, 2))
        .unwrap()
        .list_tags("x")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("AIRLOCK_TEST_SURELY_UNSET_PASSWORD"),
        "{e}"
    );

    let right = Registry::from_spec(&spec(&reg.url(), basic("bob", PASSWORD_ENV), 2)).unwrap();
    assert!(right.list_tags("x").await.unwrap().is_empty());
    let d = right
        .put_blob_bytes("x", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(right.blob_exists("x", &d).await.unwrap(), Some(2));
    let dbg = format!("{right:?}");
    assert!(!dbg.contains(&password), "{dbg}");
}

#[tokio::test]
async fn client_token_auth_scopes_and_mounts() {
    let ts = TokenServer::start().await;
    let password = env_password();
    ts.add_user("alice", &password);
    ts.allow(Some("alice"), "quarantine/", &["pull", "push"]);
    ts.allow(Some("alice"), "live/", &["pull", "push"]);
    ts.allow(None, "public/", &["pull"]);
    let reg = TestRegistry::start(Auth::Token(&ts)).await;
    let alice = Registry::from_spec(&spec(&reg.url(), basic("alice", PASSWORD_ENV), 4)).unwrap();

    // Push under quarantine, mount into live (a token with pull on the source repository
    // too), read back; the same scope set reuses its cached token.
    let img = ImageBuilder::new("token-auth").build();
    let repo = "quarantine/app";
    for b in img.blobs() {
        alice.put_blob_bytes(repo, b.bytes()).await.unwrap();
    }
    alice.put_manifest(repo, "1", &img.manifest).await.unwrap();
    for b in img.blobs() {
        assert!(alice.mount_blob("live/app", &b.digest, repo).await.unwrap());
    }
    alice
        .put_manifest("live/app", "1", &img.manifest)
        .await
        .unwrap();
    assert_eq!(
        alice
            .head_manifest("live/app", "1")
            .await
            .unwrap()
            .unwrap()
            .digest,
        img.manifest.digest
    );
    let requests = ts.requests();
    assert!(requests.iter().all(|t| t.status == 200), "{requests:?}");
    assert!(
        requests.iter().all(|t| t.user.as_deref() == Some("alice")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|t| t.scopes.iter().any(|s| s.contains("live/app"))
                && t.scopes
                    .iter()
                    .any(|s| s == "repository:quarantine/app:pull")),
        "a mount asks for pull on its source: {requests:?}"
    );
    // A scope set asked for before reuses its cached token (one token per scope set).
    alice.head_manifest(repo, "1").await.unwrap();
    let before = ts.count();
    for _ in 0..3 {
        alice.head_manifest("live/app", "1").await.unwrap();
        alice.head_manifest(repo, "1").await.unwrap();
    }
    assert_eq!(ts.count(), before, "cached tokens are reused");

    // Anonymous: pull where everyone may; elsewhere an unauthorized error with the hint.
    let anon = Registry::from_spec(&spec(&reg.url(), AuthSpec::Anonymous, 2)).unwrap();
    assert!(
        anon.head_manifest("public/none", "1")
            .await
            .unwrap()
            .is_none()
    );
    let e = anon.head_manifest(repo, "1").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("docker login"), "{e}");
    // Outside alice's grants: the registry refuses the token she got.
    let e = alice
        .put_blob_bytes("other/x", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------
// `airlock plan` / `apply` with authentication.
// ---------------------------------------------------------------------------------------

/// A configuration whose upstream is anonymous (`ghcr.io` and `docker.io` mirrored to it)
/// and whose quarantine and live are in `target`, described by `target_entry` (the body of
/// `[registries.target]`).
fn config_with_target(upstream: &str, target_entry: &str, images: &[String]) -> String {
    crate::support::config::Config::new("target")
        .mirror(upstream)
        .registry("target", target_entry)
        .images(images)
        .build()
}

/// The plan's actions of one kind.
fn count_actions(run: &Run, kind: &str) -> usize {
    run.json()["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["kind"] == kind)
        .count()
}

/// A plan that imports, scans and promotes every one of `n` images.
fn assert_full_plan(run: &Run, n: usize) {
    for kind in ["import", "scan", "promote"] {
        assert_eq!(count_actions(run, kind), n, "{kind}:\n{}", run.stdout);
    }
}

/// A docker config dir with `config.json` holding `json`.
fn docker_config_dir(json: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    dir
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A missing credential: exit 1, `unauthorized`, the registry named, how to provide them.
fn assert_unauthorized(run: Run) {
    let run = run.expect(1);
    let err = &run.stderr;
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains("`target`"), "names the registry: {err}");
    assert!(
        err.contains("password_env") && err.contains("docker login"),
        "says how to provide credentials: {err}"
    );
    assert!(run.stdout.is_empty(), "no plan printed: {}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_with_basic_auth_and_without_credentials() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::Basic {
        user: "ci-bot",
        pass: "s3cret-basic",
    })
    .await;
    let images = seed_walkthrough(&upstream).await;
    let basic_entry = format!(
        "endpoint = \"{}\"\nauth = \"basic\"\nusername = \"ci-bot\"\npassword_env = \"TARGET_PASSWORD\"",
        target.url()
    );
    let w = Workdir::new(&config_with_target(
        &upstream.url(),
        &basic_entry,
        &sources(&images),
    ));
    let env = [("TARGET_PASSWORD", "s3cret-basic")];
    let plan = w
        .run_env(&["plan", "--format", "json"], &env)
        .await
        .expect(0);
    assert_full_plan(&plan, images.len());
    assert!(!plan.stdout.contains("s3cret") && !plan.stderr.contains("s3cret"));
    let heads = target.requests();
    let heads: Vec<_> = heads
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.starts_with("/v2/quarantine/"))
        .collect();
    assert!(
        heads.iter().filter(|r| r.status == 404).count() == images.len(),
        "the plan read quarantine with credentials: {heads:?}"
    );

    // The password variable is missing: a credentials error naming it.
    let run = w.run(&["plan"]).await.expect(1);
    assert!(run.stderr.contains("TARGET_PASSWORD"), "{}", run.stderr);
    // A wrong password: unauthorized, said to be rejected (not missing), naming where the
    // password came from, the password not echoed.
    let run = w
        .run_env(&["plan"], &[("TARGET_PASSWORD", "wrong-pw")])
        .await
        .expect(1);
    let err = &run.stderr;
    assert!(!err.contains("wrong-pw"), "{err}");
    assert!(
        err.contains("unauthorized") && err.contains("`target`"),
        "{err}"
    );
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(err.contains("$TARGET_PASSWORD"), "{err}");
    assert!(!err.contains("provide credentials"), "{err}");
    // No credentials at all (docker auth, no config.json entry).
    let docker_entry = format!("endpoint = \"{}\"\nauth = \"docker\"", target.url());
    w.set_config(&config_with_target(
        &upstream.url(),
        &docker_entry,
        &sources(&images),
    ));
    assert_unauthorized(w.run(&["plan"]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_apply_with_token_auth_from_docker_config() {
    let upstream = TestRegistry::start(Auth::None).await;
    let ts = TokenServer::start().await;
    ts.add_user("alice", "t0ken-pw");
    ts.allow(Some("alice"), "", &["pull", "push"]);
    let target = TestRegistry::start(Auth::Token(&ts)).await;
    let images = seed_walkthrough(&upstream).await;
    let entry = format!("endpoint = \"{}\"\nauth = \"docker\"", target.url());
    let w = Workdir::new(&config_with_target(
        &upstream.url(),
        &entry,
        &sources(&images[..2]),
    ));
    let docker = docker_config_dir(json!({
        "auths": {target.host(): {"auth": b64("alice:t0ken-pw")}}
    }));
    let env = [("DOCKER_CONFIG", docker.path().to_str().unwrap())];

    let plan = w
        .run_env(&["plan", "--format", "json"], &env)
        .await
        .expect(0);
    assert_full_plan(&plan, 2);
    let tokens = ts.requests();
    assert!(!tokens.is_empty());
    assert!(
        tokens
            .iter()
            .all(|t| t.status == 200 && t.user.as_deref() == Some("alice")),
        "{tokens:?}"
    );
    // Apply through the token flow too: pushes, mounts from quarantine into live.
    w.run_env(&["apply", "--auto-approve"], &env)
        .await
        .expect(0);
    w.run_env(&["plan", "--detailed-exitcode"], &env)
        .await
        .expect(0);
    let creds = Some(("alice", "t0ken-pw"));
    for img in &images[..2] {
        let live =
            skopeo_digest_as(&target.host(), &format!("live/{}", img.path_tag()), creds).await;
        assert_eq!(live, digest_of(img));
    }

    // Without the config.json entry: unauthorized, with the hint.
    assert_unauthorized(w.run(&["plan"]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_uses_a_docker_credential_helper() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::Basic {
        user: "helper-user",
        pass: "helper-pw",
    })
    .await;
    let images = seed_walkthrough(&upstream).await;
    let entry = format!("endpoint = \"{}\"\nauth = \"docker\"", target.url());
    let w = Workdir::new(&config_with_target(
        &upstream.url(),
        &entry,
        &sources(&images[..1]),
    ));

    // A credential helper on PATH: reads the host from stdin, logs the call, answers.
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls.log");
    let helper = bin.path().join("docker-credential-testhelper");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\necho \"$1 $host\" >> '{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"helper-user\",\"Secret\":\"helper-pw\"}}' \"$host\"\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = docker_config_dir(json!({"credHelpers": {target.host(): "testhelper"}}));
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("DOCKER_CONFIG", docker.path().to_str().unwrap()),
        ("PATH", path.as_str()),
    ];
    let plan = w
        .run_env(&["plan", "--format", "json"], &env)
        .await
        .expect(0);
    assert_full_plan(&plan, 1);
    let log = std::fs::read_to_string(&calls).expect("the helper was called");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec![format!("get {}", target.host())],
        "called once, with `get` and the host"
    );
    assert!(!plan.stdout.contains("helper-pw") && !plan.stderr.contains("helper-pw"));
}

// ---------------------------------------------------------------------------------------
// Faults between airlock and the upstream.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn plan_retries_throttling_and_unavailable_manifests() {
    let wt = ProxiedWalkthrough::start().await;
    let (images, proxy) = (&wt.images, &wt.proxy);
    proxy.add_fault(Fault {
        when: Match::method_path("HEAD", "/manifests/"),
        times: 2,
        kind: FaultKind::Status(429, Some(1)),
    });
    proxy.add_fault(Fault {
        when: Match::method_path("HEAD", "/manifests/"),
        times: 3,
        kind: FaultKind::Status(503, None),
    });
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/manifests/"),
        times: 3,
        kind: FaultKind::Status(503, None),
    });
    let w = wt.workdir(images);
    let started = Instant::now();
    let plan = w.run(&["plan", "--format", "json"]).await.expect(0);
    let took = started.elapsed();
    assert_full_plan(&plan, images.len());
    assert_eq!(proxy.faults_injected(), 8, "{:#?}", proxy.requests());
    // Retry-After: 1 was honoured: at least a second passed.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    // The plan is the same as without faults.
    let json = plan.json();
    for img in images {
        let key = img.path_tag();
        let import = json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "import" && a["image"] == key.as_str())
            .unwrap_or_else(|| panic!("import of {key}"));
        assert_eq!(import["digest"], digest_of(img).to_string(), "{key}");
    }
    assert!(plan.stderr.contains("retrying"), "{}", plan.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_manifest_is_a_digest_error_never_a_plan() {
    let wt = ProxiedWalkthrough::start().await;
    let (images, proxy) = (&wt.images, &wt.proxy);
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/manifests/"),
        times: usize::MAX,
        kind: FaultKind::FlipByte(20),
    });
    let w = wt.workdir(&images[..1]);
    let run = w.run(&["plan", "--format", "json"]).await.expect(1);
    assert!(run.stdout.is_empty(), "no plan: {}", run.stdout);
    let err = &run.stderr;
    assert!(err.contains("failed to verify manifest"), "{err}");
    assert!(err.contains(&digest_of(&images[0]).to_string()), "{err}");
    assert!(proxy.faults_injected() >= 1);
    // --out writes nothing either.
    w.run(&["plan", "--out", "plan.json"]).await.expect(1);
    assert!(!w.path().join("plan.json").exists());
}

// ---------------------------------------------------------------------------------------
// What a no-op plan reads.
// ---------------------------------------------------------------------------------------

/// Requests after the first `from`, as (method, path) pairs.
fn since(reqs: &[ProxyRequest], from: usize) -> Vec<(String, String)> {
    reqs[from..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

fn count(reqs: &[(String, String)], method: &str, pred: impl Fn(&str) -> bool) -> usize {
    reqs.iter().filter(|(m, p)| m == method && pred(p)).count()
}

/// A converged plan of N images reads, per image:
///   1. HEAD the source tag (upstream)             — source digest S
///   2. HEAD the quarantine tag                    — Q (= S: no import)
///   3. HEAD the live tag                          — L (= S: no promote)
///   4. GET the verdicts for S in quarantine: the referrers API is probed once per
///      registry (Distribution answers `404 page not found`, remembered), then the
///      tag-schema index `sha256-<hex of S>` is read with one manifest GET.
///   5. the promotion record that binds the live tag (L = S, so the binding rule decides
///      whether the plan is converged): GET the live tag-schema index `sha256-<hex of L>`,
///      the record's manifest, and the verdict it names (its manifest in quarantine). Each
///      manifest embeds its envelope (the layer descriptor's `data`, verified against the
///      layer digest): no blob GET. Q = L already proves the digest is in quarantine: no
///      HEAD for it. The manifests are still read, not taken from the index: a record whose
///      manifest was deleted vouches for nothing.
///
/// and nothing else: no source manifest GET (only needed to import or pick platforms), no
/// catalog (only with prune). Total: 6 N + 1 requests (8 N + 1 while the documents were
/// read as blobs; 4 N + 1 before records were bound; 5 N while the referrers API was probed
/// for every image).
///
/// The apply that converges first is a regression test too: 20 images per repository share
/// a layer and every record shares the empty config `{}`; Distribution rewrites a blob link
/// non-atomically on each mount or upload, and a manifest PUT racing with that failed with
/// DIGEST_INVALID until apply linked each blob into a repository once.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_op_plan_of_200_images_reads_each_location_once() {
    const N: usize = 200;
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let up = FaultProxy::start(&upstream.url()).await;
    let tp = FaultProxy::start(&target.url()).await;

    // 200 small images in 10 repositories; one shared layer, a config of their own.
    let started = Instant::now();
    let shared = vec![7u8; 512];
    let seeded: Vec<(String, String, Digest)> = stream::iter(0..N)
        .map(|i| {
            let shared = shared.clone();
            let url = upstream.url();
            async move {
                let repo = format!("bulk/app{}", i % 10);
                let tag = format!("v{i:03}");
                let img = ImageBuilder::new("bulk")
                    .layer_bytes(shared)
                    .env(&format!("IMAGE={i}"))
                    .build();
                RawClient::new(&url, None).push(&repo, &tag, &img).await;
                (repo, tag, img.manifest.digest)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let seed_time = started.elapsed();
    let srcs: Vec<String> = seeded
        .iter()
        .map(|(repo, tag, _)| format!("docker.io/{repo}:{tag}"))
        .collect();
    let w = Workdir::new(&config(&up.url(), &tp.url(), &srcs, ""));
    let started = Instant::now();
    let applied = w.run(&["apply", "--auto-approve"]).await.expect(0);
    let apply_time = started.elapsed();
    assert!(
        applied.stdout.contains(&format!("Apply: {} done", 3 * N)),
        "{}",
        applied.stdout
    );

    let (up_from, tp_from) = (up.requests().len(), tp.requests().len());
    let started = Instant::now();
    let run = w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    let plan_time = started.elapsed();
    assert!(run.stdout.contains("No changes"), "{}", run.stdout);
    let upr = since(&up.requests(), up_from);
    let tpr = since(&tp.requests(), tp_from);
    eprintln!(
        "seed {seed_time:?}; apply {apply_time:?}: {up_from} upstream and {tp_from} target requests; \
         no-op plan {plan_time:?}: {} upstream and {} target requests",
        upr.len(),
        tpr.len()
    );

    let is_tag = |p: &str| p.contains("/manifests/v");
    let schema_tag = |p: &str| p.contains("/manifests/sha256-");
    // Upstream: one HEAD per source tag, nothing else.
    assert_eq!(
        count(&upr, "HEAD", |p| p.starts_with("/v2/bulk/") && is_tag(p)),
        N
    );
    assert_eq!(upr.len(), N, "upstream: {upr:#?}");
    // Target: one HEAD per quarantine tag and per live tag.
    assert_eq!(
        count(&tpr, "HEAD", |p| p.starts_with("/v2/quarantine/bulk/")
            && is_tag(p)),
        N
    );
    assert_eq!(
        count(&tpr, "HEAD", |p| p.starts_with("/v2/live/bulk/")
            && is_tag(p)),
        N
    );
    // Verdicts: the referrers API probed once, then one tag-schema GET per image.
    assert_eq!(
        count(&tpr, "GET", |p| p.contains("/referrers/")),
        1,
        "{tpr:#?}"
    );
    assert_eq!(
        count(&tpr, "GET", |p| p.starts_with("/v2/quarantine/bulk/")
            && schema_tag(p)),
        N
    );
    // The records: one live tag-schema GET, one record manifest and one verdict manifest
    // per image; their documents are embedded in them.
    assert_eq!(
        count(&tpr, "GET", |p| p.starts_with("/v2/live/bulk/")
            && schema_tag(p)),
        N
    );
    assert_eq!(
        count(&tpr, "GET", |p| p.starts_with("/v2/live/bulk/")
            && p.contains("/manifests/sha256:")),
        N
    );
    assert_eq!(
        count(&tpr, "GET", |p| p.starts_with("/v2/quarantine/bulk/")
            && p.contains("/manifests/sha256:")),
        N
    );
    assert_eq!(count(&tpr, "GET", |p| p.contains("/blobs/")), 0);
    assert_eq!(count(&tpr, "GET", |p| p.contains("/manifests/")), 4 * N);
    assert_eq!(tpr.len(), 6 * N + 1, "target: unexpected requests");
    // Every seeded digest is what live holds.
    for (repo, tag, digest) in seeded.iter().take(3) {
        assert_eq!(
            &skopeo_digest(&target.host(), &format!("live/{repo}:{tag}")).await,
            digest
        );
    }
}

// ---------------------------------------------------------------------------------------
// The OCI-layout backend.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_apply_between_layout_directories() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    let target = dir.path().join("target");
    let single = ImageBuilder::new("layout/single").user("1000").build();
    let multi = TestIndex::two_platform("layout/multi", Format::Oci);
    write_oci_layout(&upstream.join("library/single"), "1.0", &single);
    write_oci_layout(&upstream.join("team/multi"), "2.0", &multi);
    let cfg = crate::support::config::Config::new("local")
        .registry("docker.io", &format!("layout = \"{}\"", upstream.display()))
        .registry("local", &format!("layout = \"{}\"", target.display()))
        .images(&["docker.io/library/single:1.0", "docker.io/team/multi:2.0"])
        .build();
    let w = Workdir::new(&cfg);
    let plan = w.run(&["plan", "--format", "json"]).await.expect(0);
    assert_full_plan(&plan, 2);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(2);
    w.run(&["apply", "--auto-approve"]).await.expect(0);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    let audit = w.run(&["audit", "--format", "json"]).await.expect(0).json();
    assert_eq!(audit["violations"], 0);

    // skopeo reads the result as OCI layouts, byte-exact.
    for (path, tag, want) in [
        ("library/single", "1.0", &single.manifest.digest),
        ("team/multi", "2.0", &multi.index.digest),
    ] {
        for area in ["quarantine", "live"] {
            let raw = skopeo(&[
                "inspect".into(),
                "--raw".into(),
                format!("oci:{}/{area}/{path}:{tag}", target.display()),
            ])
            .await;
            assert_eq!(&Digest::of(&raw), want, "{area}/{path}:{tag}");
        }
    }
    // Every platform of the index was copied: skopeo copies it whole out of live.
    let out = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("oci:{}/live/team/multi:2.0", target.display()),
        &format!("oci:{}:copy", out.path().display()),
        None,
        None,
    )
    .await;
}
