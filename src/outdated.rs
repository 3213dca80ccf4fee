//! `airlock outdated`: the report (pure: built from the declared images and the tags their
//! repositories list) and its human, JSON and markdown renderings. The tag listing itself is
//! done by the command (`commands::day_two`).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::config::ImageSpec;
use crate::versions::{self, Comparison};

/// `{"images": [...]}`, one entry per declared image, sorted by image key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub images: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `path:tag`, as in plans.
    pub image: String,
    /// `host/path` upstream.
    pub source: String,
    /// The declared tag.
    pub current: String,
    /// The newest version (the current tag when nothing is newer); `null` when the
    /// declared tag is not a version (`latest`, `stable`).
    pub latest: Option<String>,
    /// Newer versions, oldest first.
    pub newer: Vec<String>,
}

impl Report {
    /// `tags` holds the listing of each source repository (`host/path`).
    pub fn build(images: &[ImageSpec], tags: &BTreeMap<String, Vec<String>>) -> Report {
        let mut images: Vec<Entry> = images
            .iter()
            .map(|spec| {
                let source = spec.source.repository();
                let listed = tags.get(&source).map(Vec::as_slice).unwrap_or(&[]);
                let (latest, newer) = match versions::newer(&spec.tag, listed) {
                    Comparison::NotAVersion => (None, Vec::new()),
                    Comparison::Versions { latest, newer } => (Some(latest), newer),
                };
                Entry {
                    image: spec.key(),
                    source,
                    current: spec.tag.clone(),
                    latest,
                    newer,
                }
            })
            .collect();
        images.sort_by(|a, b| a.image.cmp(&b.image));
        Report { images }
    }

