//! Saved plans: before anything is applied, every tag the plan observed is read again; if
//! one moved, the plan is stale and nothing is applied. The message says which kind of
//! place moved: an upstream tag moving is ordinary; a live tag changing under a plan is
//! not (only airlock writes live), so it is called out as possible tampering.

use futures_util::stream::{self, StreamExt};

use crate::config::DesiredState;
use crate::plan::admissible::{LocationKind, LocationKinds};
use crate::plan::{Plan, Precondition};
use crate::registry::{Registries, RegistryError};

/// A precondition that no longer holds.
#[derive(Debug, Clone)]
pub struct Moved {
    pub precondition: Precondition,
    pub now: Option<crate::model::Digest>,
    /// What kind of place the location is (None: not one the configuration names).
    pub kind: Option<LocationKind>,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: &Option<crate::model::Digest>| {
            d.as_ref()
                .map(|d| d.short())
                .unwrap_or_else(|| "(absent)".into())
        };
        let loc = &self.precondition.location;
        let was = show(&self.precondition.digest);
        let now = show(&self.now);
        match self.kind {
            Some(LocationKind::Live) => write!(
                f,
                "live tag {loc} changed since the plan (planned with {was}, now {now}): only airlock writes live, so this is possible tampering; `airlock audit` checks live"
            ),
            Some(LocationKind::Quarantine) => write!(
                f,
                "quarantine tag {loc} changed since the plan (planned with {was}, now {now}): another apply ran, or something wrote quarantine around airlock"
            ),
            Some(LocationKind::Upstream) => write!(
                f,
                "upstream tag {loc} moved since the plan (planned with {was}, now {now})"
            ),
            None => write!(
                f,
                "{loc} changed since the plan (planned with {was}, now {now})"
            ),
        }
    }
}

/// Re-read every precondition; return those that moved.
pub async fn check(
    plan: &Plan,
    desired: &DesiredState,
    registries: &Registries,
) -> Result<Vec<Moved>, RegistryError> {
    let kinds = LocationKinds::new(desired);
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
                    kind: None,
                })
            })
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut moved = Vec::new();
    for r in results {
        if let Some(mut m) = r? {
            m.kind = kinds.kind(&m.precondition.location);
            moved.push(m);
        }
    }
    moved.sort_by(|a, b| a.precondition.cmp(&b.precondition));
    Ok(moved)
}
