//! Shared by the promotion-record tests (`records_bound`, `signed_records`, `saved_plan`,
//! `referrers_api`): a world of an upstream with the walkthrough images and a target registry,
//! with busybox and kured declared (quarantine and live on the target, the built-in policy
//! gate) and a signing key at hand; readers of the audit report; and the referrers of a
//! subject as the tests read and rewrite them.
//!
//! A world keeps referrers one of two ways ([`RecordPath`]): plain Distribution 2.8 (no
//! referrers API: airlock keeps the tag-schema index `sha256-<hex>`), or the same
//! Distribution behind the referrers API stand-in (`FaultProxy::with_referrers_api`). A
//! scenario written once takes the path as a parameter and [`on_both_paths!`] makes it two
//! tests, `<scenario>::tag_schema` and `<scenario>::referrers_api`; each ends with
//! [`RecordWorld::check_path`], which proves the path was the one configured.

use airlock::config::{AuthSpec, Endpoint, RegistrySpec, Timeouts, Transfer};
use airlock::model::{Digest, RawManifest, media};
use airlock::records::{self, Document};
use airlock::registry::Registry;
use reqwest::StatusCode;

use super::airlock::{Run, Workdir, config, seed_walkthrough};
use super::client::RawClient;
use super::images::{Blob, Content, WalkthroughImage};
use super::proxy::FaultProxy;
use super::registry::{Auth, TestRegistry};

pub const BUSYBOX: &str = "library/busybox";
pub const KURED: &str = "weaveworks/kured";

/// Where the signing key is passed (`env://`), and the `[signing]` section that reads it.
pub const KEY_ENV: &str = "AIRLOCK_TEST_SIGNING_KEY";
pub const SIGNING: &str =
    "[signing]\nkey = \"env://AIRLOCK_TEST_SIGNING_KEY\"\npublic_key = \"airlock.pub\"\n";

/// How the target registry keeps referrers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordPath {
    /// Distribution 2.8 as it is: the tag schema.
    TagSchema,
    /// Distribution behind the referrers API stand-in.
    ReferrersApi,
}

