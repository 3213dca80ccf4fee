//! Tag tracking, pure: which tags of a tracked repository are declared this run, and the
//! `DesiredState` with them expanded into images. The command lists the tags.
//!
//! A tracked entry declares the newest `keep` tags that read as full three-part versions
//! (`[v]MAJOR.MINOR.PATCH`, see `versions`) and match its semver requirement. Variants
//! (`-alpine`) are never selected; prereleases only as semver's requirement matching allows
//! (the requirement names a prerelease of the same `MAJOR.MINOR.PATCH`). When one version
//! is spelled both ways, `1.2.3` is preferred over `v1.2.3`. A fixed `[[images]]` entry for
//! the same live tag wins over the tracked one.

use std::collections::BTreeMap;

use crate::config::{DesiredState, ImageSpec, TrackSpec};
use crate::model::Reference;
use crate::versions::{self, SuffixKind};

/// The tags `t` declares among `tags`, newest first.
pub fn select(t: &TrackSpec, tags: &[String]) -> Vec<String> {
    let mut found: Vec<versions::VersionTag> = tags
        .iter()
        .filter_map(|tag| versions::parse(tag))
        .filter(|v| v.precision == 3 && v.kind != SuffixKind::Variant)
        .filter(|v| t.requirement.matches(&v.version))
        .collect();
    found.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| a.v.cmp(&b.v))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    found.dedup_by(|later, first| later.version == first.version);
    found.into_iter().take(t.keep).map(|v| v.tag).collect()
}

/// `desired` with every track expanded into images (pins from the track's `pins`), given
/// the tags of each tracked repository (`host/path`). Also returns warnings: a track that
/// matches nothing, a version already declared as a fixed image.
pub fn expand(
    desired: &DesiredState,
    tags: &BTreeMap<String, Vec<String>>,
) -> (DesiredState, Vec<String>) {
    let mut out = desired.clone();
    let mut warnings = Vec::new();
    for t in &desired.tracks {
        let repo = t.source.repository();
        let listed = tags.get(&repo).map(Vec::as_slice).unwrap_or(&[]);
        let chosen = select(t, listed);
        if chosen.is_empty() {
            warnings.push(format!(
                "{repo}: no tag matches track = \"{}\" ({} tags listed)",
                t.track,
                listed.len()
            ));
        }
        for tag in chosen {
            let spec = ImageSpec {
                source: Reference {
                    host: t.source.host.clone(),
                    path: t.path.clone(),
                    tag: Some(tag.clone()),
                    digest: None,
                },
                source_registry: t.source_registry.clone(),
                pin: t.pins.get(&tag).cloned(),
                platforms: t.platforms.clone(),
                path: t.path.clone(),
                tag,
            };
            if desired.images.iter().any(|i| i.key() == spec.key()) {
                warnings.push(format!(
                    "{}: declared as a fixed image too; that entry is used",
                    spec.source
                ));
                continue;
            }
            out.images.push(spec);
        }
    }
    out.images.sort_by_key(|i| i.key());
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(extra: &str) -> DesiredState {
        let toml = format!(
            "[registries.r]\nendpoint = \"http://127.0.0.1:9\"\nauth = \"anonymous\"\n[quarantine]\nregistry = \"r\"\n[live]\nregistry = \"r\"\n{extra}"
        );
        crate::config::fixture::desired(&toml)
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const REPO: &[&str] = &[
        "latest",
        "1.32.0",
        "1.33.0",
        "1.34.0",
        "v1.34.0",
        "1.36.1",
        "1.36.1-alpine",
        "1.37.0-rc.1",
        "1.36",
        "2.0.0",
    ];

    #[test]
    fn newest_keep_within_the_range() {
        let d = desired(
            "[[images]]\nsource = \"docker.io/library/busybox\"\ntrack = \">=1.33, <2\"\nkeep = 2\n",
        );
        let t = &d.tracks[0];
        assert_eq!(select(t, &tags(REPO)), tags(&["1.36.1", "1.34.0"]));
        let mut one = t.clone();
        one.keep = 5;
        assert_eq!(
            select(&one, &tags(REPO)),
            tags(&["1.36.1", "1.34.0", "1.33.0"])
        );
        one.requirement = semver::VersionReq::parse(">=1.37.0-rc.1").unwrap();
        assert_eq!(select(&one, &tags(REPO)), tags(&["2.0.0", "1.37.0-rc.1"]));
    }

    #[test]
    fn expansion_declares_pinned_images_and_yields_to_fixed_ones() {
        let pin = format!("sha256:{}", "a".repeat(64));
        let d = desired(&format!(
            "[[images]]\nsource = \"docker.io/library/busybox\"\ntrack = \"^1.33\"\nkeep = 2\npins = {{ \"1.36.1\" = \"{pin}\" }}\n\
             [[images]]\nsource = \"docker.io/library/busybox:1.34.0\"\n\
             [[images]]\nsource = \"docker.io/library/alpine\"\ntrack = \"^9\"\n"
        ));
        let mut listed = BTreeMap::new();
        listed.insert("docker.io/library/busybox".to_string(), tags(REPO));
        let (e, warnings) = expand(&d, &listed);
        let keys: Vec<(String, Option<String>)> = e
            .images
            .iter()
            .map(|i| (i.key(), i.pin.as_ref().map(|p| p.to_string())))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("library/busybox:1.34.0".to_string(), None),
                ("library/busybox:1.36.1".to_string(), Some(pin)),
            ]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("no tag matches track = \"^9\""));
        assert!(warnings[1].contains("busybox:1.34.0: declared as a fixed image too"));
    }

    #[test]
    fn tracked_entries_are_checked() {
        let base = "[registries.r]\nendpoint = \"http://127.0.0.1:9\"\n[quarantine]\nregistry = \"r\"\n[live]\nregistry = \"r\"\n";
        for (entry, want) in [
            (
                "source = \"busybox:1\"\ntrack = \"^1\"",
                "has a tag or digest",
            ),
            (
                "source = \"busybox\"\ntrack = \"one\"",
                "not a semver requirement",
            ),
            (
                "source = \"busybox\"\ntrack = \"^1\"\nkeep = 0",
                "keep 0 is out of range",
            ),
            (
                "source = \"busybox\"\ntrack = \"^1\"\ndigest = \"sha256:00\"",
                "digest cannot pin",
            ),
            (
                "source = \"busybox\"\ntrack = \"^1\"\npins = { latest = \"sha256:00\" }",
                "not a version tag",
            ),
            ("source = \"busybox:1\"\nkeep = 2", "keep needs track"),
            (
                "source = \"busybox\"\ntrack = \"^1\"\n[[images]]\nsource = \"docker.io/library/busybox\"\ntrack = \"^2\"",
                "tracked twice",
            ),
        ] {
            let text = format!("{base}[[images]]\n{entry}\n");
            let e = crate::config::fixture::parse(&text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{entry}: {e}");
        }
    }
}
