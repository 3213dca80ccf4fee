//! The referrers API path (issue 13, item 5). Every record and verdict scenario here runs
//! twice: against plain Distribution 2.8 (no referrers API: airlock keeps the tag-schema
//! index `sha256-<hex>`) and against the same Distribution behind the referrers API
//! stand-in (`FaultProxy::with_referrers_api`: `OCI-Subject` on manifest PUTs with a
//! subject, `GET /v2/<name>/referrers/<digest>`). On the API path the proxy's access log
//! must show that no `sha256-` tag was read or written and that the referrers endpoint was
//! used; the records are read back with an independent client (reqwest) from the referrers
//! endpoint. Then the stand-in itself is checked against the spec, and a registry whose
//! referrers API answers garbage must get a clear error naming it, never a silent fall back.

use airlock::config::{AuthSpec, Endpoint, RegistrySpec, Timeouts, Transfer};
use airlock::model::{Digest, RawManifest, media};
use airlock::records::{self, PromotionRecord};
use airlock::registry::{Registry, RegistryError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;

use crate::records_bound::{actions, record_doc, repaired};
use crate::signed_records::{KEY_ENV, SIGNING, artifact, envelope_of, python_verify};
use crate::support::airlock::{Run, Workdir, config, seed_walkthrough};
use crate::support::client::{RawClient, push_raw};
use crate::support::images::{Blob, Content, ImageBuilder, WalkthroughImage};
use crate::support::proxy::{Fault, FaultKind, FaultProxy, Match};
use crate::support::records::{finding, list_only, listed_records, openssl_keys, violation};
use crate::support::registry::{Auth, TestRegistry};

const BUSYBOX: &str = "library/busybox";
const KURED: &str = "weaveworks/kured";

/// How the target registry keeps referrers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Distribution 2.8 as it is: the tag schema.
    TagSchema,
    /// Distribution behind the referrers API stand-in.
    Api,
}

/// One scenario, two tests: `<scenario>::tag_schema` and `<scenario>::referrers_api`.
macro_rules! on_both_paths {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread")]
            async fn tag_schema() {
                super::$scenario(super::Path::TagSchema).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn referrers_api() {
                super::$scenario(super::Path::Api).await;
            }
        }
    )*};
}

on_both_paths!(
    a_signed_apply_verifies_with_an_independent_verifier,
    a_record_copied_from_another_digest_fails_audit_and_is_repaired,
    edited_unsigned_and_swapped_records_fail_audit,
    a_deleted_record_is_plan_work_and_apply_re_records_it,
    a_0_1_plain_json_record_is_re_recorded_once_signing_is_on,
    a_verdict_edited_to_pass_does_not_promote,
    two_applies_converge,
);

/// An upstream with the walkthrough images; a target (behind the stand-in on the API path)
/// for quarantine and live; a work directory declaring busybox and kured; a signing key.
struct World {
    path: Path,
    upstream: TestRegistry,
    target: TestRegistry,
    standin: Option<FaultProxy>,
    images: Vec<WalkthroughImage>,
    w: Workdir,
    /// The PKCS#8 PEM signing key (`openssl genpkey`), public key in `airlock.pub`.
    key: String,
}

impl World {
    async fn start(path: Path) -> World {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let standin = match path {
            Path::TagSchema => None,
            Path::Api => Some(FaultProxy::with_referrers_api(&target.url()).await),
        };
        let images = seed_walkthrough(&upstream).await;
        let w = Workdir::new("");
        let key = openssl_keys(w.path());
        let world = World {
            path,
            upstream,
            target,
            standin,
            images,
            w,
            key,
        };
        world.configure(
            &[
                "docker.io/library/busybox:1.33.0".to_string(),
                "docker.io/weaveworks/kured:1.6.1".to_string(),
            ],
            "",
        );
        world
    }

    /// Where airlock and the test's own client reach the target.
    fn target_url(&self) -> String {
        match &self.standin {
            Some(p) => p.url(),
            None => self.target.url(),
        }
    }

