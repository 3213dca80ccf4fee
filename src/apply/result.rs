//! How an action ended, typed: [`Status`] (defined beside the steps that produce it) and its
//! [`Tally`], the class the apply report counts and the exit outcome is decided from.

use serde::Serialize;

pub use super::steps::Status;

/// The class of a [`Status`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tally {
    Done,
    Unchanged,
    Blocked,
    Failed,
    Skipped,
    Interrupted,
    NotStarted,
}

impl Tally {
    /// The word a log line uses for it.
    pub fn word(self) -> &'static str {
        match self {
            Tally::Done => "done",
            Tally::Unchanged => "unchanged",
            Tally::Failed => "FAILED",
            Tally::Blocked => "BLOCKED",
            Tally::Skipped => "skipped",
            Tally::Interrupted => "interrupted",
            Tally::NotStarted => "not started",
        }
    }
}

impl Status {
    pub fn tally(&self) -> Tally {
        match self {
            Status::Done { .. } => Tally::Done,
            Status::Unchanged { .. } => Tally::Unchanged,
            Status::Blocked { .. } => Tally::Blocked,
            Status::Failed { .. } => Tally::Failed,
            Status::Skipped { .. } => Tally::Skipped,
            Status::Interrupted => Tally::Interrupted,
            Status::NotStarted => Tally::NotStarted,
        }
    }

    /// Whether dependents may start: the action did what it says, or it already held.
    pub fn succeeded(&self) -> bool {
        matches!(self.tally(), Tally::Done | Tally::Unchanged)
    }
}
