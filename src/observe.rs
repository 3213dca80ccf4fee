//! Observe: the reads the planner needs, done concurrently with no redundant requests.
//! Per image: HEAD the source tag (HEAD does not count against Docker Hub limits), HEAD the
//! quarantine and live tags, list the verdicts that refer to the source digest; GET the source
//! manifest only when a platform subset must be computed or an import will be planned (for
//! sizes). The live catalog is walked only when prune needs it (`audit` walks it too); without
//! prune, undeclared live tags are reported by `audit`, not by `plan`. When the live tag
//! already holds the source digest, its promotion records are read and judged by the binding
//! rule (`records::binding`): the planner repairs a missing or invalid record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::config::{DesiredState, ImageSpec};
use crate::error::Error;
use crate::model::manifest::{Parsed, subset_index};
use crate::model::{Digest, RawManifest, cosign, media};
use crate::observed::{
    Decision, LiveTag, ObservedImage, ObservedState, RecordCheck, SourceInfo, VerdictInfo,
};
use crate::records::binding::{self, Binding, ReadArtifact, ReadRecord, ReadVerdict};
use crate::records::{self, PromotionRecord, VerdictDocument};
use crate::registry::{Registries, Registry, RegistryError};
use crate::signing::Verifier;
use crate::signing::dsse::SignatureCheck;

pub use crate::unobserved::{Cause, Failure, Unobserved};

/// How many images are observed at once (each registry also bounds its own requests).
const IMAGE_CONCURRENCY: usize = 64;
/// How many of the worst findings a blocked image shows.
pub const TOP_FINDINGS: usize = 5;
/// Verdict documents larger than this are not read.
const MAX_DOCUMENT: u64 = 16 << 20;
/// Promotion records larger than this are not read.
const MAX_RECORD: u64 = 1 << 20;
/// At most this many promotion records of one live digest are read before giving up.
const MAX_RECORDS: usize = 32;

/// Observe every declared image (and, with prune, every live tag). Every image is tried: when
/// some cannot be observed, the error names each of them ([`Unobserved`]). A registry that
/// fails for a reason of its own (unreachable, timed out, throttled, failing) is not asked
/// again for the images still to come: they are reported under that cause.
pub async fn observe(
    desired: &DesiredState,
    registries: &Registries,
) -> Result<ObservedState, Error> {
    let down: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let results: Vec<Result<(String, ObservedImage), Failure>> =
        stream::iter(desired.images.iter())
            .map(|spec| {
                let down = &down;
                async move {
                    if let Some((registry, cause)) = known_down(desired, spec, down) {
                        return Err(failure(desired, spec, Cause::skipped(&registry, &cause)));
                    }
                    match observe_image(desired, registries, spec).await {
                        Ok(obs) => Ok((spec.key(), obs)),
                        Err(e) => {
                            let message = crate::error::with_causes(&e);
                            let cause = match &e {
                                Error::Registry(r) => Cause::of(r, message),
                                _ => Cause::Image(message),
                            };
                            let failure = failure(desired, spec, cause);
                            // A 401 may be about one repository (Docker Hub answers it for
                            // a repository that does not exist): the others are still asked.
                            let one_repository =
                                matches!(e, Error::Registry(RegistryError::Unauthorized { .. }));
                            if let Cause::Registry {
                                registry, cause, ..
                            } = &failure.cause
                                && !one_repository
                            {
                                down.lock()
                                    .expect("down registries lock")
                                    .entry(registry.clone())
                                    .or_insert_with(|| cause.clone());
                            }
                            Err(failure)
                        }
                    }
                }
            })
            .buffer_unordered(IMAGE_CONCURRENCY)
            .collect()
            .await;
    let mut images = BTreeMap::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok((key, obs)) => {
                images.insert(key, obs);
            }
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Unobserved(Unobserved::new(failures)));
    }
    let live_tags = if desired.prune {
        let live = registries.get(&desired.live.registry)?;
        Some(walk_tags(&live, &desired.live.prefix).await?)
    } else {
        None
    };
    Ok(ObservedState { images, live_tags })
}

/// The failure of `spec`, located at its entry in the configuration file.
fn failure(desired: &DesiredState, spec: &ImageSpec, cause: Cause) -> Failure {
    let at = desired
        .entries
        .of(spec)
        .map(|(line, col)| format!("{}:{line}:{col}", desired.file.display()));
    Failure::new(spec.key(), spec.source.to_string(), at, cause)
}

