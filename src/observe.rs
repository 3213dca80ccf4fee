//! Observe: the reads the planner needs, done concurrently with no redundant requests.
//! Per image: HEAD the source tag (HEAD does not count against Docker Hub limits), HEAD the
//! quarantine and live tags, list the verdicts that refer to the source digest; GET the source
//! manifest only when a platform subset must be computed or an import will be planned (for
//! sizes). The live catalog is walked only when prune needs it (`audit` walks it too); without
//! prune, undeclared live tags are reported by `audit`, not by `plan`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::config::{DesiredState, ImageSpec};
use crate::error::Error;
use crate::model::manifest::{Parsed, subset_index};
use crate::model::{Digest, RawManifest, media};
use crate::observed::{Decision, LiveTag, ObservedImage, ObservedState, SourceInfo, VerdictInfo};
use crate::records::{self, VerdictDocument};
use crate::registry::{Registries, Registry, RegistryError};

/// How many images are observed at once (each registry also bounds its own requests).
const IMAGE_CONCURRENCY: usize = 64;
/// How many of the worst findings a blocked image shows.
pub const TOP_FINDINGS: usize = 5;
/// Verdict documents larger than this are not read.
const MAX_DOCUMENT: u64 = 16 << 20;

/// Observe every declared image (and, with prune, every live tag).
pub async fn observe(
    desired: &DesiredState,
    registries: &Registries,
) -> Result<ObservedState, Error> {
    let images: Vec<(String, ObservedImage)> = stream::iter(desired.images.iter())
        .map(|spec| async move {
            let obs = observe_image(desired, registries, spec).await?;
            Ok::<_, Error>((spec.key(), obs))
        })
        .buffer_unordered(IMAGE_CONCURRENCY)
        .try_collect()
        .await?;
    let live_tags = if desired.prune {
        let live = registries.get(&desired.live.registry)?;
        Some(walk_tags(&live, &desired.live.prefix).await?)
    } else {
        None
    };
    Ok(ObservedState {
        images: images.into_iter().collect::<BTreeMap<_, _>>(),
        live_tags,
    })
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

    let verdict = find_verdict(&q_reg, &q_repo, &digest).await?;
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
/// its worst findings are read from the document.
pub async fn find_verdict(
    reg: &Arc<Registry>,
    repo: &str,
    digest: &Digest,
) -> Result<Option<VerdictInfo>, RegistryError> {
    let referrers = reg
        .referrers(repo, digest, Some(media::VERDICT_ARTIFACT))
        .await?;
    let infos: Vec<VerdictInfo> = referrers
        .iter()
        .filter_map(|r| records::verdict_from_annotations(&r.digest, &r.annotations))
        .collect();
    let Some(mut newest) = records::newest(infos) else {
        return Ok(None);
    };
    if newest.decision == Decision::Fail
        && let Some(doc) = read_verdict(reg, repo, &newest.digest).await?
    {
        newest.top_findings = doc.top_findings(TOP_FINDINGS);
    }
    Ok(Some(newest))
}

/// Read a verdict document by its artifact manifest digest.
pub async fn read_verdict(
    reg: &Registry,
    repo: &str,
    artifact: &Digest,
) -> Result<Option<VerdictDocument>, RegistryError> {
    let Some(m) = reg.get_manifest(repo, &artifact.to_string()).await? else {
        return Ok(None);
    };
    let Ok(Parsed::Image { layers, .. }) = m.parse() else {
        return Ok(None);
    };
    let Some(layer) = layers.first() else {
        return Ok(None);
    };
    let bytes = reg
        .get_blob_bytes(repo, &layer.digest, MAX_DOCUMENT)
        .await?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Every tag (with its digest) in repositories under `prefix` of a registry, sorted.
/// Referrers-schema tags (`sha256-…`) are records, not images, and are left out.
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
            if !tag.starts_with("sha256-") {
                pairs.push((repo.clone(), tag));
            }
        }
    }
    let mut tags: Vec<LiveTag> = stream::iter(pairs)
        .map(|(repo, tag)| async move {
            let d = reg.head_manifest(&repo, &tag).await?;
            Ok::<_, Error>(d.map(|d| LiveTag {
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
