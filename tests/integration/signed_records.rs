//! Signed records (issue 13, items 1–3 and 6), against real Distribution registries, each
//! scenario on both ways of keeping referrers (the tag schema and the referrers API stand-in,
//! see [`crate::support::records`]): a signed apply whose DSSE envelopes an independent
//! verifier (Python `cryptography`, over the DSSE PAE) accepts; edited, unsigned and swapped
//! records failing audit with a public key; and a 0.1-style plain-JSON record re-recorded once
//! signing is configured.

use std::path::Path;
use std::process::Command;

use airlock::model::{Digest, RawManifest, media};
use airlock::records::{self, PromotionRecord};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::client::RawClient;
use crate::support::python::python;
use crate::support::records::{
    BUSYBOX, KURED, RecordPath, RecordWorld, api_listing, finding, on_both_paths, violation,
};

on_both_paths!(
    a_signed_apply_writes_envelopes_an_independent_verifier_accepts,
    edited_unsigned_and_swapped_records_fail_audit_with_signing_on,
    a_0_1_plain_json_record_is_re_recorded_once_signing_is_configured,
);

/// The envelope (layer bytes) of an artifact manifest, checking the cosign attestation layout.
pub(crate) async fn envelope_of(
    c: &RawClient,
    repo: &str,
    m: &RawManifest,
    subject: &Digest,
) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    assert_eq!(v["mediaType"], media::OCI_MANIFEST);
    assert_eq!(v["artifactType"], records::DSSE_ENVELOPE);
    assert_eq!(v["config"]["mediaType"], media::OCI_EMPTY);
    assert_eq!(v["config"]["size"], 2);
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    assert_eq!(v["layers"][0]["mediaType"], records::DSSE_ENVELOPE);
    assert_eq!(v["subject"]["digest"], subject.to_string());
    let layer: Digest = v["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    c.get_blob(repo, &layer).await.to_vec()
}

/// The verifier the README documents, in Python `cryptography` (independent of airlock's
/// RustCrypto): prints the statement when a signature verifies over the DSSE PAE, else fails.
const VERIFY_PY: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
env = json.load(open(sys.argv[2]))
body = base64.b64decode(env["payload"])
t = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)
for s in env["signatures"]:
    try:
        key.verify(base64.b64decode(s["sig"]), pae, ec.ECDSA(hashes.SHA256()))
    except Exception:
        continue
    print(json.dumps(json.loads(body)))
    sys.exit(0)
sys.exit("no signature verifies")
"#;

/// Run the independent verifier on an envelope; the statement when it verifies.
pub(crate) fn python_verify(dir: &Path, envelope: &[u8]) -> Result<serde_json::Value, String> {
    let f = dir.join("envelope.json");
    std::fs::write(&f, envelope).unwrap();
    let out = Command::new(python())
        .arg("-c")
        .arg(VERIFY_PY)
        .arg(dir.join("airlock.pub"))
        .arg(&f)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A record artifact about `subject` whose one layer is `layer` (of `layer_type`).
pub(crate) fn artifact(
    artifact_type: &str,
    layer_type: &str,
    layer: &[u8],
    subject: &RawManifest,
) -> RawManifest {
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": layer_type, "digest": Digest::of(layer).to_string(), "size": layer.len()}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.bytes.len()},
        "annotations": {
            records::ANN_CREATED: "2099-01-01T00:00:00Z",
            records::ANN_PREDICATE: records::PROMOTION_PREDICATE,
        },
    });
    RawManifest::new(serde_json::to_vec(&body).unwrap(), None).unwrap()
}