    fn configure(&self, images: &[String], extra: &str) {
        self.w.set_config(&config(
            &self.upstream.url(),
            &self.target_url(),
            images,
            extra,
        ));
    }

    /// Busybox and kured, signed.
    fn sign(&self) {
        self.configure(
            &[
                "docker.io/library/busybox:1.33.0".to_string(),
                "docker.io/weaveworks/kured:1.6.1".to_string(),
            ],
            SIGNING,
        );
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.w.run_env(args, &[(KEY_ENV, &self.key)]).await
    }

    async fn audit(&self) -> (Run, serde_json::Value) {
        let run = self.run(&["audit", "--format", "json"]).await;
        let json = run.json();
        (run, json)
    }

    fn digest(&self, path: &str) -> Digest {
        let i = self.images.iter().find(|i| i.path == path).unwrap();
        i.content.top().digest.clone()
    }

    /// A raw client of the target (through the stand-in on the API path, so what it pushes
    /// and deletes is indexed as on a registry with the API).
    fn client(&self) -> RawClient {
        RawClient::new(&self.target_url(), None)
    }

    /// The manifests listed as referrers of `subject` in `repo` whose predicate annotation
    /// is `predicate`: from the tag-schema index, or from the referrers API read with
    /// reqwest (checking the answer is the spec's OCI index).
    async fn listed(&self, repo: &str, subject: &Digest, predicate: &str) -> Vec<RawManifest> {
        let c = self.client();
        let entries: Vec<serde_json::Value> = match self.path {
            Path::TagSchema => match c.get_manifest(repo, &subject.referrers_tag()).await {
                None => vec![],
                Some(index) => {
                    let v: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
                    v["manifests"].as_array().cloned().unwrap_or_default()
                }
            },
            Path::Api => api_listing(&self.target_url(), repo, subject, None).await,
        };
        let mut out = Vec::new();
        for e in entries {
            if e["annotations"][records::ANN_PREDICATE] != predicate {
                continue;
            }
            if let Some(m) = c.get_manifest(repo, e["digest"].as_str().unwrap()).await {
                out.push(m);
            }
        }
        out
    }

    async fn records(&self, repo: &str, subject: &Digest) -> Vec<RawManifest> {
        let listed = self
            .listed(repo, subject, records::PROMOTION_PREDICATE)
            .await;
        if self.path == Path::TagSchema {
            // The tag-schema reader of the record tests agrees.
            let theirs = listed_records(&self.client(), repo, subject).await;
            assert_eq!(
                theirs.iter().map(|m| &m.digest).collect::<Vec<_>>(),
                listed.iter().map(|m| &m.digest).collect::<Vec<_>>()
            );
        }
        listed
    }

    /// Make `keep` (already pushed) the only referrers of `subject` in `repo`: the tag-schema
    /// index rewritten to list only them, or, with the referrers API, every other referrer
    /// deleted (what someone with push rights can do there).
    async fn list_only(&self, repo: &str, subject: &Digest, keep: &[&RawManifest]) {
        let c = self.client();
        match self.path {
            Path::TagSchema => list_only(&c, repo, subject, keep).await,
            Path::Api => {
                for e in api_listing(&self.target_url(), repo, subject, None).await {
                    let d = e["digest"].as_str().unwrap();
                    if !keep.iter().any(|m| m.digest.to_string() == d) {
                        delete(&c, repo, d).await;
                    }
                }
                let now: Vec<String> = api_listing(&self.target_url(), repo, subject, None)
                    .await
                    .iter()
                    .map(|e| e["digest"].as_str().unwrap().to_string())
                    .collect();
                let mut want: Vec<String> = keep.iter().map(|m| m.digest.to_string()).collect();
                want.sort();
                let mut got = now.clone();
                got.sort();
                assert_eq!(got, want, "the stand-in lists exactly the kept referrers");
            }
        }
    }

