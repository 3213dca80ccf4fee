//! The cluster side, checked by real third-party tools: `images --format kustomize` rendered
//! by `kubectl kustomize` over manifests that write image names every way charts do;
//! `admission` policies evaluated on allowed and denied pods by kubernetes-validate,
//! cel-python, regopy, jsonschema (Kyverno's CRD schema) and google-re2 (tests/python); and
//! cosign signature tags that travel to quarantine and live without upsetting `audit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airlock::model::{Digest, RawManifest, media};
use serde_json::{Value, json};

use crate::support::airlock::{Workdir, config, seed_walkthrough, sources};
use crate::support::client::{RawClient, push_raw};
use crate::support::images::{Blob, Content, ImageBuilder, TestContent};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::skopeo::skopeo_digest;

/// The Python with the evaluators: `AIRLOCK_TEST_PYTHON` (exported by scripts/test), else the
/// venv scripts/test makes under the target directory.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRLOCK_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let p = target.join("pyenv/bin/python");
    assert!(
        p.exists(),
        "the Python test evaluators are missing: run scripts/test (it installs them into {}) or set AIRLOCK_TEST_PYTHON",
        p.display()
    );
    p
}

fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Run a program to completion; panic with its output unless it exits 0.
async fn run_ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Real upstream and target registries; the walkthrough's six images plus busybox 1.36.1
/// (a second tag of one repository), `ancient` (blocked by `max_age`) and a cosign-style
/// `.sig` tag for busybox 1.33.0; applied once.
struct Cluster {
    upstream: TestRegistry,
    target: TestRegistry,
    w: Workdir,
    /// `path:tag` → the digest now in live (blocked images: the quarantined digest).
    digests: BTreeMap<String, Digest>,
    /// Cosign-style manifests pushed upstream: (path, tag, manifest) — a `.sig` for busybox
    /// 1.33.0 and an `.att` for kustomize-controller.
    signatures: Vec<(&'static str, String, RawManifest)>,
    /// How many images were imported.
    imported: usize,
}

const GATE: &str = "[gate.policy]\nmax_age = \"3650d\"\n";

impl Cluster {
    async fn start() -> Cluster {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let walkthrough = seed_walkthrough(&upstream).await;
        let mut digests: BTreeMap<String, Digest> = walkthrough
            .iter()
            .map(|w| (w.path_tag(), w.content.top().digest.clone()))
            .collect();
        let extra = [
            ("library/busybox", "1.36.1", "2023-05-19T00:00:00Z"),
            ("library/ancient", "1.0", "2001-01-01T00:00:00Z"),
        ];
        let mut declared = sources(&walkthrough);
        for (path, tag, created) in extra {
            let img = ImageBuilder::new(&format!("{path}:{tag}"))
                .docker()
                .created(created)
                .build();
            push_raw(
                &upstream.url(),
                path,
                tag,
                &TestContent::Image(img.clone()),
                None,
            )
            .await;
            digests.insert(format!("{path}:{tag}"), img.manifest.digest.clone());
            declared.push(format!("docker.io/{path}:{tag}"));
        }
        let mut signatures = Vec::new();
        for (path, subject, suffix) in [
            ("library/busybox", "library/busybox:1.33.0", "sig"),
            (
                "fluxcd/kustomize-controller",
                "fluxcd/kustomize-controller:v0.6.3",
                "att",
            ),
        ] {
            let subject = &digests[subject];
            let tag = format!("sha256-{}.{suffix}", subject.hex());
            let m = push_signature(&upstream.url(), path, subject, &tag).await;
            signatures.push((path, tag, m));
        }
        let w = Workdir::new(&config(&upstream.url(), &target.url(), &declared, GATE));
        // ancient is blocked by the gate (AIRLOCK-IMAGE-AGE): exit 3, the rest promoted.
        let run = w.run(&["apply", "--auto-approve"]).await.expect(3);
        assert!(run.stdout.contains("AIRLOCK-IMAGE-AGE"), "{}", run.stdout);
        Cluster {
            upstream,
            target,
            w,
            imported: declared.len(),
            digests,
            signatures,
        }
    }

