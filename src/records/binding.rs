//! The binding rule: when a promotion record vouches for a live tag. Pure: the caller reads the
//! record artifact, the verdict it names and whether the promoted digest is in quarantine; this
//! module decides. `audit`, the planner's observation (`observe`) and the promote step all call
//! [`check`], so a converged plan implies a clean audit of the declared images.
//!
//! A record vouches for the live tag `R:T` at digest L, of the image whose quarantine repository
//! is Q, when all of these hold:
//! - it is an airlock promotion record whose manifest `subject` is L;
//! - its `digest` and its `from_digest` are L (promotion copies, it never changes content);
//! - its `live` is exactly this tag (`<live registry>/R:T`);
//! - its `from` is exactly `<quarantine registry>/Q@L`, and L exists in Q;
//! - the verdict it names, read from its document in Q, is a verdict artifact about L made in
//!   Q, passed, and was no older than `max_verdict_age` when the record was made.
//!
//! With a `[signing] public_key` (`Binding::public_key`), the record and its verdict must also
//! carry a DSSE signature by that key over exactly the statement these checks read: an
//! unsigned record (0.1's plain JSON included) or a badly signed one vouches for nothing, and
//! since the subject, `live` and `from` are inside the signed statement, a record copied to
//! another digest or tag fails the checks above.
//!
//! Whether the image is still vouched for today (the newest decided verdict passes and is
//! younger than `max_verdict_age`) is [`check_current`]: renewal is the planner's `scan`.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{PromotionRecord, VerdictDocument};
use crate::model::{Digest, freshness, media};
use crate::observed::Decision;
use crate::signing::Verifier;
use crate::signing::dsse::{self, Envelope, SignatureCheck};

/// What a record must say to vouch for one live tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Registry keys as written in the configuration (aliases or hosts).
    pub live_registry: String,
    pub live_repository: String,
    pub tag: String,
    /// L: what the live tag points to.
    pub digest: Digest,
    pub quarantine_registry: String,
    /// Q: the quarantine repository of the image that maps to this live repository.
    pub quarantine_repository: String,
    pub max_verdict_age: Duration,
    /// `[signing] public_key`: records and verdicts must be signed by it.
    pub public_key: Option<Arc<Verifier>>,
}

impl Binding {
    /// The record's `live` for this tag.
    pub fn live_ref(&self) -> String {
        live_ref(&self.live_registry, &self.live_repository, &self.tag)
    }

    /// The record's `from` for this tag.
    pub fn from_ref(&self) -> String {
        from_ref(
            &self.quarantine_registry,
            &self.quarantine_repository,
            &self.digest,
        )
    }
}

/// `registry/repository:tag`, as a promotion record names the live tag it wrote.
pub fn live_ref(registry: &str, repository: &str, tag: &str) -> String {
    format!("{registry}/{repository}:{tag}")
}

/// `registry/repository@digest`, as a promotion record names where it came from.
pub fn from_ref(registry: &str, repository: &str, digest: &Digest) -> String {
    format!("{registry}/{repository}@{digest}")
}

/// One artifact as read from a registry: its manifest's facts and its parsed document (None
/// when the manifest or its one layer is not a document of the expected kind).
#[derive(Clone, Debug, PartialEq)]
pub struct ReadArtifact<D> {
    /// Digest of the artifact's manifest (verified by the read).
    pub artifact: Digest,
    pub artifact_type: Option<String>,
    /// The manifest's `subject`, if it has one.
    pub subject: Option<Digest>,
    pub document: Option<D>,
    /// The DSSE envelope the document came in; None for a 0.1 plain-JSON document.
    pub envelope: Option<Envelope>,
}

impl<D> ReadArtifact<D> {
    /// Its signature under `key`.
    pub fn signature(&self, key: &Verifier) -> SignatureCheck {
        dsse::check(self.envelope.as_ref(), key)
    }
}

/// Whether `v` is a verdict airlock believes: a verdict document, signed by `key` when set.
fn verdict_document<'v>(
    v: &'v ReadVerdict,
    key: Option<&Verifier>,
) -> Result<&'v VerdictDocument, &'static str> {
    let Some(doc) = v
        .document
        .as_ref()
        .filter(|_| is_artifact_type::<VerdictDocument>(v.artifact_type.as_deref()))
    else {
        return Err("not an airlock verdict");
    };
    match key.map(|k| v.signature(k)) {
        None | Some(SignatureCheck::Verified) => Ok(doc),
        Some(SignatureCheck::Unsigned) => Err("unsigned"),
        Some(SignatureCheck::Bad) => Err("bad signature"),
    }
}

fn is_artifact_type<D: crate::records::Document>(t: Option<&str>) -> bool {
    t == Some(crate::records::DSSE_ENVELOPE) || t == Some(D::LEGACY_ARTIFACT)
}

pub type ReadRecord = ReadArtifact<PromotionRecord>;
pub type ReadVerdict = ReadArtifact<VerdictDocument>;