    /// Push an artifact manifest and its blobs (config `{}`, one layer) into `repo`.
    async fn push_artifact(&self, repo: &str, m: &RawManifest, layer: &[u8]) {
        let c = self.client();
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        c.push_blob(repo, &Blob::memory(media::OCI_EMPTY, b"{}".to_vec()))
            .await;
        c.push_blob(
            repo,
            &Blob::memory(
                v["layers"][0]["mediaType"].as_str().unwrap(),
                layer.to_vec(),
            ),
        )
        .await;
        c.put_manifest(repo, &m.digest.to_string(), m).await;
    }

    /// The path was the one configured: on the API path no `sha256-` tag was read or
    /// written (proxy log and Distribution's own access log) and the referrers endpoint
    /// answered; on the tag-schema path airlock wrote tag-schema indexes.
    fn check_path(&self) {
        // `sha256-<64 hex>` exactly: cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags (looked
        // up for the source's signatures) are not the referrers tag schema.
        let schema = |p: &str| {
            p.split('?')
                .next()
                .unwrap_or(p)
                .rsplit_once("/manifests/sha256-")
                .is_some_and(|(_, hex)| {
                    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
                })
        };
        match &self.standin {
            Some(proxy) => {
                let log = proxy.requests();
                let tagged: Vec<String> = log
                    .iter()
                    .filter(|r| schema(&r.path))
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                assert!(tagged.is_empty(), "tag-schema requests: {tagged:#?}");
                assert!(
                    !self.target.requests().iter().any(|r| schema(&r.path)),
                    "Distribution saw a tag-schema request"
                );
                assert!(
                    proxy.count("GET", "/referrers/") > 0,
                    "the referrers API was not used"
                );
            }
            None => {
                assert!(
                    self.target
                        .requests()
                        .iter()
                        .any(|r| r.method == "PUT" && schema(&r.path)),
                    "no tag-schema index was written"
                );
            }
        }
    }
}

/// `GET /v2/<repo>/referrers/<subject>` through the stand-in with reqwest: the spec's
/// answer (200, an OCI index), its `manifests`.
async fn api_listing(
    base: &str,
    repo: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Vec<serde_json::Value> {
    let mut url = reqwest::Url::parse(&format!("{base}/v2/{repo}/referrers/{subject}")).unwrap();
    if let Some(t) = artifact_type {
        url.query_pairs_mut().append_pair("artifactType", t);
    }
    let resp = crate::support::http_client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        media::OCI_INDEX
    );
    assert_eq!(
        resp.headers().get("oci-filters-applied").is_some(),
        artifact_type.is_some()
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], media::OCI_INDEX);
    v["manifests"].as_array().unwrap().clone()
}

async fn delete(c: &RawClient, repo: &str, digest: &str) {
    let resp = c
        .request(
            reqwest::Method::DELETE,
            &format!("/v2/{repo}/manifests/{digest}"),
        )
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "delete {repo}@{digest}"
    );
}

