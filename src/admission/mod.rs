//! `airlock admission`: admission policies that admit a pod only when every image of it
//! (containers, initContainers, ephemeralContainers) is in live, pinned by digest:
//! `<live host>/<live prefix>/<path>@sha256:<d>` or `…/<path>:<tag>@sha256:<d>`, with `d` a
//! digest a declared tag of that live repository points at now. Everything else is denied:
//! upstream references, live tags without a digest, other digests, quarantine, look-alike
//! hosts. Namespaces in `[admission] exempt_namespaces` are not checked.
//!
//! Pure: built from a [`LiveSet`]; one module per format, all from the same [`Rules`].

pub mod azure_policy;
pub mod gatekeeper;
pub mod kyverno;
pub mod vap;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::LiveSet;
use crate::model::Digest;

/// The name of the generated objects (policy, binding, constraint, cluster policy).
pub const NAME: &str = "airlock-live-images";

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ValidatingAdmissionPolicy + Binding (admissionregistration.k8s.io/v1, CEL).
    Vap,
    /// Gatekeeper ConstraintTemplate (Rego) + Constraint.
    Gatekeeper,
    /// Kyverno ClusterPolicy (CEL).
    Kyverno,
    /// Parameters of the Azure Policy built-in "Kubernetes cluster containers should only use
    /// allowed images".
    AzurePolicy,
}

/// What every format enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `host[:port]` of the live registry as clusters pull from it.
    pub host: String,
    /// The live prefix (may be empty).
    pub prefix: String,
    /// Live repository → admitted digests.
    pub digests: BTreeMap<String, BTreeSet<Digest>>,
    /// Namespaces not checked, sorted.
    pub exempt_namespaces: Vec<String>,
    /// `[signing] public_key`: the key promotion records must be signed with (Kyverno checks
    /// the attestation); None: attestations are not checked.
    pub attestation_key: Option<AttestationKey>,
}

/// The public key a promotion-record attestation must verify with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestationKey {
    /// A PEM `PUBLIC KEY`.
    Pem(String),
    /// A key management service reference (`azurekms://…`), which Kyverno reads itself.
    Kms(String),
}

impl Rules {
    pub fn new(set: &LiveSet, exempt_namespaces: &[String]) -> Rules {
        Rules {
            host: set.host.clone(),
            prefix: set.prefix.clone(),
            digests: set.digests_by_repository(),
            exempt_namespaces: exempt_namespaces.to_vec(),
            attestation_key: None,
        }
    }

    /// The key of `[signing] public_key`, for the formats that check attestations (Kyverno).
    pub fn with_signing(mut self, signing: &crate::signing::Signing) -> Rules {
        self.attestation_key = match (&signing.public_key_kms, &signing.public_key) {
            (Some(k), _) => Some(AttestationKey::Kms(k.to_string())),
            (None, Some(v)) => Some(AttestationKey::Pem(v.to_pem())),
            (None, None) => None,
        };
        self
    }

    /// Where live images are: `host/prefix/`.
    pub fn live_root(&self) -> String {
        if self.prefix.is_empty() {
            format!("{}/", self.host)
        } else {
            format!("{}/{}/", self.host, self.prefix)
        }
    }

    /// The regular expression (RE2 syntax; also valid for Python `re`) that matches exactly
    /// the admitted references, anchored with `^…$` so that an unanchored search (Gatekeeper's
    /// `re_match`, CEL's `matches`) admits nothing more.
    pub fn image_regex(&self) -> String {
        if self.digests.is_empty() {
            // Nothing is live: a pattern no string matches (`\b\B` is never true).
            return r"^\b\B$".to_string();
        }
        let alternatives: Vec<String> = self
            .digests
            .iter()
            .map(|(repo, digests)| {
                let hexes: Vec<&str> = digests.iter().map(|d| d.hex()).collect();
                format!(
                    "{}/{}(?::{TAG})?@sha256:(?:{})",
                    regex_escape(&self.host),
                    regex_escape(repo),
                    hexes.join("|")
                )
            })
            .collect();
        format!("^(?:{})$", alternatives.join("|"))
    }

