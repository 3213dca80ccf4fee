//! The referrers API path (issue 13, item 5). The record and verdict scenarios run on both
//! ways of keeping referrers (see [`crate::support::records`]): plain Distribution 2.8 (the
//! tag-schema index `sha256-<hex>`) and the same Distribution behind the referrers API
//! stand-in (`FaultProxy::with_referrers_api`); they live with their subject (`signed_records`,
//! `records_bound`, `saved_plan`) and here: two concurrent applies converging. On the API path
//! the proxy's access log must show that no `sha256-` tag was read or written and that the
//! referrers endpoint was used. Then the stand-in itself is checked against the spec, and a
//! registry whose referrers API answers garbage must get a clear error naming it, never a
//! silent fall back.

use airlock::model::{Digest, RawManifest, media};
use airlock::registry::RegistryError;
use reqwest::StatusCode;

use crate::support::airlock::{Workdir, config, seed_walkthrough};
use crate::support::client::RawClient;
use crate::support::images::{Blob, ImageBuilder};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::records::{
    BUSYBOX, KEY_ENV, KURED, RecordPath, RecordWorld, airlock_registry, api_listing,
    delete_manifest, on_both_paths,
};
use crate::support::registry::{Auth, TestRegistry};

on_both_paths!(two_applies_converge);

async fn two_applies_converge(path: RecordPath) {
    let world = RecordWorld::on(path).await;
    world.sign();
    let cfg = std::fs::read_to_string(world.w.config()).unwrap();
    let other = Workdir::new(&cfg);
    std::fs::copy(
        world.w.path().join("airlock.pub"),
        other.path().join("airlock.pub"),
    )
    .unwrap();
    let env = [(KEY_ENV, world.key.as_str())];
    let (ra, rb) = tokio::join!(
        world.run(&["apply", "--auto-approve"]),
        other.run_env(&["apply", "--auto-approve"], &env)
    );
    assert_eq!(ra.code, 0, "A:\n{}\n{}", ra.stdout, ra.stderr);
    assert_eq!(rb.code, 0, "B:\n{}\n{}", rb.stdout, rb.stderr);
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 0, "{report:#}");
    // Every record either apply wrote is listed (none lost by a concurrent index update).
    for p in [BUSYBOX, KURED] {
        let recs = world.records(&format!("live/{p}"), &world.digest(p)).await;
        assert!(!recs.is_empty(), "{p}");
    }
    world.check_path();
}

// ---- The stand-in itself, and hostile referrers API answers (API path only). ----