async fn a_signed_apply_writes_envelopes_an_independent_verifier_accepts(path: RecordPath) {
    let world = RecordWorld::on(path).await;
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
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], records::PROMOTION_PREDICATE);
    assert_eq!(st["subject"][0]["digest"]["sha256"], d.hex());
    assert_eq!(
        st["predicate"]["live"],
        "target/live/library/busybox:1.33.0"
    );
    assert_eq!(
        st["predicate"]["from"],
        format!("target/quarantine/library/busybox@{d}")
    );
    // The verdict it names is the one listed in quarantine, and verifies too.
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
    assert_eq!(vst["predicateType"], records::VERDICT_PREDICATE);
    assert_eq!(vst["predicate"]["decision"], "pass");
    if path == RecordPath::ReferrersApi {
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
    // An edited payload does not verify for the independent verifier either.
    let mut e: serde_json::Value = serde_json::from_slice(&env).unwrap();
    let body = String::from_utf8(STANDARD.decode(e["payload"].as_str().unwrap()).unwrap())
        .unwrap()
        .replace(":1.33.0", ":latest");
    e["payload"] = STANDARD.encode(body).into();
    assert!(python_verify(world.w.path(), &serde_json::to_vec(&e).unwrap()).is_err());
    // Converged.
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    world.check_path();
}

async fn edited_unsigned_and_swapped_records_fail_audit_with_signing_on(path: RecordPath) {
    let world = RecordWorld::on(path).await;
    world.sign();
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let (b, k) = (world.digest(BUSYBOX), world.digest(KURED));
    let (live_b, live_k) = (format!("live/{BUSYBOX}"), format!("live/{KURED}"));
    let b_top = c.get_manifest(&live_b, &b.to_string()).await.unwrap();
    let b_rec = world.records(&live_b, &b).await.remove(0);
    let b_env = envelope_of(&c, &live_b, &b_rec, &b).await;
    // An envelope pushed as a DSSE record about busybox, listed alone.
    let push_only = |layer: Vec<u8>| {
        let m = artifact(
            records::DSSE_ENVELOPE,
            records::DSSE_ENVELOPE,
            &layer,
            &b_top,
        );
        let (world, live_b, b) = (&world, &live_b, &b);
        async move { world.push_only(live_b, b, &m, &layer).await }
    };

    // Edited: the signed statement changed (another plan), the signature kept.
    let mut e: serde_json::Value = serde_json::from_slice(&b_env).unwrap();
    let mut st: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(e["payload"].as_str().unwrap()).unwrap()).unwrap();
    st["predicate"]["plan_hash"] = Digest::of(b"another plan").to_string().into();
    e["payload"] = STANDARD.encode(serde_json::to_vec(&st).unwrap()).into();
    push_only(serde_json::to_vec(&e).unwrap()).await;
    let (_, report) = world.audit().await;
    let v = violation(&report, &live_b, "1.33.0");
    assert!(v.contains("bad signature"), "{v}");

    // Unsigned: the same honest statement without signatures.
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

    // The plan sees it too and apply re-records; then audit is clean.
    world.run(&["plan", "--detailed-exitcode"]).await.expect(2);
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let (_, report) = world.audit().await;
    assert_eq!(report["violations"], 0, "{report:#}");
    world.check_path();
}

async fn a_0_1_plain_json_record_is_re_recorded_once_signing_is_configured(path: RecordPath) {
    let world = RecordWorld::on(path).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let c = world.client();
    let b = world.digest(BUSYBOX);
    let live_b = format!("live/{BUSYBOX}");
    let b_top = c.get_manifest(&live_b, &b.to_string()).await.unwrap();
    // Replace busybox's record with the same document as 0.1 wrote it: plain JSON.
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
    world.push_only(&live_b, &b, &m, &plain).await;
    // Still read, shown unsigned.
    let (run, report) = world.audit().await;
    run.expect(0);
    assert_eq!(finding(&report, &live_b, "1.33.0")["signature"], "unsigned");
    let human = world.run(&["audit"]).await.expect(0);
    assert!(human.stdout.contains("unsigned"), "{}", human.stdout);

    // Signing on: the plan offers to re-record busybox (and to rescan: the verdicts are
    // unsigned), audit fails until apply does; then audit verifies it.
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
    let (run, _) = world.audit().await;
    run.expect(3);
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let (run, report) = world.audit().await;
    run.expect(0);
    assert_eq!(finding(&report, &live_b, "1.33.0")["signature"], "verified");
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);
    world.check_path();
}
