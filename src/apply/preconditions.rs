//! Saved plans: before anything is applied, every tag the plan observed is read again; if
//! one moved, the plan is stale and nothing is applied.

use futures_util::stream::{self, StreamExt};

use crate::plan::{Plan, Precondition};
use crate::registry::{Registries, RegistryError};

/// A precondition that no longer holds.
#[derive(Debug, Clone)]
pub struct Moved {
    pub precondition: Precondition,
    pub now: Option<crate::model::Digest>,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: &Option<crate::model::Digest>| {
            d.as_ref()
                .map(|d| d.short())
                .unwrap_or_else(|| "(absent)".into())
        };
        write!(
            f,
            "{}: planned with {}, now {}",
            self.precondition.location,
            show(&self.precondition.digest),
            show(&self.now)
        )
    }
}

/// Re-read every precondition; return those that moved.
pub async fn check(plan: &Plan, registries: &Registries) -> Result<Vec<Moved>, RegistryError> {
    let results: Vec<Result<Option<Moved>, RegistryError>> = stream::iter(plan.preconditions())
        .map(|p| async move {
            let reg = registries.get(&p.location.registry)?;
            let tag = p.location.tag.clone().unwrap_or_default();
            let now = reg
                .head_manifest(&p.location.repository, &tag)
                .await?
                .map(|d| d.digest);
            Ok(if now == p.digest {
                None
            } else {
                Some(Moved {
                    precondition: p,
                    now,
                })
            })
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut moved = Vec::new();
    for r in results {
        if let Some(m) = r? {
            moved.push(m);
        }
    }
    moved.sort_by(|a, b| a.precondition.cmp(&b.precondition));
    Ok(moved)
}
