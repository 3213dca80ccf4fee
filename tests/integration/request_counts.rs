//! Request counts of a full gated apply (issue 13, item 4 "Cheap"), from the target
//! registry's access log (a [`FaultProxy`] in front of it): small images shaped like the
//! benchmark's (one of four shared 1 MiB base layers, one small unique layer, a config),
//! imported, scanned and promoted with signed records (`[signing] key`). Counts, never times.
//!
//! The breakdown per kind is printed (`cargo test --test integration request_counts --
//! --nocapture`) and asserted exactly where it is deterministic.

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};

use crate::support::airlock::{Workdir, config};
use crate::support::client::RawClient;
use crate::support::images::{Format, ImageBuilder, TestImage, random_layer_blob};
use crate::support::proxy::{FaultProxy, ProxyRequest};
use crate::support::records::openssl_keys;
use crate::support::registry::{Auth, TestRegistry};

const KEY_ENV: &str = "AIRLOCK_TEST_SIGNING_KEY";
const SIGNING: &str =
    "[signing]\nkey = \"env://AIRLOCK_TEST_SIGNING_KEY\"\npublic_key = \"airlock.pub\"\n";

/// What a request to the target registry was for.
fn kind(r: &ProxyRequest) -> String {
    let path = r.path.as_str();
    let m = r.method.as_str();
    let what = if path.contains("/referrers/") {
        "referrers API probe"
    } else if path.contains("/blobs/uploads/") {
        match m {
            "POST" if path.contains("mount=") => "blob mount (POST ?mount)",
            "POST" => "blob upload start (POST)",
            "PUT" => "blob upload finish (PUT ?digest)",
            "PATCH" => "blob upload chunk (PATCH)",
            "DELETE" => "blob upload cancel (DELETE)",
            _ => "blob upload, other",
        }
    } else if path.contains("/blobs/") {
        match m {
            "HEAD" => "blob HEAD",
            "GET" => "blob GET",
            _ => "blob, other",
        }
    } else if let Some((_, reference)) = path.split_once("/manifests/") {
        let reference = reference.split('?').next().unwrap_or_default();
        let schema = reference.starts_with("sha256-");
        let cosign = schema
            && (reference.ends_with(".sig")
                || reference.ends_with(".att")
                || reference.ends_with(".sbom"));
        let by_digest = reference.starts_with("sha256:");
        match (m, cosign, schema, by_digest) {
            (m, true, _, _) => return format!("cosign tag {m}"),
            (m, false, true, _) => return format!("tag-schema index {m}"),
            (m, _, _, true) => return format!("manifest by digest {m}"),
            (m, _, _, _) => return format!("manifest by tag {m}"),
        }
    } else if path == "/v2/" || path == "/v2" {
        "ping"
    } else {
        "other"
    };
    what.to_string()
}

fn breakdown(reqs: &[ProxyRequest]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for r in reqs {
        *by.entry(kind(r)).or_insert(0) += 1;
    }
    by
}

fn print(title: &str, by: &BTreeMap<String, usize>, n: usize) {
    let total: usize = by.values().sum();
    eprintln!(
        "{title}: {total} target requests, {:.2} per image",
        total as f64 / n as f64
    );
    for (k, v) in by {
        eprintln!("  {k:<36} {v:>6}  ({:.2}/image)", *v as f64 / n as f64);
    }
}

fn repo(i: usize) -> String {
    format!("bench/small-{i:04}")
}

/// `n` small images in the upstream, as the benchmark seeds them.
async fn seed(upstream: &TestRegistry, n: usize) -> Vec<TestImage> {
    let dir = tempfile::tempdir().unwrap();
    let bases: Vec<_> = (0..4u64)
        .map(|b| {
            random_layer_blob(
                &dir.path().join(format!("base-{b}.tar")),
                (1 << 20) - 3 * 512,
                3000 + b,
                Format::Oci,
            )
        })
        .collect();
    let images: Vec<TestImage> = (0..n)
        .map(|i| {
            let (base, diff_id) = bases[i % 4].clone();
            ImageBuilder::new(&repo(i))
                .layer_blob(base, diff_id)
                .layer_bytes(format!("small image {i}\n").into_bytes())
                .build()
        })
        .collect();
    let url = upstream.url();
    stream::iter(images.iter().enumerate())
        .for_each_concurrent(8, |(i, img)| {
            let url = url.clone();
            async move {
                RawClient::new(&url, None).push(&repo(i), "1.0", img).await;
            }
        })
        .await;
    drop(dir);
    images
}

