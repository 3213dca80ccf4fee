//! Signing and verifying airlock's records: ECDSA P-256 keys (`[signing]`) and DSSE envelopes
//! ([`dsse`]). Key references follow cosign's conventions: `env://VAR` and `file://path` hold a
//! PKCS#8 PEM private key as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
//! writes it; a public key is a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file. `azurekms://`
//! names an Azure Key Vault key ([`kms`]): Key Vault signs, through the [`kms::Kms`] plug-in
//! wired in `commands`. Key material is never printed: [`Signer`]'s `Debug` shows only the key
//! id.

pub mod dsse;
pub mod kms;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use kms::{Kms, KmsKey, RemoteKey, RemoteSignature};

use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey, signature::Signer as _};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use sha2::{Digest as _, Sha256};

/// Why a key could not be loaded. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error(
        "signing key reference {0:?}: expected env://VAR, file://path or azurekms://<vault>/<key>"
    )]
    BadReference(String),
    #[error("{0}")]
    Kms(String),
    #[error("signing key {what}: {message}")]
    Load { what: String, message: String },
}

/// Where the private key is (`[signing] key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    Env(String),
    File(PathBuf),
    /// An Azure Key Vault key (signed by Key Vault; never leaves it).
    AzureKms(KmsKey),
}

impl KeyRef {
    /// Parse `env://VAR`, `file://path` (relative paths are relative to `base`) or
    /// `azurekms://<vault>.<kv_suffix>/<key>[/<version>]` (`kv_suffix`: the configured cloud's
    /// Key Vault DNS suffix; None when this build has no Key Vault client).
    pub fn parse(s: &str, base: &Path, kv_suffix: Option<&str>) -> Result<KeyRef, SigningError> {
        if s.starts_with(kms::SCHEME) {
            let Some(suffix) = kv_suffix else {
                return Err(SigningError::Kms(format!(
                    "signing key reference {s:?}: azurekms:// needs Azure Key Vault, and this \
                     airlock was built without the `azure` feature"
                )));
            };
            return KmsKey::parse(s, suffix)
                .map(KeyRef::AzureKms)
                .map_err(|e| SigningError::Kms(format!("signing key reference {s:?}: {e}")));
        }
        if let Some(var) = s.strip_prefix("env://") {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(SigningError::BadReference(s.into()));
            }
            return Ok(KeyRef::Env(var.into()));
        }
        if let Some(path) = s.strip_prefix("file://")
            && !path.is_empty()
        {
            return Ok(KeyRef::File(base.join(path)));
        }
        Err(SigningError::BadReference(s.into()))
    }

    fn what(&self) -> String {
        match self {
            KeyRef::Env(v) => format!("env://{v}"),
            KeyRef::File(p) => format!("file://{}", p.display()),
            KeyRef::AzureKms(k) => k.to_string(),
        }
    }
}

/// Where a signer's key is.
#[derive(Clone)]
enum Key {
    Local(SigningKey),
    /// Held by a service; signatures are checked against `verifier` before use.
    Remote {
        key: Arc<dyn RemoteKey>,
        verifier: Verifier,
        what: String,
    },
}

/// A private signing key. `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    key: Key,
    keyid: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The key id airlock writes: hex SHA-256 of the public key's SubjectPublicKeyInfo DER.
fn keyid_of(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("a P-256 public key encodes");
    hex::encode(Sha256::digest(der.as_bytes()))
}

