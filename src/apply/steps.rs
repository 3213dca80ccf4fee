//! One function per action kind. Each re-checks its target and does nothing when the target
//! already holds (idempotent), so a re-run after a crash converges. The import, a delete and
//! a record repair re-check first; the scan and the promote re-check from the index read
//! their record is merged into ([`Registry::push_referrer_checked`]: one read for both), and
//! one that finds its target held there lists nothing and tags nothing, leaving at most
//! unreferenced content by digest, as an interrupted run does.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use time::OffsetDateTime;

use super::acr;
use super::signatures::copy_attached;
use super::transfer::{BlobLedger, Copier, OnBytes, Repo, Stats};
use super::verdict_gate::{self, Judgement};
use crate::config::DesiredState;
use crate::model::manifest::subset_index;
use crate::model::{Digest, Platform};
use crate::observe::RecordStatus;
use crate::observed::{Decision, FindingSummary, VerdictInfo};
use crate::plan::{Action, Location, Op};
use crate::records::binding::{self, Binding};
use crate::records::{self, PROMOTION_FORMAT, PromotionRecord};
use crate::registry::{Pushed, Referrer, Registries, Registry, RegistryError};
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
    /// Images this apply's imports wrote (tag moved to the digest), by `at`.
    pub imported: Mutex<HashSet<String>>,
    /// After each verdict this apply's scans wrote: the subject's referrers as the write's
    /// re-read found them, this verdict among them, by `at` (quarantine registry,
    /// repository, digest). The promote of the same image gates from it.
    pub verdicts_listed: Mutex<HashMap<String, Vec<Referrer>>>,
    /// Images already live whose renewed verdict failed in this apply (reported loudly).
    pub live_failing: Mutex<Vec<String>>,
    pub on_bytes: Option<OnBytes>,
    pub scanners: gate::Scanners,
    /// `[signing] key`, loaded once per apply (an error fails every record write).
    pub signer: Result<Option<crate::signing::Signer>, String>,
    /// The Azure context (acr-import's ARM client and credential chain).
    #[cfg(feature = "azure")]
    pub azure: std::sync::Arc<crate::azure::Azure>,
}

impl Context<'_> {
    /// The signature of an in-toto `statement` by the configured key (None without one). A
    /// failure fails the step: nothing is written with a signature that was not made.
    async fn sign(
        &self,
        statement: &[u8],
    ) -> Result<Option<crate::signing::dsse::Signature>, RegistryError> {
        let Some(signer) = self.signer()? else {
            return Ok(None);
        };
        crate::signing::dsse::Signature::by(signer, crate::signing::dsse::IN_TOTO, statement)
            .await
            .map(Some)
            .map_err(|e| RegistryError::Content {
                what: "[signing] key".into(),
                message: e.to_string(),
            })
    }

    /// The key records are signed with, if one is configured.
    fn signer(&self) -> Result<Option<&crate::signing::Signer>, RegistryError> {
        match &self.signer {
            Ok(s) => Ok(s.as_ref()),
            Err(message) => Err(RegistryError::Content {
                what: "[signing] key".into(),
                message: message.clone(),
            }),
        }
    }

    /// A copier counting into `stats` (one step's own counts; added to the apply's after).
    fn copier<'s>(&'s self, stats: &'s Stats) -> Copier<'s> {
        Copier {
            ledger: &self.ledger,
            stats,
            on_bytes: self.on_bytes.clone().map(super::bound_to_current_action),
        }
    }
}

/// The key of an image by digest in a repository of a registry, for [`Context`]'s maps.
fn at(registry: &Registry, repo: &str, digest: &Digest) -> String {
    format!("{}/{repo}@{digest}", registry.key())
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
    match &a.op {
        Op::Import {
            source,
            source_digest,
            platforms,
            ..
        } => import(ctx, a, source, source_digest, platforms).await,
        Op::Scan { image, .. } => scan(ctx, a, image).await,
        Op::Promote { image, source, .. } => promote(ctx, a, image, source).await,
        Op::Delete { image } => delete(ctx, a, image.as_deref()).await,
    }
}

