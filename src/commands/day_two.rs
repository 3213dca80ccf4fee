//! Day-two commands: `outdated` (which newer versions exist upstream) and `pin` (write the
//! resolved digests into airlock.toml). Wiring and I/O only: version comparison is in
//! `versions`, the report in `outdated`, the file rewrite in `pin`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use futures_util::future::join_all;

use super::{Signals, load, runtime};
use crate::config::{DesiredState, ImageSpec};
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
        let registries = Registries::from_desired(&desired);
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

/// `validate`, `plan` and `outdated`: a warning line on stderr per mutable reference.
pub fn print_warnings(desired: &DesiredState) {
    for w in pin::mutable_tag_warnings(desired) {
        eprintln!("warning: {w}");
    }
}

/// The images `--image` patterns select (all when none); an error when a pattern selects
/// nothing (a typo must not pass silently).
fn select<'a>(desired: &'a DesiredState, patterns: &[String]) -> Result<Vec<&'a ImageSpec>, Error> {
    for p in patterns {
        if !desired.images.iter().any(|s| pin::matches(p, s)) {
            return Err(Error::Usage(format!(
                "--image {p}: no declared image matches (patterns match `path:tag`, `path`, `host/path:tag` or `host/path`; `*` is a wildcard)"
            )));
        }
    }
    Ok(desired
        .images
        .iter()
        .filter(|s| patterns.is_empty() || patterns.iter().any(|p| pin::matches(p, s)))
        .collect())
}

/// `airlock pin`: resolve each selected tag by HEAD and write `digest = "…"` into the file.
/// `--check` only reports (exit 1 when an image is unpinned); `--update` re-resolves pins.
pub fn pin(path: &Path, patterns: &[String], check: bool, update: bool) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let selected = select(&desired, patterns)?;
    if check {
        let unpinned: Vec<&&ImageSpec> = selected.iter().filter(|s| s.pin.is_none()).collect();
        for s in &unpinned {
            println!("unpinned: {}", s.source);
        }
        if unpinned.is_empty() {
            println!(
                "{} image{} pinned.",
                selected.len(),
                if selected.len() == 1 { "" } else { "s" }
            );
            return Ok(Outcome::Success);
        }
        return Err(Error::Other(format!(
            "{} of {} images are not pinned to a digest (run `airlock pin`)",
            unpinned.len(),
            selected.len()
        )));
    }
    let original = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))?;
    let rt = runtime()?;
    let resolved: Vec<(&ImageSpec, Option<Digest>)> = rt.block_on(async {
        let mut signals = Signals::install()?;
        let registries = Registries::from_desired(&desired);
        let work = join_all(selected.iter().map(|spec| {
            let registries = &registries;
            async move {
                if spec.pin.is_some() && !update {
                    return Ok((*spec, None));
                }
                let reg = registries.get(&spec.source_registry)?;
                match reg.head_manifest(&spec.source.path, &spec.tag).await? {
                    Some(d) => Ok((*spec, Some(d.digest))),
                    None => Err(Error::Other(format!(
                        "source {} not found in registry `{}` (MANIFEST_UNKNOWN): nothing was written",
                        spec.source, spec.source_registry
                    ))),
                }
            }
        }));
        tokio::select! {
            biased;
            _ = signals.recv() => Err(Error::Other("interrupted: nothing was written".into())),
            r = work => r.into_iter().collect::<Result<Vec<_>, Error>>(),
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
    if !edits.is_empty() {
        let text = pin::rewrite(&original, &edits)
            .map_err(|e| Error::Other(format!("{}: {e}; nothing was written", path.display())))?;
        pin::check_rewrite(&text, path, super::now().date(), &desired, &edits)
            .map_err(|e| Error::Other(format!("{e}; nothing was written")))?;
        write_config(path, &original, &text)?;
    }
    let mut out = std::io::stdout().lock();
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "{}: {} digest{} written.",
        path.display(),
        edits.len(),
        if edits.len() == 1 { "" } else { "s" }
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