impl Signer {
    /// From a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) holding a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Signer, String> {
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| {
            "not a PKCS#8 PEM ECDSA P-256 private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)".to_string()
        })?;
        let keyid = keyid_of(key.verifying_key());
        Ok(Signer {
            key: Key::Local(key),
            keyid,
        })
    }

    /// A key held by a service (`what` names it in errors), whose public key is `verifier`;
    /// signatures carry the verifier's key id.
    pub fn remote(key: Arc<dyn RemoteKey>, verifier: Verifier, what: String) -> Signer {
        Signer {
            keyid: verifier.keyid.clone(),
            key: Key::Remote {
                key,
                verifier,
                what,
            },
        }
    }

    /// Load a local key (env:// or file://); `azurekms://` keys come from [`Signing::signer`].
    pub fn load(r: &KeyRef) -> Result<Signer, SigningError> {
        let err = |message: String| SigningError::Load {
            what: r.what(),
            message,
        };
        let pem = match r {
            KeyRef::Env(var) => std::env::var(var)
                .map_err(|_| err(format!("the environment variable {var} is not set")))?,
            KeyRef::File(p) => std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?,
            KeyRef::AzureKms(_) => {
                return Err(err("a Key Vault key is opened through Key Vault".into()));
            }
        };
        Signer::from_pem(&pem).map_err(err)
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// A fixed key for unit tests (`seed` a nonzero byte).
    #[cfg(test)]
    pub(crate) fn for_tests(seed: u8) -> Signer {
        let key = SigningKey::from_slice(&[seed; 32]).expect("a valid scalar");
        let keyid = keyid_of(key.verifying_key());
        Signer {
            key: Key::Local(key),
            keyid,
        }
    }

    /// ECDSA P-256 SHA-256 over `message`, ASN.1 DER, with a local key (None for a remote one).
    pub fn sign_local(&self, message: &[u8]) -> Option<Vec<u8>> {
        match &self.key {
            Key::Local(k) => {
                let sig: DerSignature = k.sign(message);
                Some(sig.as_bytes().to_vec())
            }
            Key::Remote { .. } => None,
        }
    }

    /// ECDSA P-256 SHA-256 over `message`, ASN.1 DER. A remote key signs the SHA-256 digest
    /// (ES256) and answers raw `r‖s`: it is converted to DER, and refused unless it verifies
    /// with the key's public key (a hostile or misconfigured service must not produce records
    /// nobody can verify).
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        match &self.key {
            Key::Local(_) => Ok(self.sign_local(message).expect("a local key")),
            Key::Remote {
                key,
                verifier,
                what,
            } => {
                let digest: [u8; 32] = Sha256::digest(message).into();
                let RemoteSignature { raw, kid } = key.sign_digest(&digest).await?;
                let fail = |why: String| {
                    SigningError::Kms(format!(
                        "signing key {what}: {why}; nothing was written with it"
                    ))
                };
                let sig = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| {
                    fail(format!(
                        "the service answered a signature of {} bytes, not an ES256 (P-256) r‖s \
                         of 64",
                        raw.len()
                    ))
                })?;
                let der = sig.to_der();
                if !verifier.verify(message, der.as_bytes()) {
                    return Err(fail(format!(
                        "the signature the service answered (kid {}) does not verify with the \
                         key's public key {}",
                        kid.as_deref().unwrap_or("not given"),
                        verifier.keyid
                    )));
                }
                Ok(der.as_bytes().to_vec())
            }
        }
    }

    /// The matching public key.
    pub fn verifier(&self) -> Verifier {
        match &self.key {
            Key::Local(k) => Verifier::with_keyid(*k.verifying_key(), self.keyid.clone()),
            Key::Remote { verifier, .. } => verifier.clone(),
        }
    }
}

/// A public key that verifies records (`[signing] public_key`). Parsed once; verification
/// goes through `ring` (ECDSA P-256 SHA-256, ASN.1 DER; about 5× faster than the pure-Rust
/// `p256` verifier, measured in BENCHMARKS.md), and each (message, signature) pair is verified
/// once per run: clones share a cache of outcomes keyed by a SHA-256 of both, so a record or
/// verdict read twice (the plan's verdict lookup and the record's binding check) costs one
/// verification. The cache holds outcomes, both ways: a signature that failed fails again.
#[derive(Clone, Debug)]
pub struct Verifier {
    key: VerifyingKey,
    keyid: String,
    /// The key as an uncompressed SEC1 point, as `ring` takes it.
    point: Arc<[u8]>,
    checked: Arc<VerifyCache>,
}

/// Outcomes of verifications already done, by SHA-256 of (message length, message,
/// signature). Bounded: when full it starts over (a run that reads more than this many
/// distinct signatures verifies some twice, nothing worse).
#[derive(Default)]
struct VerifyCache(Mutex<HashMap<[u8; 32], bool>>);

impl VerifyCache {
    const MAX: usize = 1 << 16;
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "VerifyCache({n} outcomes)")
    }
}

