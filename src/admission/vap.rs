//! `--format vap`: a ValidatingAdmissionPolicy and its binding (admissionregistration.k8s.io/v1,
//! Kubernetes ≥ 1.30): pods on CREATE and UPDATE (and the ephemeral-containers subresource),
//! `failurePolicy: Fail`, `validationActions: [Deny]`; exempt namespaces by namespace selector.

use serde_json::{Value, json};

use super::{NAME, Rules, cel, yaml};

/// The two objects, as JSON values (policy, binding).
pub fn objects(rules: &Rules) -> (Value, Value) {
    let c = cel(rules);
    let mut match_constraints = json!({
        "resourceRules": [{
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["pods", "pods/ephemeralcontainers"],
        }],
    });
    if !rules.exempt_namespaces.is_empty() {
        match_constraints["namespaceSelector"] = json!({
            "matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": rules.exempt_namespaces,
            }],
        });
    }
    let mut validation = c.validation();
    validation["reason"] = json!("Forbidden");
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": NAME },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": match_constraints,
            "variables": c.variables(),
            "validations": [validation],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": NAME },
        "spec": {
            "policyName": NAME,
            "validationActions": ["Deny"],
        },
    });
    (policy, binding)
}

pub fn render(rules: &Rules) -> String {
    let (policy, binding) = objects(rules);
    format!(
        "{}---\n{}---\n{}",
        rules.header("vap"),
        yaml::document(&policy),
        yaml::document(&binding)
    )
}
