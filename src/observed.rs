//! What the registries said: plain data produced by `observe` (or built in memory by tests)
//! and consumed by the pure planner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Digest, Severity};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedState {
    /// By image key (`path:tag`).
    pub images: BTreeMap<String, ObservedImage>,
    /// Every tag under the live prefix, when the catalog was walked (prune or audit);
    /// None when it was not.
    pub live_tags: Option<Vec<LiveTag>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservedImage {
    pub source: SourceInfo,
    /// Digest the quarantine tag points to, if the tag exists.
    pub quarantine: Option<Digest>,
    /// Digest the live tag points to, if the tag exists.
    pub live: Option<Digest>,
    /// The newest verdict for `source.digest`, if any.
    pub verdict: Option<VerdictInfo>,
    /// Whether a promotion record vouches for the live tag (`records::binding`); observed only
    /// when the live tag already holds `source.digest`. None there counts as missing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<RecordCheck>,
}

/// What the binding rule said about a live tag's promotion records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RecordCheck {
    /// A record binds the tag to its quarantine repository and a passing verdict.
    Valid,
    /// No promotion record refers to the live digest.
    Missing,
    /// Records exist but none vouches for this tag; why the newest one does not.
    Invalid { reason: String },
}

/// The content an image entry wants in quarantine and live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// S: the digest to import and promote (the pin, the resolved tag, or the
    /// platform-subset index built from it).
    pub digest: Digest,
    /// What the upstream reference resolved to (differs from `digest` for a subset).
    pub upstream_digest: Digest,
    /// What the upstream tag points to now, when a pin is used and the tag was resolved.
    pub upstream_tag_digest: Option<Digest>,
    pub media_type: String,
    /// Compressed size of the content (layers and configs), when known.
    pub size: Option<u64>,
    /// Number of platforms of an index; None for a single-platform manifest.
    pub platforms: Option<usize>,
}

/// The gate's recorded decision for one digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Pass,
    Fail,
    /// A scanner has not produced results yet (e.g. Defender scans minutes after import).
    Pending,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictInfo {
    /// Digest of the verdict artifact's manifest (where the full verdict is).
    pub digest: Digest,
    pub decision: Decision,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub policy_hash: Digest,
    /// The worst findings that count against the gate, worst first (a handful at most).
    pub top_findings: Vec<FindingSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingSummary {
    pub id: String,
    pub severity: Severity,
    /// What the scanner or policy said, shortened to [`FindingSummary::MESSAGE_MAX`]
    /// characters (the verdict artifact has it in full).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub installed_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fixed_version: Option<String>,
}

impl FindingSummary {
    /// The longest message a summary carries, in characters.
    pub const MESSAGE_MAX: usize = 200;

    /// `message` on one line without control characters, at most [`Self::MESSAGE_MAX`]
    /// characters (`…` when cut); None when empty.
    pub fn short_message(message: &str) -> Option<String> {
        let printable: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let one_line: String = printable.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.is_empty() {
            return None;
        }
        if one_line.chars().count() <= Self::MESSAGE_MAX {
            return Some(one_line);
        }
        let mut cut: String = one_line.chars().take(Self::MESSAGE_MAX - 1).collect();
        cut.push('…');
        Some(cut)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LiveTag {
    /// Full repository name including the live prefix.
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
}