/// An artifact about `subject` (`artifactType` set, or only a config media type).
fn referrer(subject: &RawManifest, artifact_type: Option<&str>, n: u32) -> RawManifest {
    let mut body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.bytes.len()},
        "annotations": {"n": n.to_string()},
    });
    match artifact_type {
        Some(t) => body["artifactType"] = t.into(),
        None => body["config"]["mediaType"] = "application/vnd.example.config.v1+json".into(),
    }
    RawManifest::new(serde_json::to_vec(&body).unwrap(), None).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stand_in_speaks_the_referrers_api_and_airlock_pays_no_tag_schema_upkeep() {
    let target = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::with_referrers_api(&target.url()).await;
    let c = RawClient::new(&proxy.url(), None);
    let repo = "team/app";
    let image = ImageBuilder::new("subject").build();
    c.push(repo, "1", &image).await;
    let subject = image.manifest.clone();
    c.push_blob(repo, &Blob::memory(media::OCI_EMPTY, b"{}".to_vec()))
        .await;

    // A PUT with a subject: 201 with OCI-Subject (read with reqwest, not airlock).
    let sig = referrer(&subject, Some("application/vnd.example.sig"), 1);
    let url = format!("{}/v2/{repo}/manifests/{}", proxy.url(), sig.digest);
    let resp = crate::support::http_client()
        .put(&url)
        .header("content-type", media::OCI_MANIFEST)
        .body(sig.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["oci-subject"].to_str().unwrap(),
        subject.digest.to_string()
    );
    // A manifest without a subject gets no OCI-Subject.
    let plain = ImageBuilder::new("plain").build();
    c.push(repo, "2", &plain).await;
    assert!(
        proxy
            .referrers_listed(repo, &plain.manifest.digest)
            .is_empty()
    );

    // airlock's push_referrer: the manifest PUT and, as no lookup told yet whether the
    // registry has the API, one referrers GET to believe OCI-Subject; no tag-schema GET or
    // PUT. From then on, one PUT.
    let reg = airlock_registry("standin", &proxy.url());
    let sbom = referrer(&subject, None, 2);
    let sent = |before: usize| -> Vec<String> {
        proxy.requests()[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    };
    let before = proxy.requests().len();
    reg.push_referrer(repo, &sbom, &subject.digest)
        .await
        .unwrap();
    let put = format!("PUT /v2/{repo}/manifests/{}", sbom.digest);
    assert_eq!(
        sent(before),
        [
            put.clone(),
            format!("GET /v2/{repo}/referrers/{}", subject.digest)
        ]
    );
    let before = proxy.requests().len();
    reg.push_referrer(repo, &sbom, &subject.digest)
        .await
        .unwrap();
    assert_eq!(sent(before), [put], "one PUT, no tag-schema upkeep");

    // The listing: both, in push order, artifactType from the manifest or its config.
    let all = api_listing(&proxy.url(), repo, &subject.digest, None).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["digest"], sig.digest.to_string());
    assert_eq!(all[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(all[0]["size"], sig.bytes.len());
    assert_eq!(all[0]["mediaType"], media::OCI_MANIFEST);
    assert_eq!(all[0]["annotations"]["n"], "1");
    assert_eq!(
        all[1]["artifactType"],
        "application/vnd.example.config.v1+json"
    );
    let sigs = api_listing(
        &proxy.url(),
        repo,
        &subject.digest,
        Some("application/vnd.example.sig"),
    )
    .await;
    assert_eq!(sigs.len(), 1);
    // An unknown subject: an empty list, not 404. A malformed digest: 400.
    assert!(
        api_listing(&proxy.url(), repo, &Digest::of(b"nothing"), None)
            .await
            .is_empty()
    );
    let resp = crate::support::http_client()
        .get(format!("{}/v2/{repo}/referrers/sha256:nope", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // airlock's lookups: the API, filtered (by the server and again by the client), paged.
    let got = reg.referrers(repo, &subject.digest, None).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        [sig.digest.clone(), sbom.digest.clone()]
    );
    assert_eq!(got[1].annotations["n"], "2");
    let only = reg
        .referrers(repo, &subject.digest, Some("application/vnd.example.sig"))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    proxy.referrers_page_size(1);
    let before = proxy.count("GET", "/referrers/");
    let paged = reg.referrers(repo, &subject.digest, None).await.unwrap();
    assert_eq!(paged, got);
    assert_eq!(proxy.count("GET", "/referrers/") - before, 2, "two pages");

    // A server that ignores the filter (lists everything, no OCI-Filters-Applied): the
    // client filters.
    let unfiltered = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": all,
    });
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/referrers/"),
        times: 1,
        kind: FaultKind::Respond(
            200,
            media::OCI_INDEX.into(),
            serde_json::to_vec(&unfiltered).unwrap(),
        ),
    });
    let only = reg
        .referrers(repo, &subject.digest, Some("application/vnd.example.sig"))
        .await
        .unwrap();
    assert_eq!(
        only.iter().map(|r| &r.digest).collect::<Vec<_>>(),
        [&sig.digest]
    );

    // A DELETE by digest removes the referrer.
    delete_manifest(&c, repo, &sig.digest).await;
    let left = reg.referrers(repo, &subject.digest, None).await.unwrap();
    assert_eq!(
        left.iter().map(|r| &r.digest).collect::<Vec<_>>(),
        [&sbom.digest]
    );
    assert_eq!(proxy.count("*", "/manifests/sha256-"), 0);
    assert_eq!(target.count_requests("*", "/manifests/sha256-"), 0);
}

