//! One function per action kind. Each re-checks its target first and does nothing when the
//! target already holds (idempotent), so a re-run after a crash converges.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use super::acr;
use super::transfer::{BlobLedger, Copier, OnBytes, Repo, Stats};
use crate::config::DesiredState;
use crate::model::Digest;
use crate::model::manifest::subset_index;
use crate::observed::{Decision, FindingSummary, VerdictInfo};
use crate::plan::{Action, ActionKind};
use crate::records::{self, PROMOTION_FORMAT, PromotionRecord};
use crate::registry::{Registries, Registry, RegistryError};
use crate::{gate, observe};

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    /// It did what it says.
    Done {
        detail: String,
    },
    /// The target already held; nothing was written.
    Unchanged {
        detail: String,
    },
    /// The gate kept the image out of live.
    Blocked {
        detail: String,
        findings: Vec<FindingSummary>,
    },
    Failed {
        error: String,
    },
    /// Not run because an action it depends on failed or was blocked.
    Skipped {
        because: String,
    },
    /// Started, then stopped by a signal before it finished.
    Interrupted,
    /// Never started (interrupted run).
    NotStarted,
}

/// Shared by all steps of one apply.
pub struct Context<'a> {
    pub desired: &'a DesiredState,
    pub registries: &'a Registries,
    pub plan_hash: Digest,
    pub ledger: BlobLedger,
    pub stats: Stats,
    /// Verdicts recorded by this apply's scans, by image key.
    pub verdicts: Mutex<HashMap<String, VerdictInfo>>,
    /// Images already live whose renewed verdict failed in this apply (reported loudly).
    pub live_failing: Mutex<Vec<String>>,
    pub on_bytes: Option<OnBytes>,
}

