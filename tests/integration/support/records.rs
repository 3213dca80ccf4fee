//! Shared by the promotion-record tests (`records_bound`, `signed_records`): a world of an
//! upstream with the walkthrough images and a target registry, with busybox and kured
//! declared (quarantine and live on the target, the built-in policy gate); readers of the
//! audit report; and the tag-schema referrers index as the tests read and rewrite it.

use airlock::config::{AuthSpec, Endpoint, RegistrySpec, Timeouts, Transfer};
use airlock::model::{Digest, RawManifest, media};
use airlock::records::{self, Document};
use airlock::registry::Registry;

use super::airlock::{Run, Workdir, config, seed_walkthrough};
use super::client::RawClient;
use super::images::{Content, WalkthroughImage};
use super::registry::{Auth, TestRegistry};

pub const BUSYBOX: &str = "library/busybox";
pub const KURED: &str = "weaveworks/kured";

/// The upstream, the target, the seeded walkthrough images and a work directory whose
/// configuration is [`world_config`] with nothing extra.
pub struct RecordWorld {
    pub upstream: TestRegistry,
    pub target: TestRegistry,
    pub images: Vec<WalkthroughImage>,
    pub w: Workdir,
}

impl RecordWorld {
    pub async fn start() -> RecordWorld {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let images = seed_walkthrough(&upstream).await;
        let w = Workdir::new(&world_config(&upstream.url(), &target.url(), ""));
        RecordWorld {
            upstream,
            target,
            images,
            w,
        }
    }

    /// This world's configuration with `extra` after `[live]`.
    pub fn config(&self, extra: &str) -> String {
        world_config(&self.upstream.url(), &self.target.url(), extra)
    }

    pub fn image(&self, path: &str) -> &WalkthroughImage {
        self.images.iter().find(|i| i.path == path).unwrap()
    }

    pub fn digest(&self, path: &str) -> Digest {
        self.image(path).content.top().digest.clone()
    }

    pub fn client(&self) -> RawClient {
        RawClient::new(&self.target.url(), None)
    }

    /// `airlock audit --format json`: the run and its report.
    pub async fn audit(&self) -> (Run, serde_json::Value) {
        let run = self.w.run(&["audit", "--format", "json"]).await;
        let json = run.json();
        (run, json)
    }
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
    records::decode::<D>(v["artifactType"].as_str(), mt, &c.get_blob(repo, &layer).await)
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
