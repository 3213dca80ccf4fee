//! [`ActionView`], an action as the plan file (format version 1, `render::FORMAT_VERSION`)
//! writes it, and the one place where it meets [`Action`]. The view is what is serialised,
//! what `render::PlanView` holds and what [`super::Plan::hash`] hashes, so renaming or
//! reshaping the internal [`Action`] changes neither plan files nor plan hashes. Changing the
//! view does both: that needs a format version bump (`render::tests` pins a plan's hash).
//!
//! A saved plan is hostile input: [`Action::try_from`] refuses a view that carries a field
//! its kind may not have, or lacks one it needs, naming the action id. Whether the action is
//! one the configuration could produce is `plan::admissible`'s question, asked after.

use serde::{Deserialize, Serialize};

use super::{Action, ActionKind, Location, Op, Precondition};
use crate::model::{Digest, Platform};

/// An action in the plan file. Field order is the order of the JSON document (and of the
/// bytes [`super::Plan::hash`] hashes); optional fields are left out when absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionView {
    /// Stable id: `<kind>:<image key>` (delete: `delete:<repository>:<tag>`).
    pub id: String,
    pub kind: ActionKind,
    /// The image key (`path:tag`) this action serves; None for pruning undeclared tags.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<String>,
    /// Where the content is read from (import: upstream; promote: quarantine).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<Location>,
    /// Digest to read at the source (import of a platform subset reads the whole index;
    /// promote: the digest it tags).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_digest: Option<Digest>,
    /// Where the action writes (scan: the quarantined image it scans).
    pub target: Location,
    /// The content digest the target will hold (delete: the digest removed).
    pub digest: Digest,
    /// The digest a replaced tag pointed to; for a scan, the verdict it renews.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replaces: Option<Digest>,
    /// Import only: the platform subset to keep.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platforms: Option<Vec<Platform>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform_count: Option<usize>,
    pub preconditions: Vec<Precondition>,
    pub depends_on: Vec<String>,
    /// Display only.
    pub reason: String,
}

/// A view whose fields do not fit its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("action `{id}`: {}", problems.join("; "))]
pub struct ActionViewError {
    pub id: String,
    /// Each field that is missing or may not be there, in field order.
    pub problems: Vec<String>,
}

impl From<&Action> for ActionView {
    fn from(a: &Action) -> ActionView {
        let (image, source, source_digest, platforms, size, platform_count) = match &a.op {
            Op::Import {
                image,
                source,
                source_digest,
                platforms,
                size,
                platform_count,
            } => (
                Some(image.clone()),
                Some(source.clone()),
                Some(source_digest.clone()),
                platforms.clone(),
                *size,
                *platform_count,
            ),
            Op::Scan {
                image,
                size,
                platform_count,
            } => (
                Some(image.clone()),
                None,
                None,
                None,
                *size,
                *platform_count,
            ),
            Op::Promote {
                image,
                source,
                size,
                platform_count,
            } => (
                Some(image.clone()),
                Some(source.clone()),
                Some(a.digest.clone()),
                None,
                *size,
                *platform_count,
            ),
            Op::Delete { image } => (image.clone(), None, None, None, None, None),
        };
        ActionView {
            id: a.id.clone(),
            kind: a.kind(),
            image,
            source,
            source_digest,
            target: a.target.clone(),
            digest: a.digest.clone(),
            replaces: a.replaces.clone(),
            platforms,
            size,
            platform_count,
            preconditions: a.preconditions.clone(),
            depends_on: a.depends_on.clone(),
            reason: a.reason.clone(),
        }
    }
}

/// Takes the view's optional fields one by one, recording each one missing or forbidden.
struct Fields {
    kind: ActionKind,
    problems: Vec<String>,
}

impl Fields {
    fn article(&self) -> &'static str {
        match self.kind {
            ActionKind::Import => "an",
            _ => "a",
        }
    }

    fn required<T>(&mut self, name: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.problems
                .push(format!("{} {} needs `{name}`", self.article(), self.kind));
        }
        value
    }

    fn forbidden<T>(&mut self, name: &str, value: &Option<T>) {
        if value.is_some() {
            self.problems
                .push(format!("{} {} has no `{name}`", self.article(), self.kind));
        }
    }
}

impl TryFrom<ActionView> for Action {
    type Error = ActionViewError;

    fn try_from(v: ActionView) -> Result<Action, ActionViewError> {
        let mut f = Fields {
            kind: v.kind,
            problems: Vec::new(),
        };
        let op = match v.kind {
            ActionKind::Import => {
                let image = f.required("image", v.image);
                let source = f.required("source", v.source);
                let source_digest = f.required("source_digest", v.source_digest);
                match (image, source, source_digest) {
                    (Some(image), Some(source), Some(source_digest)) => Some(Op::Import {
                        image,
                        source,
                        source_digest,
                        platforms: v.platforms,
                        size: v.size,
                        platform_count: v.platform_count,
                    }),
                    _ => None,
                }
            }
            ActionKind::Scan => {
                let image = f.required("image", v.image);
                f.forbidden("source", &v.source);
                f.forbidden("source_digest", &v.source_digest);
                f.forbidden("platforms", &v.platforms);
                image.map(|image| Op::Scan {
                    image,
                    size: v.size,
                    platform_count: v.platform_count,
                })
            }
            ActionKind::Promote => {
                let image = f.required("image", v.image);
                let source = f.required("source", v.source);
                // A promotion copies one digest: what it reads is what it tags.
                if let Some(read) = f.required("source_digest", v.source_digest)
                    && read != v.digest
                {
                    f.problems.push(format!(
                        "a promote copies one digest, but it reads {read} and would tag {}",
                        v.digest
                    ));
                }
                f.forbidden("platforms", &v.platforms);
                match (image, source) {
                    (Some(image), Some(source)) => Some(Op::Promote {
                        image,
                        source,
                        size: v.size,
                        platform_count: v.platform_count,
                    }),
                    _ => None,
                }
            }
            ActionKind::Delete => {
                f.forbidden("source", &v.source);
                f.forbidden("source_digest", &v.source_digest);
                f.forbidden("replaces", &v.replaces);
                f.forbidden("platforms", &v.platforms);
                f.forbidden("size", &v.size);
                f.forbidden("platform_count", &v.platform_count);
                Some(Op::Delete { image: v.image })
            }
        };
        match op {
            Some(op) if f.problems.is_empty() => Ok(Action {
                id: v.id,
                target: v.target,
                digest: v.digest,
                replaces: v.replaces,
                preconditions: v.preconditions,
                depends_on: v.depends_on,
                reason: v.reason,
                op,
            }),
            _ => Err(ActionViewError {
                id: v.id,
                problems: f.problems,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