/// Import `src_loc@read` (keeping `platforms`) into the quarantine tag, `a.target`.
async fn import(
    ctx: &Context<'_>,
    a: &Action,
    src_loc: &Location,
    read: &Digest,
    platforms: &Option<Vec<Platform>>,
) -> Result<Status, RegistryError> {
    let tag = tag_of(a)?;
    let dst = ctx.registries.get(&a.target.registry)?;
    if let Some(unchanged) = already_holds(&dst, a, tag).await? {
        return Ok(unchanged);
    }
    // transfer = "acr-import": ARM importImage, server-side (src/apply/acr.rs).
    if acr::uses_acr_import(ctx, a) {
        let detail = acr::import_image(ctx, a, &src_loc.registry, &src_loc.repository, tag).await?;
        note_imported(ctx, &dst, a);
        return Ok(Status::Done { detail });
    }
    let src = ctx.registries.get(&src_loc.registry)?;
    let upstream = src
        .get_manifest(&src_loc.repository, &read.to_string())
        .await?
        .ok_or_else(|| RegistryError::Content {
            what: format!("{}@{}", src_loc, read),
            message: "the source manifest is gone (MANIFEST_UNKNOWN)".into(),
        })?;
    let top = match platforms {
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
    let s = Repo::new(&src, &src_loc.repository);
    let d = Repo::new(&dst, &a.target.repository);
    let copied = async {
        copier.copy_image(s, d, &top, tag).await?;
        copy_attached(&copier, s, d, &upstream.digest, &top.digest).await
    }
    .await;
    let n = stats.snapshot();
    ctx.stats.add(&n);
    let referrers = copied?;
    note_imported(ctx, &dst, a);
    if referrers == 0 {
        // Nothing attached to carry: the promote from quarantine need not look again.
        ctx.ledger
            .note_bare_import(dst.key(), &a.target.repository, &a.digest);
    }
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
                format!(" with {referrers} referrer(s) or signature tag(s)")
            } else {
                String::new()
            }
        ),
    })
}

