//! `--format kyverno`: a Kyverno ClusterPolicy (kyverno.io/v1) with one `validate.cel` rule —
//! the same CEL as the ValidatingAdmissionPolicy — on pods (and their ephemeral-containers
//! subresource) at CREATE and UPDATE, `failureAction: Enforce`; exempt namespaces are
//! excluded. Autogen is off: pods are what is admitted, whatever controller makes them.
//! A `verifyImages` attestation check (the promotion record, once records are signed) comes
//! with signed records; until then this policy checks digests only.

use serde_json::{Value, json};

use super::{NAME, Rules, cel, yaml};

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
                "variables": [
                { "name": "images", "expression": c.images },
                { "name": "oldImages", "expression": c.old_images },
            ],
                "expressions": [{
                    "expression": c.expression,
                    "messageExpression": c.message_expression,
                }],
            },
        },
    });
    if !rules.exempt_namespaces.is_empty() {
        rule["exclude"] = json!({ "any": [{ "resources": {
            "namespaces": rules.exempt_namespaces,
        }}]});
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
            "rules": [rule],
        },
    })
}

pub fn render(rules: &Rules) -> String {
    format!(
        "{}# verifyImages (an attestation check of airlock's promotion records) is added once records\n# are signed (the \"Records v2\" issue); until then this policy checks digests only.\n---\n{}",
        rules.header("kyverno"),
        yaml::document(&object(rules))
    )
}
