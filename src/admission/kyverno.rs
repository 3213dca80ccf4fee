//! `--format kyverno`: a Kyverno ClusterPolicy (kyverno.io/v1) with one `validate.cel` rule —
//! the same CEL as the ValidatingAdmissionPolicy — on pods (and their ephemeral-containers
//! subresource) at CREATE and UPDATE, `failureAction: Enforce`; exempt namespaces are
//! excluded. Autogen is off: pods are what is admitted, whatever controller makes them.
//!
//! With a `[signing] public_key`, a second rule, `verifyImages`, checks every live image's
//! promotion record as a cosign attestation stored as an OCI 1.1 referrer (`cosignOCI11`): an
//! in-toto statement of type [`PROMOTION_PREDICATE`] whose subject is the image digest,
//! signed by the public key (its PEM, or Kyverno's `kms` reference `azurekms://…` for a Key
//! Vault key), with the record's own digest and version checked by conditions. No
//! transparency log or certificate is involved (airlock signs with a key). Without a public
//! key the policy says in a comment that attestations are not checked.

use serde_json::{Value, json};

use super::{AttestationKey, NAME, Rules, cel, yaml};
use crate::records::PROMOTION_PREDICATE;

/// The attestation rule: every image under the live root must carry a promotion record
/// signed by `key`.
fn attestation_rule(rules: &Rules, key: &AttestationKey, exclude: Option<&Value>) -> Value {
    let mut keys = match key {
        AttestationKey::Pem(pem) => json!({ "publicKeys": pem }),
        AttestationKey::Kms(r) => json!({ "kms": r }),
    };
    keys["signatureAlgorithm"] = json!("sha256");
    keys["rekor"] = json!({ "ignoreTlog": true });
    keys["ctlog"] = json!({ "ignoreSCT": true });
    let mut rule = json!({
        "name": "live-images-promotion-record",
        "match": { "any": [{ "resources": {
            "kinds": ["Pod"],
            "operations": ["CREATE", "UPDATE"],
        }}]},
        "verifyImages": [{
            "imageReferences": [format!("{}*", rules.live_root())],
            "type": "Cosign",
            "cosignOCI11": true,
            "failureAction": "Enforce",
            "mutateDigest": false,
            "verifyDigest": true,
            "required": true,
            "useCache": true,
            "attestations": [{
                "type": PROMOTION_PREDICATE,
                "attestors": [{ "count": 1, "entries": [{ "keys": keys }] }],
                "conditions": [{ "all": [
                    {
                        "key": "{{ format_version }}",
                        "operator": "Equals",
                        "value": 1,
                        "message": "the attestation is not an airlock promotion record (format_version 1)",
                    },
                    {
                        "key": "{{ from_digest }}",
                        "operator": "Equals",
                        "value": "{{ digest }}",
                        "message": "the promotion record names another quarantined digest than the live one",
                    },
                ]}],
            }],
        }],
    });
    if let Some(e) = exclude {
        rule["exclude"] = e.clone();
    }
    rule
}

pub fn object(rules: &Rules) -> Value {
    let c = cel(rules);
    let mut rule = json!({
        "name": "live-images-only",
        "match": { "any": [{ "resources": {
            "kinds": ["Pod", "Pod/ephemeralcontainers"],
            "operations": ["CREATE", "UPDATE"],
        }}]},
        "validate": {
            "failureAction": "Enforce",
            "cel": {
                "variables": c.variables(),
                "expressions": [c.validation()],
            },
        },
    });
    if !rules.exempt_namespaces.is_empty() {
        rule["exclude"] = json!({ "any": [{ "resources": {
            "namespaces": rules.exempt_namespaces,
        }}]});
    }
    let mut all = vec![rule.clone()];
    if let Some(key) = &rules.attestation_key {
        all.push(attestation_rule(rules, key, rule.get("exclude")));
    }
    json!({
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": NAME,
            "annotations": {
                "pod-policies.kyverno.io/autogen-controllers": "none",
                "policies.kyverno.io/title": "Images from airlock's live registry only",
                "policies.kyverno.io/description": rules.help(),
            },
        },
        "spec": {
            "admission": true,
            "background": true,
            "rules": all,
        },
    })
}

pub fn render(rules: &Rules) -> String {
    let attestations = match &rules.attestation_key {
        Some(AttestationKey::Pem(_)) => format!(
            "# Rule live-images-promotion-record: every live image needs its airlock promotion record\n# ({PROMOTION_PREDICATE}) as an attestation signed by [signing] public_key.\n"
        ),
        Some(AttestationKey::Kms(r)) => format!(
            "# Rule live-images-promotion-record: every live image needs its airlock promotion record\n# ({PROMOTION_PREDICATE}) as an attestation signed by the Key Vault key {r}\n# (Kyverno reads the public key from Key Vault with its own Azure identity).\n"
        ),
        None => "# Attestations are NOT checked: no [signing] public_key is configured, so this policy checks\n# digests only (set public_key to add a verifyImages check of airlock's promotion records).\n".to_string(),
    };
    format!(
        "{}{attestations}---\n{}",
        rules.header("kyverno"),
        yaml::document(&object(rules))
    )
}
