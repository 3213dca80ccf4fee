//! Lowering of `[signing]` and `[admission]`: what signs promotion records, and which
//! namespaces the generated admission policies leave alone.

use super::Lowerer;
use crate::config::desired::{Admission, AzureCloud};
use crate::config::schema::{RawAdmission, RawSigning};
use crate::signing::{KeyRef, KmsKey, Signing, Verifier};

/// `[signing]`: the key reference must parse (the key itself is read when apply signs, so
/// plan and audit run without it); a public key file is read and parsed now, an
/// `azurekms://` public key only checked (it is read from Key Vault by the commands that
/// verify). `azurekms://` names a key of the configured cloud's Key Vault, and needs a build
/// with the `azure` feature.
pub(super) fn lower_signing(l: &mut Lowerer, raw: &RawSigning, cloud: AzureCloud) -> Signing {
    let kv_suffix = cfg!(feature = "azure").then(|| cloud.keyvault_suffix());
    let mut out = Signing::default();
    if let Some(k) = &raw.key {
        match KeyRef::parse(k.get_ref(), &l.base_dir, kv_suffix) {
            Ok(r) => out.key = Some(r),
            Err(e) => l.err(
                k.span(),
                e.to_string(),
                Some(
                    "e.g. key = \"env://AIRLOCK_SIGNING_KEY\", key = \"file://airlock.key\" or key = \"azurekms://<vault>.vault.azure.net/<key>\"",
                ),
            ),
        }
    }
    if let Some(p) = &raw.public_key {
        let value = p.get_ref();
        if value.starts_with(crate::signing::kms::SCHEME) {
            let parsed = match kv_suffix {
                None => Err("azurekms:// needs Azure Key Vault, and this airlock was built without the `azure` feature".to_string()),
                Some(suffix) => KmsKey::parse(value, suffix),
            };
            match parsed {
                Ok(k) => out.public_key_kms = Some(k),
                Err(e) => l.err(
                    p.span(),
                    format!("public_key {value:?}: {e}"),
                    Some("public_key = \"azurekms://<vault>.vault.azure.net/<key>\" (the key `key` names)"),
                ),
            }
            return out;
        }
        let path = l.base_dir.join(value);
        match Verifier::load(&path) {
            Ok(v) => out.public_key = Some(std::sync::Arc::new(v)),
            Err(e) => l.err(
                p.span(),
                e.to_string(),
                Some("a PEM `PUBLIC KEY` file: openssl pkey -in airlock.key -pubout -out airlock.pub"),
            ),
        }
    }
    out
}

/// `[admission]`: every exempt namespace must be a valid namespace name (a DNS-1123 label).
pub(super) fn lower_admission(l: &mut Lowerer, raw: &RawAdmission) -> Admission {
    let Some(list) = &raw.exempt_namespaces else {
        return Admission::default();
    };
    let mut names: Vec<String> = Vec::new();
    for n in list {
        let v = n.get_ref();
        if !valid_namespace(v) {
            l.err(
                n.span(),
                format!("`{v}` is not a valid namespace name"),
                Some("use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit), e.g. \"kube-system\""),
            );
            continue;
        }
        names.push(v.clone());
    }
    names.sort();
    names.dedup();
    Admission {
        exempt_namespaces: names,
    }
}

/// A Kubernetes namespace name: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'-')
}
