//! The registry reads behind a [`LiveSet`]: HEAD each declared image's live tag; for an image
//! not in live, HEAD its quarantine tag and read the newest verdict to say why. Never reads
//! upstream registries.

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::{LiveImage, LiveSet, LiveState, Missing, check_live_host};
use crate::config::{DesiredState, Endpoint, ImageSpec};
use crate::error::Error;
use crate::observe;
use crate::observed::Decision;
use crate::registry::Registries;

const CONCURRENCY: usize = 16;

/// The host clusters pull live images from: `--live-host` when given, else the live
/// registry's host. A layout directory has none, so it needs the flag.
pub fn live_host(
    desired: &DesiredState,
    registries: &Registries,
    flag: Option<&str>,
) -> Result<String, Error> {
    if let Some(h) = flag {
        return check_live_host(h).map_err(Error::Usage);
    }
    let spec = desired.registry(&desired.live.registry);
    if let Endpoint::Layout(dir) = &spec.endpoint {
        return Err(Error::Usage(format!(
            "the live registry `{}` is an OCI image-layout directory ({}): clusters cannot pull from it by name. Pass --live-host <host[:port]> naming the registry that serves this content",
            spec.key,
            dir.display()
        )));
    }
    Ok(registries.get(&desired.live.registry)?.host())
}

/// Read the live set of every declared image.
pub async fn read(
    desired: &DesiredState,
    registries: &Registries,
    host: String,
) -> Result<LiveSet, Error> {
    let images: Vec<LiveImage> = stream::iter(desired.images.iter())
        .map(|spec| read_image(desired, registries, spec))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(LiveSet {
        host,
        prefix: desired.live.prefix.clone(),
        images,
    })
}

async fn read_image(
    desired: &DesiredState,
    registries: &Registries,
    spec: &ImageSpec,
) -> Result<LiveImage, Error> {
    let live = registries.get(&desired.live.registry)?;
    let repository = desired.live.repository(&spec.path);
    let state = match live.head_manifest(&repository, &spec.tag).await? {
        Some(d) => LiveState::Live(d.digest),
        None => LiveState::Missing(why_missing(desired, registries, spec).await?),
    };
    Ok(LiveImage {
        source: spec.source.clone(),
        tag: spec.tag.clone(),
        repository,
        state,
    })
}

async fn why_missing(
    desired: &DesiredState,
    registries: &Registries,
    spec: &ImageSpec,
) -> Result<Missing, Error> {
    let q = registries.get(&desired.quarantine.registry)?;
    let repo = desired.quarantine.repository(&spec.path);
    let Some(head) = q.head_manifest(&repo, &spec.tag).await? else {
        return Ok(Missing::NotImported);
    };
    Ok(
        match observe::find_verdict(
            &q,
            &repo,
            &head.digest,
            desired.signing.public_key.as_deref(),
        )
        .await?
        {
            None => Missing::NotScanned,
            Some(v) => match v.decision {
                Decision::Fail => Missing::Blocked {
                    findings: v.top_findings,
                    other_policy: v.policy_hash != desired.policy_hash(),
                },
                Decision::Pending => Missing::Pending,
                Decision::Pass => Missing::NotPromoted,
            },
        },
    )
}