    fn digest(&self, path_tag: &str) -> &Digest {
        &self.digests[path_tag]
    }
}

/// Push a cosign-style simple-signing signature for `subject` under `tag`.
async fn push_signature(url: &str, repo: &str, subject: &Digest, tag: &str) -> RawManifest {
    let client = RawClient::new(url, None);
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": format!("docker.io/{repo}")},
            "image": {"docker-manifest-digest": subject.to_string()},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string();
    let config = Blob::memory(media::OCI_CONFIG, "{}".as_bytes().to_vec());
    let layer = Blob::memory(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        payload.into_bytes(),
    );
    client.push_blob(repo, &config).await;
    client.push_blob(repo, &layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.digest.to_string(), "size": config.size},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": layer.digest.to_string(),
            "size": layer.size,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDairlocktestsignature"},
        }],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let m = RawManifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: media::OCI_MANIFEST.to_string(),
    };
    client.put_manifest(repo, tag, &m).await;
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_kustomize_pins_every_spelling_to_its_live_digest() {
    let c = Cluster::start().await;
    let out = c.w.run(&["images", "--format", "kustomize"]).await;
    // ancient is blocked: reported as blocked on stderr, exit 3, no entry.
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains("docker.io/library/ancient:1.0 is not in live")
            && out
                .stderr
                .contains("blocked by the gate (AIRLOCK-IMAGE-AGE"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("run `airlock apply`"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("ancient"), "{}", out.stdout);

    let live = |path_tag: &str| {
        let path = path_tag.split(':').next().unwrap();
        format!("{}/live/{path}@{}", c.target.host(), c.digest(path_tag))
    };
    let bb133 = "library/busybox:1.33.0";
    let bb136 = "library/busybox:1.36.1";
    let falco = "falcosecurity/falco:0.26.2";
    let d136 = c.digest(bb136).to_string();
    // (as written in the manifest, what it must become; None = left alone)
    let cases: Vec<(String, Option<String>)> = vec![
        (
            "ghcr.io/fluxcd/kustomize-controller:v0.6.3".into(),
            Some(live("fluxcd/kustomize-controller:v0.6.3")),
        ),
        (
            "ghcr.io/fluxcd/source-controller".into(),
            Some(live("fluxcd/source-controller:v0.6.3")),
        ),
        ("falcosecurity/falco:0.26.2".into(), Some(live(falco))),
        (
            "docker.io/falcosecurity/falco:0.26.2".into(),
            Some(live(falco)),
        ),
        (
            "index.docker.io/falcosecurity/falco:0.26.2".into(),
            Some(live(falco)),
        ),
        (
            "registry-1.docker.io/falcosecurity/falco:0.26.2".into(),
            Some(live(falco)),
        ),
        // One declared tag: every version of the repository is pinned to it (kustomize's rule).
        ("falcosecurity/falco:0.99.0".into(), Some(live(falco))),
        ("busybox:1.33.0".into(), Some(live(bb133))),
        ("library/busybox:1.33.0".into(), Some(live(bb133))),
        ("index.docker.io/busybox:1.33.0".into(), Some(live(bb133))),
        (
            "registry-1.docker.io/library/busybox:1.33.0".into(),
            Some(live(bb133)),
        ),
        ("docker.io/busybox:1.36.1".into(), Some(live(bb136))),
        ("docker.io/library/busybox:1.36.1".into(), Some(live(bb136))),
        (
            "index.docker.io/library/busybox:1.36.1".into(),
            Some(live(bb136)),
        ),
        (format!("busybox:1.36.1@{d136}"), Some(live(bb136))),
        (format!("busybox@{d136}"), Some(live(bb136))),
        // Two declared tags: other versions are never pinned to a wrong digest.
        ("busybox:1.35.0".into(), None),
        ("busybox".into(), None),
        (
            "weaveworks/kured:1.6.1".into(),
            Some(live("weaveworks/kured:1.6.1")),
        ),
        (
            "envoyproxy/envoy-alpine:v1.15.0".into(),
            Some(live("envoyproxy/envoy-alpine:v1.15.0")),
        ),
        ("docker.io/library/ancient:1.0".into(), None),
        ("quay.io/other/thing:1".into(), None),
    ];
    let containers: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (image, _))| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox:1.33.0"}],
                    "containers": containers,
                },
            },
        },
    });
    let dir = c.w.path().join("kustomize");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deployment.json"), deployment.to_string()).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("resources:\n- deployment.json\n{}", out.stdout),
    )
    .unwrap();
    let rendered = run_ok(
        Path::new("kubectl"),
        &["kustomize", dir.to_str().unwrap()],
        None,
    )
    .await;
    let docs: Value = serde_json::from_str(
        &run_ok(
            &python(),
            &[python_script("yaml_to_json.py").to_str().unwrap()],
            Some(&rendered),
        )
        .await,
    )
    .unwrap();
    let spec = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][0]["image"],
        live(bb133),
        "{rendered}"
    );
    for (i, (written, want)) in cases.iter().enumerate() {
        let got = spec["containers"][i]["image"].as_str().unwrap();
        let want = want.clone().unwrap_or_else(|| written.clone());
        assert_eq!(got, want, "{written} rendered as {got}\n{}", out.stdout);
    }
}

