//! `--format gatekeeper`: a ConstraintTemplate (Rego, valid as Rego v0 with the future
//! keywords and as Rego v1) and its Constraint. The template is generic: the admitted
//! references are the constraint's `allowedImageRegex` parameter; exempt namespaces are the
//! constraint's `match.excludedNamespaces`. On UPDATE an image the pod already had
//! (`oldObject`) is not checked again; a changed or added one is.

use serde_json::{Value, json};

use super::{NAME, Rules, yaml};

/// The kind the template defines.
pub const KIND: &str = "AirlockLiveImages";

/// The Rego of the template.
pub const REGO: &str = r#"package airlockliveimages

import future.keywords.contains
import future.keywords.if
import future.keywords.in

violation contains {"msg": msg} if {
    some image in images
    not regex.match(input.parameters.allowedImageRegex, image)
    not image in old_images
    msg := sprintf("image %v is not in live: %v", [image, input.parameters.help])
}

images contains c.image if {
    some c in input.review.object.spec.containers
}

images contains c.image if {
    some c in input.review.object.spec.initContainers
}

images contains c.image if {
    some c in input.review.object.spec.ephemeralContainers
}

old_images contains c.image if {
    some c in input.review.oldObject.spec.containers
}

old_images contains c.image if {
    some c in input.review.oldObject.spec.initContainers
}

old_images contains c.image if {
    some c in input.review.oldObject.spec.ephemeralContainers
}
"#;

/// The two objects (template, constraint).
pub fn objects(rules: &Rules) -> (Value, Value) {
    let template = json!({
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": { "name": KIND.to_lowercase() },
        "spec": {
            "crd": { "spec": {
                "names": { "kind": KIND },
                "validation": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "allowedImageRegex": {
                            "type": "string",
                            "description": "RE2 pattern (anchored) of the admitted image references",
                        },
                        "help": {
                            "type": "string",
                            "description": "How to get an image into live (shown in denials)",
                        },
                    },
                }},
            }},
            "targets": [{
                "target": "admission.k8s.gatekeeper.sh",
                "rego": REGO,
            }],
        },
    });
    let mut matcher = json!({
        "kinds": [{ "apiGroups": [""], "kinds": ["Pod"] }],
    });
    if !rules.exempt_namespaces.is_empty() {
        matcher["excludedNamespaces"] = json!(rules.exempt_namespaces);
    }
    let constraint = json!({
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": KIND,
        "metadata": { "name": NAME },
        "spec": {
            "enforcementAction": "deny",
            "match": matcher,
            "parameters": {
                "allowedImageRegex": rules.image_regex(),
                "help": rules.help(),
            },
        },
    });
    (template, constraint)
}

pub fn render(rules: &Rules) -> String {
    let (template, constraint) = objects(rules);
    format!(
        "{}---\n{}---\n{}",
        rules.header("gatekeeper"),
        yaml::document(&template),
        yaml::document(&constraint)
    )
}