/// Why a record does not vouch for a live tag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    #[error("{artifact} is not an airlock promotion record")]
    NotARecord { artifact: String },
    #[error("unsigned: the record {artifact} is not signed (public_key {keyid})")]
    Unsigned { artifact: String, keyid: String },
    #[error("bad signature: the record {artifact} is not signed by public_key {keyid}")]
    BadSignature { artifact: String, keyid: String },
    #[error("the record's subject is {found}, not the live digest {want}")]
    Subject { found: String, want: String },
    #[error("the record is about {found}, not the live digest {want}")]
    Digest { found: String, want: String },
    #[error("the record promoted {found}, not the live digest {want}")]
    FromDigest { found: String, want: String },
    #[error("the record is for {found}, not this tag {want}")]
    Live { found: String, want: String },
    #[error("the record says it came from {found}, not from this image's quarantine {want}")]
    From { found: String, want: String },
    #[error("the promoted digest {digest} is not in quarantine ({repository})")]
    NotQuarantined { digest: String, repository: String },
    #[error("the verdict {verdict} named by the record is missing from {repository}")]
    VerdictMissing { verdict: String, repository: String },
    #[error("{verdict}, named by the record as its verdict, is {why}")]
    NotAVerdict { verdict: String, why: String },
    #[error("the verdict {verdict} named by the record is about {found}, not {want}")]
    VerdictSubject {
        verdict: String,
        found: String,
        want: String,
    },
    #[error("the verdict {verdict} named by the record was made in {found}, not {want}")]
    VerdictRepository {
        verdict: String,
        found: String,
        want: String,
    },
    #[error("the verdict {verdict} named by the record did not pass ({decision})")]
    VerdictNotPassing { verdict: String, decision: String },
    #[error(
        "the verdict {verdict} named by the record was {age} old when the record was made (max_verdict_age {max})"
    )]
    VerdictExpired {
        verdict: String,
        age: String,
        max: String,
    },
}

/// Why the newest verdict does not vouch for a live digest today.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerdictProblem {
    #[error("no verdict found for the quarantined digest {digest} in {repository}")]
    Missing { digest: String, repository: String },
    #[error("{verdict}, the newest verdict, is {why}")]
    NotAVerdict { verdict: String, why: String },
    #[error("the newest verdict {verdict} is about {found}, not {want}")]
    Subject {
        verdict: String,
        found: String,
        want: String,
    },
    #[error("the newest verdict {verdict} was made in {found}, not {want}")]
    Repository {
        verdict: String,
        found: String,
        want: String,
    },
    #[error("the newest verdict fails{top}")]
    Fails { top: String },
    #[error("the newest verdict {verdict} is pending")]
    Pending { verdict: String },
    #[error(
        "the newest verdict is expired (made {made}, max_verdict_age {max}): run `airlock apply` to renew it"
    )]
    Expired { made: String, max: String },
}

fn decision_str(d: &Decision) -> &'static str {
    match d {
        Decision::Pass => "pass",
        Decision::Fail => "fail",
        Decision::Pending => "pending",
    }
}

fn shown(d: Option<&Digest>) -> String {
    d.map(|d| d.short()).unwrap_or_else(|| "missing".into())
}

/// What the record claims, checked without any further read: kind, subject, digests, the live
/// tag and the quarantine it came from. A record failing this needs no more requests.
pub fn check_claims<'r>(
    rec: &'r ReadRecord,
    want: &Binding,
) -> Result<&'r PromotionRecord, RecordProblem> {
    let doc = match &rec.document {
        Some(doc) if is_artifact_type::<PromotionRecord>(rec.artifact_type.as_deref()) => doc,
        _ => {
            return Err(RecordProblem::NotARecord {
                artifact: rec.artifact.short(),
            });
        }
    };
    if let Some(key) = &want.public_key {
        let (artifact, keyid) = (rec.artifact.short(), key.keyid().to_string());
        match rec.signature(key) {
            SignatureCheck::Verified => {}
            SignatureCheck::Unsigned => return Err(RecordProblem::Unsigned { artifact, keyid }),
            SignatureCheck::Bad => return Err(RecordProblem::BadSignature { artifact, keyid }),
        }
    }
    if rec.subject.as_ref() != Some(&want.digest) {
        return Err(RecordProblem::Subject {
            found: shown(rec.subject.as_ref()),
            want: want.digest.short(),
        });
    }
    if doc.digest != want.digest {
        return Err(RecordProblem::Digest {
            found: doc.digest.short(),
            want: want.digest.short(),
        });
    }
    if doc.from_digest != want.digest {
        return Err(RecordProblem::FromDigest {
            found: doc.from_digest.short(),
            want: want.digest.short(),
        });
    }
    if doc.live != want.live_ref() {
        return Err(RecordProblem::Live {
            found: doc.live.clone(),
            want: want.live_ref(),
        });
    }
    if doc.from != want.from_ref() {
        return Err(RecordProblem::From {
            found: doc.from.clone(),
            want: want.from_ref(),
        });
    }
    Ok(doc)
}

