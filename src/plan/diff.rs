//! The planner: (DesiredState, ObservedState, now) → Plan. Pure: no I/O, no async, no clock
//! (the caller passes `now`). SPEC.md §4 is the contract; for each image with source digest S,
//! quarantine tag digest Q, verdict V for S and live tag digest L:
//! import when Q ≠ S; scan when V is missing, pending, older than `max_verdict_age` or made
//! under another policy hash; promote when L ≠ S and the gate allows (or a scan is planned),
//! and also when L = S but no promotion record vouches for the live tag (the binding rule,
//! `records::binding`: "record missing" / "record invalid: …"), so that a converged plan
//! implies a clean audit of the declared images after any crash; delete undeclared live tags
//! with prune, else list them as unmanaged.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::{
    Action, Blocked, CatalogEntry, Location, Op, Plan, PlanError, PlanParts, Precondition,
};
use crate::config::{DesiredState, Endpoint, ImageSpec, OnFail};
use crate::gate::SCANNER_FAILED;
use crate::model::{Digest, freshness};
use crate::observed::{Decision, ObservedImage, ObservedState, RecordCheck, VerdictInfo};
use crate::select::Selection;

/// Why a verdict cannot be used as it is.
fn verdict_staleness(
    v: &VerdictInfo,
    desired: &DesiredState,
    policy_hash: &Digest,
    now: OffsetDateTime,
) -> Option<String> {
    if v.decision == Decision::Pending {
        return Some("the verdict is pending: a scanner has not reported yet".into());
    }
    if &v.policy_hash != policy_hash {
        return Some(format!(
            "the gate configuration changed since the verdict (policy hash {} → {})",
            v.policy_hash.short(),
            policy_hash.short()
        ));
    }
    let max = desired.gate.max_verdict_age;
    if freshness::expired(v.created, now, max) {
        return Some(format!(
            "the verdict is {} old (max_verdict_age {})",
            humantime::format_duration(freshness::age(v.created, now)),
            humantime::format_duration(max)
        ));
    }
    if fails_only_because_a_scanner_could_not_run(v) {
        return Some(format!(
            "the last scan failed only because a scanner could not run ({SCANNER_FAILED}): \
             that is no verdict on the image, so it is scanned again"
        ));
    }
    None
}

/// A failing verdict whose only counting finding is [`SCANNER_FAILED`]. `top_findings` holds
/// the counting findings deduplicated by id and package, worst first, up to a handful; all
/// scanner failures collapse into one entry, so a single entry means nothing else counted.
pub fn fails_only_because_a_scanner_could_not_run(v: &VerdictInfo) -> bool {
    v.decision == Decision::Fail
        && matches!(v.top_findings.as_slice(), [only] if only.id == SCANNER_FAILED)
}

