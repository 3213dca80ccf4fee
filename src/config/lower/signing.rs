//! Lowering of `[signing]` and `[admission]`: what signs promotion records, and which
//! namespaces the generated admission policies leave alone.

use super::Lowerer;
use crate::config::desired::Admission;
use crate::config::schema::{RawAdmission, RawSigning};
use crate::signing::{KeyRef, Signing, Verifier};

/// `[signing]`: the key reference must parse (the key itself is read when apply signs, so
/// plan and audit run without it); the public key is read and parsed now.
pub(super) fn lower_signing(l: &mut Lowerer, raw: &RawSigning) -> Signing {
    let mut out = Signing::default();
    if let Some(k) = &raw.key {
        match KeyRef::parse(k.get_ref(), &l.base_dir) {
            Ok(r) => out.key = Some(r),
            Err(e) => l.err(
                k.span(),
                e.to_string(),
                Some("e.g. key = \"env://AIRLOCK_SIGNING_KEY\" or key = \"file://airlock.key\""),
            ),
        }
    }
    if let Some(p) = &raw.public_key {
        let path = l.base_dir.join(p.get_ref());
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
