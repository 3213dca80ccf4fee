//! Audit: prove what is in live. Every live tag needs a promotion record that binds it (the
//! binding rule, `records::binding`): subject, digest and from-digest are the live digest,
//! `live` is this tag, `from` is the quarantine repository of the image that maps to this live
//! repository and the digest is still there, and the verdict it names — read from its
//! document — is about that digest, made there, and passed. Then the newest decided verdict for
//! the digest, read from its document, must pass and be younger than `max_verdict_age`.
//! Anything else — an image pushed straight into live, copied from elsewhere, carrying
//! another tag's or another image's record, or whose verdict failed or expired — is a
//! violation. Undeclared tags are judged the same way (and marked undeclared). The report is
//! written by `render::reports`.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::DesiredState;
use crate::error::Error;
use crate::model::Digest;
use crate::observe::{self, RecordStatus};
use crate::observed::LiveTag;
use crate::records::binding;
use crate::registry::{Registries, Registry, RegistryError};

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    /// Whether an `[[images]]` entry declares this live tag.
    pub declared: bool,
    /// None when the tag passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Digest>,
    /// The promotion record's signature: `verified` (by `[signing] public_key`), `signed (not
    /// verified: no public_key)` or `unsigned`. With a public_key, unsigned and badly signed
    /// records are violations instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The `format_version` of `airlock audit --json` (schemas/audit-report.schema.json).
pub const REPORT_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub format_version: u32,
    pub live: String,
    pub checked: usize,
    pub violations: usize,
    pub tags: Vec<Finding>,
}

pub async fn audit(
    desired: &DesiredState,
    registries: &Registries,
    now: OffsetDateTime,
) -> Result<AuditReport, Error> {
    let live = registries.get(&desired.live.registry)?;
    let quarantine = registries.get(&desired.quarantine.registry)?;
    let tags = observe::walk_tags(&live, &desired.live.prefix).await?;
    let declared: BTreeSet<(String, String)> = desired
        .images
        .iter()
        .map(|s| (desired.live.repository(&s.path), s.tag.clone()))
        .collect();
    let declared = &declared;
    let mut findings: Vec<Finding> = stream::iter(tags)
        .map(|t| {
            let live = live.clone();
            let quarantine = quarantine.clone();
            async move {
                let is_declared = declared.contains(&(t.repository.clone(), t.tag.clone()));
                check_tag(desired, &live, &quarantine, t, is_declared, now).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<Result<Finding, RegistryError>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    findings.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    Ok(AuditReport {
        format_version: REPORT_FORMAT_VERSION,
        live: format!("{}/{}", desired.live.registry, desired.live.prefix),
        checked: findings.len(),
        violations: findings.iter().filter(|f| f.violation.is_some()).count(),
        tags: findings,
    })
}

async fn check_tag(
    desired: &DesiredState,
    live: &Arc<Registry>,
    quarantine: &Arc<Registry>,
    t: LiveTag,
    declared: bool,
    now: OffsetDateTime,
) -> Result<Finding, RegistryError> {
    let mut f = Finding {
        repository: t.repository.clone(),
        tag: t.tag.clone(),
        digest: t.digest.clone(),
        declared,
        violation: None,
        promoted_from: None,
        verdict: None,
        signature: None,
    };
    let want = observe::binding_for(desired, &t.repository, &t.tag, &t.digest);
    let (record, verdict) = match observe::record_status(live, quarantine, &want, None).await? {
        RecordStatus::Missing => {
            f.violation = Some(
                "no promotion record: pushed straight into live, or copied around the gate".into(),
            );
            return Ok(f);
        }
        RecordStatus::Invalid(why) => {
            f.violation = Some(format!("no valid promotion record: {why}"));
            return Ok(f);
        }
        RecordStatus::Valid {
            record,
            verdict,
            signed,
        } => {
            f.signature = Some(
                match (signed, &desired.signing.public_key) {
                    (true, Some(_)) => "verified",
                    (true, None) => "signed (not verified: no public_key)",
                    (false, _) => "unsigned",
                }
                .to_string(),
            );
            (record, verdict)
        }
    };
    f.promoted_from = Some(record.from.clone());
    f.verdict = Some(record.verdict.clone());
    // The newest decided verdict: often the one the record names (already read).
    let newest = match observe::newest_decided_verdict_digest(
        quarantine,
        &want.quarantine_repository,
        &t.digest,
    )
    .await?
    {
        None => None,
        Some(d) if d == verdict.artifact => Some(*verdict),
        Some(d) => {
            observe::read_verdict_artifact(quarantine, &want.quarantine_repository, &d).await?
        }
    };
    if let Err(why) = binding::check_current(newest.as_ref(), &want, now) {
        f.violation = Some(why.to_string());
    }
    Ok(f)
}