#[test]
fn the_stand_in_routes_listings_manifest_puts_and_deletes() {
    use crate::support::referrers_api::{Route, route};
    let d = Digest::of(b"x").to_string();
    assert_eq!(
        route("GET", &format!("/v2/a/b/referrers/{d}?artifactType=x%2Fy")),
        Some(Route::List {
            repo: "a/b".into(),
            subject: d.clone(),
            artifact_type: Some("x/y".into()),
            start: 0,
        })
    );
    assert_eq!(
        route("PUT", "/v2/a/manifests/1"),
        Some(Route::PutManifest { repo: "a".into() })
    );
    assert_eq!(
        route("DELETE", &format!("/v2/a/manifests/{d}")),
        Some(Route::DeleteManifest {
            repo: "a".into(),
            digest: d.clone()
        })
    );
    assert_eq!(route("GET", "/v2/a/manifests/1"), None);
    assert_eq!(route("PUT", "/v2/a/blobs/uploads/x"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_unknown_to_the_referrers_api_has_no_referrers() {
    let target = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::with_referrers_api(&target.url()).await;
    let reg = airlock_registry("standin", &proxy.url());
    let body = serde_json::json!({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]});
    proxy.add_fault(Fault {
        when: Match::method_path("GET", "/referrers/"),
        times: 1,
        kind: FaultKind::Respond(404, "application/json".into(), body.to_string().into()),
    });
    let d = Digest::of(b"x");
    assert!(reg.referrers("no/such", &d, None).await.unwrap().is_empty());
    // Not taken for "no API": the next lookup asks the API again; no tag schema read.
    assert!(reg.referrers("no/such", &d, None).await.unwrap().is_empty());
    assert_eq!(proxy.count("GET", "/referrers/"), 2);
    assert_eq!(proxy.count("*", "/manifests/"), 0);
}

/// A registry that answers `OCI-Subject` but has no referrers API (a misconfigured proxy
/// adding the header, say) is not believed: records go to the tag schema, where lookups on
/// such a registry find them, and the gate works.
#[tokio::test(flavor = "multi_thread")]
async fn an_oci_subject_from_a_registry_without_the_api_is_not_believed() {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let proxy = FaultProxy::start(&target.url()).await;
    seed_walkthrough(&upstream).await;
    proxy.add_fault(Fault {
        when: Match::method_path("PUT", "/manifests/sha256:"),
        times: usize::MAX,
        kind: FaultKind::AddHeader("OCI-Subject".into(), Digest::of(b"x").to_string()),
    });
    let w = Workdir::new(&config(
        &upstream.url(),
        &proxy.url(),
        &["docker.io/library/busybox:1.33.0".to_string()],
        "",
    ));
    w.run(&["apply", "--auto-approve"]).await.expect(0);
    w.run(&["audit"]).await.expect(0);
    w.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    assert!(
        proxy.count("PUT", "/manifests/sha256-") >= 2,
        "verdict and record indexed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_referrers_api_answer_is_an_error_naming_the_registry() {
    let world = RecordWorld::on(RecordPath::ReferrersApi).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let proxy = world.standin.as_ref().unwrap();
    let b = world.digest(BUSYBOX);
    let live_b = format!("live/{BUSYBOX}");
    let index = |manifests: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap()
    };
    let huge = {
        let entry = serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": b.to_string(),
            "size": 10,
            "annotations": {"pad": "x".repeat(1000)},
        });
        index(serde_json::Value::Array(vec![entry; 5000]))
    };
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "non-index JSON",
            media::OCI_INDEX.into(),
            b"{}".to_vec(),
            "mediaType (none)",
        ),
        (
            "an image manifest",
            media::OCI_MANIFEST.into(),
            index(serde_json::json!([])),
            "Content-Type `application/vnd.oci.image.manifest.v1+json`",
        ),
        (
            "an HTML page",
            "text/html".into(),
            b"<html>sign in</html>".to_vec(),
            "Content-Type `text/html`",
        ),
        (
            "a bad descriptor digest",
            media::OCI_INDEX.into(),
            index(
                serde_json::json!([{"mediaType": media::OCI_MANIFEST, "digest": "sha256:0", "size": 3}]),
            ),
            "manifests[0]: digest `sha256:0`",
        ),
        (
            "a huge answer",
            media::OCI_INDEX.into(),
            huge,
            "larger than",
        ),
    ];
    let reg = airlock_registry("standin", &world.target_url());
    for (name, ct, body, want) in cases {
        proxy.clear_faults();
        proxy.add_fault(Fault {
            when: Match::method_path("GET", "/referrers/"),
            times: usize::MAX,
            kind: FaultKind::Respond(200, ct, body),
        });
        let e: RegistryError = reg.referrers(&live_b, &b, None).await.expect_err(name);
        let msg = e.to_string();
        assert!(
            msg.contains("`standin`") && msg.contains("referrers") && msg.contains(want),
            "{name}: {msg}"
        );
        // The command fails naming the registry and changes nothing.
        let before = world.target.requests().len();
        let run = world.run(&["audit"]).await;
        assert_ne!(run.code, 0, "{name}: {}", run.stdout);
        assert!(
            run.stderr.contains("`target`") && run.stderr.contains(want),
            "{name}: {}",
            run.stderr
        );
        assert!(
            !world.target.requests()[before..]
                .iter()
                .any(|r| r.method != "GET" && r.method != "HEAD"),
            "{name}: a write"
        );
    }
    proxy.clear_faults();
    world.run(&["audit"]).await.expect(0);
    world.check_path();
}