/// A full gated apply (import + policy scan + promote + signed records) of `n` small images
/// from a fresh upstream to a fresh target behind a fault proxy (with the referrers-API
/// stand-in when `referrers_api`), and the target
/// requests it cost (printed by kind under `title`). The registries live as long as this.
struct GatedApply {
    _upstream: TestRegistry,
    _target: TestRegistry,
    tp: FaultProxy,
    w: Workdir,
    /// The signing key's PEM, for `KEY_ENV`.
    key: String,
    apply: Vec<ProxyRequest>,
    by: BTreeMap<String, usize>,
}

impl GatedApply {
    async fn run(n: usize, referrers_api: bool, title: &str) -> GatedApply {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let tp = if referrers_api {
            FaultProxy::with_referrers_api(&target.url()).await
        } else {
            FaultProxy::start(&target.url()).await
        };
        seed(&upstream, n).await;
        let srcs: Vec<String> = (0..n)
            .map(|i| format!("docker.io/{}:1.0", repo(i)))
            .collect();
        let w = Workdir::new(&config(&upstream.url(), &tp.url(), &srcs, SIGNING));
        let key = openssl_keys(w.path());
        let applied = w
            .run_env(&["apply", "--auto-approve"], &[(KEY_ENV, key.as_str())])
            .await
            .expect(0);
        assert!(
            applied.stdout.contains(&format!("Apply: {} done", 3 * n)),
            "{}",
            applied.stdout
        );
        let apply = tp.requests();
        let by = breakdown(&apply);
        print(title, &by, n);
        GatedApply {
            _upstream: upstream,
            _target: target,
            tp,
            w,
            key,
            apply,
            by,
        }
    }
}

