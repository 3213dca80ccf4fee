//! Cosign signature tags travel with the image: `sha256-<hex>.sig`, `.att` and `.sbom`
//! (`crate::model::cosign` defines them) are read by tag from the source repository and,
//! when present, copied with their content to the target under the same tag. Looked up by
//! tag (GET, no tag listing). airlock's own records are referrers, never such tags.

use super::transfer::{Copier, Repo};
use crate::model::{Digest, cosign};
use crate::registry::RegistryError;

/// Copy the cosign tags of `upstream` from `src` to `dst`; returns how many the source has
/// (each is in `dst` afterwards, copied now or already there). `target` is the digest
/// written to `dst`: when it differs (a rebuilt platform subset) the source's signatures
/// are about another digest and nothing is copied.
pub async fn copy_signature_tags(
    copier: &Copier<'_>,
    src: Repo<'_>,
    dst: Repo<'_>,
    upstream: &Digest,
    target: &Digest,
) -> Result<usize, RegistryError> {
    if upstream != target {
        return Ok(0);
    }
    let mut n = 0;
    for tag in cosign::signature_tags(upstream) {
        let Some(m) = src.registry.get_manifest(src.name, &tag).await? else {
            continue;
        };
        n += 1;
        let there = dst.registry.head_manifest(dst.name, &tag).await?;
        if there.is_some_and(|d| d.digest == m.digest) {
            continue;
        }
        copier.copy_image(src, dst, &m, &tag).await?;
    }
    Ok(n)
}