    /// Images with at least one newer version.
    pub fn outdated(&self) -> usize {
        self.images.iter().filter(|e| !e.newer.is_empty()).count()
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self).map_err(io::Error::other)?;
        writeln!(out)
    }

    pub fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let width = self.images.iter().map(|e| e.image.len()).max().unwrap_or(0);
        for e in &self.images {
            let status = match (&e.latest, e.newer.len()) {
                (None, _) => "not a version tag: not compared".to_string(),
                (Some(_), 0) => "up to date".to_string(),
                (Some(latest), n) => format!(
                    "{} → {latest}  ({n} newer: {})",
                    e.current,
                    e.newer.join(", ")
                ),
            };
            writeln!(out, "{:width$}  {status}", e.image)?;
        }
        writeln!(
            out,
            "\n{} of {} image{} {} newer versions upstream.",
            self.outdated(),
            self.images.len(),
            if self.images.len() == 1 { "" } else { "s" },
            if self.outdated() == 1 { "has" } else { "have" }
        )
    }

    /// For a scheduled issue or pull request: a summary line and a table of the outdated
    /// images (at most the five newest versions each, with a count of the rest), then the
    /// images that were not compared.
    pub fn write_markdown(&self, out: &mut dyn Write) -> io::Result<()> {
        const SHOWN: usize = 5;
        writeln!(out, "### airlock outdated\n")?;
        let n = self.outdated();
        if n == 0 {
            writeln!(
                out,
                "All {} declared images are at their newest version upstream.",
                self.images.len()
            )?;
        } else {
            writeln!(
                out,
                "**{n} of {} images** have newer versions upstream.\n",
                self.images.len()
            )?;
            writeln!(out, "| image | source | current | latest | newer |")?;
            writeln!(out, "| --- | --- | --- | --- | --- |")?;
            for e in self.images.iter().filter(|e| !e.newer.is_empty()) {
                let skip = e.newer.len().saturating_sub(SHOWN);
                let shown: Vec<String> = e.newer[skip..].iter().map(|t| format!("`{t}`")).collect();
                let newer = if skip > 0 {
                    format!("{skip} more, {}", shown.join(" "))
                } else {
                    shown.join(" ")
                };
                writeln!(
                    out,
                    "| `{}` | `{}` | `{}` | `{}` | {} |",
                    e.image,
                    e.source,
                    e.current,
                    e.latest.as_deref().unwrap_or(""),
                    newer
                )?;
            }
        }
        let skipped: Vec<&Entry> = self.images.iter().filter(|e| e.latest.is_none()).collect();
        if !skipped.is_empty() {
            writeln!(
                out,
                "\nNot compared (not a version tag): {}",
                skipped
                    .iter()
                    .map(|e| format!("`{}`", e.image))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(images: &[&str]) -> Vec<ImageSpec> {
        let mut toml = String::from(
            "[registries.r]\nendpoint = \"http://127.0.0.1:9\"\nauth = \"anonymous\"\n[quarantine]\nregistry = \"r\"\n[live]\nregistry = \"r\"\n",
        );
        for i in images {
            toml.push_str(&format!("[[images]]\nsource = \"{i}\"\n"));
        }
        crate::config::fixture::desired(&toml).images
    }

    #[test]
    fn json_shape_and_order() {
        let images = desired(&[
            "docker.io/library/busybox:1.33.0",
            "docker.io/library/alpine:latest",
            "ghcr.io/fluxcd/source-controller:v0.6.3",
        ]);
        let mut tags = BTreeMap::new();
        tags.insert(
            "docker.io/library/busybox".to_string(),
            ["1.36.1", "latest", "1.34.0", "1.33.0", "1.37.0-rc.1"]
                .map(String::from)
                .to_vec(),
        );
        tags.insert(
            "ghcr.io/fluxcd/source-controller".to_string(),
            vec!["v0.6.3".to_string()],
        );
        let r = Report::build(&images, &tags);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"images": [
                {"image": "fluxcd/source-controller:v0.6.3", "source": "ghcr.io/fluxcd/source-controller",
                 "current": "v0.6.3", "latest": "v0.6.3", "newer": []},
                {"image": "library/alpine:latest", "source": "docker.io/library/alpine",
                 "current": "latest", "latest": null, "newer": []},
                {"image": "library/busybox:1.33.0", "source": "docker.io/library/busybox",
                 "current": "1.33.0", "latest": "1.36.1", "newer": ["1.34.0", "1.36.1"]},
            ]})
        );
        assert_eq!(r.outdated(), 1);
        let mut human = Vec::new();
        r.write_human(&mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(
            human.contains(
                "library/busybox:1.33.0           1.33.0 → 1.36.1  (2 newer: 1.34.0, 1.36.1)"
            ),
            "{human}"
        );
        assert!(human.contains("library/alpine:latest            not a version tag"));
        assert!(human.contains("1 of 3 images has newer versions upstream."));
        let mut md = Vec::new();
        r.write_markdown(&mut md).unwrap();
        let md = String::from_utf8(md).unwrap();
        assert!(
            md.contains("| `library/busybox:1.33.0` | `docker.io/library/busybox` | `1.33.0` | `1.36.1` | `1.34.0` `1.36.1` |"),
            "{md}"
        );
        assert!(md.contains("Not compared (not a version tag): `library/alpine:latest`"));
    }

    #[test]
    fn markdown_keeps_to_the_newest_five() {
        let images = desired(&["docker.io/library/busybox:1.0.0"]);
        let mut tags = BTreeMap::new();
        tags.insert(
            "docker.io/library/busybox".to_string(),
            (1..=8).map(|i| format!("1.{i}.0")).collect(),
        );
        let r = Report::build(&images, &tags);
        assert_eq!(r.images[0].newer.len(), 8);
        let mut md = Vec::new();
        r.write_markdown(&mut md).unwrap();
        let md = String::from_utf8(md).unwrap();
        assert!(
            md.contains("| 3 more, `1.4.0` `1.5.0` `1.6.0` `1.7.0` `1.8.0` |"),
            "{md}"
        );
    }
}