async fn a_signed_apply_verifies_with_an_independent_verifier(path: Path) {
    let world = World::start(path).await;
    world.sign();
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let (_, report) = world.audit().await;
    assert_eq!(report["violations"], 0, "{report:#}");
    for (repo, tag) in [(BUSYBOX, "1.33.0"), (KURED, "1.6.1")] {
        assert_eq!(
            finding(&report, &format!("live/{repo}"), tag)["signature"],
            "verified"
        );
    }
    let c = world.client();
    let d = world.digest(BUSYBOX);
    let live = format!("live/{BUSYBOX}");
    let recs = world.records(&live, &d).await;
    assert_eq!(recs.len(), 1);
    let env = envelope_of(&c, &live, &recs[0], &d).await;
    let st = python_verify(world.w.path(), &env).expect("the record verifies");
    assert_eq!(st["predicateType"], records::PROMOTION_PREDICATE);
    assert_eq!(st["subject"][0]["digest"]["sha256"], d.hex());
    assert_eq!(
        st["predicate"]["live"],
        "target/live/library/busybox:1.33.0"
    );
    // The verdict, listed in quarantine, verifies too.
    let q = format!("quarantine/{BUSYBOX}");
    let verdicts = world.listed(&q, &d, records::VERDICT_PREDICATE).await;
    assert_eq!(verdicts.len(), 1);
    assert_eq!(
        st["predicate"]["verdict"],
        verdicts[0].digest.to_string(),
        "the record names the listed verdict"
    );
    let vst = python_verify(world.w.path(), &envelope_of(&c, &q, &verdicts[0], &d).await)
        .expect("the verdict verifies");
    assert_eq!(vst["predicate"]["decision"], "pass");
    if path == Path::Api {
        // The artifactType filter of the API lists the DSSE envelopes only (the record, and
        // any attestation that travelled with the image), exactly those of the full list.
        let all = api_listing(&world.target_url(), &live, &d, None).await;
        let listed =
            api_listing(&world.target_url(), &live, &d, Some(records::DSSE_ENVELOPE)).await;
        let dsse: Vec<_> = all
            .into_iter()
            .filter(|e| e["artifactType"] == records::DSSE_ENVELOPE)
            .collect();
        assert_eq!(listed, dsse);
        assert!(
            listed
                .iter()
                .any(|e| e["digest"] == recs[0].digest.to_string())
        );
        assert!(
            api_listing(&world.target_url(), &live, &d, Some("other/type"))
                .await
                .is_empty()
        );
    }
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    world.check_path();
}

async fn a_record_copied_from_another_digest_fails_audit_and_is_repaired(path: Path) {
    let world = World::start(path).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    world.run(&["audit"]).await.expect(0);
    let c = world.client();
    let (b, k) = (world.digest(BUSYBOX), world.digest(KURED));
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));

    // kured's genuine record with its `digest` rewritten to busybox's, made the only record
    // about busybox's live digest.
    let kured_record = &world.records(&live_k, &k).await[0];
    let mut forged: PromotionRecord = record_doc(&c, &live_k, kured_record).await;
    forged.digest = b.clone();
    let subject = c.get_manifest(&live_b, "1.33.0").await.unwrap();
    let a = records::promotion_artifact(
        &forged,
        None,
        &subject.media_type,
        subject.bytes.len() as u64,
    );
    world.push_artifact(&live_b, &a.manifest, &a.layer).await;
    world.list_only(&live_b, &b, &[&a.manifest]).await;

    let (run, report) = world.audit().await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    let v = violation(&report, &live_b, "1.33.0");
    assert!(
        v.contains("promoted") && v.contains(&k.short()) && v.contains(&b.short()),
        "{v}"
    );
    assert!(finding(&report, &live_k, "1.6.1")["violation"].is_null());
    let plan = world
        .run(&["plan", "--format", "json"])
        .await
        .expect(0)
        .json();
    let acts = actions(&plan);
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(acts[0].0, "promote:library/busybox:1.33.0");
    assert!(
        acts[0].1.starts_with("record invalid: the record promoted"),
        "{acts:?}"
    );
    repaired(&world.w).await;
    assert!(!world.records(&live_b, &b).await.is_empty());
    world.check_path();
}

