//! `transfer = "acr-import"` on the target registry: imports and promotions run as ARM
//! `importImage` calls (src/azure/arm.rs) and no image bytes pass through airlock. The source
//! is another ACR by resource id when its entry names one (quarantine → live in one ACR uses
//! the registry's own id), else a registry by host with its credentials when it has any.
//! Mode is Force only when the plan replaces a tag. The tag is read back afterwards: the
//! step is done only when the target holds the planned digest. Verdicts and promotion
//! records are still pushed through the registry API by the caller.

use crate::plan::Action;
use crate::registry::RegistryError;

use super::steps::Context;

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
    use crate::azure::arm::{Arm, Import, ImportSource};
    use crate::registry::credentials::{self, Credential, Secret};

    let target = ctx.registries.spec(&a.target.registry)?;
    let arm_target = target.arm.as_ref().ok_or_else(|| RegistryError::Invalid {
        registry: target.key.clone(),
        what: a.id.clone(),
        message: "acr-import needs subscription and resource_group on the registry".into(),
    })?;
    let digest = a.source_digest.clone().unwrap_or_else(|| a.digest.clone());
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
            let credentials =
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
    Arm::shared()?
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
