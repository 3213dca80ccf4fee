//! Lowering of fixed `[[images]]` entries: `source = "host/path:tag"`, an optional digest
//! pin and platform subset. Tracked entries are lowered in `track`.

use toml::Spanned;

use super::{Lowerer, Registries, parse_platforms};
use crate::config::desired::ImageSpec;
use crate::config::schema::RawImage;
use crate::model::{Digest, Platform, Reference};

pub(super) fn lower_image(
    l: &mut Lowerer,
    img: &Spanned<RawImage>,
    registries: &mut Registries,
) -> Option<ImageSpec> {
    let r = img.get_ref();
    let source = parse_source(
        l,
        &r.source,
        "write host/path:tag, e.g. \"ghcr.io/fluxcd/kustomize-controller:v0.6.3\" or \"docker.io/library/busybox:1.33.0\"",
    )?;
    let Some(tag) = source.tag.clone() else {
        l.err(
            r.source.span(),
            format!("image `{}` has no tag", r.source.get_ref()),
            Some("live tags are named after the source tag: add one (pin content with digest = \"sha256:…\")"),
        );
        return None;
    };
    let mut pin = source.digest.clone();
    if let Some(d) = &r.digest {
        match d.get_ref().parse::<Digest>() {
            Ok(dd) => {
                if let Some(p) = &pin
                    && p != &dd
                {
                    l.err(
                        d.span(),
                        "digest differs from the digest in source",
                        Some(
                            "keep one pin: either source = \"…@sha256:…\" or digest = \"sha256:…\"",
                        ),
                    );
                }
                pin = Some(dd);
            }
            Err(e) => {
                l.err(
                    d.span(),
                    format!("the pin is not a digest: {e}"),
                    Some("pin with digest = \"sha256:<64 hex>\" (see `skopeo inspect --raw`)"),
                );
                return None;
            }
        }
    }
    let platforms = lower_platforms(l, img);
    let source_registry = registries.source_registry(l, r.source.span(), &source.host)?;
    Some(ImageSpec {
        path: source.path.clone(),
        tag,
        source_registry,
        pin,
        platforms,
        source,
    })
}

/// `platforms` of an `[[images]]` entry, fixed or tracked: None when absent (every platform),
/// else each parsed, sorted, without repeats. An empty list is an error: it would copy nothing.
pub(super) fn lower_platforms(l: &mut Lowerer, img: &Spanned<RawImage>) -> Option<Vec<Platform>> {
    let list = img.get_ref().platforms.as_ref()?;
    if list.is_empty() {
        l.err(
            img.span(),
            "platforms is empty",
            Some("remove it to keep every platform, or list some, e.g. [\"linux/amd64\"]"),
        );
        return None;
    }
    let mut v = parse_platforms(l, list);
    v.sort();
    v.dedup();
    Some(v)
}

/// The `source` of an `[[images]]` entry as a reference; an error with `help` when it is not one.
pub(super) fn parse_source(
    l: &mut Lowerer,
    source: &Spanned<String>,
    help: &str,
) -> Option<Reference> {
    match source.get_ref().parse::<Reference>() {
        Ok(s) => Some(s),
        Err(e) => {
            l.err(source.span(), e.to_string(), Some(help));
            None
        }
    }
}
