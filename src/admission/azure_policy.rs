//! `--format azure-policy`: the parameters of the Azure Policy built-in "Kubernetes cluster
//! containers should only use allowed images" (definition
//! `febd0533-8e55-448f-b837-bd0e06f16469`, the one the AKS baseline assigns). Its Gatekeeper
//! template matches `allowedContainerImagesRegex` unanchored (`re_match`), so the pattern is
//! anchored here; `effect` is `Deny`; `excludedNamespaces` are the exempt namespaces.

use serde_json::json;

use super::Rules;

/// The built-in policy definition these parameters are for.
pub const DEFINITION_ID: &str =
    "/providers/Microsoft.Authorization/policyDefinitions/febd0533-8e55-448f-b837-bd0e06f16469";

pub fn render(rules: &Rules) -> String {
    let v = json!({
        "allowedContainerImagesRegex": { "value": rules.image_regex() },
        "effect": { "value": "Deny" },
        "excludedNamespaces": { "value": rules.exempt_namespaces },
    });
    let mut s = serde_json::to_string_pretty(&v).expect("json");
    s.push('\n');
    s
}