/// Scan the quarantined image `a.target` of the declared image `key`.
async fn scan(ctx: &Context<'_>, a: &Action, key: &str) -> Result<Status, RegistryError> {
    let reg = ctx.registries.get(&a.target.registry)?;
    let repo = &a.target.repository;
    let image = key.to_string();
    let path = image_path(ctx, key);
    // The re-check (a current verdict: nothing to do) is made from the index read the new
    // verdict's entry is merged into, after the scan. It is made before the scan as well —
    // sparing the scanners — unless this apply's import has just written the image: then a
    // current verdict could only come from a concurrent writer, and the check after the scan
    // still finds it.
    if !imported_now(ctx, &reg, a) {
        let listed = reg.referrers(repo, &a.digest, None).await?;
        if let Some(unchanged) = current_verdict(ctx, &reg, a, &path, &listed).await? {
            return Ok(unchanged);
        }
    }
    let top = reg
        .get_manifest(repo, &a.digest.to_string())
        .await?
        .ok_or_else(|| RegistryError::Content {
            what: format!("{}/{}@{}", a.target.registry, repo, a.digest),
            message: "the quarantined image is missing (MANIFEST_UNKNOWN)".into(),
        })?;
    let target = gate::Target {
        registry: &reg,
        repository: repo,
        digest: &a.digest,
    };
    let doc = gate::scan(ctx.desired, &ctx.scanners, &target, &top, &path, now()).await?;
    let signature = ctx.sign(&records::statement(&doc)).await?;
    let artifact =
        records::verdict_artifact(&doc, signature, &top.media_type, top.bytes.len() as u64);
    push_artifact_blobs(ctx, &reg, repo, &artifact).await?;
    let pushed = reg
        .push_referrer_checked(repo, &artifact.manifest, &a.digest, async |listed| {
            current_verdict(ctx, &reg, a, &path, listed).await
        })
        .await?;
    let listed = match pushed {
        Pushed::Held(unchanged) => return Ok(unchanged),
        Pushed::Listed(listed) => listed,
    };
    ctx.verdicts_listed
        .lock()
        .expect("verdicts listed lock")
        .insert(at(&reg, repo, &a.digest), listed);
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

/// `Unchanged` when `listed` (the referrers of the scanned digest) holds a current verdict,
/// judged from its document (not its annotations) — unless the plan renews exactly this one
/// (`--rescan`), or it failed only because a scanner could not run (no verdict on the image).
async fn current_verdict(
    ctx: &Context<'_>,
    reg: &Registry,
    a: &Action,
    path: &str,
    listed: &[Referrer],
) -> Result<Option<Status>, RegistryError> {
    let repo = &a.target.repository;
    let judged =
        verdict_gate::judge(ctx.desired, reg, repo, &a.digest, path, now(), listed).await?;
    Ok(match judged {
        Judgement::Pass { verdict } if a.replaces.as_ref() != Some(&verdict) => {
            Some(Status::Unchanged {
                detail: format!("a current verdict exists: pass ({})", verdict.short()),
            })
        }
        Judgement::Fails {
            verdict,
            outage: false,
            ..
        } if a.replaces.as_ref() != Some(&verdict) => Some(Status::Unchanged {
            detail: format!("a current verdict exists: fail ({})", verdict.short()),
        }),
        _ => None,
    })
}

/// Note that this apply's import wrote `a.target` (see [`Context::imported`]).
fn note_imported(ctx: &Context<'_>, dst: &Registry, a: &Action) {
    ctx.imported
        .lock()
        .expect("imported lock")
        .insert(at(dst, &a.target.repository, &a.digest));
}

/// Whether this apply's import wrote the image `a.target` (a scan's target).
fn imported_now(ctx: &Context<'_>, reg: &Registry, a: &Action) -> bool {
    ctx.imported
        .lock()
        .expect("imported lock")
        .contains(&at(reg, &a.target.repository, &a.digest))
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
    push_artifact_blobs(ctx, reg, repo, artifact).await?;
    reg.push_referrer(repo, &artifact.manifest, subject).await
}

/// The blobs of a record artifact (its config and its document), before its manifest.
async fn push_artifact_blobs(
    ctx: &Context<'_>,
    reg: &Registry,
    repo: &str,
    artifact: &records::Artifact,
) -> Result<(), RegistryError> {
    let stats = Stats::default();
    let copier = ctx.copier(&stats);
    let dst = Repo::new(reg, repo);
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
    Ok(())
}

/// What a promotion record must say for this promote action's live tag (the binding rule).
fn promote_binding(ctx: &Context<'_>, a: &Action, q: &Location, tag: &str) -> Binding {
    Binding {
        live_registry: a.target.registry.clone(),
        live_repository: a.target.repository.clone(),
        tag: tag.to_string(),
        digest: a.digest.clone(),
        quarantine_registry: q.registry.clone(),
        quarantine_repository: q.repository.clone(),
        max_verdict_age: ctx.desired.gate.max_verdict_age,
        public_key: ctx.desired.signing.public_key.clone(),
    }
}

/// Promote: content by digest, then the promotion record, then the tag — a crash at any point
/// leaves no live tag, or a live tag with a record that binds it. The target holds when the
/// tag points at the digest and a record binds it; a tag without one gets only the record.
///
/// Where that is re-checked: a record repair (the plan saw the live tag at this digest) and
/// acr-import look at the tag first, as the repair writes only the record. Otherwise the
/// re-check is made from the live index read the new record is merged into (the content,
/// already copied, is idempotent): the tag is looked at only when that index lists a
/// record — a concurrent apply that promoted the image meanwhile is still found, and this
/// one then writes neither the index entry nor the tag.
async fn promote(
    ctx: &Context<'_>,
    a: &Action,
    key: &str,
    q: &Location,
) -> Result<Status, RegistryError> {
    let tag = tag_of(a)?;
    let dst = ctx.registries.get(&a.target.registry)?;
    let src = ctx.registries.get(&q.registry)?;
    let want = promote_binding(ctx, a, q, tag);
    let checked_late = !acr::uses_acr_import(ctx, a) && !planned_as_repair(a);
    let tag_holds = if checked_late {
        None
    } else {
        let holds = already_holds(&dst, a, tag).await?;
        if let Some(unchanged) = &holds
            && let RecordStatus::Valid { .. } =
                observe::record_status(&dst, &src, &want, None).await?
        {
            return Ok(unchanged.clone());
        }
        holds
    };
    // The gate, from the verdict documents (never the plan's or an annotation's word):
    // src/apply/verdict_gate.rs. Listed as read now — or, when this apply's scan of the
    // image wrote a verdict, as that write's re-read listed them (the verdict among them).
    let listed = ctx
        .verdicts_listed
        .lock()
        .expect("verdicts listed lock")
        .get(&at(&src, &q.repository, &a.digest))
        .cloned();
    let listed = match listed {
        Some(listed) => listed,
        None => src.referrers(&q.repository, &a.digest, None).await?,
    };
    let path = image_path(ctx, key);
    let verdict = match verdict_gate::judge(
        ctx.desired,
        &src,
        &q.repository,
        &a.digest,
        &path,
        now(),
        &listed,
    )
    .await?
    {
        Judgement::Pass { verdict } => verdict,
        Judgement::Fails {
            verdict,
            detail,
            findings,
            ..
        } => {
            return Ok(Status::Blocked {
                detail: format!(
                    "the verdict fails: {detail} (full verdict: {}/{}@{verdict})",
                    q.registry, q.repository
                ),
                findings,
            });
        }
        Judgement::Unusable { detail } => {
            return Ok(Status::Blocked {
                detail,
                findings: vec![],
            });
        }
    };
    let top = src
        .get_manifest(&q.repository, &a.digest.to_string())
        .await?
        .ok_or_else(|| RegistryError::Content {
            what: format!("{q}@{}", a.digest),
            message: "the quarantined image is missing (MANIFEST_UNKNOWN)".into(),
        })?;
    let record = PromotionRecord {
        format_version: PROMOTION_FORMAT,
        digest: a.digest.clone(),
        live: want.live_ref(),
        from: want.from_ref(),
        from_digest: a.digest.clone(),
        verdict: verdict.clone(),
        plan_hash: ctx.plan_hash.clone(),
        created: now(),
        airlock_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let signature = ctx.sign(&records::statement(&record)).await?;
    let artifact =
        records::promotion_artifact(&record, signature, &top.media_type, top.bytes.len() as u64);
    if tag_holds.is_some() {
        // The content and the tag are live already: only the record was missing or invalid.
        push_artifact(ctx, &dst, &a.target.repository, &artifact, &a.digest).await?;
        return Ok(Status::Done {
            detail: format!(
                "{} already holds {}: promotion record {} written",
                a.target,
                a.digest.short(),
                artifact.manifest.digest.short()
            ),
        });
    }
    let stats = Stats::default();
    // transfer = "acr-import": ARM importImage, server-side (src/apply/acr.rs). It writes the
    // tag itself, so the record goes first (a referrer may precede its subject).
    let server_side = if acr::uses_acr_import(ctx, a) {
        match push_artifact(ctx, &dst, &a.target.repository, &artifact, &a.digest).await {
            Ok(()) => acr::import_image(ctx, a, &q.registry, &q.repository, tag)
                .await
                .map(|detail| Some(Ok(detail))),
            Err(e) => Err(e),
        }
    } else {
        let copier = ctx.copier(&stats);
        let s = Repo::new(&src, &q.repository);
        let d = Repo::new(&dst, &a.target.repository);
        async {
            // Content by digest, then the record, then the tag. What the source carries
            // travels too, unless this apply imported it and found nothing attached.
            copier.copy_image(s, d, &top, &a.digest.to_string()).await?;
            if !ctx
                .ledger
                .imported_bare(src.key(), &q.repository, &a.digest)
            {
                copy_attached(&copier, s, d, &a.digest, &a.digest).await?;
            }
            if checked_late {
                push_artifact_blobs(ctx, &dst, &a.target.repository, &artifact).await?;
                let pushed = dst
                    .push_referrer_checked(
                        &a.target.repository,
                        &artifact.manifest,
                        &a.digest,
                        async |listed| promoted_already(&dst, &src, a, &want, listed).await,
                    )
                    .await?;
                if let Pushed::Held(unchanged) = pushed {
                    return Ok(Some(Err(unchanged)));
                }
            } else {
                push_artifact(ctx, &dst, &a.target.repository, &artifact, &a.digest).await?;
            }
            copier.put_tagged(s, d, tag, &top).await?;
            Ok(None)
        }
        .await
    };
    let n = stats.snapshot();
    ctx.stats.add(&n);
    match server_side? {
        Some(Ok(detail)) => return Ok(Status::Done { detail }),
        Some(Err(unchanged)) => return Ok(unchanged),
        None => {}
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

/// Whether the plan saw the live tag already at the promoted digest (a record repair: the
/// tag without a record that binds it). A hint for where the re-check is made, never
/// trusted for the outcome: both paths re-check the tag and the record.
fn planned_as_repair(a: &Action) -> bool {
    a.preconditions
        .iter()
        .any(|p| p.location == a.target && p.digest.as_ref() == Some(&a.digest))
}

/// `Unchanged` when the image is live already: `listed` (the live index's referrers of the
/// digest, as read before the new record is merged) has a promotion record, the tag points
/// at the digest, and a record binds it. No record listed: no request.
async fn promoted_already(
    dst: &Registry,
    src: &Registry,
    a: &Action,
    want: &Binding,
    listed: &[Referrer],
) -> Result<Option<Status>, RegistryError> {
    if !listed.iter().any(records::is_listed_as::<PromotionRecord>) {
        return Ok(None);
    }
    let tag = tag_of(a)?;
    let Some(unchanged) = already_holds(dst, a, tag).await? else {
        return Ok(None);
    };
    Ok(match observe::record_status(dst, src, want, None).await? {
        RecordStatus::Valid { .. } => Some(unchanged),
        _ => None,
    })
}

/// Delete the live tag `a.target`: a prune, or a demote of the declared image `image`.
async fn delete(
    ctx: &Context<'_>,
    a: &Action,
    image: Option<&str>,
) -> Result<Status, RegistryError> {
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
            if let Some(key) = image {
                demote_allowed(ctx, a, key).await?;
            }
            // A saved plan may name a genuine referrers index (records, not an image): those
            // are never pruned, whatever the plan says.
            if let Some(subject) = binding::referrers_tag_subject(tag)
                && observe::is_referrers_index(&reg, &a.target.repository, &a.digest, &subject)
                    .await?
            {
                return Err(RegistryError::Content {
                    what: a.target.to_string(),
                    message: "a referrers tag-schema index (promotion records), not an image: not deleted".into(),
                });
            }
            reg.delete_manifest(&a.target.repository, &a.digest).await?;
            Ok(Status::Done {
                detail: format!("{} ({}) deleted", a.target, a.digest.short()),
            })
        }
    }
}

/// The image path of a declared image (scopes allow entries): from the configuration, else
/// from its key.
fn image_path(ctx: &Context<'_>, key: &str) -> String {
    ctx.desired
        .images
        .iter()
        .find(|s| s.key() == key)
        .map(|s| s.path.clone())
        .unwrap_or_else(|| {
            key.rsplit_once(':')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default()
        })
}

/// A demote (`on_fail = "demote"`) deletes a declared live tag only when the current verdict
/// document for that digest fails: a plan file's word is not enough to take an image out.
async fn demote_allowed(ctx: &Context<'_>, a: &Action, key: &str) -> Result<(), RegistryError> {
    let path = image_path(ctx, key);
    let q = ctx.registries.get(&ctx.desired.quarantine.registry)?;
    let repo = ctx.desired.quarantine.repository(&path);
    let listed = q.referrers(&repo, &a.digest, None).await?;
    match verdict_gate::judge(ctx.desired, &q, &repo, &a.digest, &path, now(), &listed).await? {
        Judgement::Fails { outage: false, .. } => Ok(()),
        Judgement::Fails { outage: true, .. } => Err(RegistryError::Content {
            what: a.target.to_string(),
            message: "not demoted: the current verdict failed only because a scanner could not run"
                .into(),
        }),
        Judgement::Pass { verdict } => Err(RegistryError::Content {
            what: a.target.to_string(),
            message: format!(
                "not demoted: the current verdict {} passes",
                verdict.short()
            ),
        }),
        Judgement::Unusable { detail } => Err(RegistryError::Content {
            what: a.target.to_string(),
            message: format!("not demoted: no current failing verdict ({detail})"),
        }),
    }
}