impl PartialEq for Verifier {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Verifier {}

impl Verifier {
    /// From a PEM `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) holding a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Verifier, String> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|_| "not a PEM ECDSA P-256 public key (BEGIN PUBLIC KEY)".to_string())?;
        let keyid = keyid_of(&key);
        Ok(Verifier::with_keyid(key, keyid))
    }

    /// A P-256 public key known by a service's key id (`azurekms://`: Key Vault's kid).
    pub fn with_keyid(key: VerifyingKey, keyid: String) -> Verifier {
        let point: Arc<[u8]> = key.to_encoded_point(false).as_bytes().into();
        Verifier {
            key,
            keyid,
            point,
            checked: Arc::default(),
        }
    }

    /// The public key as PEM (`BEGIN PUBLIC KEY`, SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a P-256 public key encodes")
    }

    pub fn load(path: &Path) -> Result<Verifier, SigningError> {
        let err = |message: String| SigningError::Load {
            what: path.display().to_string(),
            message,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Verifier::from_pem(&pem).map_err(err)
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// Whether `der` is a valid ECDSA P-256 SHA-256 signature (ASN.1 DER) of `message`.
    pub fn verify(&self, message: &[u8], der: &[u8]) -> bool {
        let mut h = Sha256::new();
        h.update((message.len() as u64).to_le_bytes());
        h.update(message);
        h.update(der);
        let id: [u8; 32] = h.finalize().into();
        if let Some(&ok) = self.checked.0.lock().expect("verify cache lock").get(&id) {
            return ok;
        }
        let ok = self.verify_uncached(message, der);
        let mut cache = self.checked.0.lock().expect("verify cache lock");
        if cache.len() >= VerifyCache::MAX {
            cache.clear();
        }
        cache.insert(id, ok);
        ok
    }

    /// The verification itself, without the cache.
    fn verify_uncached(&self, message: &[u8], der: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &self.point[..],
        )
        .verify(message, der)
        .is_ok()
    }

    /// How many outcomes the cache holds (tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.checked.0.lock().expect("verify cache lock").len()
    }
}

/// The `[signing]` settings: the key records are signed with (loaded when apply needs it) and
/// the public key every read checks them against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signing {
    pub key: Option<KeyRef>,
    /// The public key (read from its file by the configuration; for `azurekms://`, from Key
    /// Vault by [`Signing::resolve_public_key`] before anything reads records).
    pub public_key: Option<Arc<Verifier>>,
    /// `public_key = "azurekms://…"`: where the public key comes from.
    pub public_key_kms: Option<KmsKey>,
}

impl Signing {
    /// Read an `azurekms://` public key from the service (no-op otherwise, or when read).
    pub async fn resolve_public_key(&mut self, kms: Option<&dyn Kms>) -> Result<(), SigningError> {
        let Some(k) = &self.public_key_kms else {
            return Ok(());
        };
        if self.public_key.is_some() {
            return Ok(());
        }
        let kms = kms.ok_or_else(|| {
            SigningError::Kms(format!(
                "public_key {k}: this build has no Key Vault client"
            ))
        })?;
        self.public_key = Some(Arc::new(kms.public_key(k).await?));
        Ok(())
    }

    /// The signer for this apply: None without a key; an error when the key cannot be loaded
    /// (or Key Vault's public key not read), or when it is not the configured public key's
    /// pair (records would never verify).
    pub async fn signer(&self, kms: Option<&dyn Kms>) -> Result<Option<Signer>, SigningError> {
        let Some(r) = &self.key else { return Ok(None) };
        let s = match r {
            KeyRef::AzureKms(k) => {
                let kms = kms.ok_or_else(|| {
                    SigningError::Kms(format!(
                        "signing key {k}: this build has no Key Vault client"
                    ))
                })?;
                kms.signer(k).await?
            }
            _ => Signer::load(r)?,
        };
        if let Some(v) = &self.public_key
            && s.verifier() != **v
        {
            return Err(SigningError::Load {
                what: r.what(),
                message: format!(
                    "its public key {} is not the configured public_key {}",
                    s.keyid(),
                    v.keyid()
                ),
            });
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests;
