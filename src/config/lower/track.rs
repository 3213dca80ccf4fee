//! Lowering of tracked entries: `source = "host/path"` (no tag) with `track` (a semver
//! requirement), `keep` (how many of the newest matching versions) and `pins`
//! (tag → digest). Kept apart from `lower_image` so fixed images stay as they were.

use std::collections::BTreeMap;

use toml::Spanned;

use super::image::{lower_platforms, parse_source};
use super::{Lowerer, Registries};
use crate::config::desired::TrackSpec;
use crate::config::schema::RawImage;
use crate::model::Digest;

/// `keep`, `pins` without `track` are errors (they would silently do nothing).
pub(super) fn check_untracked(l: &mut Lowerer<'_>, img: &Spanned<RawImage>) {
    let r = img.get_ref();
    if let Some(k) = &r.keep {
        l.err(
            k.span(),
            "keep needs track",
            Some("add track = \">=1.33, <2\" (a semver requirement), or remove keep"),
        );
    }
    if let Some(p) = &r.pins {
        l.err(
            p.span(),
            "pins needs track",
            Some("a fixed image is pinned with digest = \"sha256:…\""),
        );
    }
}

pub(super) fn lower_track(
    l: &mut Lowerer<'_>,
    img: &Spanned<RawImage>,
    registries: &mut Registries,
    earlier: &[TrackSpec],
) -> Option<TrackSpec> {
    let r = img.get_ref();
    let track = r.track.as_ref()?;
    let source = parse_source(
        l,
        &r.source,
        "a tracked source is host/path, e.g. \"docker.io/library/busybox\"",
    )?;
    if source.tag.is_some() || source.digest.is_some() {
        l.err(
            r.source.span(),
            format!("tracked source `{}` has a tag or digest", r.source.get_ref()),
            Some("with track, write the repository only (\"docker.io/library/busybox\"): the versions come from track"),
        );
        return None;
    }
    if let Some(d) = &r.digest {
        l.err(
            d.span(),
            "digest cannot pin a tracked repository",
            Some("pin versions in pins = { \"1.36.1\" = \"sha256:…\" } (`airlock pin` writes it)"),
        );
    }
    let requirement = match semver::VersionReq::parse(track.get_ref()) {
        Ok(q) => q,
        Err(e) => {
            l.err(
                track.span(),
                format!("track is not a semver requirement: {e}"),
                Some("e.g. track = \">=1.33, <2\", \"~1.36\" or \"^1\""),
            );
            return None;
        }
    };
    let keep = match &r.keep {
        None => 1,
        Some(k) if (1..=100).contains(k.get_ref()) => *k.get_ref() as usize,
        Some(k) => {
            l.err(
                k.span(),
                format!("keep {} is out of range", k.get_ref()),
                Some("keep 1 to 100 of the newest matching versions"),
            );
            return None;
        }
    };
    let mut pins = BTreeMap::new();
    for (tag, digest) in r.pins.iter().flat_map(|p| p.get_ref().iter()) {
        if crate::versions::parse(tag.get_ref()).is_none() {
            l.err(
                tag.span(),
                format!("pins: `{}` is not a version tag", tag.get_ref()),
                Some("pins maps version tags to digests, e.g. \"1.36.1\" = \"sha256:…\""),
            );
        }
        match digest.get_ref().parse::<Digest>() {
            Ok(d) => {
                pins.insert(tag.get_ref().clone(), d);
            }
            Err(e) => l.err(
                digest.span(),
                format!("the pin is not a digest: {e}"),
                Some("pin with \"sha256:<64 hex>\""),
            ),
        }
    }
    let platforms = lower_platforms(l, img);
    if earlier.iter().any(|t| t.source == source) {
        l.err(
            r.source.span(),
            format!("`{}` is tracked twice", source.repository()),
            Some("merge the two entries into one requirement"),
        );
        return None;
    }
    let source_registry = registries.source_registry(l, r.source.span(), &source.host)?;
    Some(TrackSpec {
        path: source.path.clone(),
        source_registry,
        requirement,
        track: track.get_ref().clone(),
        keep,
        pins,
        platforms,
        source,
    })
}
