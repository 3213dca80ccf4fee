//! The apply report: each action's status, counts, and the exit outcome it implies. It is
//! written by `render::reports` (human text, JSON with a `format_version`).

use serde::Serialize;

use super::result::{Status, Tally};
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
            kind: a.kind(),
            image: a.image().map(str::to_string),
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
            match r.status.tally() {
                Tally::Done => c.done += 1,
                Tally::Unchanged => c.unchanged += 1,
                Tally::Failed => c.failed += 1,
                Tally::Skipped => c.skipped += 1,
                Tally::Blocked => c.blocked += 1,
                Tally::Interrupted => c.interrupted += 1,
                Tally::NotStarted => c.not_started += 1,
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
}
