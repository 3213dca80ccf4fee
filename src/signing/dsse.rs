//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse>): the payload, its type, and
//! signatures over the pre-authentication encoding (PAE) of both. Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{Signer, SigningError, Verifier};

/// The payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// `"DSSEv1" SP len(type) SP type SP len(body) SP body` (lengths as ASCII decimal).
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the ASN.1 DER ECDSA signature.
    pub sig: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 (standard alphabet, padded) of the payload.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

impl Signature {
    /// `signer`'s signature over the PAE of `payload_type` and `payload` (a Key Vault key
    /// signs remotely: see [`Signer::sign`]).
    pub async fn by(
        signer: &Signer,
        payload_type: &str,
        payload: &[u8],
    ) -> Result<Signature, SigningError> {
        Ok(Signature {
            keyid: signer.keyid().to_string(),
            sig: STANDARD.encode(signer.sign(&pae(payload_type, payload)).await?),
        })
    }

    /// The same with a local key, at once (None for a remote key). For tests and tools that
    /// sign without a runtime.
    pub fn by_local(signer: &Signer, payload_type: &str, payload: &[u8]) -> Option<Signature> {
        Some(Signature {
            keyid: signer.keyid().to_string(),
            sig: STANDARD.encode(signer.sign_local(&pae(payload_type, payload))?),
        })
    }
}

/// What a signature check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// A signature by the key verifies over the PAE.
    Verified,
    /// No signatures at all (or a record written before envelopes: 0.1's plain JSON).
    Unsigned,
    /// Signatures, none of which verifies with the key.
    Bad,
}

impl Envelope {
    /// Wrap `payload` (of `payload_type`) with its signature, when there is one (made by
    /// [`Signature::by`] over the same type and payload). Pure.
    pub fn seal(payload_type: &str, payload: &[u8], signature: Option<Signature>) -> Envelope {
        Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures: signature.into_iter().collect(),
        }
    }

    /// The decoded payload; None when it is not valid base64.
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        STANDARD.decode(self.payload.as_bytes()).ok()
    }

    /// Whether a signature by `key` verifies over the PAE of this envelope's type and payload.
    pub fn check(&self, key: &Verifier) -> SignatureCheck {
        if self.signatures.is_empty() {
            return SignatureCheck::Unsigned;
        }
        let Some(body) = self.payload_bytes() else {
            return SignatureCheck::Bad;
        };
        let message = pae(&self.payload_type, &body);
        let ok = self.signatures.iter().any(|s| {
            STANDARD
                .decode(s.sig.as_bytes())
                .is_ok_and(|der| key.verify(&message, &der))
        });
        if ok {
            SignatureCheck::Verified
        } else {
            SignatureCheck::Bad
        }
    }
}

/// Whether an artifact read with `envelope` (None: a 0.1 plain-JSON document) is signed by `key`.
pub fn check(envelope: Option<&Envelope>, key: &Verifier) -> SignatureCheck {
    envelope.map_or(SignatureCheck::Unsigned, |e| e.check(key))
}
