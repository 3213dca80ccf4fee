//! What travels with an image: its referrers (signatures, SBOMs, attestations; not airlock's
//! own records, which the gate makes again) and its cosign signature tags. The tags
//! `sha256-<hex>.sig`, `.att` and `.sbom` (`crate::model::cosign` defines them) are read by
//! tag from the source repository and, when present, copied with their content to the target
//! under the same tag. Looked up by tag (GET, no tag listing). airlock's own records are
//! referrers, never such tags. The four lookups (referrers and three tags) are read at once;
//! the writes follow one after the other.

use futures_util::future::{try_join, try_join_all};

use super::transfer::{Copier, Repo};
use crate::model::{Digest, cosign};
use crate::records;
use crate::registry::RegistryError;

/// Copy the referrers and cosign tags of `upstream` from `src` to `dst`; returns how many
/// were written. `target` is the digest written to `dst`: when it differs (a rebuilt platform
/// subset has a new digest) the source's referrers and signatures are about another digest
/// and nothing is copied.
pub async fn copy_attached(
    copier: &Copier<'_>,
    src: Repo<'_>,
    dst: Repo<'_>,
    upstream: &Digest,
    target: &Digest,
) -> Result<usize, RegistryError> {
    if upstream != target {
        return Ok(0);
    }
    let tags = cosign::signature_tags(upstream);
    let (listed, tagged) = try_join(
        src.registry.referrers(src.name, upstream, None),
        try_join_all(tags.iter().map(|t| src.registry.get_manifest(src.name, t))),
    )
    .await?;
    let mut n = 0;
    // Referrers other than airlock's own records, listed at `dst` as referrers of `target`.
    for r in listed {
        // airlock's own verdicts and records (0.1's artifact types, or DSSE envelopes listed
        // with an airlock predicate): the gate makes its own; a promote never carries the
        // quarantine verdicts into live.
        if r.artifact_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/vnd.airlock."))
            || records::is_listed_as::<records::VerdictDocument>(&r)
            || records::is_listed_as::<records::PromotionRecord>(&r)
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
    // Cosign tags, unless `dst` has them already.
    for (tag, m) in tags.iter().zip(tagged) {
        let Some(m) = m else {
            continue;
        };
        n += 1;
        let there = dst.registry.head_manifest(dst.name, tag).await?;
        if there.is_some_and(|d| d.digest == m.digest) {
            continue;
        }
        copier.copy_image(src, dst, &m, tag).await?;
    }
    Ok(n)
}
