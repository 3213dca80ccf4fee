//! Day-two commands: `outdated` (which newer versions exist upstream) and `pin` (write the
//! resolved digests into airlock.toml). Wiring and I/O only: version comparison is in
//! `versions`, the report in `outdated`, the file rewrite in `pin`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use futures_util::future::join_all;

use super::{Signals, load, runtime};
use crate::config::{DesiredState, ImageSpec, TrackSpec};
use crate::error::Error;
use crate::exit::Outcome;
use crate::model::Digest;
use crate::outdated::Report;
use crate::pin;
use crate::registry::Registries;
use crate::render::Format;

/// List the tags of every declared source repository (each once) and compare.
pub fn outdated(path: &Path, format: Format, detailed_exitcode: bool) -> Result<Outcome, Error> {
    let desired = load(path)?;
    print_warnings(&desired);
    let rt = runtime()?;
    rt.block_on(async {
        let mut signals = Signals::install()?;
        let registries = super::registries(&desired);
        let tags = tokio::select! {
            biased;
            sig = signals.recv() => return Ok(Outcome::Interrupted(sig)),
            t = list_source_tags(&desired, &registries) => t?,
        };
        let report = Report::build(&desired.images, &tags);
        let mut out = std::io::stdout().lock();
        match format {
            Format::Human => report.write_human(&mut out),
            Format::Json => report.write_json(&mut out),
            Format::Markdown => report.write_markdown(&mut out),
        }
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("failed to write the report", e))?;
        Ok(if detailed_exitcode && report.outdated() > 0 {
            Outcome::Changes
        } else {
            Outcome::Success
        })
    })
}

/// Tags by source repository (`host/path`). The first failure (in repository order) is the
/// error: a partial answer would hide newer versions.
async fn list_source_tags(
    desired: &DesiredState,
    registries: &Registries,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut repos: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for spec in &desired.images {
        repos
            .entry(spec.source.repository())
            .or_insert((spec.source_registry.as_str(), spec.source.path.as_str()));
    }
    let lists = join_all(repos.iter().map(|(repo, (key, path))| async move {
        let reg = registries.get(key)?;
        let tags = reg.list_tags(path).await?;
        tracing::info!("{repo}: {} tags", tags.len());
        Ok::<_, Error>((repo.clone(), tags))
    }))
    .await;
    lists.into_iter().collect()
}

/// The configuration with its tracked repositories (`track`) resolved into images: their
/// tags are listed now (each repository once). Without tracks, a copy of `desired`.
pub async fn resolve_tracks(
    desired: &DesiredState,
    registries: &Registries,
) -> Result<DesiredState, Error> {
    if desired.tracks.is_empty() {
        return Ok(desired.clone());
    }
    let lists = join_all(desired.tracks.iter().map(|t| async move {
        let reg = registries.get(&t.source_registry)?;
        let tags = reg.list_tags(&t.path).await?;
        Ok::<_, Error>((t.source.repository(), tags))
    }))
    .await;
    let tags: BTreeMap<String, Vec<String>> = lists.into_iter().collect::<Result<_, _>>()?;
    let (expanded, warnings) = crate::track::expand(desired, &tags);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(expanded)
}

/// `validate`, `plan` and `outdated`: a warning line on stderr per mutable reference.
pub fn print_warnings(desired: &DesiredState) {
    for w in pin::mutable_tag_warnings(desired) {
        eprintln!("warning: {w}");
    }
}

/// The images and tracked repositories `--image` patterns select (all when none); an error
/// when a pattern selects nothing (a typo must not pass silently).
fn select<'a>(
    desired: &'a DesiredState,
    patterns: &[String],
) -> Result<(Vec<&'a ImageSpec>, Vec<&'a TrackSpec>), Error> {
    for p in patterns {
        if !desired.images.iter().any(|s| pin::matches(p, s))
            && !desired.tracks.iter().any(|t| pin::matches_track(p, t))
        {
            return Err(Error::Usage(format!(
                "--image {p}: no declared image matches (patterns match `path:tag`, `path`, `host/path:tag` or `host/path`; `*` is a wildcard)"
            )));
        }
    }
    let all = patterns.is_empty();
    Ok((
        desired
            .images
            .iter()
            .filter(|s| all || patterns.iter().any(|p| pin::matches(p, s)))
            .collect(),
        desired
            .tracks
            .iter()
            .filter(|t| all || patterns.iter().any(|p| pin::matches_track(p, t)))
            .collect(),
    ))
}

