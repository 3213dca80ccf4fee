//! PlanView, the one serialisable model of a plan, and its renderers: human, JSON, markdown;
//! and the apply and audit reports (`reports`).
//!
//! Everything here is pure: a renderer takes a [`PlanView`] and writes to any `io::Write`,
//! never reads a clock or the environment, and sorts what it prints, so output is
//! deterministic and snapshot-tested. The JSON form is also the plan file that
//! `apply plan.json` and `show plan.json` read back through [`parse_plan_file`].

mod human;
mod json;
mod markdown;
pub mod reports;
mod snapshot;
pub use snapshot::redact_version;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::model::Digest;
use crate::observed::LiveTag;
pub use crate::plan::view::{ActionView, ActionViewError};
use crate::plan::{Action, Blocked, CatalogEntry, Plan, PlanError, PlanParts, Summary};

/// Version of the plan file format. Bump it when a change would make an older airlock
/// misread a newer plan file.
pub const FORMAT_VERSION: u32 = 1;

/// The serialisable model of a plan: what the JSON plan file holds and what every
/// renderer reads. Field order is the order of the JSON document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanView {
    pub format_version: u32,
    /// The airlock that wrote the plan (informational).
    pub airlock_version: String,
    /// Hash of the gate configuration the plan was made with.
    pub policy_hash: Digest,
    /// Hash of the actions ([`Plan::hash`]); checked again when the file is read back.
    pub plan_hash: Digest,
    /// True when the plan covers only the images selected with `--image` (it then never
    /// prunes); left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Counts of the actions (derived; recomputed when the file is read back).
    pub summary: Summary,
    /// Every action, in a deterministic topological order, with its dependencies and
    /// the preconditions apply re-checks first. The plan file's own form of an action
    /// ([`ActionView`]), converted strictly when read back.
    pub actions: Vec<ActionView>,
    pub blocked: Vec<Blocked>,
    pub unmanaged: Vec<LiveTag>,
    pub warnings: Vec<String>,
    pub live_before: Vec<CatalogEntry>,
    pub live_after: Vec<CatalogEntry>,
}

/// Why a plan file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("failed to read the plan file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an airlock plan file: it has no numeric `format_version` field")]
    NoFormatVersion,
    #[error(
        "plan format version {found} is newer than this airlock supports (version {supported}); \
         it was written by airlock {written_by}: re-run `airlock plan` with this version or upgrade airlock"
    )]
    TooNew {
        found: u64,
        supported: u32,
        written_by: String,
    },
    #[error("plan format version {found} is not supported: this airlock reads version {supported}")]
    Unsupported { found: u64, supported: u32 },
    #[error("the plan file's actions are inconsistent: {0}")]
    Invalid(#[from] PlanError),
    /// An action with a field its kind may not carry, or without one it needs.
    #[error("the plan file holds a malformed action: {0}")]
    Malformed(#[from] ActionViewError),
    /// The hash is unkeyed (anyone can recompute it): it only catches accidents, and the
    /// expected value is never printed. What makes a plan safe is `plan::admissible`.
    #[error(
        "the plan file was modified after it was written: its plan_hash does not match its actions"
    )]
    HashMismatch,
    #[error("the plan file holds a control character in {0}: refusing to print or apply it")]
    ControlCharacter(String),
}

impl PlanView {
    pub fn from_plan(plan: &Plan) -> PlanView {
        let PlanParts {
            actions,
            blocked,
            unmanaged,
            warnings,
            live_before,
            live_after,
            partial,
        } = plan.parts();
        PlanView {
            format_version: FORMAT_VERSION,
            airlock_version: env!("CARGO_PKG_VERSION").to_string(),
            policy_hash: plan.policy_hash.clone(),
            plan_hash: plan.hash(),
            partial,
            summary: plan.summary(),
            actions: actions.iter().map(ActionView::from).collect(),
            blocked,
            unmanaged,
            warnings,
            live_before,
            live_after,
        }
    }

    /// Rebuild the plan: checks the format version, validates the dependency graph
    /// (through [`Plan::new`]) and that the actions still hash to `plan_hash`.
    /// `summary` is derived data and is recomputed, not trusted.
    pub fn into_plan(self) -> Result<Plan, ViewError> {
        check_version(u64::from(self.format_version), &self.airlock_version)?;
        let recorded = self.plan_hash;
        let actions = self
            .actions
            .into_iter()
            .map(Action::try_from)
            .collect::<Result<Vec<Action>, ActionViewError>>()?;
        let plan = Plan::new(
            PlanParts {
                actions,
                blocked: self.blocked,
                unmanaged: self.unmanaged,
                warnings: self.warnings,
                live_before: self.live_before,
                live_after: self.live_after,
                partial: self.partial,
            },
            self.policy_hash,
        )?;
        if plan.hash() != recorded {
            return Err(ViewError::HashMismatch);
        }
        Ok(plan)
    }
}

fn check_version(found: u64, written_by: &str) -> Result<(), ViewError> {
    if found == u64::from(FORMAT_VERSION) {
        Ok(())
    } else if found > u64::from(FORMAT_VERSION) {
        Err(ViewError::TooNew {
            found,
            supported: FORMAT_VERSION,
            written_by: written_by.to_string(),
        })
    } else {
        Err(ViewError::Unsupported {
            found,
            supported: FORMAT_VERSION,
        })
    }
}

