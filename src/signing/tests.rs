use std::process::Command;

use super::dsse::{Envelope, IN_TOTO, SignatureCheck, pae};
use super::*;

/// A P-256 key written by `openssl genpkey`, and its public key as `openssl pkey -pubout`
/// writes it.
fn openssl_key(dir: &Path) -> (String, String) {
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
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
        .expect("openssl runs");
    assert!(st.success());
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(out.status.success());
    (
        std::fs::read_to_string(&key).unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn pae_is_the_dsse_encoding() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    // Lengths are bytes, not characters.
    assert_eq!(
        pae("t", "é".as_bytes()),
        "DSSEv1 1 t 2 é".as_bytes().to_vec()
    );
}

#[test]
fn openssl_keys_load_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(dir.path());
    std::fs::write(dir.path().join("pub.pem"), &public).unwrap();
    let s = Signer::load(&KeyRef::parse("file://key.pem", dir.path(), None).unwrap()).unwrap();
    let v = Verifier::load(&dir.path().join("pub.pem")).unwrap();
    assert_eq!(s.verifier(), v);
    assert_eq!(s.keyid(), v.keyid());
    let e = seal(b"{\"a\":1}", &s);
    assert_eq!(e.check(&v), SignatureCheck::Verified);
    assert_eq!(e.payload_bytes().unwrap(), b"{\"a\":1}");
    // The key never shows in Debug.
    let shown = format!("{s:?}");
    assert!(shown.contains("<redacted>"));
    let Key::Local(k) = &s.key else {
        panic!("a local key")
    };
    let d = k.to_bytes();
    assert!(!shown.contains(&hex::encode(d)));
    assert!(!shown.to_lowercase().contains("private"));
    // env:// holds the same PEM.
    assert!(private.contains("BEGIN PRIVATE KEY"));
}

#[test]
fn tampering_breaks_the_signature() {
    let s = Signer::from_pem(&test_key()).unwrap();
    let v = s.verifier();
    let e = seal(b"{\"live\":\"a\"}", &s);
    let mut edited = e.clone();
    edited.payload = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"{\"live\":\"b\"}",
    );
    assert_eq!(edited.check(&v), SignatureCheck::Bad);
    let mut retyped = e.clone();
    retyped.payload_type = "application/json".into();
    assert_eq!(retyped.check(&v), SignatureCheck::Bad);
    let mut garbage = e.clone();
    garbage.signatures[0].sig = "!!".into();
    assert_eq!(garbage.check(&v), SignatureCheck::Bad);
    let unsigned = Envelope::seal(IN_TOTO, b"{}", None);
    assert_eq!(unsigned.check(&v), SignatureCheck::Unsigned);
    assert_eq!(dsse::check(None, &v), SignatureCheck::Unsigned);
    // Another key's signature does not verify.
    let other = Signer::from_pem(&test_key()).unwrap();
    assert_eq!(seal(b"{}", &other).check(&v), SignatureCheck::Bad);
}

#[test]
fn key_references() {
    let base = Path::new("/etc/airlock");
    assert_eq!(
        KeyRef::parse("env://AIRLOCK_KEY", base, None).unwrap(),
        KeyRef::Env("AIRLOCK_KEY".into())
    );
    assert_eq!(
        KeyRef::parse("file://k.pem", base, None).unwrap(),
        KeyRef::File("/etc/airlock/k.pem".into())
    );
    for bad in [
        "env://",
        "file://",
        "k.pem",
        "azurekms://v.vault.azure.net/k",
        "ENV://X",
    ] {
        assert!(KeyRef::parse(bad, base, None).is_err(), "{bad}");
    }
    let missing = Signer::load(&KeyRef::Env("AIRLOCK_TEST_NO_SUCH_VAR_9".into())).unwrap_err();
    assert!(missing.to_string().contains("AIRLOCK_TEST_NO_SUCH_VAR_9"));
    assert!(
        Signer::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err()
    );
    // A public key is not a private key and the other way round.
    let s = Signer::from_pem(&test_key()).unwrap();
    assert!(Verifier::from_pem(&test_key()).is_err());
    let _ = s;
}

#[test]
fn a_key_that_is_not_the_public_keys_pair_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (_, a_public) = openssl_key(a.path());
    let (_, b_public) = openssl_key(b.path());
    let signing = Signing {
        key: Some(KeyRef::File(a.path().join("key.pem"))),
        public_key: Some(std::sync::Arc::new(Verifier::from_pem(&a_public).unwrap())),
        public_key_kms: None,
    };
    assert!(ready(signing.signer(None)).unwrap().is_some());
    let signing = Signing {
        public_key: Some(std::sync::Arc::new(Verifier::from_pem(&b_public).unwrap())),
        ..signing
    };
    let e = ready(signing.signer(None)).unwrap_err();
    assert!(
        e.to_string().contains("not the configured public_key"),
        "{e}"
    );
    assert_eq!(
        ready(Signing::default().signer(None))
            .unwrap()
            .map(|s| s.keyid().to_string()),
        None
    );
}

