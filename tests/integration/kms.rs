//! `[signing] key = "azurekms://…"` (issue 13, item 1), tested without Azure: a local stand-in
//! for Azure Key Vault speaks the documented REST protocol (api-version 7.4: `GET
//! /keys/<key>` answering a JSON Web Key, `POST /keys/<key>/sign` with `{"alg": "ES256",
//! "value": <base64url digest>}` answering raw `r‖s`), really signs with a P-256 key it holds,
//! and refuses tokens that are not for the Key Vault scope; the same server is the managed
//! identity endpoint (App Service protocol) that issues them. airlock is pointed at it with
//! the test-only `AIRLOCK_KEYVAULT_ENDPOINT`. Records then verify with an independent verifier
//! (Python `cryptography`), audit verifies them with `public_key = "azurekms://…"`, and
//! `admission --format kyverno` checks them with Kyverno's `kms` key reference.
//! What this cannot prove: that Key Vault and Entra ID answer exactly as documented, and role
//! assignments.

use std::sync::{Arc, Mutex};

use airlock::records;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::azure::run;
use crate::signed_records::{envelope_of, python_verify};
use crate::support::airlock::{Run, Workdir, seed_walkthrough};
use crate::support::client::RawClient;
use crate::support::images::{Content, WalkthroughImage};
use crate::support::records::{listed_records, world_config};
use crate::support::registry::{Auth, TestRegistry};
use crate::support::{BoxError, HttpBody, ServerTask, full_body, spawn_server};

const IDENTITY_HEADER: &str = "kms-identity-header";
const VAULT: &str = "airlock-kv1.vault.azure.net";
const KEY: &str = "airlock-signing";
const VERSION: &str = "0123456789abcdef0123456789abcdef";
/// What the managed identity issues for the Key Vault scope (`resource` without `/.default`).
const VAULT_TOKEN: &str = "Bearer aad:https://vault.azure.net";

/// How the stand-in vault behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Vault {
    /// Signs as documented.
    Honest,
    /// Answers signatures over another digest (a hostile or broken vault).
    WrongSignature,
    /// 403 ForbiddenByRbac for every key operation.
    Forbidden,
}

#[derive(Default)]
struct VaultLog {
    /// `METHOD path?query` of every Key Vault request.
    requests: Vec<String>,
    /// Requests refused for a token not of the Key Vault scope.
    bad_tokens: usize,
    /// Whether a sign request was answered 429 already (the honest vault throttles once).
    throttled: bool,
}

struct FakeVault {
    port: u16,
    key: SigningKey,
    log: Arc<Mutex<VaultLog>>,
    _task: ServerTask,
}

impl FakeVault {
    async fn start(mode: Vault) -> FakeVault {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seed = sha2::Sha256::digest(format!("kms stand-in {port}").as_bytes());
        let key = SigningKey::from_slice(&seed).unwrap();
        let log = Arc::new(Mutex::new(VaultLog::default()));
        let (k, l) = (key.clone(), log.clone());
        let task = spawn_server(listener, move |req| {
            let (k, l) = (k.clone(), l.clone());
            async move { handle(req, mode, k, l).await }
        });
        FakeVault {
            port,
            key,
            log,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "IDENTITY_ENDPOINT".into(),
                format!("{}/msi/token", self.url()),
            ),
            ("IDENTITY_HEADER".into(), IDENTITY_HEADER.into()),
            ("AIRLOCK_KEYVAULT_ENDPOINT".into(), self.url()),
        ]
    }

    fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().requests.clone()
    }
}

fn reply(status: StatusCode, body: Value) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full_body(body.to_string()))
        .unwrap()
}