/// A full gated apply (import + policy scan + promote + signed verdict and promotion record)
/// of N small images, then the no-op plan, counted on the target registry.
///
/// Per image, the apply costs (Distribution 2.8: no referrers API, so tag-schema indexes):
///   - its plan (3): HEAD the quarantine and live tags, read the verdicts (tag-schema
///     index GET; the referrers API is probed once per registry).
///   - import (7): HEAD the quarantine tag (the step's re-check: kept, it spares the copy
///     when a concurrent apply imported the image meanwhile); the config and the unique
///     layer (small blobs): a mount from the repository itself (does it hold it? 202: no,
///     and the upload session it opened takes the monolithic PUT — Distribution 2.8 has no
///     single-request `POST ?digest=` upload, so two is the least), 2 each; the shared base
///     layer: one mount from the repository this apply uploaded it to (the first image
///     of each base: HEAD + POST + PUT instead: large blobs keep their HEAD); the manifest
///     PUT by tag.
///   - scan (7): the empty config `{}` (a mount; the very first one declined and uploaded
///     through its session); the envelope layer (mount-with-fallback + PUT); the verdict
///     manifest PUT (content before its index entry); the index GET — the step's re-check
///     (a current verdict: nothing to do) made from the very read the entry is merged into,
///     as this apply's import has just written the image (otherwise it is made before the
///     scan too) — + PUT and its re-read (kept: the merge check that makes concurrent
///     writers converge, as the registry has no conditional PUT).
///   - promote (12): no live-tag HEAD (the plan saw the tag elsewhere: the re-check is made
///     from the live index read the record merges into, and the tag is looked at only if
///     that index lists a record); the gate from the verdicts as the scan's re-read listed
///     them (this apply wrote the verdict; one from an earlier run is read again; the
///     verdict manifest and document are this client's own writes: no GET); three mounts
///     (config and layers, quarantine → live) and the manifest PUT by digest (content
///     before the record); the record like the verdict (`{}` mount, envelope 2, manifest
///     PUT, index GET + PUT + re-read); the tag PUT (record before tag). No cosign-tag or
///     referrers reads in quarantine: this apply's import found none upstream to carry.
///
/// 29 N + 4 × 2 (the first upload of each base) + 1 (`{}` uploaded once) + 1 (the probe) in
/// all. Before: 32 N + 10 (f7aa75c: the scan's re-check GET before the scan, the promote's
/// gate GET and live-tag HEAD); 1044 for N = 24 (43.5 per image) as merged for records v2,
/// 86cf926 (the breakdowns are in BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_gated_apply_of_small_images_costs_29_target_requests_per_image() {
    const N: usize = 24;
    let g = GatedApply::run(N, false, "full gated apply").await;
    let (tp, w, apply, by) = (&g.tp, &g.w, &g.apply, &g.by);
    let env = [(KEY_ENV, g.key.as_str())];

    let plan = w.run_env(&["plan", "--detailed-exitcode"], &env).await;
    let plan = plan.expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    let noop: Vec<ProxyRequest> = tp.requests().split_off(apply.len());
    let by_noop = breakdown(&noop);
    print("no-op plan", &by_noop, N);

    // The apply, per kind.
    let want: BTreeMap<String, usize> = [
        ("referrers API probe", 1),
        // The plan's observation, then the import's re-check.
        ("manifest by tag HEAD", 3 * N),
        // Image manifest by tag (quarantine), then the live tag.
        ("manifest by tag PUT", 2 * N),
        // The image in live (before its record), the verdict and record manifests.
        ("manifest by digest PUT", 3 * N),
        // The plan's verdict lookup; for each of the two index writes, the read it merges
        // into (which the step's re-check reads too) and the re-read after it.
        ("tag-schema index GET", 5 * N),
        ("tag-schema index PUT", 2 * N),
        // Config, unique layer, two envelopes: a mount-with-fallback each; the `{}` of each
        // record (the first one declined: uploaded through its session); the base layers
        // but the first of each; 3 mounts quarantine → live.
        ("blob mount (POST ?mount)", 4 * N + 2 * N + (N - 4) + 3 * N),
        // The four base layers, once each: HEAD (large blobs keep it) + POST + PUT.
        ("blob HEAD", 4),
        ("blob upload start (POST)", 4),
        // Uploads: config, unique layer, two envelopes per image; the bases; `{}` once.
        ("blob upload finish (PUT ?digest)", 4 * N + 4 + 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(*by, want, "the apply's target requests by kind");
    let total = apply.len();
    assert_eq!(total, 29 * N + 4 * 2 + 1 + 1);
    assert!(total <= 30 * N, "{total} requests for {N} images");
    // Nothing read back that this apply wrote: no blob GET, no manifest GET.
    assert!(!by.contains_key("blob GET"));
    assert!(!by.contains_key("manifest by digest GET"));

    // The no-op plan: HEAD quarantine and live tags, the verdicts (quarantine index; with a
    // public key the newest verdict's manifest, whose envelope is embedded in it: no blob
    // GET), the record (live index, record manifest with its embedded envelope), and the
    // verdict it names (read already: no request). 6 N + 1.
    let want_noop: BTreeMap<String, usize> = [
        ("referrers API probe", 1),
        ("manifest by tag HEAD", 2 * N),
        ("tag-schema index GET", 2 * N),
        ("manifest by digest GET", 2 * N),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(
        by_noop, want_noop,
        "the no-op plan's target requests by kind"
    );
}

/// The same full gated apply on a registry with the OCI 1.1 referrers API (the fault proxy's
/// stand-in in front of the real registry: `OCI-Subject` on PUTs, `GET /v2/<name>/referrers/
/// <digest>`): no tag-schema upkeep. Per image: the plan (3: two tag HEADs, the verdicts from
/// the API), the import (7, as above), the scan (5: `{}` mount, envelope 2, the re-check from
/// the API listing, the verdict manifest PUT, which the registry indexes itself), the promote
/// (10: the gate from the scan's listing plus its verdict; three mounts and the manifest PUT
/// by digest; the record's `{}` mount, envelope 2, the "already live?" re-check from the API
/// listing, its manifest PUT; the tag PUT). 25 N + 4 × 2 + 1 in all (the first API answer is
/// the probe).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_gated_apply_with_the_referrers_api_costs_25_target_requests_per_image() {
    const N: usize = 24;
    let g = GatedApply::run(N, true, "full gated apply, referrers API").await;
    let (w, apply, by) = (&g.w, &g.apply, &g.by);
    let env = [(KEY_ENV, g.key.as_str())];
    let want: BTreeMap<String, usize> = [
        // The plan's verdict lookup, the scan's and the promote's re-checks.
        ("referrers API probe", 3 * N),
        ("manifest by tag HEAD", 3 * N),
        ("manifest by tag PUT", 2 * N),
        ("manifest by digest PUT", 3 * N),
        ("blob mount (POST ?mount)", 4 * N + 2 * N + (N - 4) + 3 * N),
        ("blob HEAD", 4),
        ("blob upload start (POST)", 4),
        ("blob upload finish (PUT ?digest)", 4 * N + 4 + 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(*by, want, "the apply's target requests by kind");
    assert_eq!(apply.len(), 25 * N + 4 * 2 + 1);
    let plan = w.run_env(&["plan", "--detailed-exitcode"], &env).await;
    let plan = plan.expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
}