impl Context<'_> {
    /// A copier counting into `stats` (one step's own counts; added to the apply's after).
    fn copier<'s>(&'s self, stats: &'s Stats) -> Copier<'s> {
        Copier {
            ledger: &self.ledger,
            stats,
            on_bytes: self.on_bytes.clone(),
        }
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `Unchanged` when the target tag already points at the action's digest (idempotence).
async fn already_holds(
    dst: &Registry,
    a: &Action,
    tag: &str,
) -> Result<Option<Status>, RegistryError> {
    let now = dst.head_manifest(&a.target.repository, tag).await?;
    Ok(
        (now.map(|d| d.digest).as_ref() == Some(&a.digest)).then(|| Status::Unchanged {
            detail: format!("{} already holds {}", a.target, a.digest.short()),
        }),
    )
}

fn tag_of(a: &Action) -> Result<&str, RegistryError> {
    a.target
        .tag
        .as_deref()
        .ok_or_else(|| RegistryError::Content {
            what: a.id.clone(),
            message: "the action has no target tag".into(),
        })
}

pub async fn run(ctx: &Context<'_>, a: &Action) -> Result<Status, RegistryError> {
    match a.kind {
        ActionKind::Import => import(ctx, a).await,
        ActionKind::Scan => scan(ctx, a).await,
        ActionKind::Promote => promote(ctx, a).await,
        ActionKind::Delete => delete(ctx, a).await,
    }
}

async fn import(ctx: &Context<'_>, a: &Action) -> Result<Status, RegistryError> {
    let tag = tag_of(a)?;
    let dst = ctx.registries.get(&a.target.registry)?;
    if let Some(unchanged) = already_holds(&dst, a, tag).await? {
        return Ok(unchanged);
    }
    let src_loc = a.source.as_ref().ok_or_else(|| RegistryError::Content {
        what: a.id.clone(),
        message: "import without a source".into(),
    })?;
    // transfer = "acr-import": ARM importImage, server-side (src/apply/acr.rs).
    if acr::uses_acr_import(ctx, a) {
        let detail = acr::import_image(ctx, a, &src_loc.registry, &src_loc.repository, tag).await?;
        return Ok(Status::Done { detail });
    }
    let src = ctx.registries.get(&src_loc.registry)?;
    let read = a.source_digest.clone().unwrap_or_else(|| a.digest.clone());
    let upstream = src
        .get_manifest(&src_loc.repository, &read.to_string())
        .await?
        .ok_or_else(|| RegistryError::Content {
            what: format!("{}@{}", src_loc, read),
            message: "the source manifest is gone (MANIFEST_UNKNOWN)".into(),
        })?;
    let top = match &a.platforms {
        Some(platforms) => subset_index(&upstream, platforms)
            .map_err(|e| RegistryError::Content {
                what: src_loc.to_string(),
                message: e.to_string(),
            })?
            .ok_or_else(|| RegistryError::Content {
                what: src_loc.to_string(),
                message: "none of the selected platforms is offered".into(),
            })?,
        None => upstream.clone(),
    };
    if top.digest != a.digest {
        return Err(RegistryError::Content {
            what: src_loc.to_string(),
            message: format!(
                "the content is {} but the plan expected {}",
                top.digest.short(),
                a.digest.short()
            ),
        });
    }
    let stats = Stats::default();
    let copier = ctx.copier(&stats);
    let s = Repo {
        registry: &src,
        name: &src_loc.repository,
    };
    let d = Repo {
        registry: &dst,
        name: &a.target.repository,
    };
    let copied = async {
        copier.copy_image(s, d, &top, tag).await?;
        copy_referrers(&copier, s, d, &upstream.digest, &top.digest).await
    }
    .await;
    let n = stats.snapshot();
    ctx.stats.add(&n);
    let referrers = copied?;
    Ok(Status::Done {
        detail: format!(
            "{} → {} ({} blob(s) uploaded ({}), {} mounted, {} already there){}",
            a.digest.short(),
            a.target,
            n.blobs_uploaded,
            crate::model::size::format_size(n.bytes_uploaded),
            n.blobs_mounted,
            n.blobs_present,
            if referrers > 0 {
                format!(" with {referrers} referrer(s)")
            } else {
                String::new()
            }
        ),
    })
}

/// Signatures, SBOMs and attestations of the source travel with it (airlock's own records
/// do not: they are made again by the gate).
async fn copy_referrers(
    copier: &Copier<'_>,
    src: Repo<'_>,
    dst: Repo<'_>,
    upstream: &Digest,
    target: &Digest,
) -> Result<usize, RegistryError> {
    if upstream != target {
        // A rebuilt subset index has a new digest: the source's referrers are about another one.
        return Ok(0);
    }
    let mut n = 0;
    for r in src.registry.referrers(src.name, upstream, None).await? {
        if r.artifact_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/vnd.airlock."))
        {
            continue;
        }
        let Some(m) = src
            .registry
            .get_manifest(src.name, &r.digest.to_string())
            .await?
        else {
            continue;
        };
        copier.copy_untagged(src, dst, &m).await?;
        dst.registry.push_referrer(dst.name, &m, target).await?;
        n += 1;
    }
    Ok(n)
}

/// A verdict usable for promotion: recorded under the current policy, not pending, not stale.
fn usable(ctx: &Context<'_>, v: &VerdictInfo) -> Option<String> {
    if v.policy_hash != ctx.desired.policy_hash() {
        return Some("the verdict was made under another gate configuration".into());
    }
    if v.decision == Decision::Pending {
        return Some("the verdict is pending (a scanner has not reported yet)".into());
    }
    let max =
        time::Duration::try_from(ctx.desired.gate.max_verdict_age).unwrap_or(time::Duration::MAX);
    if now() - v.created > max {
        return Some("the verdict is older than max_verdict_age".into());
    }
    if crate::plan::diff::fails_only_because_a_scanner_could_not_run(v) {
        return Some("the verdict failed only because a scanner could not run".into());
    }
    None
}

async fn scan(ctx: &Context<'_>, a: &Action) -> Result<Status, RegistryError> {
    let reg = ctx.registries.get(&a.target.registry)?;
    let repo = &a.target.repository;
    let image = a.image.clone().unwrap_or_default();
    // A current verdict stands, unless the plan renews exactly this one (`--rescan`).
    if let Some(v) = observe::find_verdict(&reg, repo, &a.digest).await?
        && usable(ctx, &v).is_none()
        && a.replaces.as_ref() != Some(&v.digest)
    {
        let detail = format!("a current verdict exists: {:?}", v.decision).to_lowercase();
        ctx.verdicts.lock().expect("verdicts lock").insert(image, v);
        return Ok(Status::Unchanged { detail });
    }
    let top = reg
        .get_manifest(repo, &a.digest.to_string())
        .await?
        .ok_or_else(|| RegistryError::Content {
            what: format!("{}/{}@{}", a.target.registry, repo, a.digest),
            message: "the quarantined image is missing (MANIFEST_UNKNOWN)".into(),
        })?;
    let path = image
        .rsplit_once(':')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    let target = gate::Target {
        registry: &reg,
        repository: repo,
        digest: &a.digest,
    };
    let doc = gate::scan(ctx.desired, &target, &top, &path, now()).await?;
    let artifact = records::verdict_artifact(&doc, &top.media_type, top.bytes.len() as u64);
    push_artifact(ctx, &reg, repo, &artifact, &a.digest).await?;
    let info = VerdictInfo {
        digest: artifact.manifest.digest.clone(),
        decision: doc.decision.clone(),
        created: doc.created,
        policy_hash: doc.policy_hash.clone(),
        top_findings: doc.top_findings(observe::TOP_FINDINGS),
    };
    let detail = match doc.decision {
        Decision::Pass => format!(
            "pass ({} finding(s) below {} or allowed)",
            doc.findings.len(),
            doc.fail_on
        ),
        Decision::Fail => format!(
            "fail: {}{}",
            info.top_findings
                .iter()
                .map(|f| format!("{} {}", f.id, f.severity))
                .collect::<Vec<_>>()
                .join(", "),
            // A scanner that could not report says why here; the verdict keeps it too.
            doc.scanners
                .iter()
                .filter_map(|s| {
                    s.error
                        .as_ref()
                        .filter(|_| !s.ok)
                        .map(|e| format!("; scanner `{}`: {e}", s.name))
                })
                .collect::<String>()
        ),
        Decision::Pending => "pending: a scanner has not reported yet".into(),
    };
    if doc.decision == Decision::Fail && live_holds(ctx, &path, a).await? {
        ctx.live_failing
            .lock()
            .expect("live failing lock")
            .push(image.clone());
    }
    ctx.verdicts
        .lock()
        .expect("verdicts lock")
        .insert(image, info);
    Ok(Status::Done {
        detail: format!(
            "verdict {} recorded: {detail}",
            artifact.manifest.digest.short()
        ),
    })
}

/// Whether the live tag of the scanned image already points at the scanned digest (a
/// renewed verdict about an image clusters may be running).
async fn live_holds(ctx: &Context<'_>, path: &str, a: &Action) -> Result<bool, RegistryError> {
    let live = ctx.registries.get(&ctx.desired.live.registry)?;
    let tag = tag_of(a)?;
    let repo = ctx.desired.live.repository(path);
    Ok(live
        .head_manifest(&repo, tag)
        .await?
        .map(|d| d.digest)
        .as_ref()
        == Some(&a.digest))
}

async fn push_artifact(
    ctx: &Context<'_>,
    reg: &Registry,
    repo: &str,
    artifact: &records::Artifact,
    subject: &Digest,
) -> Result<(), RegistryError> {
    let stats = Stats::default();
    let copier = ctx.copier(&stats);
    let dst = Repo {
        registry: reg,
        name: repo,
    };
    for blob in [&artifact.config, &artifact.layer] {
        // The empty config `{}` is shared by every record: written once per repository in
        // one apply (`BlobLedger::once_in_repo`), mounted from where it already is.
        let bytes = bytes::Bytes::from(blob.clone());
        let digest = Digest::of(&bytes);
        ctx.ledger
            .once_in_repo(reg.key(), repo, &digest, || {
                copier.put_bytes(dst, bytes.clone())
            })
            .await?;
    }
    reg.push_referrer(repo, &artifact.manifest, subject).await
}

async fn promote(ctx: &Context<'_>, a: &Action) -> Result<Status, RegistryError> {
    let tag = tag_of(a)?;
    let dst = ctx.registries.get(&a.target.registry)?;
    if let Some(unchanged) = already_holds(&dst, a, tag).await? {
        return Ok(unchanged);
    }
    let q = a.source.as_ref().ok_or_else(|| RegistryError::Content {
        what: a.id.clone(),
        message: "promote without a source".into(),
    })?;
    let src = ctx.registries.get(&q.registry)?;
    let image = a.image.clone().unwrap_or_default();
    // The gate: this apply's own verdict, else the newest recorded one.
    let recorded = ctx
        .verdicts
        .lock()
        .expect("verdicts lock")
        .get(&image)
        .cloned();
    let verdict = match recorded {
        Some(v) if v.policy_hash == ctx.desired.policy_hash() => Some(v),
        _ => observe::find_verdict(&src, &q.repository, &a.digest).await?,
    };
    let Some(verdict) = verdict else {
        return Ok(Status::Blocked {
            detail: format!("no verdict for {}", a.digest.short()),
            findings: vec![],
        });
    };
    if let Some(why) = usable(ctx, &verdict) {
        return Ok(Status::Blocked {
            detail: why,
            findings: vec![],
        });
    }
    if verdict.decision != Decision::Pass {
        return Ok(Status::Blocked {
            detail: format!(
                "the verdict fails (full verdict: {}/{}@{})",
                q.registry, q.repository, verdict.digest
            ),
            findings: verdict.top_findings.clone(),
        });
    }
    let top = src
        .get_manifest(&q.repository, &a.digest.to_string())
        .await?
        .ok_or_else(|| RegistryError::Content {
            what: format!("{q}@{}", a.digest),
            message: "the quarantined image is missing (MANIFEST_UNKNOWN)".into(),
        })?;
    let stats = Stats::default();
    // transfer = "acr-import": ARM importImage, server-side (src/apply/acr.rs).
    let server_side = if acr::uses_acr_import(ctx, a) {
        acr::import_image(ctx, a, &q.registry, &q.repository, tag)
            .await
            .map(Some)
    } else {
        let copier = ctx.copier(&stats);
        let s = Repo {
            registry: &src,
            name: &q.repository,
        };
        let d = Repo {
            registry: &dst,
            name: &a.target.repository,
        };
        async {
            copier.copy_image(s, d, &top, tag).await?;
            copy_referrers(&copier, s, d, &a.digest, &a.digest).await?;
            Ok(None)
        }
        .await
    };
    let n = stats.snapshot();
    ctx.stats.add(&n);
    let server_side = server_side?;
    let record = PromotionRecord {
        format_version: PROMOTION_FORMAT,
        digest: a.digest.clone(),
        live: a.target.to_string(),
        from: format!("{}/{}@{}", q.registry, q.repository, a.digest),
        from_digest: a.digest.clone(),
        verdict: verdict.digest.clone(),
        plan_hash: ctx.plan_hash.clone(),
        created: now(),
        airlock_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let artifact = records::promotion_artifact(&record, &top.media_type, top.bytes.len() as u64);
    push_artifact(ctx, &dst, &a.target.repository, &artifact, &a.digest).await?;
    if let Some(detail) = server_side {
        return Ok(Status::Done { detail });
    }
    Ok(Status::Done {
        detail: format!(
            "{} → {} ({} blob(s) mounted, {} uploaded, {} already there)",
            a.digest.short(),
            a.target,
            n.blobs_mounted,
            n.blobs_uploaded,
            n.blobs_present
        ),
    })
}

async fn delete(ctx: &Context<'_>, a: &Action) -> Result<Status, RegistryError> {
    let tag = tag_of(a)?;
    let reg = ctx.registries.get(&a.target.registry)?;
    match reg
        .head_manifest(&a.target.repository, tag)
        .await?
        .map(|d| d.digest)
    {
        None => Ok(Status::Unchanged {
            detail: format!("{} is already gone", a.target),
        }),
        Some(d) if d != a.digest => Err(RegistryError::Content {
            what: a.target.to_string(),
            message: format!(
                "the tag now points to {}, not {}: not deleted",
                d.short(),
                a.digest.short()
            ),
        }),
        Some(_) => {
            reg.delete_manifest(&a.target.repository, &a.digest).await?;
            Ok(Status::Done {
                detail: format!("{} ({}) deleted", a.target, a.digest.short()),
            })
        }
    }
}