fn kid() -> String {
    format!("https://{VAULT}/keys/{KEY}/{VERSION}")
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    mode: Vault,
    key: SigningKey,
    log: Arc<Mutex<VaultLog>>,
) -> Result<Response<HttpBody>, BoxError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (identity, bearer) = (header("x-identity-header"), header("authorization"));
    let body = req.into_body().collect().await?.to_bytes();
    // App Service managed identity (api-version 2019-08-01): a token naming its resource.
    if path == "/msi/token" {
        if identity.as_deref() != Some(IDENTITY_HEADER) {
            return Ok(reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "bad header"}),
            ));
        }
        let resource = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "resource")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        return Ok(reply(
            StatusCode::OK,
            json!({"access_token": format!("aad:{resource}"), "expires_on": expires.to_string(),
                   "resource": resource, "token_type": "Bearer"}),
        ));
    }
    log.lock()
        .unwrap()
        .requests
        .push(format!("{method} {path}?{query}"));
    if query != "api-version=7.4" {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadParameter", "message": "api-version"}}),
        ));
    }
    if bearer.as_deref() != Some(VAULT_TOKEN) {
        log.lock().unwrap().bad_tokens += 1;
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "Unauthorized", "message": "AKV10022: Invalid audience."}}),
        ));
    }
    if mode == Vault::Forbidden {
        return Ok(reply(
            StatusCode::FORBIDDEN,
            json!({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.\r\nInner error: ForbiddenByRbac"}}),
        ));
    }
    let key_path = format!("/keys/{KEY}");
    Ok(match (method.as_str(), path.as_str()) {
        ("GET", p) if p == key_path => {
            let point = key.verifying_key().to_encoded_point(false);
            reply(
                StatusCode::OK,
                json!({"key": {"kid": kid(), "kty": "EC", "crv": "P-256",
                               "key_ops": ["sign", "verify"],
                               "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                               "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())},
                       "attributes": {"enabled": true}}),
            )
        }
        ("POST", p) if p == format!("{key_path}/sign") => {
            if mode == Vault::Honest && !std::mem::replace(&mut log.lock().unwrap().throttled, true)
            {
                let mut r = reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": {"code": "Throttled", "message": "Request was not processed because too many requests were received."}}),
                );
                r.headers_mut()
                    .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
                return Ok(r);
            }
            let req: Value = serde_json::from_slice(&body)?;
            let digest = URL_SAFE_NO_PAD.decode(req["value"].as_str().unwrap_or_default())?;
            if req["alg"] != "ES256" || digest.len() != 32 {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": "BadParameter", "message": "ES256 signs a 32-byte digest"}}),
                ));
            }
            let digest = if mode == Vault::WrongSignature {
                vec![0x5a; 32]
            } else {
                digest
            };
            let sig: p256::ecdsa::Signature = key.sign_prehash(&digest)?;
            reply(
                StatusCode::OK,
                json!({"kid": kid(), "value": URL_SAFE_NO_PAD.encode(sig.to_bytes())}),
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "KeyNotFound", "message": "no such key"}}),
        ),
    })
}

const KMS_SIGNING: &str = "[signing]\nkey = \"azurekms://airlock-kv1.vault.azure.net/airlock-signing\"\npublic_key = \"azurekms://airlock-kv1.vault.azure.net/airlock-signing\"\n";

struct World {
    _upstream: TestRegistry,
    target: TestRegistry,
    images: Vec<WalkthroughImage>,
    w: Workdir,
    vault: FakeVault,
}

