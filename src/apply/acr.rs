//! `transfer = "acr-import"` on the target registry: imports and promotions run as ARM
//! `importImage` calls (src/azure/arm.rs) and no image bytes pass through airlock. The source
//! is another ACR by resource id when its entry names one (quarantine → live in one ACR uses
//! the registry's own id), else a registry by host with its credentials when it has any.
//! Mode is Force only when the plan replaces a tag. The tag is read back afterwards: the
//! step is done only when the target holds the planned digest. Verdicts and promotion
//! records are still pushed through the registry API by the caller.

use crate::config::{AuthSpec, DesiredState, Transfer};
use crate::error::Error;
use crate::model::RawManifest;
use crate::model::manifest::Parsed;
use crate::observed::ObservedState;
use crate::plan::Action;
use crate::registry::{Registries, RegistryError};

use super::steps::Context;

/// ARM importImage copies at most this many manifests of one image (ACR's documented limit).
pub const MAX_IMPORT_MANIFESTS: usize = 50;
/// ARM importImage copies layers of at most this size from registries outside Azure.
pub const MAX_PUBLIC_LAYER: u64 = 2 << 30;

/// Whether a registry is an Azure Container Registry airlock knows as such.
fn is_acr(spec: &crate::config::RegistrySpec) -> bool {
    spec.arm.is_some() || spec.auth == AuthSpec::Azure
}

/// What ACR's import limits say about one source image (pure): the manifest being imported
/// and, for an index, its child manifests. None when importImage can copy it.
pub fn import_limit_error(
    image: &str,
    top: &RawManifest,
    children: &[RawManifest],
    from_outside_azure: bool,
) -> Option<String> {
    let fix = "use transfer = \"stream\" on the quarantine registry (airlock copies the image \
               itself, and can then also select a platform subset with platforms = [...])";
    if let Ok(Parsed::Index { manifests, .. }) = top.parse()
        && manifests.len() > MAX_IMPORT_MANIFESTS
    {
        return Some(format!(
            "{image} is an index of {} manifests; ARM importImage copies at most \
             {MAX_IMPORT_MANIFESTS} manifests per image: {fix}",
            manifests.len()
        ));
    }
    if !from_outside_azure {
        return None;
    }
    for m in std::iter::once(top).chain(children) {
        if let Ok(Parsed::Image { layers, .. }) = m.parse()
            && let Some(big) = layers.iter().find(|l| l.size > MAX_PUBLIC_LAYER)
        {
            return Some(format!(
                "{image} has a layer of {} ({}); ARM importImage copies layers of at most 2 GiB \
                 from registries outside Azure: {fix}",
                crate::model::size::format_size(big.size),
                big.digest.short()
            ));
        }
    }
    None
}

/// Plan-time check of ACR's import limits (before anything is submitted to ARM): every image
/// that an `acr-import` quarantine registry would import. Reads the source manifests (an
/// index's children only when the layer limit applies). Every image over a limit is named.
pub async fn check_import_limits(
    desired: &DesiredState,
    registries: &Registries,
    observed: &ObservedState,
) -> Result<(), Error> {
    let quarantine = registries.spec(&desired.quarantine.registry)?;
    if quarantine.transfer != Transfer::AcrImport {
        return Ok(());
    }
    let mut problems = Vec::new();
    for spec in &desired.images {
        let Some(obs) = observed.images.get(&spec.key()) else {
            continue;
        };
        if obs.quarantine.as_ref() == Some(&obs.source.digest) {
            continue; // nothing to import
        }
        let src_spec = registries.spec(&spec.source_registry)?;
        let src = registries.get(&spec.source_registry)?;
        let digest = obs.source.upstream_digest.to_string();
        let Some(top) = src.get_manifest(&spec.source.path, &digest).await? else {
            continue; // observe already said what is missing
        };
        let outside = !is_acr(&src_spec);
        let mut children = Vec::new();
        if outside
            && let Ok(Parsed::Index { manifests, .. }) = top.parse()
            && manifests.len() <= MAX_IMPORT_MANIFESTS
        {
            for m in manifests {
                if let Some(c) = src
                    .get_manifest(&spec.source.path, &m.digest.to_string())
                    .await?
                {
                    children.push(c);
                }
            }
        }
        if let Some(p) = import_limit_error(&spec.source.to_string(), &top, &children, outside) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "registry `{}` uses transfer = \"acr-import\", and ACR cannot import {}:\n  - {}",
        quarantine.key,
        if problems.len() == 1 {
            "this image"
        } else {
            "these images"
        },
        problems.join("\n  - ")
    )))
}

/// Whether the action's target registry imports server-side.
pub fn uses_acr_import(ctx: &Context<'_>, a: &Action) -> bool {
    ctx.registries
        .spec(&a.target.registry)
        .is_ok_and(|s| s.transfer == crate::config::Transfer::AcrImport)
}

#[cfg(not(feature = "azure"))]
pub async fn import_image(
    _ctx: &Context<'_>,
    a: &Action,
    _source_repo: &str,
    _source_registry: &str,
    _tag: &str,
) -> Result<String, RegistryError> {
    Err(RegistryError::Invalid {
        registry: a.target.registry.clone(),
        what: format!("{} (transfer = \"acr-import\")", a.id),
        message: "this airlock was built without the `azure` feature: use transfer = \"stream\""
            .into(),
    })
}

