//! The one mapping from outcomes and errors to process exit codes (SPEC.md §3).

use crate::error::Error;

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// plan: no changes; apply: converged; audit: clean.
    Success,
    /// plan --detailed-exitcode: changes present.
    Changes,
    /// apply: the gate blocked at least one promotion and nothing failed.
    /// plan --detailed-exitcode: nothing can change, but the gate blocks images.
    Blocked,
    /// audit: violations found.
    Violations,
    /// apply: at least one action failed (others may have succeeded).
    ActionsFailed,
    /// apply FILE: a precondition moved; nothing applied.
    Stale,
    /// Stopped by SIGINT (130) or SIGTERM (143).
    Interrupted(i32),
}

pub fn code(result: &Result<Outcome, Error>) -> i32 {
    match result {
        Ok(Outcome::Success) => 0,
        Ok(Outcome::ActionsFailed) => 1,
        Ok(Outcome::Changes) => 2,
        Ok(Outcome::Blocked) | Ok(Outcome::Violations) => 3,
        Ok(Outcome::Stale) => 4,
        Ok(Outcome::Interrupted(signal)) => 128 + signal,
        Err(_) => 1,
    }
}