impl World {
    async fn start(mode: Vault) -> World {
        let upstream = TestRegistry::start(Auth::None).await;
        let target = TestRegistry::start(Auth::None).await;
        let images = seed_walkthrough(&upstream).await;
        let w = Workdir::new(&world_config(&upstream.url(), &target.url(), KMS_SIGNING));
        let vault = FakeVault::start(mode).await;
        // The independent verifier reads the vault's public key from airlock.pub.
        std::fs::write(w.path().join("airlock.pub"), vault.public_pem()).unwrap();
        World {
            _upstream: upstream,
            target,
            images,
            w,
            vault,
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        run(&self.w, args, &self.vault.env()).await
    }

    /// `airlock admission --format kyverno` for the live host `acr.example`, checked by
    /// [`kyverno_policy`]; the policy as JSON.
    async fn kyverno(&self) -> Value {
        let args = [
            "admission",
            "--format",
            "kyverno",
            "--live-host",
            "acr.example",
        ];
        let yaml = self.run(&args).await.expect(0).stdout;
        kyverno_policy(self.w.path(), &yaml)
    }

    fn digest(&self, path: &str) -> airlock::model::Digest {
        let i = self.images.iter().find(|i| i.path == path).unwrap();
        i.content.top().digest.clone()
    }
}

/// An apply signing with a Key Vault key: every record and verdict is signed by Key Vault
/// (one keys/sign per artifact, each with a Key Vault-scoped token; the first one throttled
/// with 429 and retried after its `Retry-After`), an independent verifier accepts them with
/// the vault's public key, and audit with `public_key = "azurekms://…"` verifies them.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_signed_by_key_vault_verifies_independently_and_in_audit() {
    let world = World::start(Vault::Honest).await;
    world.run(&["apply", "--auto-approve"]).await.expect(0);
    let log = world.vault.requests();
    let signs = log.iter().filter(|r| r.starts_with("POST")).count();
    assert_eq!(
        signs, 5,
        "a verdict and a record for each of two images, one sign retried after a 429: {log:#?}"
    );
    assert!(
        log.iter()
            .all(|r| r.ends_with(&format!("/keys/{KEY}?api-version=7.4"))
                || r.ends_with(&format!("/keys/{KEY}/sign?api-version=7.4"))),
        "{log:#?}"
    );
    assert_eq!(world.vault.log.lock().unwrap().bad_tokens, 0);

    let c = RawClient::new(&world.target.url(), None);
    for path in ["library/busybox", "weaveworks/kured"] {
        let d = world.digest(path);
        let live = format!("live/{path}");
        let recs = listed_records(&c, &live, &d).await;
        assert_eq!(recs.len(), 1, "{path}");
        let env = envelope_of(&c, &live, &recs[0], &d).await;
        let st = python_verify(world.w.path(), &env).expect("the record verifies");
        assert_eq!(st["predicateType"], records::PROMOTION_PREDICATE);
        assert_eq!(st["subject"][0]["digest"]["sha256"], d.hex());
        let e: Value = serde_json::from_slice(&env).unwrap();
        assert_eq!(
            e["signatures"][0]["keyid"],
            kid(),
            "the keyid is Key Vault's kid"
        );
    }

    let audit = world.run(&["audit", "--format", "json"]).await.expect(0);
    let report = audit.json();
    assert_eq!(report["violations"], 0, "{report:#}");
    for t in report["tags"].as_array().unwrap() {
        assert_eq!(t["signature"], "verified", "{t:#}");
    }
    world.run(&["plan", "--detailed-exitcode"]).await.expect(0);

    // Kyverno checks the promotion record with the vault key by reference, or with the same
    // public key as a PEM file; both policies are valid ClusterPolicies (Kyverno's CRD schema,
    // unknown fields forbidden, yamllint).
    let policy = world.kyverno().await;
    let keys = &policy["spec"]["rules"][1]["verifyImages"][0]["attestations"][0]["attestors"][0]["entries"]
        [0]["keys"];
    assert_eq!(
        keys["kms"],
        "azurekms://airlock-kv1.vault.azure.net/airlock-signing"
    );
    world
        .w
        .set_config(&std::fs::read_to_string(world.w.config()).unwrap().replace(
            "public_key = \"azurekms://airlock-kv1.vault.azure.net/airlock-signing\"",
            "public_key = \"airlock.pub\"",
        ));
    let policy = world.kyverno().await;
    let rule = &policy["spec"]["rules"][1];
    let v = &rule["verifyImages"][0];
    assert_eq!(v["imageReferences"], json!(["acr.example/live/*"]));
    assert_eq!(v["cosignOCI11"], true);
    assert_eq!(v["failureAction"], "Enforce");
    assert_eq!(v["attestations"][0]["type"], records::PROMOTION_PREDICATE);
    let keys = &v["attestations"][0]["attestors"][0]["entries"][0]["keys"];
    assert_eq!(keys["publicKeys"], world.vault.public_pem());
    assert_eq!(rule["exclude"], policy["spec"]["rules"][0]["exclude"]);
}