/// Read a JSON plan file (as written by `plan --out` or `--format json`).
///
/// The format version is checked before the rest of the document, so a plan written by a
/// newer airlock is reported as such rather than as an unknown field.
pub fn parse_plan_file(bytes: &[u8]) -> Result<Plan, ViewError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    let found = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or(ViewError::NoFormatVersion)?;
    let written_by = value
        .get("airlock_version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("(unknown version)");
    check_version(found, written_by)?;
    if let Some(path) = control_character(&value, "the plan") {
        return Err(ViewError::ControlCharacter(path));
    }
    let view: PlanView = serde_json::from_value(value)?;
    view.into_plan()
}

/// Where a string (or key) of `v` holds a control character: terminal escapes in a reason
/// could hide lines from the reviewer of `show`.
fn control_character(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let bad = |s: &str| s.chars().any(char::is_control);
    match v {
        Value::String(s) if bad(s) => Some(at.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| control_character(x, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            if bad(k) {
                Some(format!("a key of {at}"))
            } else {
                control_character(x, &format!("{at}.{k}"))
            }
        }),
        _ => None,
    }
}

/// An output format for `plan` and `show`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    #[default]
    Human,
    Json,
    Markdown,
}

impl Format {
    /// Every format, in the order help text lists them.
    pub const ALL: [Format; 3] = [Format::Human, Format::Json, Format::Markdown];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Human => "human",
            Format::Json => "json",
            Format::Markdown => "markdown",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid format `{0}`: expected one of human, json, markdown")]
pub struct FormatError(pub String);

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| FormatError(s.to_string()))
    }
}

/// Options of the human renderer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HumanOptions {
    /// Emit ANSI colour codes. The caller decides (terminal, `NO_COLOR`); nothing here looks.
    pub color: bool,
}

/// Render `plan` in `format` to `out`.
pub fn render(
    plan: &Plan,
    format: Format,
    opts: &HumanOptions,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let view = PlanView::from_plan(plan);
    match format {
        Format::Human => human::render(&view, opts, out),
        Format::Json => json::render(&view, out),
        Format::Markdown => markdown::render(&view, out),
    }
}

/// What a partial plan says about itself, in every format.
const PARTIAL_NOTE: &str = "Partial plan: only the images selected with --image; nothing is pruned, and other images and live tags were not looked at.";

/// The summary line, exactly as the specification words it.
fn summary_line(s: &Summary) -> String {
    format!(
        "Plan: {} to import, {} to scan, {} to promote, {} to replace, {} to delete, {} blocked.",
        s.import, s.scan, s.promote, s.replace, s.delete, s.blocked
    )
}

/// The unified diff of the live catalog, before → after; None when nothing changes.
fn catalog_diff(view: &PlanView) -> Option<String> {
    if view.live_before == view.live_after {
        return None;
    }
    let lines =
        |entries: &[CatalogEntry]| -> String { entries.iter().map(|e| format!("{e}\n")).collect() };
    let before = lines(&view.live_before);
    let after = lines(&view.live_after);
    let diff = TextDiff::from_lines(&before, &after);
    let text = diff
        .unified_diff()
        .header("live (before)", "live (after)")
        .to_string();
    Some(text)
}

/// The symbol of an action: `+` create, `~` replace, `-` delete.
fn symbol(action: &ActionView) -> char {
    use crate::plan::ActionKind;
    match action.kind {
        ActionKind::Delete => '-',
        _ if action.replaces.is_some() => '~',
        _ => '+',
    }
}

/// `1.2 MiB, 2 platforms (linux/amd64, linux/arm64)`; empty when nothing is known.
fn size_and_platforms(action: &ActionView) -> String {
    let mut parts = Vec::new();
    if let Some(size) = action.size {
        parts.push(crate::model::size::format_size(size));
    }
    let count = action
        .platforms
        .as_ref()
        .map(Vec::len)
        .or(action.platform_count);
    if let Some(n) = count {
        let mut s = format!("{n} platform{}", if n == 1 { "" } else { "s" });
        if let Some(list) = &action.platforms {
            let names: Vec<String> = list.iter().map(ToString::to_string).collect();
            s.push_str(&format!(" ({})", names.join(", ")));
        }
        parts.push(s);
    }
    parts.join(", ")
}

/// The actions grouped by image key (sorted), undeclared-tag deletes in one last group.
/// Within a group, actions keep pipeline order (import, scan, promote, delete).
struct Group<'a> {
    /// None: live tags no image declares (prune).
    image: Option<&'a str>,
    actions: Vec<&'a ActionView>,
    blocked: Vec<&'a Blocked>,
}

fn groups(view: &PlanView) -> Vec<Group<'_>> {
    use std::collections::BTreeMap;
    let mut by_image: BTreeMap<Option<&str>, Group<'_>> = BTreeMap::new();
    fn slot<'m, 'a>(
        map: &'m mut BTreeMap<Option<&'a str>, Group<'a>>,
        image: Option<&'a str>,
    ) -> &'m mut Group<'a> {
        map.entry(image).or_insert_with(|| Group {
            image,
            actions: Vec::new(),
            blocked: Vec::new(),
        })
    }
    for a in &view.actions {
        slot(&mut by_image, a.image.as_deref()).actions.push(a);
    }
    for b in &view.blocked {
        slot(&mut by_image, Some(b.image.as_str())).blocked.push(b);
    }
    let mut groups: Vec<Group<'_>> = by_image.into_values().collect();
    for g in &mut groups {
        g.actions
            .sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    }
    // The map orders None first; undeclared tags go last (the sort is stable).
    groups.sort_by_key(|g| g.image.is_none());
    groups
}