/// One scenario `async fn <scenario>(path: RecordPath)`, two tests:
/// `<scenario>::tag_schema` and `<scenario>::referrers_api`.
#[allow(unused_macros)] // the bench includes the support modules too
macro_rules! on_both_paths {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use $crate::support::records::RecordPath;

            #[tokio::test(flavor = "multi_thread")]
            async fn tag_schema() {
                super::$scenario(RecordPath::TagSchema).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn referrers_api() {
                super::$scenario(RecordPath::ReferrersApi).await;
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use on_both_paths;

/// The upstream, the target (behind the stand-in on the referrers-API path), the seeded
/// walkthrough images, a work directory whose configuration is [`world_config`] with nothing
/// extra, and a P-256 signing key (`airlock.key`, `airlock.pub` in the work directory;
/// `[signing]` is configured by [`RecordWorld::sign`]).
pub struct RecordWorld {
    pub path: RecordPath,
    pub upstream: TestRegistry,
    pub target: TestRegistry,
    pub standin: Option<FaultProxy>,
    pub images: Vec<WalkthroughImage>,
    pub w: Workdir,
    /// The PKCS#8 PEM private key (as `openssl genpkey` wrote it).
    pub key: String,
}

impl RecordWorld {
    /// A world on the tag-schema path.
    pub async fn start() -> RecordWorld {
        RecordWorld::on(RecordPath::TagSchema).await
    }

    pub async fn on(path: RecordPath) -> RecordWorld {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let standin = match path {
            RecordPath::TagSchema => None,
            RecordPath::ReferrersApi => Some(FaultProxy::with_referrers_api(&target.url()).await),
        };
        let images = seed_walkthrough(&upstream).await;
        let w = Workdir::new("");
        let key = openssl_keys(w.path());
        let world = RecordWorld {
            path,
            upstream,
            target,
            standin,
            images,
            w,
            key,
        };
        world.w.set_config(&world.config(""));
        world
    }

    /// Where airlock and the test's own client reach the target.
    pub fn target_url(&self) -> String {
        match &self.standin {
            Some(p) => p.url(),
            None => self.target.url(),
        }
    }

    /// This world's configuration with `extra` after `[live]`.
    pub fn config(&self, extra: &str) -> String {
        world_config(&self.upstream.url(), &self.target_url(), extra)
    }

    /// Declare `images` instead of busybox and kured, with `extra` after `[live]`.
    pub fn configure(&self, images: &[String], extra: &str) {
        self.w.set_config(&config(
            &self.upstream.url(),
            &self.target_url(),
            images,
            extra,
        ));
    }

    /// Turn `[signing]` on (busybox and kured declared).
    pub fn sign(&self) {
        self.w.set_config(&self.config(SIGNING));
    }

    /// Run airlock in the work directory, the signing key in [`KEY_ENV`].
    pub async fn run(&self, args: &[&str]) -> Run {
        self.w.run_env(args, &[(KEY_ENV, &self.key)]).await
    }

    pub fn image(&self, path: &str) -> &WalkthroughImage {
        self.images.iter().find(|i| i.path == path).unwrap()
    }

    pub fn digest(&self, path: &str) -> Digest {
        self.image(path).content.top().digest.clone()
    }

    /// A raw client of the target (through the stand-in on the referrers-API path, so what
    /// it pushes and deletes is indexed as on a registry with the API).
    pub fn client(&self) -> RawClient {
        RawClient::new(&self.target_url(), None)
    }

    /// `airlock audit --format json`: the run and its report.
    pub async fn audit(&self) -> (Run, serde_json::Value) {
        let run = self.run(&["audit", "--format", "json"]).await;
        let json = run.json();
        (run, json)
    }

    /// The manifests listed as referrers of `subject` in `repo` whose predicate annotation
    /// is `predicate`: from the tag-schema index, or from the referrers API read with
    /// reqwest (checking the answer is the spec's OCI index).
    pub async fn listed(&self, repo: &str, subject: &Digest, predicate: &str) -> Vec<RawManifest> {
        let c = self.client();
        let entries: Vec<serde_json::Value> = match self.path {
            RecordPath::TagSchema => match c.get_manifest(repo, &subject.referrers_tag()).await {
                None => vec![],
                Some(index) => {
                    let v: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
                    v["manifests"].as_array().cloned().unwrap_or_default()
                }
            },
            RecordPath::ReferrersApi => api_listing(&self.target_url(), repo, subject, None).await,
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

    /// The promotion records listed for `subject` in `repo`, by manifest.
    pub async fn records(&self, repo: &str, subject: &Digest) -> Vec<RawManifest> {
        let listed = self
            .listed(repo, subject, records::PROMOTION_PREDICATE)
            .await;
        if self.path == RecordPath::TagSchema {
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
    pub async fn list_only(&self, repo: &str, subject: &Digest, keep: &[&RawManifest]) {
        let c = self.client();
        match self.path {
            RecordPath::TagSchema => list_only(&c, repo, subject, keep).await,
            RecordPath::ReferrersApi => {
                for e in api_listing(&self.target_url(), repo, subject, None).await {
                    let d: Digest = e["digest"].as_str().unwrap().parse().unwrap();
                    if !keep.iter().any(|m| m.digest == d) {
                        delete_manifest(&c, repo, &d).await;
                    }
                }
                let mut got: Vec<String> = api_listing(&self.target_url(), repo, subject, None)
                    .await
                    .iter()
                    .map(|e| e["digest"].as_str().unwrap().to_string())
                    .collect();
                got.sort();
                let mut want: Vec<String> = keep.iter().map(|m| m.digest.to_string()).collect();
                want.sort();
                assert_eq!(got, want, "the stand-in lists exactly the kept referrers");
            }
        }
    }

    /// Push an artifact manifest and its blobs (config `{}`, one layer) into `repo`.
    pub async fn push_artifact(&self, repo: &str, m: &RawManifest, layer: &[u8]) {
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

    /// [`RecordWorld::push_artifact`], then [`RecordWorld::list_only`] it for `subject`.
    pub async fn push_only(&self, repo: &str, subject: &Digest, m: &RawManifest, layer: &[u8]) {
        self.push_artifact(repo, m, layer).await;
        self.list_only(repo, subject, &[m]).await;
    }

    /// The path was the one configured: on the referrers-API path no `sha256-` tag was read
    /// or written (proxy log and Distribution's own access log) and the referrers endpoint
    /// answered; on the tag-schema path airlock wrote tag-schema indexes.
    pub fn check_path(&self) {
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
                let tagged: Vec<String> = proxy
                    .requests()
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

/// `GET /v2/<repo>/referrers/<subject>` with reqwest: the spec's answer (200, an OCI index,
/// `OCI-Filters-Applied` exactly when filtered), its `manifests`.
pub async fn api_listing(
    base: &str,
    repo: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Vec<serde_json::Value> {
    let mut url = reqwest::Url::parse(&format!("{base}/v2/{repo}/referrers/{subject}")).unwrap();
    if let Some(t) = artifact_type {
        url.query_pairs_mut().append_pair("artifactType", t);
    }
    let resp = super::http_client().get(url).send().await.unwrap();
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

/// `DELETE /v2/<repo>/manifests/<digest>`, accepted (202).
pub async fn delete_manifest(c: &RawClient, repo: &str, digest: &Digest) {
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

/// busybox 1.33.0 and kured 1.6.1 from `upstream`, quarantine and live in `target`.
pub fn world_config(upstream: &str, target: &str, extra: &str) -> String {
    config(
        upstream,
        target,
        &[
            "docker.io/library/busybox:1.33.0".to_string(),
            "docker.io/weaveworks/kured:1.6.1".to_string(),
        ],
        extra,
    )
}

/// The audit finding of `repository:tag`.
pub fn finding<'a>(report: &'a serde_json::Value, repo: &str, tag: &str) -> &'a serde_json::Value {
    report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["repository"] == repo && t["tag"] == tag)
        .unwrap_or_else(|| panic!("{repo}:{tag} not in the audit: {report:#}"))
}

/// The audit's violation for `repository:tag`; panics when it passed.
pub fn violation(report: &serde_json::Value, repo: &str, tag: &str) -> String {
    finding(report, repo, tag)["violation"]
        .as_str()
        .unwrap_or_else(|| panic!("{repo}:{tag} passed the audit: {report:#}"))
        .to_string()
}

/// The promotion records listed for `digest` in `repo` (the tag-schema index), by manifest.
pub async fn listed_records(c: &RawClient, repo: &str, digest: &Digest) -> Vec<RawManifest> {
    let Some(index) = c.get_manifest(repo, &digest.referrers_tag()).await else {
        return vec![];
    };
    let v: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    let mut out = Vec::new();
    for e in v["manifests"].as_array().unwrap() {
        if e["annotations"][records::ANN_PREDICATE] != records::PROMOTION_PREDICATE {
            continue;
        }
        if let Some(m) = c.get_manifest(repo, e["digest"].as_str().unwrap()).await {
            out.push(m);
        }
    }
    out
}

/// Make `repo:sha256-<subject>` an index listing exactly `entries` (artifact type kept).
pub async fn list_only(c: &RawClient, repo: &str, subject: &Digest, entries: &[&RawManifest]) {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
            serde_json::json!({
                "mediaType": m.media_type,
                "digest": m.digest.to_string(),
                "size": m.bytes.len(),
                "artifactType": v["artifactType"],
                "annotations": v["annotations"],
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    let index = RawManifest::new(serde_json::to_vec(&index).unwrap(), None).unwrap();
    c.put_manifest(repo, &subject.referrers_tag(), &index).await;
}

/// `openssl genpkey` a P-256 key into `dir` (airlock.key) and its public key (airlock.pub).
pub fn openssl_keys(dir: &std::path::Path) -> String {
    let key = dir.join("airlock.key");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(dir.join("airlock.pub"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read_to_string(key).unwrap()
}

/// airlock's own client (library use, no binary) of the anonymous registry at `url`, under the
/// registry key `key`: lookups exactly as airlock makes them.
pub fn airlock_registry(key: &str, url: &str) -> Registry {
    Registry::from_spec(&RegistrySpec {
        key: key.into(),
        endpoint: Endpoint::Url(url.to_string()),
        auth: AuthSpec::Anonymous,
        transfer: Transfer::Stream,
        max_concurrency: 4,
        timeouts: Timeouts::default(),
        arm: None,
    })
    .unwrap()
}

/// The document of a record or verdict artifact `m` in `repo` (its one layer, decoded as
/// airlock decodes it: a DSSE envelope or a 0.1 plain-JSON document).
pub async fn document_of<D: Document>(c: &RawClient, repo: &str, m: &RawManifest) -> D {
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    let layer: Digest = v["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    let mt = v["layers"][0]["mediaType"].as_str().unwrap();
    records::decode::<D>(
        v["artifactType"].as_str(),
        mt,
        &c.get_blob(repo, &layer).await,
    )
    .document
    .unwrap_or_else(|| panic!("{repo}@{}: not a document of this type", m.digest))
}

/// The documents of predicate `predicate` about `subject` in `repo` of the anonymous registry
/// at `url`: listed by airlock's own lookup (whatever way the registry keeps referrers), each
/// manifest and layer read back with the raw client. With the artifact's digest.
pub async fn documents<D: Document>(
    url: &str,
    repo: &str,
    subject: &Digest,
    predicate: &str,
) -> Vec<(Digest, D)> {
    let c = RawClient::new(url, None);
    let listed = airlock_registry("target", url)
        .referrers(repo, subject, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    for r in listed {
        let m = c.get_manifest(repo, &r.digest.to_string()).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        if v["annotations"][records::ANN_PREDICATE] == predicate {
            out.push((m.digest.clone(), document_of(&c, repo, &m).await));
        }
    }
    out
}