/// Choices of the person running the plan (not configuration).
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--rescan`: scan these images again even when their verdict is current.
    pub rescan: Option<Selection>,
}

/// The `host[:port]` a registry key names, as image references spell it; None for an
/// image-layout directory (nothing can pull from it by reference).
fn registry_host(desired: &DesiredState, key: &str) -> Option<String> {
    match &desired.registries.get(key)?.endpoint {
        Endpoint::Url(url) => {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or(url);
            Some(rest.trim_end_matches('/').to_string())
        }
        Endpoint::Layout(_) => None,
    }
}

struct ImagePlan<'a> {
    spec: &'a ImageSpec,
    obs: &'a ObservedImage,
    source: Location,
    quarantine: Location,
    live: Location,
}

/// Compute the plan. Fails only if the plan graph is invalid (a bug, not an input problem).
pub fn plan(
    desired: &DesiredState,
    observed: &ObservedState,
    now: OffsetDateTime,
) -> Result<Plan, PlanError> {
    plan_with(desired, observed, now, &PlanOptions::default())
}

/// [`plan`] with the run's options (`--rescan`).
pub fn plan_with(
    desired: &DesiredState,
    observed: &ObservedState,
    now: OffsetDateTime,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let policy_hash = desired.policy_hash();
    let mut parts = PlanParts::default();
    let mut declared_live: BTreeSet<(String, String)> = BTreeSet::new();
    let mut before: Vec<CatalogEntry> = Vec::new();
    let mut after: Vec<CatalogEntry> = Vec::new();

    for spec in &desired.images {
        let live_repo = desired.live.repository(&spec.path);
        declared_live.insert((live_repo.clone(), spec.tag.clone()));
        let Some(obs) = observed.images.get(&spec.key()) else {
            parts.warnings.push(format!(
                "{} was not observed; it is left out of this plan",
                spec.key()
            ));
            continue;
        };
        let ip = ImagePlan {
            spec,
            obs,
            source: Location {
                registry: spec.source_registry.clone(),
                repository: spec.source.path.clone(),
                tag: Some(spec.tag.clone()),
            },
            quarantine: Location::in_area(&desired.quarantine, spec),
            live: Location::in_area(&desired.live, spec),
        };
        if let Some(l) = &obs.live {
            before.push(CatalogEntry {
                repository: live_repo.clone(),
                tag: spec.tag.clone(),
                digest: l.clone(),
            });
        }
        let live_after = plan_image(desired, &ip, &policy_hash, now, opts, &mut parts);
        if let Some(d) = live_after {
            after.push(CatalogEntry {
                repository: live_repo,
                tag: spec.tag.clone(),
                digest: d,
            });
        }
    }

    if let Some(tags) = &observed.live_tags {
        for t in tags {
            if declared_live.contains(&(t.repository.clone(), t.tag.clone())) {
                continue;
            }
            let entry = CatalogEntry {
                repository: t.repository.clone(),
                tag: t.tag.clone(),
                digest: t.digest.clone(),
            };
            before.push(entry.clone());
            if desired.prune {
                parts.actions.push(Action {
                    id: format!("delete:{}:{}", t.repository, t.tag),
                    target: Location {
                        registry: desired.live.registry.clone(),
                        repository: t.repository.clone(),
                        tag: Some(t.tag.clone()),
                    },
                    digest: t.digest.clone(),
                    replaces: None,
                    preconditions: vec![Precondition {
                        location: Location {
                            registry: desired.live.registry.clone(),
                            repository: t.repository.clone(),
                            tag: Some(t.tag.clone()),
                        },
                        digest: Some(t.digest.clone()),
                    }],
                    depends_on: vec![],
                    reason: "not declared in the configuration (prune = true)".into(),
                    op: Op::Delete { image: None },
                });
            } else {
                after.push(entry);
                parts.unmanaged.push(t.clone());
            }
        }
    }
    parts.live_before = before;
    parts.live_after = after;
    Plan::new(parts, policy_hash)
}

/// Plan one image; returns what its live tag will point to afterwards.
fn plan_image(
    desired: &DesiredState,
    ip: &ImagePlan,
    policy_hash: &Digest,
    now: OffsetDateTime,
    opts: &PlanOptions,
    parts: &mut PlanParts,
) -> Option<Digest> {
    let key = ip.spec.key();
    let obs = ip.obs;
    let s = &obs.source.digest;
    let pinned = ip.spec.pin.is_some();

    if pinned
        && let Some(moved) = &obs.source.upstream_tag_digest
        && moved != &obs.source.upstream_digest
    {
        parts.warnings.push(format!(
            "{}: upstream tag {} now points to {}; the pin keeps {}",
            key,
            ip.source,
            moved.short(),
            obs.source.upstream_digest.short()
        ));
    }

    // import
    let mut import_id = None;
    if obs.quarantine.as_ref() != Some(s) {
        let mut preconditions = vec![Precondition {
            location: ip.quarantine.clone(),
            digest: obs.quarantine.clone(),
        }];
        if !pinned {
            preconditions.push(Precondition {
                location: ip.source.clone(),
                digest: Some(obs.source.upstream_digest.clone()),
            });
        }
        let reason = match &obs.quarantine {
            None => "not in quarantine".to_string(),
            Some(q) => format!(
                "quarantine tag points to {}, the source is {}",
                q.short(),
                s.short()
            ),
        };
        let id = format!("import:{key}");
        parts.actions.push(Action {
            id: id.clone(),
            target: ip.quarantine.clone(),
            digest: s.clone(),
            replaces: obs.quarantine.clone(),
            preconditions,
            depends_on: vec![],
            reason,
            op: Op::Import {
                image: key.clone(),
                source: Location {
                    tag: if pinned { None } else { ip.source.tag.clone() },
                    ..ip.source.clone()
                },
                source_digest: obs.source.upstream_digest.clone(),
                platforms: ip.spec.platforms.clone(),
                size: obs.source.size,
                platform_count: obs.source.platforms,
            },
        });
        import_id = Some(id);
    }

    // scan
    let rescan = opts.rescan.as_ref().is_some_and(|r| r.matches(&key));
    let usable_verdict = obs
        .verdict
        .as_ref()
        .filter(|v| !rescan && verdict_staleness(v, desired, policy_hash, now).is_none());
    let mut scan_id = None;
    if usable_verdict.is_none() {
        // A current verdict renewed on request is named in `replaces`: apply renews exactly
        // that one (and skips if another apply renewed it meanwhile).
        let mut renews = None;
        let reason = match &obs.verdict {
            None => format!("no verdict for {}", s.short()),
            Some(v) => verdict_staleness(v, desired, policy_hash, now).unwrap_or_else(|| {
                renews = Some(v.digest.clone());
                "rescan requested (--rescan)".to_string()
            }),
        };
        let id = format!("scan:{key}");
        parts.actions.push(Action {
            id: id.clone(),
            target: ip.quarantine.clone(),
            digest: s.clone(),
            replaces: renews,
            preconditions: vec![Precondition {
                location: ip.quarantine.clone(),
                digest: obs.quarantine.clone(),
            }],
            depends_on: import_id.iter().cloned().collect(),
            reason,
            op: Op::Scan {
                image: key.clone(),
                size: obs.source.size,
                platform_count: obs.source.platforms,
            },
        });
        scan_id = Some(id);
    }

    let failing = usable_verdict.filter(|v| v.decision == Decision::Fail);
    let blocked = |live: bool, v: &VerdictInfo| Blocked {
        image: key.clone(),
        digest: s.clone(),
        location: ip.quarantine.clone(),
        verdict: Some(v.digest.clone()),
        verdict_reference: registry_host(desired, &ip.quarantine.registry)
            .map(|host| format!("{host}/{}@{}", ip.quarantine.repository, v.digest)),
        reason: if live {
            "the renewed verdict fails for an image that is live".into()
        } else {
            "the verdict fails".into()
        },
        findings: v.top_findings.clone(),
        live,
    };

    let (reason, replaces) = if obs.live.as_ref() == Some(s) {
        // Already live: a failing (renewed) verdict is reported, and demoted if asked.
        if let Some(v) = failing {
            parts.blocked.push(blocked(true, v));
            parts.warnings.push(format!(
                "{key} is live but its verdict fails{}",
                if desired.gate.on_fail == OnFail::Demote {
                    "; on_fail = \"demote\" deletes its live tag"
                } else {
                    "; set on_fail = \"demote\" to remove it from live"
                }
            ));
            if desired.gate.on_fail == OnFail::Demote {
                parts.actions.push(Action {
                    id: format!("delete:{}:{}", ip.live.repository, ip.spec.tag),
                    target: ip.live.clone(),
                    digest: s.clone(),
                    replaces: None,
                    preconditions: vec![Precondition {
                        location: ip.live.clone(),
                        digest: Some(s.clone()),
                    }],
                    depends_on: vec![],
                    reason: "demoted: the renewed verdict fails".into(),
                    op: Op::Delete {
                        image: Some(key.clone()),
                    },
                });
                return None;
            }
            return Some(s.clone());
        }
        // The content is live; without a record that binds it, promote again: apply writes
        // the record (the content and the tag are already there).
        match &obs.record {
            Some(RecordCheck::Valid) => return Some(s.clone()),
            Some(RecordCheck::Invalid { reason }) => (format!("record invalid: {reason}"), None),
            Some(RecordCheck::Missing) | None => ("record missing".to_string(), None),
        }
    } else {
        if let Some(v) = failing {
            parts.blocked.push(blocked(false, v));
            return obs.live.clone();
        }
        let reason = match &obs.live {
            None => "not in live".to_string(),
            Some(l) if pinned => format!("the pin moved live from {} to {}", l.short(), s.short()),
            // Live holds something quarantine does not: not an upstream move.
            Some(l) if obs.quarantine.as_ref() != Some(l) => {
                parts.warnings.push(format!(
                    "{key}: live tag {} holds {}, which is not what airlock quarantined; unless an earlier promotion did not complete, it was written around the gate (possible tampering: run `airlock audit`); promoting replaces it",
                    ip.live,
                    l.short()
                ));
                format!(
                    "live tag changed outside airlock or an earlier promotion did not complete: live has {}, quarantine has {}, source is {}",
                    l.short(),
                    obs.quarantine
                        .as_ref()
                        .map(|q| q.short())
                        .unwrap_or_else(|| "nothing".into()),
                    s.short()
                )
            }
            Some(l) => {
                parts.warnings.push(format!(
                    "{key}: upstream tag {} moved from {} to {}; promoting replaces the live image",
                    ip.source,
                    l.short(),
                    s.short()
                ));
                format!(
                    "upstream tag moved: live has {}, source is {}",
                    l.short(),
                    s.short()
                )
            }
        };
        (reason, obs.live.clone())
    };

    // promote
    let mut depends_on: Vec<String> = import_id.into_iter().collect();
    depends_on.extend(scan_id);
    parts.actions.push(Action {
        id: format!("promote:{key}"),
        target: ip.live.clone(),
        digest: s.clone(),
        replaces,
        preconditions: vec![
            Precondition {
                location: ip.live.clone(),
                digest: obs.live.clone(),
            },
            Precondition {
                location: ip.quarantine.clone(),
                digest: obs.quarantine.clone(),
            },
        ],
        depends_on,
        reason,
        op: Op::Promote {
            image: key.clone(),
            source: ip.quarantine.clone(),
            size: obs.source.size,
            platform_count: obs.source.platforms,
        },
    });
    Some(s.clone())
}

#[cfg(test)]
mod tests;
