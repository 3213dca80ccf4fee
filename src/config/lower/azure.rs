//! Checks of what uses Azure: the one Azure `cloud`, the Azure-only keys (rejected in a
//! build without the `azure` feature), and what Defender and ARM importImage need from the
//! registry entries they use.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::Lowerer;
use crate::config::desired::*;
use crate::config::schema::RawConfig;

/// `cloud` on Azure registry entries (`auth = "azure"` or with a subscription): one of
/// public, china, usgov, the same on every entry that sets it (airlock runs as one Azure
/// identity, in one cloud).
pub(super) fn lower_cloud(l: &mut Lowerer, raw: &RawConfig) -> AzureCloud {
    let mut chosen: Option<(AzureCloud, String)> = None;
    for (name, r) in &raw.registries {
        let r = r.get_ref();
        let Some(c) = &r.cloud else {
            continue;
        };
        let Some(cloud) = AzureCloud::parse(c.get_ref()) else {
            l.err(
                c.span(),
                format!("unknown Azure cloud `{}`", c.get_ref()),
                Some(&format!("use one of: {}", AzureCloud::NAMES)),
            );
            continue;
        };
        let azure =
            r.auth.as_ref().is_some_and(|a| a.get_ref() == "azure") || r.subscription.is_some();
        if !azure {
            l.err(
                c.span(),
                format!(
                    "`cloud` is only used by Azure registries, and `{}` is not one",
                    name.get_ref()
                ),
                Some("add auth = \"azure\" (or subscription and resource_group), or remove cloud"),
            );
            continue;
        }
        match &chosen {
            Some((first, first_name)) if *first != cloud => l.err(
                c.span(),
                format!(
                    "registry `{}` is in the {} cloud but `{first_name}` is in the {} cloud",
                    name.get_ref(),
                    cloud.name(),
                    first.name()
                ),
                Some("airlock runs as one Azure identity in one cloud: use the same cloud on every Azure registry"),
            ),
            Some(_) => {}
            None => chosen = Some((cloud, name.get_ref().clone())),
        }
    }
    chosen.map(|(c, _)| c).unwrap_or_default()
}

/// The values that use Azure (src/azure), in file order: `auth = "azure"`,
/// `transfer = "acr-import"`, `format = "defender"`, and the Azure-only registry keys
/// (`subscription`, `resource_group`, `resource_name`, `import_timeout`, `cloud`). A build
/// without the `azure` feature rejects each at its place.
pub(in crate::config) fn azure_keys(raw: &RawConfig) -> Vec<(Range<usize>, String)> {
    let mut out: Vec<(Range<usize>, String)> = Vec::new();
    for (key, reg) in &raw.registries {
        let r = reg.get_ref();
        let name = key.get_ref();
        let mut push = |v: &Spanned<String>, what: String| out.push((v.span(), what));
        if let Some(a) = r.auth.as_ref().filter(|a| a.get_ref() == "azure") {
            push(a, format!("registry `{name}`: auth = \"azure\""));
        }
        if let Some(t) = r.transfer.as_ref().filter(|t| t.get_ref() == "acr-import") {
            push(t, format!("registry `{name}`: transfer = \"acr-import\""));
        }
        for (field, v) in [
            ("subscription", &r.subscription),
            ("resource_group", &r.resource_group),
            ("resource_name", &r.resource_name),
            ("import_timeout", &r.import_timeout),
            ("cloud", &r.cloud),
        ] {
            if let Some(v) = v {
                push(v, format!("registry `{name}`: {field}"));
            }
        }
    }
    for (name, sc) in &raw.scanners {
        let f = &sc.get_ref().format;
        if f.get_ref() == "defender" {
            out.push((
                f.span(),
                format!("scanner `{}`: format = \"defender\"", name.get_ref()),
            ));
        }
    }
    out.sort_by_key(|(span, _)| span.start);
    out
}

/// What Azure features need from the entries they use: the defender scanner reads results
/// for the quarantine registry (its ARM resource must be known); ARM importImage copies whole
/// images (no platform subsets).
pub(super) fn check_azure_uses(
    l: &mut Lowerer,
    raw: &RawConfig,
    registries: &BTreeMap<String, RegistrySpec>,
    quarantine: &Area,
    gate: &Gate,
) {
    let Some(q) = registries.get(&quarantine.registry) else {
        return;
    };
    for (name, s) in &raw.scanners {
        if s.get_ref().format.get_ref() == "defender"
            && gate.scanners.contains(name.get_ref())
            && q.arm.is_none()
        {
            l.err(
                s.get_ref().format.span(),
                format!(
                    "scanner `{}` reads Defender results for registry `{}`, which has no subscription",
                    name.get_ref(),
                    q.key
                ),
                Some("add subscription = \"…\" and resource_group = \"…\" to the quarantine registry's entry"),
            );
        }
    }
    if q.transfer == Transfer::AcrImport {
        for img in &raw.images {
            if let Some(p) = &img.get_ref().platforms
                && !p.is_empty()
            {
                l.err(
                    p[0].span(),
                    "platforms cannot be selected with transfer = \"acr-import\"",
                    Some("ARM importImage copies whole images: remove platforms, or use transfer = \"stream\" on the quarantine registry"),
                );
            }
        }
    }
}