/// Import `source_registry/source_repo@<digest>` into the action's target tag; the detail
/// line for the report.
#[cfg(feature = "azure")]
pub async fn import_image(
    ctx: &Context<'_>,
    a: &Action,
    source_registry: &str,
    source_repo: &str,
    tag: &str,
) -> Result<String, RegistryError> {
    use crate::azure::arm::{Import, ImportSource};
    use crate::registry::credentials::{self, Credential, Secret};

    let target = ctx.registries.spec(&a.target.registry)?;
    let arm_target = target.arm.as_ref().ok_or_else(|| RegistryError::Invalid {
        registry: target.key.clone(),
        what: a.id.clone(),
        message: "acr-import needs subscription and resource_group on the registry".into(),
    })?;
    let digest = a.source().map_or(&a.digest, |(_, read)| read);
    let image = format!("{source_repo}@{digest}");
    let src_spec = ctx.registries.spec(source_registry)?;
    let source = match &src_spec.arm {
        Some(arm) => ImportSource::Resource {
            id: arm.id(),
            image,
        },
        None => {
            let src = ctx.registries.get(source_registry)?;
            let host = src.host();
            let credentials = if src_spec.auth == AuthSpec::Azure {
                // An ACR in another tenant (no subscription here): ARM cannot reach it with
                // the target's identity, so the import carries an ACR refresh token for it.
                let endpoint = match &src_spec.endpoint {
                    crate::config::Endpoint::Url(u) => u.clone(),
                    crate::config::Endpoint::Layout(_) => format!("https://{host}"),
                };
                let token = crate::azure::acr::refresh_token_for(
                    &ctx.azure,
                    &src_spec.key,
                    &endpoint,
                    &host,
                )
                .await
                .map_err(|e| RegistryError::Credentials {
                    registry: src_spec.key.clone(),
                    message: format!(
                        "registry `{}` is an Azure registry without subscription (another \
                             tenant?), so importImage needs credentials for it, and none could be \
                             obtained: {e}. Give the identity AcrPull there (or set \
                             AIRLOCK_ACR_REFRESH_TOKEN), add subscription and resource_group if \
                             it is in the same tenant, or use transfer = \"stream\"",
                        src_spec.key
                    ),
                })?;
                Some(("00000000-0000-0000-0000-000000000000".to_string(), token))
            } else {
                match credentials::resolve(&src_spec.key, &host, &src_spec.auth).await? {
                    Some(Credential::UsernamePassword { username, password }) => {
                        Some((username, password))
                    }
                    // ACR accepts a refresh token as the password of the null GUID user.
                    Some(Credential::IdentityToken(t)) => Some((
                        "00000000-0000-0000-0000-000000000000".to_string(),
                        Secret::new(t.expose()),
                    )),
                    None => None,
                }
            };
            ImportSource::Registry {
                uri: host,
                image,
                credentials,
            }
        }
    };
    let import = Import {
        source,
        target_tags: vec![format!("{}:{tag}", a.target.repository)],
        force: a.replaces.is_some(),
    };
    ctx.azure
        .arm()?
        .import_image(&target.key, arm_target, &import, arm_target.import_timeout)
        .await?;
    let dst = ctx.registries.get(&a.target.registry)?;
    let now = dst
        .head_manifest(&a.target.repository, tag)
        .await?
        .map(|d| d.digest);
    if now.as_ref() != Some(&a.digest) {
        return Err(RegistryError::Content {
            what: a.target.to_string(),
            message: format!(
                "importImage succeeded but the tag holds {} instead of {}",
                now.map(|d| d.short()).unwrap_or_else(|| "nothing".into()),
                a.digest.short()
            ),
        });
    }
    Ok(format!(
        "{} → {} (server-side ARM importImage{}, no bytes through airlock)",
        a.digest.short(),
        a.target,
        if import.force { ", Force" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, media};

    fn index(n: usize) -> RawManifest {
        let manifests: Vec<_> = (0..n)
            .map(|i| {
                serde_json::json!({"mediaType": media::OCI_MANIFEST,
                    "digest": Digest::of(format!("m{i}").as_bytes()).to_string(), "size": 100,
                    "platform": {"os": "linux", "architecture": format!("arch{i}")}})
            })
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
                                      "manifests": manifests});
        RawManifest::new(serde_json::to_vec(&body).unwrap(), Some(media::OCI_INDEX)).unwrap()
    }

    fn image(layer: u64) -> RawManifest {
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(b"c").to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": Digest::of(b"l").to_string(), "size": layer}]});
        RawManifest::new(
            serde_json::to_vec(&body).unwrap(),
            Some(media::OCI_MANIFEST),
        )
        .unwrap()
    }

    #[test]
    fn import_limits_fifty_manifests_and_two_gib_layers_from_outside_azure() {
        assert_eq!(import_limit_error("x", &index(50), &[], true), None);
        let e = import_limit_error("docker.io/x:1", &index(51), &[], false).unwrap();
        assert!(
            e.contains("51 manifests") && e.contains("at most 50"),
            "{e}"
        );
        assert!(e.contains("transfer = \"stream\""), "{e}");
        assert_eq!(
            import_limit_error("x", &image(MAX_PUBLIC_LAYER), &[], true),
            None
        );
        let e = import_limit_error("x", &image(MAX_PUBLIC_LAYER + 1), &[], true).unwrap();
        assert!(e.contains("2 GiB"), "{e}");
        // From another ACR the layer limit does not apply; in an index's child it does.
        assert_eq!(
            import_limit_error("x", &image(MAX_PUBLIC_LAYER + 1), &[], false),
            None
        );
        assert!(import_limit_error("x", &index(2), &[image(MAX_PUBLIC_LAYER + 1)], true).is_some());
    }
}