async fn edited_unsigned_and_swapped_records_fail_audit(path: Path) {
    let world = World::start(path).await;
    world.sign();
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let (b, k) = (world.digest(BUSYBOX), world.digest(KURED));
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));
    let b_top = c.get_manifest(&live_b, &b.to_string()).await.unwrap();
    let b_rec = world.records(&live_b, &b).await.remove(0);
    let b_env = envelope_of(&c, &live_b, &b_rec, &b).await;
    let push_only = |layer: Vec<u8>| {
        let m = artifact(
            records::DSSE_ENVELOPE,
            records::DSSE_ENVELOPE,
            &layer,
            &b_top,
        );
        let world = &world;
        let live_b = &live_b;
        let b = &b;
        async move {
            world.push_artifact(live_b, &m, &layer).await;
            world.list_only(live_b, b, &[&m]).await;
        }
    };

    // Edited: the signed statement changed, the signature kept.
    let mut e: serde_json::Value = serde_json::from_slice(&b_env).unwrap();
    let mut st: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(e["payload"].as_str().unwrap()).unwrap()).unwrap();
    st["predicate"]["plan_hash"] = Digest::of(b"another plan").to_string().into();
    e["payload"] = STANDARD.encode(serde_json::to_vec(&st).unwrap()).into();
    push_only(serde_json::to_vec(&e).unwrap()).await;
    let (_, report) = world.audit().await;
    let v = violation(&report, &live_b, "1.33.0");
    assert!(v.contains("bad signature"), "{v}");

    // Unsigned: the honest statement without signatures.
    let mut e: serde_json::Value = serde_json::from_slice(&b_env).unwrap();
    e["signatures"] = serde_json::json!([]);
    push_only(serde_json::to_vec(&e).unwrap()).await;
    let (_, report) = world.audit().await;
    let v = violation(&report, &live_b, "1.33.0");
    assert!(v.contains("unsigned"), "{v}");

    // Swapped: kured's signed record (its envelope, untouched) made a referrer of busybox.
    let k_rec = world.records(&live_k, &k).await.remove(0);
    push_only(envelope_of(&c, &live_k, &k_rec, &k).await).await;
    let (run, report) = world.audit().await;
    run.expect(3);
    let v = violation(&report, &live_b, "1.33.0");
    assert!(
        v.contains(&k.short()) || v.contains("not the live digest"),
        "{v}"
    );
    assert!(finding(&report, &live_k, "1.6.1")["violation"].is_null());

    // The plan sees it and apply re-records; then audit is clean.
    world.run(&["plan", "--detailed-exitcode"]).await.expect(2);
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let (_, report) = world.audit().await;
    assert_eq!(report["violations"], 0, "{report:#}");
    world.check_path();
}

async fn a_deleted_record_is_plan_work_and_apply_re_records_it(path: Path) {
    let world = World::start(path).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let (b, k) = (world.digest(BUSYBOX), world.digest(KURED));
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));
    for (repo, d) in [(&live_b, &b), (&live_k, &k)] {
        let rec = world.records(repo, d).await.remove(0);
        delete(&c, repo, &rec.digest.to_string()).await;
    }
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert_eq!(report["violations"], 2, "{report:#}");
    for (repo, tag) in [(&live_b, "1.33.0"), (&live_k, "1.6.1")] {
        assert!(violation(&report, repo, tag).contains("no promotion record"));
    }
    let plan = world
        .run(&["plan", "--format", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        actions(&plan),
        [
            (
                "promote:library/busybox:1.33.0".to_string(),
                "record missing".to_string()
            ),
            (
                "promote:weaveworks/kured:1.6.1".to_string(),
                "record missing".to_string()
            ),
        ]
    );
    let applied = world.run(&["apply", "--auto-approve"]).await.expect(0);
    assert!(
        applied.stdout.contains("promotion record"),
        "{}",
        applied.stdout
    );
    for (repo, d) in [(&live_b, &b), (&live_k, &k)] {
        assert_eq!(world.records(repo, d).await.len(), 1, "{repo}");
    }
    let (run, report) = world.audit().await;
    assert_eq!(run.code, 0, "{report:#}");
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    world.check_path();
}