/// The versions each selected track declares now (its tags listed).
async fn tracked_versions<'a>(
    tracks: &[&'a TrackSpec],
    registries: &Registries,
) -> Result<Vec<(&'a TrackSpec, Vec<String>)>, Error> {
    join_all(tracks.iter().map(|t| async move {
        let reg = registries.get(&t.source_registry)?;
        let tags = reg.list_tags(&t.path).await?;
        Ok::<_, Error>((*t, crate::track::select(t, &tags)))
    }))
    .await
    .into_iter()
    .collect()
}

/// HEAD `path:tag` at the source registry: the digest, or an error naming the image.
async fn resolve(
    registries: &Registries,
    key: &str,
    path: &str,
    tag: &str,
    shown: &str,
) -> Result<Digest, Error> {
    let reg = registries.get(key)?;
    match reg.head_manifest(path, tag).await? {
        Some(d) => Ok(d.digest),
        None => Err(Error::Other(format!(
            "source {shown} not found in registry `{key}` (MANIFEST_UNKNOWN): nothing was written"
        ))),
    }
}

/// `airlock pin`: resolve each selected tag by HEAD and write `digest = "…"` into the file
/// (for a tracked repository: each version it declares now, into `pins`). `--check` only
/// reports (exit 1 when something is unpinned); `--update` re-resolves existing pins.
pub fn pin(path: &Path, patterns: &[String], check: bool, update: bool) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let (images, tracks) = select(&desired, patterns)?;
    let rt = runtime()?;
    let registries = super::registries(&desired);
    if check {
        let mut unpinned: Vec<String> = images
            .iter()
            .filter(|s| s.pin.is_none())
            .map(|s| s.source.to_string())
            .collect();
        // Tracked repositories: their tags are read to know which versions they declare.
        if !tracks.is_empty() {
            for (t, versions) in rt.block_on(tracked_versions(&tracks, &registries))? {
                for v in versions.iter().filter(|v| !t.pins.contains_key(*v)) {
                    unpinned.push(format!("{}:{v} (track {})", t.source.repository(), t.track));
                }
            }
        }
        for u in &unpinned {
            println!("unpinned: {u}");
        }
        if unpinned.is_empty() {
            println!("Everything selected is pinned.");
            return Ok(Outcome::Success);
        }
        return Err(Error::Other(format!(
            "{} image{} not pinned to a digest (run `airlock pin`)",
            unpinned.len(),
            if unpinned.len() == 1 { " is" } else { "s are" }
        )));
    }
    let original = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))?;
    type Resolved<'a> = (
        Vec<(&'a ImageSpec, Option<Digest>)>,
        Vec<(&'a TrackSpec, Vec<(String, Option<Digest>)>)>,
    );
    let (resolved, resolved_tracks): Resolved<'_> = rt.block_on(async {
        let mut signals = Signals::install()?;
        let registries = &registries;
        let work = async {
            let fixed = join_all(images.iter().map(|spec| async move {
                if spec.pin.is_some() && !update {
                    return Ok((*spec, None));
                }
                let shown = spec.source.to_string();
                let d = resolve(
                    registries,
                    &spec.source_registry,
                    &spec.source.path,
                    &spec.tag,
                    &shown,
                )
                .await?;
                Ok::<_, Error>((*spec, Some(d)))
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, Error>>()?;
            let mut tracked = Vec::new();
            for (t, versions) in tracked_versions(&tracks, registries).await? {
                let got = join_all(versions.into_iter().map(|v| async move {
                    if t.pins.contains_key(&v) && !update {
                        return Ok((v, None));
                    }
                    let shown = format!("{}:{v}", t.source.repository());
                    let d = resolve(registries, &t.source_registry, &t.path, &v, &shown).await?;
                    Ok::<_, Error>((v, Some(d)))
                }))
                .await
                .into_iter()
                .collect::<Result<Vec<_>, Error>>()?;
                tracked.push((t, got));
            }
            Ok::<_, Error>((fixed, tracked))
        };
        tokio::select! {
            biased;
            _ = signals.recv() => Err(Error::Other("interrupted: nothing was written".into())),
            r = work => r,
        }
    })?;

    let mut edits = BTreeMap::new();
    let mut lines = Vec::new();
    for (spec, digest) in &resolved {
        match (digest, &spec.pin) {
            (None, _) => lines.push(format!(
                "kept     {} (pinned to {}; --update re-resolves)",
                spec.source,
                spec.pin.as_ref().map(|d| d.to_string()).unwrap_or_default()
            )),
            (Some(d), Some(old)) if d == old => {
                lines.push(format!("current  {} {d}", spec.source));
            }
            (Some(d), old) => {
                if spec.source.digest.is_some() {
                    lines.push(format!(
                        "skipped  {}: pinned in source (`…@sha256:…`); upstream tag now at {d}, edit by hand",
                        spec.source
                    ));
                    continue;
                }
                lines.push(match old {
                    Some(old) => format!("updated  {} {old} → {d}", spec.source),
                    None => format!("pinned   {} {d}", spec.source),
                });
                edits.insert(spec.key(), d.clone());
            }
        }
    }
    let mut track_edits: BTreeMap<String, BTreeMap<String, Digest>> = BTreeMap::new();
    for (t, versions) in &resolved_tracks {
        let repo = t.source.repository();
        for (v, digest) in versions {
            match (digest, t.pins.get(v)) {
                (None, old) => lines.push(format!(
                    "kept     {repo}:{v} (pinned to {}; --update re-resolves)",
                    old.map(|d| d.to_string()).unwrap_or_default()
                )),
                (Some(d), Some(old)) if d == old => {
                    lines.push(format!("current  {repo}:{v} {d}"));
                }
                (Some(d), old) => {
                    lines.push(match old {
                        Some(old) => format!("updated  {repo}:{v} {old} → {d}"),
                        None => format!("pinned   {repo}:{v} {d}"),
                    });
                    track_edits
                        .entry(repo.clone())
                        .or_default()
                        .insert(v.clone(), d.clone());
                }
            }
        }
    }
    let written = edits.len() + track_edits.values().map(BTreeMap::len).sum::<usize>();
    if written > 0 {
        let fail =
            |e: String| Error::Other(format!("{}: {e}; nothing was written", path.display()));
        let mut text = original.clone();
        if !edits.is_empty() {
            text = pin::rewrite(&text, &edits).map_err(fail)?;
        }
        if !track_edits.is_empty() {
            text = pin::rewrite_track_pins(&text, &track_edits).map_err(fail)?;
        }
        pin::check_rewrite(
            &text,
            path,
            super::now().date(),
            &desired,
            &edits,
            &track_edits,
        )
        .map_err(|e| Error::Other(format!("{e}; nothing was written")))?;
        write_config(path, &original, &text)?;
    }
    let mut out = std::io::stdout().lock();
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "{}: {written} digest{} written.",
        path.display(),
        if written == 1 { "" } else { "s" }
    );
    Ok(Outcome::Success)
}

/// Replace the configuration atomically (temporary file beside the real file, then rename),
/// through a symlink to its target, keeping its permissions; refused when the file changed
/// since it was read.
fn write_config(path: &Path, original: &str, text: &str) -> Result<(), Error> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| Error::io(format!("failed to resolve {}", path.display()), e))?;
    let now = std::fs::read_to_string(&real)
        .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))?;
    if now != original {
        return Err(Error::Other(format!(
            "{} changed while airlock pin ran; nothing was written, run it again",
            path.display()
        )));
    }
    let perms = std::fs::metadata(&real).map(|m| m.permissions()).ok();
    super::write_atomic(&real, text.as_bytes())?;
    if let Some(p) = perms {
        let _ = std::fs::set_permissions(&real, p);
    }
    Ok(())
}