/// The binding rule. `quarantined`: whether L exists in the expected quarantine repository;
/// `verdict`: the artifact the record names as its verdict, read from that repository (None
/// when it is not there).
pub fn check<'r>(
    rec: &'r ReadRecord,
    quarantined: bool,
    verdict: Option<&ReadVerdict>,
    want: &Binding,
) -> Result<&'r PromotionRecord, RecordProblem> {
    let doc = check_claims(rec, want)?;
    if !quarantined {
        return Err(RecordProblem::NotQuarantined {
            digest: want.digest.short(),
            repository: format!(
                "{}/{}",
                want.quarantine_registry, want.quarantine_repository
            ),
        });
    }
    let Some(v) = verdict.filter(|v| v.artifact == doc.verdict) else {
        return Err(RecordProblem::VerdictMissing {
            verdict: doc.verdict.short(),
            repository: format!(
                "{}/{}",
                want.quarantine_registry, want.quarantine_repository
            ),
        });
    };
    let vdoc = verdict_document(v, want.public_key.as_deref()).map_err(|why| {
        RecordProblem::NotAVerdict {
            verdict: doc.verdict.short(),
            why: why.into(),
        }
    })?;
    for found in [v.subject.as_ref(), Some(&vdoc.digest)] {
        if found != Some(&want.digest) {
            return Err(RecordProblem::VerdictSubject {
                verdict: doc.verdict.short(),
                found: shown(found),
                want: want.digest.short(),
            });
        }
    }
    if vdoc.repository != want.quarantine_repository {
        return Err(RecordProblem::VerdictRepository {
            verdict: doc.verdict.short(),
            found: vdoc.repository.clone(),
            want: want.quarantine_repository.clone(),
        });
    }
    if vdoc.decision != Decision::Pass {
        return Err(RecordProblem::VerdictNotPassing {
            verdict: doc.verdict.short(),
            decision: decision_str(&vdoc.decision).into(),
        });
    }
    if freshness::expired(vdoc.created, doc.created, want.max_verdict_age) {
        return Err(RecordProblem::VerdictExpired {
            verdict: doc.verdict.short(),
            age: humantime::format_duration(freshness::age(vdoc.created, doc.created)).to_string(),
            max: humantime::format_duration(want.max_verdict_age).to_string(),
        });
    }
    Ok(doc)
}

/// Whether the newest decided verdict for L in the quarantine repository (read from its
/// document) still vouches for it at `now`: about L, made there, passing, not expired.
pub fn check_current(
    newest: Option<&ReadVerdict>,
    want: &Binding,
    now: OffsetDateTime,
) -> Result<(), VerdictProblem> {
    let Some(v) = newest else {
        return Err(VerdictProblem::Missing {
            digest: want.digest.short(),
            repository: format!(
                "{}/{}",
                want.quarantine_registry, want.quarantine_repository
            ),
        });
    };
    let doc = verdict_document(v, want.public_key.as_deref()).map_err(|why| {
        VerdictProblem::NotAVerdict {
            verdict: v.artifact.short(),
            why: why.into(),
        }
    })?;
    for found in [v.subject.as_ref(), Some(&doc.digest)] {
        if found != Some(&want.digest) {
            return Err(VerdictProblem::Subject {
                verdict: v.artifact.short(),
                found: shown(found),
                want: want.digest.short(),
            });
        }
    }
    if doc.repository != want.quarantine_repository {
        return Err(VerdictProblem::Repository {
            verdict: v.artifact.short(),
            found: doc.repository.clone(),
            want: want.quarantine_repository.clone(),
        });
    }
    match doc.decision {
        Decision::Fail => {
            return Err(VerdictProblem::Fails {
                top: doc
                    .top_findings(1)
                    .first()
                    .map(|x| format!(": {} {}", x.id, x.severity))
                    .unwrap_or_default(),
            });
        }
        Decision::Pending => {
            return Err(VerdictProblem::Pending {
                verdict: v.artifact.short(),
            });
        }
        Decision::Pass => {}
    }
    if freshness::expired(doc.created, now, want.max_verdict_age) {
        return Err(VerdictProblem::Expired {
            made: doc.created.date().to_string(),
            max: humantime::format_duration(want.max_verdict_age).to_string(),
        });
    }
    Ok(())
}

/// The subject a referrers tag-schema tag stands for: `sha256-<64 lowercase hex>`, else None.
pub fn referrers_tag_subject(tag: &str) -> Option<Digest> {
    let hex = tag.strip_prefix("sha256-")?;
    format!("sha256:{hex}").parse().ok()
}

/// Whether `m` is an artifact about `subject` that no runtime would run: an image manifest
/// whose `subject` is `subject` and whose config is not an image configuration.
pub fn is_artifact_referrer_of(m: &crate::model::RawManifest, subject: &Digest) -> bool {
    match m.parse() {
        Ok(crate::model::manifest::Parsed::Image {
            config,
            subject: Some(s),
            ..
        }) => {
            &s.digest == subject
                && config.media_type != media::OCI_CONFIG
                && config.media_type != media::DOCKER_CONFIG
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