    /// The denial's advice: how to get an image into live.
    pub fn help(&self) -> String {
        format!(
            "only images promoted by airlock into {}, referenced by digest (`airlock images` prints them), may run here. To add one: declare it in airlock.toml, run `airlock plan` and `airlock apply`, then use the pinned reference from `airlock images`",
            self.live_root()
        )
    }

    /// How many digests are admitted.
    pub fn digest_count(&self) -> usize {
        self.digests.values().map(BTreeSet::len).sum()
    }

    /// The comment lines heading a YAML output.
    fn header(&self, format: &str) -> String {
        format!(
            "# Generated by `airlock admission --format {format}`: admits pods whose every image is in\n# {} pinned by one of the {} digest(s) now in live; exempt namespaces: {}.\n# Regenerate and commit after every `airlock apply`.\n",
            self.live_root(),
            self.digest_count(),
            if self.exempt_namespaces.is_empty() {
                "none".to_string()
            } else {
                self.exempt_namespaces.join(", ")
            }
        )
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
const TAG: &str = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";

/// Escape every regular-expression metacharacter. Hosts and paths hold `.`, `-`, `_`, `/`,
/// `:` and alphanumerics; `.` becomes `[.]` so that the pattern needs no backslash in any of
/// the languages it is embedded in (CEL, YAML, JSON); the rest is backslash-escaped for safety.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '.' => out.push_str("[.]"),
            '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A CEL string literal (double quotes; `\` and `"` escaped).
pub fn cel_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The CEL expressions shared by `vap` and `kyverno`: the list of every image of the pod, the
/// check and the message (standard CEL only: `map`, `filter`, `all`, `matches`, `has`, `in`).
/// On UPDATE an image the pod already had is not checked again: a running pod whose digest left
/// live can still be labelled, annotated or have its finalizers removed; a changed or added
/// image (including an ephemeral container) must be in live.
pub struct Cel {
    /// Variable `images`: every image of `object`.
    pub images: String,
    /// Variable `oldImages`: every image of `oldObject` (empty on CREATE).
    pub old_images: String,
    pub expression: String,
    pub message_expression: String,
}

impl Cel {
    /// The `variables` list both policies declare: `images` and `oldImages`.
    pub fn variables(&self) -> serde_json::Value {
        serde_json::json!([
            { "name": "images", "expression": self.images },
            { "name": "oldImages", "expression": self.old_images },
        ])
    }

    /// The check with its message, as one validation (`expression`, `messageExpression`).
    pub fn validation(&self) -> serde_json::Value {
        serde_json::json!({
            "expression": self.expression,
            "messageExpression": self.message_expression,
        })
    }
}

pub fn cel(rules: &Rules) -> Cel {
    let re = cel_string(&rules.image_regex());
    let kinds = ["containers", "initContainers", "ephemeralContainers"];
    let images_of = |o: &str| {
        kinds
            .iter()
            .map(|k| format!("(has({o}.spec.{k}) ? {o}.spec.{k}.map(c, c.image) : [])"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let admitted = format!("i.matches({re}) || i in variables.oldImages");
    Cel {
        images: images_of("object"),
        old_images: format!("oldObject == null ? [] : {}", images_of("oldObject")),
        expression: format!("variables.images.all(i, {admitted})"),
        message_expression: format!(
            "\"image \" + variables.images.filter(i, !({admitted}))[0] + \" is not in live: \" + {}",
            cel_string(&rules.help())
        ),
    }
}

/// Render the policy in `format`.
pub fn render(rules: &Rules, format: Format) -> String {
    match format {
        Format::Vap => vap::render(rules),
        Format::Gatekeeper => gatekeeper::render(rules),
        Format::Kyverno => kyverno::render(rules),
        Format::AzurePolicy => azure_policy::render(rules),
    }
}

#[cfg(test)]
mod tests;