async fn a_0_1_plain_json_record_is_re_recorded_once_signing_is_on(path: Path) {
    let world = World::start(path).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let b = world.digest(BUSYBOX);
    let live_b = format!("live/{BUSYBOX}");
    let b_top = c.get_manifest(&live_b, &b.to_string()).await.unwrap();
    // busybox's record replaced by the same document as 0.1 wrote it: plain JSON.
    let rec = world.records(&live_b, &b).await.remove(0);
    let env = envelope_of(&c, &live_b, &rec, &b).await;
    let doc: PromotionRecord =
        records::decode(Some(records::DSSE_ENVELOPE), records::DSSE_ENVELOPE, &env)
            .document
            .unwrap();
    let plain = serde_json::to_vec_pretty(&doc).unwrap();
    let m = artifact(
        media::PROMOTION_ARTIFACT,
        media::PROMOTION_ARTIFACT,
        &plain,
        &b_top,
    );
    world.push_artifact(&live_b, &m, &plain).await;
    world.list_only(&live_b, &b, &[&m]).await;
    let (run, report) = world.audit().await;
    run.expect(0);
    assert_eq!(finding(&report, &live_b, "1.33.0")["signature"], "unsigned");

    // Signing on: the plan offers to re-record; apply does; audit verifies it.
    world.sign();
    let plan = world
        .run(&["plan", "--format", "json"])
        .await
        .expect(0)
        .json();
    assert!(
        plan["actions"].as_array().unwrap().iter().any(|a| {
            a["id"] == "promote:library/busybox:1.33.0"
                && a["reason"].as_str().is_some_and(|r| r.contains("unsigned"))
        }),
        "{plan:#}"
    );
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let (run, report) = world.audit().await;
    run.expect(0);
    assert_eq!(finding(&report, &live_b, "1.33.0")["signature"], "verified");
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    world.check_path();
}

async fn a_verdict_edited_to_pass_does_not_promote(path: Path) {
    let world = World::start(path).await;
    let rooty = ImageBuilder::new("runs as root").user("root").build();
    push_raw(&world.upstream.url(), "library/rooty", "1", &rooty, None).await;
    world.configure(
        &["docker.io/library/rooty:1".to_string()],
        "[gate.policy]\nforbid_root = true\n",
    );
    let run = world.run(&["apply", "--auto-approve"]).await.expect(3);
    assert!(run.stdout.contains("AIRLOCK-ROOT-USER"), "{}", run.stdout);
    let c = world.client();
    let q = "quarantine/library/rooty";
    let subject = rooty.manifest.digest.clone();

    // Someone with push rights to quarantine pushes the failing verdict again with its
    // annotations saying `pass` (the document, its layer, still says fail), listed alone.
    let verdicts = world.listed(q, &subject, records::VERDICT_PREDICATE).await;
    assert_eq!(verdicts.len(), 1);
    let mut body: serde_json::Value = serde_json::from_slice(&verdicts[0].bytes).unwrap();
    assert_eq!(body["annotations"][records::ANN_DECISION], "fail");
    body["annotations"][records::ANN_DECISION] = "pass".into();
    let edited = RawManifest::new(
        serde_json::to_vec(&body).unwrap(),
        Some(media::OCI_MANIFEST),
    )
    .unwrap();
    c.put_manifest(q, &edited.digest.to_string(), &edited).await;
    world.list_only(q, &subject, &[&edited]).await;

    // The planner reads annotations, so it plans the promotion; apply reads the document.
    let plan = world
        .run(&["plan", "--format", "json", "--out", "plan.json"])
        .await
        .expect(0)
        .json();
    assert!(
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "promote:library/rooty:1"),
        "{plan:#}"
    );
    for args in [vec!["apply", "plan.json"], vec!["apply", "--auto-approve"]] {
        let run = world.run(&args).await.expect(3);
        assert!(run.stdout.contains("the verdict fails"), "{}", run.stdout);
        assert!(c.get_manifest("live/library/rooty", "1").await.is_none());
    }
    world.check_path();
}

async fn two_applies_converge(path: Path) {
    let world = World::start(path).await;
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

/// airlock's own client for the proxy (library use, no binary).
fn registry_at(url: &str) -> Registry {
    Registry::from_spec(&RegistrySpec {
        key: "standin".into(),
        endpoint: Endpoint::Url(url.to_string()),
        auth: AuthSpec::Anonymous,
        transfer: Transfer::Stream,
        max_concurrency: 4,
        timeouts: Timeouts::default(),
        arm: None,
    })
    .unwrap()
}

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
    let reg = registry_at(&proxy.url());
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
    delete(&c, repo, &sig.digest.to_string()).await;
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
    let reg = registry_at(&proxy.url());
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
    let world = World::start(Path::Api).await;
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
    let reg = registry_at(&world.target_url());
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