/// A registry `spec` needs that already failed for a cause of its own, and that cause. A
/// pinned image needs its source only when it is not quarantined yet, so its source does not
/// count.
fn known_down(
    desired: &DesiredState,
    spec: &ImageSpec,
    down: &Mutex<BTreeMap<String, String>>,
) -> Option<(String, String)> {
    let down = down.lock().expect("down registries lock");
    let source = spec.pin.is_none().then_some(spec.source_registry.as_str());
    [
        source,
        Some(desired.quarantine.registry.as_str()),
        Some(desired.live.registry.as_str()),
    ]
    .into_iter()
    .flatten()
    .find_map(|r| down.get(r).map(|c| (r.to_string(), c.clone())))
}

async fn observe_image(
    desired: &DesiredState,
    registries: &Registries,
    spec: &ImageSpec,
) -> Result<ObservedImage, Error> {
    let source_reg = registries.get(&spec.source_registry)?;
    let q_reg = registries.get(&desired.quarantine.registry)?;
    let l_reg = registries.get(&desired.live.registry)?;
    let q_repo = desired.quarantine.repository(&spec.path);
    let l_repo = desired.live.repository(&spec.path);

    let tag_head = source_reg.head_manifest(&spec.source.path, &spec.tag);
    let q_head = q_reg.head_manifest(&q_repo, &spec.tag);
    let l_head = l_reg.head_manifest(&l_repo, &spec.tag);
    let (tag_head, q_head, l_head) = tokio::join!(tag_head, q_head, l_head);
    let quarantine = q_head?.map(|d| d.digest);
    let live = l_head?.map(|d| d.digest);

    let (upstream_digest, upstream_tag_digest, head_media_type) = match &spec.pin {
        Some(pin) => {
            // The pin decides; the tag is only looked at to warn when it moved.
            let tag = match tag_head {
                Ok(t) => t.map(|d| d.digest),
                Err(e) => {
                    tracing::warn!("cannot resolve {} (the pin is used): {e}", spec.source);
                    None
                }
            };
            (pin.clone(), tag, None)
        }
        None => match tag_head? {
            Some(d) => (d.digest, None, Some(d.media_type)),
            None => {
                return Err(Error::Other(format!(
                    "source {} not found in registry `{}` (MANIFEST_UNKNOWN): check the tag, or pin a digest",
                    spec.source, spec.source_registry
                )));
            }
        },
    };

    // The source manifest is needed for a platform subset, and for sizes when importing.
    let mut manifest: Option<RawManifest> = None;
    let need_manifest = spec.platforms.is_some() || quarantine.as_ref() != Some(&upstream_digest);
    if need_manifest {
        manifest = Some(
            source_reg
                .get_manifest(&spec.source.path, &upstream_digest.to_string())
                .await?
                .ok_or_else(|| {
                    Error::Other(format!(
                        "source {}@{} not found in registry `{}` (MANIFEST_UNKNOWN)",
                        spec.source.repository(),
                        upstream_digest,
                        spec.source_registry
                    ))
                })?,
        );
    }
    let mut target = manifest.clone();
    if let (Some(platforms), Some(m)) = (&spec.platforms, &manifest) {
        if !m.is_index() {
            return Err(Error::Other(format!(
                "{} is a single-platform image: `platforms` needs a multi-platform index",
                spec.source
            )));
        }
        target = Some(
            subset_index(m, platforms)
                .map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?
                .ok_or_else(|| {
                    Error::Other(format!(
                        "{} offers none of the platforms {}",
                        spec.source,
                        platforms
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        );
    }
    let digest = target
        .as_ref()
        .map(|t| t.digest.clone())
        .unwrap_or_else(|| upstream_digest.clone());
    let (size, platforms) = match &target {
        Some(t) => describe(t),
        None => (None, None),
    };
    let media_type = target
        .as_ref()
        .map(|t| t.media_type.clone())
        .or(head_media_type)
        .unwrap_or_else(|| media::OCI_MANIFEST.to_string());

    let verdict = find_verdict(
        &q_reg,
        &q_repo,
        &digest,
        desired.signing.public_key.as_deref(),
    );
    let record = async {
        if live.as_ref() != Some(&digest) {
            return Ok(None);
        }
        let want = binding_for(desired, &l_repo, &spec.tag, &digest);
        let quarantined = (quarantine.as_ref() == Some(&digest)).then_some(true);
        let status = record_status(&l_reg, &q_reg, &want, quarantined).await?;
        Ok::<_, RegistryError>(Some(status.check()))
    };
    // One after the other: with a public key the verdict read first is the one the record
    // names, and the record's check then finds it in the client's cache (no second GET) and
    // its signature's outcome in the public key's cache (no second verification).
    let verdict = verdict.await?;
    let record = record.await?;
    Ok(ObservedImage {
        source: SourceInfo {
            digest,
            upstream_digest,
            upstream_tag_digest,
            media_type,
            size,
            platforms,
        },
        quarantine,
        live,
        verdict,
        record,
    })
}

/// Size (for a single manifest: config + layers) and platform count (for an index).
fn describe(m: &RawManifest) -> (Option<u64>, Option<usize>) {
    match m.parse() {
        Ok(Parsed::Image { config, layers, .. }) => (
            // Checked: a hostile descriptor size (2^64-1) shows no size, never a wrapped one.
            layers
                .iter()
                .try_fold(config.size, |sum, l| sum.checked_add(l.size)),
            None,
        ),
        Ok(Parsed::Index { manifests, .. }) => (
            None,
            Some(
                manifests
                    .iter()
                    .filter(|m| m.platform.as_ref().is_some_and(|p| p.os != "unknown"))
                    .count(),
            ),
        ),
        Err(_) => (None, None),
    }
}

/// The newest verdict recorded for `digest` in the quarantine repository; for a failing one,
/// its worst findings are read from the document. With a `public_key`, only verdicts signed by
/// it count (each candidate's document is read and checked, newest first): an unsigned or
/// badly signed verdict is as good as none, so the plan scans again.
pub async fn find_verdict(
    reg: &Arc<Registry>,
    repo: &str,
    digest: &Digest,
    key: Option<&Verifier>,
) -> Result<Option<VerdictInfo>, RegistryError> {
    let referrers = reg.referrers(repo, digest, None).await?;
    let mut infos: Vec<VerdictInfo> = referrers
        .iter()
        .filter(|r| records::is_listed_as::<VerdictDocument>(r))
        .filter_map(|r| records::verdict_from_annotations(&r.digest, &r.annotations))
        .collect();
    let Some(key) = key else {
        let Some(mut newest) = records::newest(infos) else {
            return Ok(None);
        };
        if newest.decision == Decision::Fail
            && let Some(doc) = read_verdict(reg, repo, &newest.digest).await?
        {
            newest.top_findings = doc.top_findings(TOP_FINDINGS);
        }
        return Ok(Some(newest));
    };
    infos.sort_by(|a, b| b.created.cmp(&a.created).then(b.digest.cmp(&a.digest)));
    for info in infos.into_iter().take(MAX_RECORDS) {
        let Some(read) = read_verdict_artifact(reg, repo, &info.digest).await? else {
            continue;
        };
        let Some(doc) = read.document.as_ref() else {
            continue;
        };
        if read.signature(key) != SignatureCheck::Verified
            || read.subject.as_ref() != Some(digest)
            || &doc.digest != digest
        {
            continue;
        }
        // The signed document, not the hints, says what it decided.
        return Ok(Some(VerdictInfo {
            digest: info.digest,
            decision: doc.decision.clone(),
            created: doc.created,
            policy_hash: doc.policy_hash.clone(),
            top_findings: doc.top_findings(TOP_FINDINGS),
        }));
    }
    Ok(None)
}

/// Read a verdict document by its artifact manifest digest (for display: unverified).
pub async fn read_verdict(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
) -> Result<Option<VerdictDocument>, RegistryError> {
    Ok(read_verdict_artifact(reg, repo, artifact)
        .await?
        .and_then(|r| r.document))
}

/// What a record must say to vouch for `repository:tag` at `digest` in live: the quarantine
/// repository is the one of the image that maps to this live repository (the live prefix
/// replaced by the quarantine prefix), declared or not.
pub fn binding_for(
    desired: &DesiredState,
    repository: &str,
    tag: &str,
    digest: &Digest,
) -> Binding {
    let path = if desired.live.prefix.is_empty() {
        repository
    } else {
        repository
            .strip_prefix(&format!("{}/", desired.live.prefix))
            .unwrap_or(repository)
    };
    Binding {
        live_registry: desired.live.registry.clone(),
        live_repository: repository.to_string(),
        tag: tag.to_string(),
        digest: digest.clone(),
        quarantine_registry: desired.quarantine.registry.clone(),
        quarantine_repository: desired.quarantine.repository(path),
        max_verdict_age: desired.gate.max_verdict_age,
        public_key: desired.signing.public_key.clone(),
    }
}

/// What the binding rule found for one live tag.
#[derive(Clone, Debug)]
pub enum RecordStatus {
    /// This record vouches for the tag; the verdict it names, as read.
    Valid {
        record: Box<PromotionRecord>,
        verdict: Box<ReadVerdict>,
        /// Whether the record carries signatures (verified ones when a public_key is set).
        signed: bool,
    },
    Missing,
    /// Why the newest record does not vouch for the tag.
    Invalid(binding::RecordProblem),
}

impl RecordStatus {
    /// The plain-data form the planner takes.
    pub fn check(&self) -> RecordCheck {
        match self {
            RecordStatus::Valid { .. } => RecordCheck::Valid,
            RecordStatus::Missing => RecordCheck::Missing,
            RecordStatus::Invalid(p) => RecordCheck::Invalid {
                reason: p.to_string(),
            },
        }
    }
}

/// Read the promotion records of `want.digest` in the live repository, newest first (by their
/// listed creation time), until one vouches for the tag by the binding rule. `quarantined`:
/// Some(true) when the caller already knows the digest is in the quarantine repository.
pub async fn record_status(
    live: &Registry,
    quarantine: &Registry,
    want: &Binding,
    quarantined: Option<bool>,
) -> Result<RecordStatus, RegistryError> {
    let mut listed: Vec<_> = live
        .referrers(&want.live_repository, &want.digest, None)
        .await?
        .into_iter()
        .filter(records::is_listed_as::<PromotionRecord>)
        .collect();
    listed.sort_by(|a, b| {
        let created =
            |r: &crate::registry::Referrer| r.annotations.get(records::ANN_CREATED).cloned();
        created(b).cmp(&created(a)).then(a.digest.cmp(&b.digest))
    });
    let mut first_problem = None;
    let mut quarantined = quarantined;
    for r in listed.iter().take(MAX_RECORDS) {
        let Some(rec) =
            read_artifact::<PromotionRecord>(live, &want.live_repository, &r.digest, MAX_RECORD)
                .await?
        else {
            // Listed but gone (deleted): it vouches for nothing.
            continue;
        };
        let problem = match binding::check_claims(&rec, want) {
            Err(p) => p,
            Ok(doc) => {
                let verdict_digest = doc.verdict.clone();
                let present = match quarantined {
                    Some(p) => p,
                    None => {
                        let p = quarantine
                            .head_manifest(&want.quarantine_repository, &want.digest.to_string())
                            .await?
                            .is_some();
                        quarantined = Some(p);
                        p
                    }
                };
                let verdict = if present {
                    read_verdict_artifact(quarantine, &want.quarantine_repository, &verdict_digest)
                        .await?
                } else {
                    None
                };
                match binding::check(&rec, present, verdict.as_ref(), want) {
                    Ok(doc) => {
                        let record = Box::new(doc.clone());
                        let verdict =
                            Box::new(verdict.expect("a record that binds names a verdict read"));
                        let signed = rec
                            .envelope
                            .as_ref()
                            .is_some_and(|e| !e.signatures.is_empty());
                        return Ok(RecordStatus::Valid {
                            record,
                            verdict,
                            signed,
                        });
                    }
                    Err(p) => p,
                }
            }
        };
        first_problem.get_or_insert(problem);
    }
    Ok(match first_problem {
        Some(p) => RecordStatus::Invalid(p),
        None => RecordStatus::Missing,
    })
}

/// Read an artifact (manifest by digest, then its one layer as a JSON document), verified
/// against its digests. None when the manifest is gone; `document` None when it is not an
/// artifact with a readable document of type `D`.
async fn read_artifact<D: records::Document>(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
    max: u64,
) -> Result<Option<ReadArtifact<D>>, RegistryError> {
    let m = match reg.get_manifest(repo, &artifact.to_string()).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        // A manifest that is not one (the registry holds whatever was pushed): no document.
        Err(RegistryError::Invalid { .. }) => {
            return Ok(Some(ReadArtifact {
                artifact: artifact.clone(),
                artifact_type: None,
                subject: None,
                document: None,
                envelope: None,
            }));
        }
        Err(e) => return Err(e),
    };
    let (artifact_type, subject, layer) = match m.parse() {
        Ok(Parsed::Image {
            artifact_type,
            subject,
            layers,
            ..
        }) => (
            artifact_type,
            subject.map(|s| s.digest),
            (layers.len() == 1).then(|| layers[0].clone()),
        ),
        _ => (None, None, None),
    };
    let decoded = match layer {
        Some(l) if l.size <= max => match reg.get_blob_bytes(repo, &l.digest, max).await {
            Ok(bytes) => records::decode::<D>(artifact_type.as_deref(), &l.media_type, &bytes),
            Err(RegistryError::Invalid { .. } | RegistryError::DigestMismatch { .. }) => {
                records::Decoded {
                    document: None,
                    envelope: None,
                }
            }
            Err(e) => return Err(e),
        },
        _ => records::Decoded {
            document: None,
            envelope: None,
        },
    };
    Ok(Some(ReadArtifact {
        artifact: m.digest,
        artifact_type,
        subject,
        document: decoded.document,
        envelope: decoded.envelope,
    }))
}

/// Read a verdict artifact (its manifest's facts and its document).
pub async fn read_verdict_artifact(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
) -> Result<Option<ReadVerdict>, RegistryError> {
    read_artifact(reg, repo, artifact, MAX_DOCUMENT).await
}

/// A promotion record artifact (its manifest's facts and its document).
pub async fn read_record(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
) -> Result<Option<ReadRecord>, RegistryError> {
    read_artifact(reg, repo, artifact, MAX_RECORD).await
}

/// The newest verdict artifact for `digest` in `repo` that is not pending (by the listed
/// creation time); its document is what counts (`read_verdict_artifact`). Pending verdicts (a
/// scanner has not reported yet) neither vouch nor accuse: the last decided one stands.
pub async fn newest_decided_verdict_digest(
    reg: &Registry,
    repo: &str,
    digest: &Digest,
) -> Result<Option<Digest>, RegistryError> {
    let referrers = reg.referrers(repo, digest, None).await?;
    let infos: Vec<VerdictInfo> = referrers
        .iter()
        .filter(|r| records::is_listed_as::<VerdictDocument>(r))
        .filter_map(|r| records::verdict_from_annotations(&r.digest, &r.annotations))
        .filter(|v| v.decision != Decision::Pending)
        .collect();
    Ok(records::newest(infos).map(|v| v.digest))
}

/// Every tag (with its digest) in repositories under `prefix` of a registry, sorted.
/// Referrers tag-schema indexes are records, not images, and are left out — but only exact
/// ones (`sha256-<64 hex>` holding an index of artifacts about that digest, see
/// [`is_referrers_index`]); any other tag, whatever its name, is a tag a cluster can pull.
/// Cosign tags (`sha256-<hex>.sig/.att/.sbom`, [`cosign::signature_subject`]) are left out
/// only when their subject digest is present in the same repository and they hold no
/// filesystem layer ([`cosign::is_signature_manifest`]): they travel with that image.
pub async fn walk_tags(reg: &Arc<Registry>, prefix: &str) -> Result<Vec<LiveTag>, Error> {
    let wanted = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let repos: Vec<String> = reg
        .catalog()
        .await?
        .into_iter()
        .filter(|r| r.starts_with(&wanted))
        .collect();
    let mut pairs = Vec::new();
    for repo in repos {
        for tag in reg.list_tags(&repo).await? {
            pairs.push((repo.clone(), tag));
        }
    }
    let mut tags: Vec<LiveTag> = stream::iter(pairs)
        .map(|(repo, tag)| async move {
            let Some(d) = reg.head_manifest(&repo, &tag).await? else {
                return Ok::<_, Error>(None);
            };
            if let Some(subject) = binding::referrers_tag_subject(&tag)
                && crate::model::media::is_index(&d.media_type)
                && is_referrers_index(reg, &repo, &d.digest, &subject).await?
            {
                return Ok(None);
            }
            if let Some(subject) = cosign::signature_subject(&tag)
                && reg
                    .head_manifest(&repo, &subject.to_string())
                    .await?
                    .is_some()
                && reg
                    .get_manifest(&repo, &d.digest.to_string())
                    .await?
                    .is_some_and(|m| cosign::is_signature_manifest(&m))
            {
                return Ok(None);
            }
            Ok(Some(LiveTag {
                repository: repo,
                tag,
                digest: d.digest,
            }))
        })
        .buffer_unordered(IMAGE_CONCURRENCY)
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await?;
    tags.sort();
    Ok(tags)
}

/// Whether the manifest `seen` — what a `sha256-<hex of subject>` tag pointed to when it was
/// listed, read by digest so the answer is about exactly that content — is a referrers
/// tag-schema index of `subject`: an index whose every listed manifest that exists is an
/// artifact about `subject` that no runtime runs (entries whose manifest is gone are
/// harmless: nothing can be pulled through them). Only called for `sha256-<hex>` tags that
/// HEAD says are indexes, so ordinary tags cost no extra request.
pub async fn is_referrers_index(
    reg: &Registry,
    repo: &str,
    seen: &Digest,
    subject: &Digest,
) -> Result<bool, RegistryError> {
    let index = match reg.get_manifest(repo, &seen.to_string()).await {
        Ok(Some(m)) => m,
        Ok(None) | Err(RegistryError::Invalid { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let Ok(Parsed::Index { manifests, .. }) = index.parse() else {
        return Ok(false);
    };
    for entry in manifests {
        if !media::is_manifest(&entry.media_type) {
            return Ok(false);
        }
        match reg.get_manifest(repo, &entry.digest.to_string()).await {
            Ok(None) => continue,
            Ok(Some(m)) if binding::is_artifact_referrer_of(&m, subject) => continue,
            Ok(Some(_)) | Err(RegistryError::Invalid { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn desired(live_prefix: &str) -> DesiredState {
        let src = format!(
            "[registries.acr]\nendpoint = \"https://acr.example.io\"\n\
             [quarantine]\nregistry = \"acr\"\nprefix = \"q\"\n\
             [live]\nregistry = \"acr\"\nprefix = \"{live_prefix}\"\n\
             [[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\n"
        );
        crate::config::parse(
            &src,
            Path::new("airlock.toml"),
            time::macros::date!(2026 - 11 - 27),
        )
        .unwrap()
    }

    #[test]
    fn a_registry_known_down_stops_the_images_that_need_it() {
        let ds = desired("live");
        let down = Mutex::new(BTreeMap::new());
        let spec = ds.images[0].clone();
        assert_eq!(known_down(&ds, &spec, &down), None);
        down.lock()
            .unwrap()
            .insert("docker.io".to_string(), "unreachable: x".to_string());
        assert_eq!(
            known_down(&ds, &spec, &down),
            Some(("docker.io".to_string(), "unreachable: x".to_string()))
        );
        // A pinned image may not need its source at all: it is still tried.
        let mut pinned = spec.clone();
        pinned.pin = Some(Digest::of(b"image"));
        assert_eq!(known_down(&ds, &pinned, &down), None);
        // Quarantine and live are always needed.
        down.lock()
            .unwrap()
            .insert("acr".to_string(), "answers 503 UNAVAILABLE".to_string());
        assert_eq!(
            known_down(&ds, &pinned, &down).map(|(r, _)| r).as_deref(),
            Some("acr")
        );
    }

    #[test]
    fn a_live_repository_binds_to_the_quarantine_repository_of_the_same_path() {
        let d = Digest::of(b"image");
        let ds = desired("live");
        let b = binding_for(&ds, "live/library/busybox", "1.33.0", &d);
        assert_eq!(b.quarantine_repository, "q/library/busybox");
        assert_eq!(b.live_ref(), "acr/live/library/busybox:1.33.0");
        assert_eq!(b.from_ref(), format!("acr/q/library/busybox@{d}"));
        // The declared image's own locations give the same binding.
        let spec = &ds.images[0];
        assert_eq!(ds.live.repository(&spec.path), b.live_repository);
        assert_eq!(
            ds.quarantine.repository(&spec.path),
            b.quarantine_repository
        );
        // An empty live prefix: the whole repository is the path.
        let b = binding_for(&desired(""), "team/app", "1", &d);
        assert_eq!(b.quarantine_repository, "q/team/app");
    }
}