/// A fresh PKCS#8 PEM key from openssl.
fn test_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    openssl_key(dir.path()).0
}

/// A future that is ready at once (local keys never wait).
fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
    use futures_util::FutureExt as _;
    f.now_or_never().expect("local signing does not wait")
}

/// `payload` as an in-toto envelope signed by the local key `s`.
fn seal(payload: &[u8], s: &Signer) -> Envelope {
    Envelope::seal(
        IN_TOTO,
        payload,
        super::dsse::Signature::by_local(s, IN_TOTO, payload),
    )
}

/// A stand-in for a key service: signs digests with a local key, or answers what it is told.
struct FakeKms {
    key: p256::ecdsa::SigningKey,
    answer: Answer,
}

#[derive(Clone, Copy)]
enum Answer {
    Honest,
    OtherDigest,
    Short,
}

impl RemoteKey for FakeKms {
    fn sign_digest<'a>(
        &'a self,
        digest: &'a [u8; 32],
    ) -> futures_util::future::BoxFuture<'a, Result<RemoteSignature, SigningError>> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        Box::pin(async move {
            let d = match self.answer {
                Answer::OtherDigest => [9u8; 32],
                _ => *digest,
            };
            let sig: p256::ecdsa::Signature = self.key.sign_prehash(&d).unwrap();
            let mut raw = sig.to_bytes().to_vec();
            if let Answer::Short = self.answer {
                raw.pop();
            }
            Ok(RemoteSignature {
                raw,
                kid: Some("https://kv1.vault.azure.net/keys/k/1".into()),
            })
        })
    }
}

fn remote(answer: Answer) -> Signer {
    let key = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
    let verifier = Verifier::with_keyid(*key.verifying_key(), "kid-1".into());
    Signer::remote(
        std::sync::Arc::new(FakeKms { key, answer }),
        verifier,
        "azurekms://kv1.vault.azure.net/k".into(),
    )
}

#[test]
fn a_remote_keys_raw_signature_becomes_der_and_is_checked_before_use() {
    let s = remote(Answer::Honest);
    assert_eq!(s.keyid(), "kid-1");
    assert!(
        s.sign_local(b"x").is_none(),
        "a remote key does not sign locally"
    );
    let der = ready(s.sign(b"the PAE")).unwrap();
    assert_eq!(der[0], 0x30, "ASN.1 DER SEQUENCE");
    assert!(p256::ecdsa::Signature::from_der(&der).is_ok());
    assert!(s.verifier().verify(b"the PAE", &der));
    let e = ready(super::dsse::Signature::by(&s, IN_TOTO, b"{}")).unwrap();
    assert_eq!(e.keyid, "kid-1");
    let env = Envelope::seal(IN_TOTO, b"{}", Some(e));
    assert_eq!(env.check(&s.verifier()), SignatureCheck::Verified);

    let e = ready(remote(Answer::OtherDigest).sign(b"the PAE")).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("does not verify with the key's public key kid-1"),
        "{e}"
    );
    assert!(e.contains("https://kv1.vault.azure.net/keys/k/1"), "{e}");
    assert!(e.contains("azurekms://kv1.vault.azure.net/k"), "{e}");
    let e = ready(remote(Answer::Short).sign(b"the PAE")).unwrap_err();
    assert!(e.to_string().contains("63 bytes"), "{e}");
}

