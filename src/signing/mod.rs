//! Signing and verifying airlock's records: ECDSA P-256 keys (`[signing]`) and DSSE envelopes
//! ([`dsse`]). Key references follow cosign's conventions: `env://VAR` and `file://path` hold a
//! PKCS#8 PEM private key as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
//! writes it; a public key is a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file. Key material is
//! never printed: [`Signer`]'s `Debug` shows only the key id.

pub mod dsse;

use std::fmt;
use std::path::{Path, PathBuf};

use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey, signature::Signer as _};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use sha2::{Digest as _, Sha256};

/// Why a key could not be loaded. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error(
        "signing key reference {0:?}: expected env://VAR or file://path (azurekms:// is not supported by this build)"
    )]
    BadReference(String),
    #[error("signing key {what}: {message}")]
    Load { what: String, message: String },
}

/// Where the private key is (`[signing] key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    Env(String),
    File(PathBuf),
}

impl KeyRef {
    /// Parse `env://VAR` or `file://path` (relative paths are relative to `base`).
    pub fn parse(s: &str, base: &Path) -> Result<KeyRef, SigningError> {
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
        }
    }
}

/// A private signing key. `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
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
        Ok(Signer { key, keyid })
    }

    /// Load the key a reference names.
    pub fn load(r: &KeyRef) -> Result<Signer, SigningError> {
        let err = |message: String| SigningError::Load {
            what: r.what(),
            message,
        };
        let pem = match r {
            KeyRef::Env(var) => std::env::var(var)
                .map_err(|_| err(format!("the environment variable {var} is not set")))?,
            KeyRef::File(p) => std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?,
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
        Signer { key, keyid }
    }

    /// ECDSA P-256 SHA-256 over `message`, ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.key.sign(message);
        sig.as_bytes().to_vec()
    }

    /// The matching public key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            key: *self.key.verifying_key(),
            keyid: self.keyid.clone(),
        }
    }
}

/// A public key that verifies records (`[signing] public_key`).
#[derive(Clone, Debug)]
pub struct Verifier {
    key: VerifyingKey,
    keyid: String,
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
        Ok(Verifier { key, keyid })
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
        use p256::ecdsa::signature::Verifier as _;
        match p256::ecdsa::Signature::from_der(der) {
            Ok(sig) => self.key.verify(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// The `[signing]` settings: the key records are signed with (loaded when apply needs it) and
/// the public key every read checks them against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signing {
    pub key: Option<KeyRef>,
    pub public_key: Option<std::sync::Arc<Verifier>>,
}

impl Signing {
    /// The signer for this apply: None without a key; an error when the key cannot be loaded,
    /// or when it is not the configured public key's pair (records would never verify).
    pub fn signer(&self) -> Result<Option<Signer>, SigningError> {
        let Some(r) = &self.key else { return Ok(None) };
        let s = Signer::load(r)?;
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
