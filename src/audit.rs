//! Audit: prove what is in live. Every live tag needs a promotion record (subject = its digest)
//! that names a quarantined digest which still exists and a verdict that passed; and the newest
//! verdict for that digest must pass and be younger than `max_verdict_age`. Anything else — an
//! image pushed straight into live, copied from elsewhere, or whose verdict failed or expired —
//! is a violation.

use std::io::Write;

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::DesiredState;
use crate::error::Error;
use crate::model::manifest::Parsed;
use crate::model::{Digest, media};
use crate::observe;
use crate::observed::{Decision, LiveTag};
use crate::records::PromotionRecord;
use crate::registry::{Registries, Registry, RegistryError};

const MAX_RECORD: u64 = 1 << 20;

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    /// None when the tag passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Digest>,
}

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
    let mut findings: Vec<Finding> = stream::iter(tags)
        .map(|t| {
            let live = live.clone();
            let quarantine = quarantine.clone();
            async move { check_tag(desired, &live, &quarantine, t, now).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<Result<Finding, RegistryError>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    findings.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    Ok(AuditReport {
        format_version: 1,
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
    now: OffsetDateTime,
) -> Result<Finding, RegistryError> {
    let mut f = Finding {
        repository: t.repository.clone(),
        tag: t.tag.clone(),
        digest: t.digest.clone(),
        violation: None,
        promoted_from: None,
        verdict: None,
    };
    let records = live
        .referrers(&t.repository, &t.digest, Some(media::PROMOTION_ARTIFACT))
        .await?;
    let mut best: Option<PromotionRecord> = None;
    for r in records {
        if let Some(rec) = read_record(live, &t.repository, &r.digest).await?
            && rec.digest == t.digest
            && best.as_ref().is_none_or(|b| rec.created > b.created)
        {
            best = Some(rec);
        }
    }
    let Some(rec) = best else {
        f.violation = Some(
            "no promotion record: pushed straight into live, or copied around the gate".into(),
        );
        return Ok(f);
    };
    f.promoted_from = Some(rec.from.clone());
    f.verdict = Some(rec.verdict.clone());
    let q_prefix = format!(
        "{}/{}/",
        desired.quarantine.registry, desired.quarantine.prefix
    );
    let Some(q_repo) = rec
        .from
        .strip_prefix(&format!("{}/", desired.quarantine.registry))
        .and_then(|r| r.split_once('@').map(|(repo, _)| repo.to_string()))
        .filter(|_| rec.from.starts_with(&q_prefix))
    else {
        f.violation = Some(format!(
            "promoted from {}, which is not the quarantine ({q_prefix}…)",
            rec.from
        ));
        return Ok(f);
    };
    if quarantine
        .head_manifest(&q_repo, &rec.from_digest.to_string())
        .await?
        .is_none()
    {
        f.violation = Some(format!(
            "the quarantined digest {} no longer exists in {q_repo}",
            rec.from_digest.short()
        ));
        return Ok(f);
    }
    match observe::read_verdict(quarantine, &q_repo, &rec.verdict).await? {
        None => {
            f.violation = Some(format!(
                "the verdict {} named by the promotion record is missing",
                rec.verdict.short()
            ));
            return Ok(f);
        }
        Some(doc) if doc.decision != Decision::Pass || doc.digest != rec.from_digest => {
            f.violation = Some(format!(
                "the verdict {} named by the promotion record did not pass",
                rec.verdict.short()
            ));
            return Ok(f);
        }
        Some(_) => {}
    }
    match observe::find_verdict(quarantine, &q_repo, &rec.from_digest).await? {
        Some(v) if v.decision == Decision::Fail => {
            f.violation = Some(format!(
                "the newest verdict fails{}",
                v.top_findings
                    .first()
                    .map(|x| format!(": {} {}", x.id, x.severity))
                    .unwrap_or_default()
            ));
        }
        Some(v) => {
            let max = time::Duration::try_from(desired.gate.max_verdict_age)
                .unwrap_or(time::Duration::MAX);
            if now - v.created > max {
                f.violation = Some(format!(
                    "the newest verdict is expired (made {}, max_verdict_age {}): run `airlock apply` to renew it",
                    v.created.date(),
                    humantime::format_duration(desired.gate.max_verdict_age)
                ));
            }
        }
        None => f.violation = Some("no verdict found for the quarantined digest".into()),
    }
    Ok(f)
}

async fn read_record(
    reg: &Registry,
    repo: &str,
    digest: &Digest,
) -> Result<Option<PromotionRecord>, RegistryError> {
    let Some(m) = reg.get_manifest(repo, &digest.to_string()).await? else {
        return Ok(None);
    };
    let Ok(Parsed::Image { layers, .. }) = m.parse() else {
        return Ok(None);
    };
    let Some(layer) = layers.first() else {
        return Ok(None);
    };
    let bytes = reg.get_blob_bytes(repo, &layer.digest, MAX_RECORD).await?;
    Ok(serde_json::from_slice(&bytes).ok())
}

impl AuditReport {
    pub fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for t in &self.tags {
            match &t.violation {
                None => writeln!(
                    out,
                    "ok         {}:{} @ {} (from {})",
                    t.repository,
                    t.tag,
                    t.digest.short(),
                    t.promoted_from.as_deref().unwrap_or("?")
                )?,
                Some(v) => writeln!(
                    out,
                    "VIOLATION  {}:{} @ {}: {v}",
                    t.repository,
                    t.tag,
                    t.digest.short()
                )?,
            }
        }
        writeln!(
            out,
            "\nAudit of {}: {} tag(s) checked, {} violation(s).",
            self.live, self.checked, self.violations
        )
    }
}
