//! The apply report: each action's status, counts, and the exit outcome it implies.

use std::io::Write;

use serde::Serialize;

use super::steps::Status;
use super::transfer::StatsSnapshot;
use crate::exit::Outcome;
use crate::plan::{Action, ActionKind};

#[derive(Clone, Debug, Serialize)]
pub struct ActionResult {
    pub id: String,
    pub kind: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub target: String,
    #[serde(flatten)]
    pub status: Status,
}

impl ActionResult {
    pub fn new(a: &Action, status: Status) -> ActionResult {
        ActionResult {
            id: a.id.clone(),
            kind: a.kind,
            image: a.image.clone(),
            target: a.target.to_string(),
            status,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub results: Vec<ActionResult>,
    pub stats: StatsSnapshot,
    /// The signal that interrupted the run, if one did.
    pub interrupted: Option<i32>,
    /// Promotions the plan already knew were blocked (failing verdicts).
    pub plan_blocked: usize,
    /// Live images whose renewed verdict fails (reported loudly).
    pub live_failing: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub done: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub skipped: usize,
    pub blocked: usize,
    pub interrupted: usize,
    pub not_started: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            blocked: self.plan_blocked,
            ..Counts::default()
        };
        for r in &self.results {
            match r.status {
                Status::Done { .. } => c.done += 1,
                Status::Unchanged { .. } => c.unchanged += 1,
                Status::Failed { .. } => c.failed += 1,
                Status::Skipped { .. } => c.skipped += 1,
                Status::Blocked { .. } => c.blocked += 1,
                Status::Interrupted => c.interrupted += 1,
                Status::NotStarted => c.not_started += 1,
            }
        }
        c
    }

    /// SPEC §3: 1 when an action failed, 3 when the gate blocked (a promotion, or a live image
    /// whose renewed verdict fails) and nothing failed,
    /// 130/143 when interrupted, else 0.
    pub fn outcome(&self) -> Outcome {
        let c = self.counts();
        if let Some(sig) = self.interrupted {
            Outcome::Interrupted(sig)
        } else if c.failed > 0 || c.skipped > 0 {
            Outcome::ActionsFailed
        } else if c.blocked > 0 || !self.live_failing.is_empty() {
            Outcome::Blocked
        } else {
            Outcome::Success
        }
    }

    pub fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for r in &self.results {
            let (mark, text) = match &r.status {
                Status::Done { detail } => ("✓", detail.clone()),
                Status::Unchanged { detail } => ("=", format!("unchanged: {detail}")),
                Status::Failed { error } => ("✗", format!("FAILED: {error}")),
                Status::Skipped { because } => ("-", format!("skipped: {because} did not succeed")),
                Status::Blocked { detail, findings } => (
                    "!",
                    format!(
                        "BLOCKED by the gate: {detail}{}",
                        findings
                            .iter()
                            .map(|f| format!(
                                "\n      {} {} {}{}{}{}",
                                f.id,
                                f.severity,
                                f.package.as_deref().unwrap_or(""),
                                f.installed_version
                                    .as_deref()
                                    .map(|v| format!(" {v}"))
                                    .unwrap_or_default(),
                                f.fixed_version
                                    .as_deref()
                                    .map(|v| format!(" (fixed in {v})"))
                                    .unwrap_or_default(),
                                f.message
                                    .as_deref()
                                    .map(|m| format!(": {m}"))
                                    .unwrap_or_default()
                            ))
                            .collect::<String>()
                    ),
                ),
                Status::Interrupted => (
                    "~",
                    "interrupted before it finished (nothing tagged)".to_string(),
                ),
                Status::NotStarted => ("·", "not started".to_string()),
            };
            writeln!(
                out,
                "{mark} {:<8} {}: {text}",
                r.kind.as_str(),
                r.image.as_deref().unwrap_or(&r.target)
            )?;
        }
        for img in &self.live_failing {
            writeln!(
                out,
                "! LIVE IMAGE FAILS THE GATE: {img} (see `airlock plan`; on_fail = \"demote\" removes it)"
            )?;
        }
        let c = self.counts();
        if let Some(sig) = self.interrupted {
            writeln!(
                out,
                "\nInterrupted by {}: {} completed, {} interrupted, {} not started. Run `airlock plan` to see what remains.",
                if sig == 2 { "SIGINT" } else { "SIGTERM" },
                c.done + c.unchanged,
                c.interrupted,
                c.not_started
            )?;
        }
        writeln!(
            out,
            "\nApply: {} done, {} unchanged, {} failed, {} skipped, {} blocked. ({} blob(s) uploaded, {} mounted, {} already present)",
            c.done,
            c.unchanged,
            c.failed,
            c.skipped,
            c.blocked,
            self.stats.blobs_uploaded,
            self.stats.blobs_mounted,
            self.stats.blobs_present
        )
    }

    pub fn write_json(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let doc = serde_json::json!({
            "format_version": 1,
            "counts": self.counts(),
            "outcome": format!("{:?}", self.outcome()).to_lowercase(),
            "report": self,
        });
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)
    }
}