/// An UPDATE case: name, old pod, new pod, admitted by vap/gatekeeper/kyverno, admitted by the
/// Azure built-in, the image a denial must name.
type UpdateCase = (&'static str, Value, Value, bool, bool, Option<String>);

#[tokio::test(flavor = "multi_thread")]
async fn admission_policies_admit_exactly_the_live_digests_in_every_evaluator() {
    let c = Cluster::start().await;
    let host = "airlockacr.azurecr.io";
    let dir = c.w.path().join("admission");
    std::fs::create_dir_all(&dir).unwrap();
    for (format, file) in [
        ("vap", "vap.yaml"),
        ("gatekeeper", "gatekeeper.yaml"),
        ("kyverno", "kyverno.yaml"),
        ("azure-policy", "azure-policy.json"),
    ] {
        let out =
            c.w.run(&["admission", "--format", format, "--live-host", host])
                .await
                .expect(0);
        assert!(
            out.stderr
                .contains("not admitted: docker.io/library/ancient:1.0"),
            "{}",
            out.stderr
        );
        std::fs::write(dir.join(file), &out.stdout).unwrap();
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kyverno/clusterpolicy-v1.schema.json"),
        dir.join("kyverno-schema.json"),
    )
    .unwrap();

    let l = format!("{host}/live");
    let d = |k: &str| c.digest(k).to_string();
    let (d1, d2) = (d("library/busybox:1.33.0"), d("library/busybox:1.36.1"));
    let good = format!("{l}/library/busybox@{d1}");
    let pod = |containers: &[&str], init: &[&str], ephemeral: &[&str]| {
        let list = |v: &[&str]| -> Vec<Value> {
            v.iter()
                .enumerate()
                .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
                .collect()
        };
        let mut spec = json!({"containers": list(containers)});
        if !init.is_empty() {
            spec["initContainers"] = json!(list(init));
        }
        if !ephemeral.is_empty() {
            spec["ephemeralContainers"] = json!(list(ephemeral));
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    };
    let mut cases: Vec<(String, &str, Value, bool, Option<String>)> = vec![
        (
            "all-live-by-digest".into(),
            "apps",
            pod(
                &[
                    &good,
                    &format!(
                        "{l}/fluxcd/kustomize-controller@{}",
                        d("fluxcd/kustomize-controller:v0.6.3")
                    ),
                ],
                &[&format!("{l}/library/busybox@{d2}")],
                &[&format!(
                    "{l}/weaveworks/kured@{}",
                    d("weaveworks/kured:1.6.1")
                )],
            ),
            true,
            None,
        ),
        (
            "live-tag-and-digest".into(),
            "apps",
            pod(
                &[
                    &format!("{l}/library/busybox:1.36.1@{d2}"),
                    &format!(
                        "{l}/fluxcd/source-controller:v0.6.3@{}",
                        d("fluxcd/source-controller:v0.6.3")
                    ),
                ],
                &[],
                &[],
            ),
            true,
            None,
        ),
        (
            "exempt-namespace".into(),
            "kube-system",
            pod(&["busybox:1.33.0"], &[], &[]),
            true,
            None,
        ),
    ];
    let nope = Digest::of(b"not in live").to_string();
    let denied = [
        (
            "upstream-tag",
            "docker.io/library/busybox:1.33.0".to_string(),
        ),
        ("upstream-short-name", "busybox:1.33.0".into()),
        ("upstream-digest", format!("docker.io/library/busybox@{d1}")),
        (
            "live-tag-without-digest",
            format!("{l}/library/busybox:1.33.0"),
        ),
        ("live-name-alone", format!("{l}/library/busybox")),
        ("digest-not-in-live", format!("{l}/library/busybox@{nope}")),
        (
            "blocked-image-quarantined-digest",
            format!("{l}/library/ancient@{}", d("library/ancient:1.0")),
        ),
        (
            "another-repositorys-digest",
            format!("{l}/library/busybox@{}", d("weaveworks/kured:1.6.1")),
        ),
        (
            "quarantine",
            format!("{host}/quarantine/library/busybox@{d1}"),
        ),
        (
            "look-alike-suffix",
            format!("{host}.evil.example/live/library/busybox@{d1}"),
        ),
        (
            "look-alike-port",
            format!("{host}:443/live/library/busybox@{d1}"),
        ),
        (
            "look-alike-dot",
            format!("airlockacrXazurecr.io/live/library/busybox@{d1}"),
        ),
        (
            "look-alike-prefix",
            format!("evil.example/{host}/live/library/busybox@{d1}"),
        ),
        (
            "look-alike-subdomain",
            format!("x{host}/live/library/busybox@{d1}"),
        ),
        (
            "upper-case-host",
            format!("AIRLOCKACR.azurecr.io/live/library/busybox@{d1}"),
        ),
        (
            "path-traversal-up",
            format!("{l}/library/busybox/../../quarantine/library/busybox@{d1}"),
        ),
        (
            "path-traversal-dot",
            format!("{host}/live/./library/busybox@{d1}"),
        ),
        (
            "path-traversal-back",
            format!("{l}/../live/library/busybox@{d1}"),
        ),
        ("digest-suffix", format!("{good}0")),
        ("double-digest", format!("{good}@{d1}")),
        ("empty-tag", format!("{l}/library/busybox:@{d1}")),
    ];
    for (name, image) in &denied {
        cases.push((
            name.to_string(),
            "apps",
            pod(&[&good, image], &[], &[]),
            false,
            Some(image.clone()),
        ));
    }
    cases.push((
        "bad-init-container".into(),
        "apps",
        pod(&[&good], &["busybox:1.33.0"], &[]),
        false,
        Some("busybox:1.33.0".into()),
    ));
    cases.push((
        "bad-ephemeral-container".into(),
        "apps",
        pod(&[&good], &[], &["busybox:1.33.0"]),
        false,
        Some("busybox:1.33.0".into()),
    ));
    cases.push((
        "namespace-like-an-exempt-one".into(),
        "kube-system-x",
        pod(&["busybox:1.33.0"], &[], &[]),
        false,
        Some("busybox:1.33.0".into()),
    ));

    // UPDATE (oldPod → pod): an image the pod already had is not checked again (a running pod
    // whose digest left live can still be labelled or finalized); a changed or added one is.
    // The Azure built-in has no such notion: it checks every image (last field).
    let gone = format!("{l}/library/busybox@{nope}");
    let updates: Vec<UpdateCase> = vec![
        (
            "update-keeps-an-image-that-left-live",
            pod(&[&gone], &[], &[]),
            pod(&[&gone], &[], &[]),
            true,
            false,
            None,
        ),
        (
            "update-changes-an-image-to-one-not-in-live",
            pod(&[&good], &[], &[]),
            pod(&["busybox:1.33.0"], &[], &[]),
            false,
            false,
            Some("busybox:1.33.0".into()),
        ),
        (
            "update-adds-an-ephemeral-container-not-in-live",
            pod(&[&good], &[], &[]),
            pod(&[&good], &[], &[&gone]),
            false,
            false,
            Some(gone.clone()),
        ),
        (
            "update-to-a-live-digest",
            pod(&[&gone], &[], &[]),
            pod(&[&good], &[], &[]),
            true,
            true,
            None,
        ),
    ];
    let mut json_cases: Vec<Value> = cases
        .iter()
        .map(|(name, ns, pod, _, _)| json!({"name": name, "namespace": ns, "pod": pod}))
        .collect();
    for (name, old, new, _, _, _) in &updates {
        json_cases.push(json!({"name": name, "namespace": "apps", "pod": new, "oldPod": old}));
    }
    std::fs::write(
        dir.join("cases.json"),
        serde_json::to_vec(&json_cases).unwrap(),
    )
    .unwrap();
    let result: Value = serde_json::from_str(
        &run_ok(
            &python(),
            &[
                python_script("admission_eval.py").to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
            None,
        )
        .await,
    )
    .unwrap();
    for format in ["vap", "gatekeeper", "kyverno", "azure-policy"] {
        for (name, _, _, allowed, bad) in &cases {
            let r = &result[format][name];
            assert_eq!(r["allowed"], *allowed, "{format} {name}: {r}");
            if let Some(bad) = bad {
                let msg = r["message"].as_str().unwrap();
                assert!(
                    msg.contains(bad.as_str()),
                    "{format} {name} names the image: {msg}"
                );
                if format != "azure-policy" {
                    assert!(
                        msg.contains("airlock.toml") && msg.contains("airlock apply"),
                        "{format} {name} says how to get it into live: {msg}"
                    );
                }
            }
        }
    }

    for format in ["vap", "gatekeeper", "kyverno", "azure-policy"] {
        for (name, _, _, allowed, azure_allowed, bad) in &updates {
            let r = &result[format][name];
            let want = if format == "azure-policy" {
                azure_allowed
            } else {
                allowed
            };
            assert_eq!(r["allowed"], *want, "{format} {name}: {r}");
            if let Some(bad) = bad {
                assert!(
                    r["message"].as_str().unwrap().contains(bad.as_str()),
                    "{format} {name}: {r}"
                );
            }
        }
    }

    // Without --live-host the policies name the live registry's own host.
    let own =
        c.w.run(&["admission", "--format", "azure-policy"])
            .await
            .expect(0)
            .json();
    let re = own["allowedContainerImagesRegex"]["value"]
        .as_str()
        .unwrap();
    assert!(
        re.starts_with(&format!(
            "^(?:{}/live/",
            c.target.host().replace('.', "[.]")
        )),
        "{re}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cosign_signature_tags_travel_to_quarantine_and_live_and_audit_skips_only_those() {
    let c = Cluster::start().await;
    for (path, tag, m) in &c.signatures {
        for area in ["quarantine", "live"] {
            let got = skopeo_digest(&c.target.host(), &format!("{area}/{path}:{tag}")).await;
            assert_eq!(got, m.digest, "{area}/{path}:{tag}");
        }
    }
    // Looked up by tag: one GET per suffix and imported image upstream, no tag listing.
    for suffix in [".sig", ".att", ".sbom"] {
        assert_eq!(
            c.upstream.count_requests("GET", suffix),
            c.imported,
            "{suffix}"
        );
    }
    assert_eq!(c.upstream.count_requests("GET", "/tags/list"), 0);
    // The signature tag is not a live image: audit is clean.
    let audit =
        c.w.run(&["audit", "--format", "json"])
            .await
            .expect(0)
            .json();
    let tags: Vec<&str> = audit["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    for (_, tag, _) in &c.signatures {
        assert!(!tags.contains(&tag.as_str()), "{audit:#}");
    }
    assert_eq!(audit["violations"], 0, "{audit:#}");

    // A signature tag whose subject is not in that repository is not managed: a violation.
    let orphan = Digest::of(b"no such image");
    let orphan_tag = format!("sha256-{}.sig", orphan.hex());
    push_signature(
        &c.target.url(),
        "live/library/busybox",
        &orphan,
        &orphan_tag,
    )
    .await;
    let audit =
        c.w.run(&["audit", "--format", "json"])
            .await
            .expect(3)
            .json();
    let flagged: Vec<&Value> = audit["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["violation"].is_string())
        .collect();
    assert_eq!(flagged.len(), 1, "{audit:#}");
    assert_eq!(flagged[0]["tag"], orphan_tag.as_str());
}