/// `azurekms://` in `[signing]`: a Key Vault key of the configured cloud with the `azure`
/// feature; without it, a configuration error at the value's place.
#[test]
fn azurekms_references_in_the_configuration() {
    let parse = |signing: &str| {
        let src = format!(
            "[registries.r]\nendpoint = \"https://r.example\"\n[quarantine]\nregistry = \"r\"\nprefix = \"quarantine\"\n[live]\nregistry = \"r\"\nprefix = \"live\"\n[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\n[signing]\n{signing}"
        );
        crate::config::parse(
            &src,
            Path::new("airlock.toml"),
            time::macros::date!(2026 - 11 - 27),
        )
        .map_err(|e| e.to_string())
    };
    let both = "key = \"azurekms://kv1.vault.azure.net/k\"\npublic_key = \"azurekms://kv1.vault.azure.net/k\"\n";
    if cfg!(feature = "azure") {
        let d = parse(both).unwrap();
        let k = KmsKey::parse("azurekms://kv1.vault.azure.net/k", "vault.azure.net").unwrap();
        assert_eq!(d.signing.key, Some(KeyRef::AzureKms(k.clone())));
        assert_eq!(d.signing.public_key_kms, Some(k));
        assert_eq!(
            d.signing.public_key, None,
            "read from Key Vault by the commands"
        );
        let e = parse("public_key = \"azurekms://kv1.vault.azure.cn/k\"\n").unwrap_err();
        assert!(e.contains("airlock.toml:12:14"), "{e}");
        assert!(e.contains("another Azure cloud"), "{e}");
    } else {
        let e = parse(both).unwrap_err();
        assert!(e.contains("airlock.toml:12:7"), "{e}");
        assert!(e.contains("airlock.toml:13:14"), "{e}");
        assert!(e.contains("without the `azure` feature"), "{e}");
    }
}

#[test]
fn a_verification_is_cached_both_ways_and_never_across_messages() {
    let s = Signer::from_pem(&test_key()).unwrap();
    // One verifier shared the way `[signing] public_key` is (clones share the cache).
    let v = s.verifier();
    let shared = v.clone();
    let good = seal(b"{\"live\":\"a\"}", &s);
    assert_eq!(good.check(&v), SignatureCheck::Verified);
    assert_eq!(v.cached(), 1);
    assert_eq!(good.check(&shared), SignatureCheck::Verified);
    assert_eq!(v.cached(), 1, "the second check is the cached outcome");

    // The same signature over an edited payload: another cache entry, and it fails, twice.
    let mut edited = good.clone();
    edited.payload = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"{\"live\":\"b\"}",
    );
    assert_eq!(edited.check(&v), SignatureCheck::Bad);
    assert_eq!(edited.check(&shared), SignatureCheck::Bad);
    assert_eq!(v.cached(), 2);
    // ... and the good one still verifies (no outcome leaks between messages).
    assert_eq!(good.check(&shared), SignatureCheck::Verified);

    // Unsigned stays unsigned, without touching the cache; another key's signature is bad
    // whatever this key's cache holds.
    let unsigned = Envelope::seal(IN_TOTO, b"{\"live\":\"a\"}", None);
    assert_eq!(unsigned.check(&v), SignatureCheck::Unsigned);
    assert_eq!(v.cached(), 2);
    let other = Signer::from_pem(&test_key()).unwrap();
    let foreign = seal(b"{\"live\":\"a\"}", &other);
    assert_eq!(foreign.check(&v), SignatureCheck::Bad);
    assert_eq!(foreign.check(&v), SignatureCheck::Bad);
    // A fresh verifier of the other key verifies it: outcomes are per key.
    assert_eq!(foreign.check(&other.verifier()), SignatureCheck::Verified);

    // A message and a signature moved between the two halves hash differently.
    let msg = b"ab";
    let der = s.sign_local(msg).unwrap();
    assert!(v.verify(msg, &der));
    let mut shifted = msg.to_vec();
    shifted.push(der[0]);
    assert!(!v.verify(&shifted, &der[1..]));
}

#[test]
fn ring_and_p256_agree_on_signatures() {
    use p256::ecdsa::signature::Verifier as _;
    let s = Signer::from_pem(&test_key()).unwrap();
    let v = s.verifier();
    let Key::Local(k) = &s.key else {
        panic!("a local key")
    };
    for i in 0..16u8 {
        let msg = vec![i; 100 + usize::from(i)];
        let der = s.sign_local(&msg).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        assert!(k.verifying_key().verify(&msg, &sig).is_ok());
        assert!(v.verify_uncached(&msg, &der));
        // The same signature as raw r‖s is not DER: refused.
        assert!(!v.verify_uncached(&msg, &sig.to_bytes()));
        // A flipped bit in r or in the message fails in both.
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!v.verify_uncached(&msg, &bad));
        let mut other = msg.clone();
        other[0] ^= 1;
        assert!(!v.verify_uncached(&other, &der));
        assert!(k.verifying_key().verify(&other, &sig).is_err());
    }
    // The high-S twin of a valid signature (the same signature in ECDSA's malleable form):
    // both verifiers accept it, as OpenSSL and Python's `cryptography` do.
    let msg = b"high s";
    let sig = p256::ecdsa::Signature::from_der(&s.sign_local(msg).unwrap()).unwrap();
    let (r, s_) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s_).unwrap();
    assert!(k.verifying_key().verify(msg, &twin).is_ok());
    assert!(v.verify_uncached(msg, twin.to_der().as_bytes()));
}