/// Validate a `--format kyverno` output against Kyverno's ClusterPolicy CRD schema (as the
/// cluster tests do, unknown fields forbidden) and yamllint; the policy as JSON.
fn kyverno_policy(dir: &std::path::Path, yaml: &str) -> Value {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let f = dir.join("kyverno.yaml");
    std::fs::write(&f, yaml).unwrap();
    let script = r#"
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import admission_eval as a
import jsonschema
docs = a.load_yaml(Path(sys.argv[2]))
assert len(docs) == 1, "one ClusterPolicy"
schema = a.strict(json.loads(Path(sys.argv[3]).read_text())["schema"])
jsonschema.validate(docs[0], schema)
print(json.dumps(docs[0]))
"#;
    let out = std::process::Command::new(crate::support::python::python())
        .arg("-c")
        .arg(script)
        .arg(repo.join("tests/python"))
        .arg(&f)
        .arg(repo.join("tests/fixtures/kyverno/clusterpolicy-v1.schema.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A vault answering signatures that do not verify with its public key fails the apply with
/// a clear error, and no verdict or record is written with them.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_vault_signature_that_does_not_verify_fails_the_apply_and_writes_nothing() {
    let world = World::start(Vault::WrongSignature).await;
    let out = world.run(&["apply", "--auto-approve"]).await;
    assert_ne!(out.code, 0, "{}", out.stdout);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("does not verify with the key's public key"),
        "{all}"
    );
    assert!(all.contains(&kid()), "names the kid: {all}");
    let c = RawClient::new(&world.target.url(), None);
    for path in ["library/busybox", "weaveworks/kured"] {
        let d = world.digest(path);
        for repo in [format!("live/{path}"), format!("quarantine/{path}")] {
            assert!(
                listed_records(&c, &repo, &d).await.is_empty(),
                "nothing is written to {repo}"
            );
        }
        assert!(
            c.get_manifest(&format!("live/{path}"), &d.to_string())
                .await
                .is_none(),
            "{path} is not promoted"
        );
    }
}

/// A vault refusing the identity (403) is a clear error naming the vault and the role, before
/// anything is applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_vault_403_is_a_clear_error_and_nothing_is_applied() {
    let world = World::start(Vault::Forbidden).await;
    let out = world.run(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    for needle in [
        "403 Forbidden",
        "ForbiddenByRbac",
        VAULT,
        "Key Vault Crypto User",
        "nothing was applied",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    let c = RawClient::new(&world.target.url(), None);
    let d = world.digest("library/busybox");
    assert!(
        c.get_manifest("quarantine/library/busybox", &d.to_string())
            .await
            .is_none(),
        "nothing was imported"
    );
    // Audit with the vault's public key cannot run without it either.
    let out = world.run(&["audit"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("[signing] public_key"),
        "{}",
        out.stderr
    );
}

/// `azurekms://` references are checked at file:line:col: another cloud's vault, a bad key
/// name, a URL with a port.
#[tokio::test(flavor = "multi_thread")]
async fn bad_azurekms_references_are_config_errors_at_their_place() {
    let target = TestRegistry::start(Auth::None).await;
    for (signing, needle) in [
        (
            "[signing]\nkey = \"azurekms://kv1.vault.azure.cn/k\"\n",
            "another Azure cloud",
        ),
        (
            "[signing]\nkey = \"azurekms://kv1.vault.azure.net/a_b\"\n",
            "not a Key Vault key name",
        ),
        (
            "[signing]\npublic_key = \"azurekms://kv1.vault.azure.net:444/k\"\n",
            "not `<vault>.vault.azure.net`",
        ),
    ] {
        let w = Workdir::new(&world_config(&target.url(), &target.url(), signing));
        let out = w.run(&["plan"]).await;
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        assert!(out.stderr.contains("airlock.toml:"), "{}", out.stderr);
    }
}
