//! Lowering: the raw serde structs become a validated `DesiredState`. Every check that can
//! be made without a registry is made here, and every error points at the value it is about.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::defaults::{default_endpoint, default_registry};
use super::desired::*;
use super::endpoint;
use super::error::{ConfigError, LineIndex};
use super::schema::*;
use crate::model::Platform;
use crate::model::reference::valid_path;

mod azure;
mod gate;
mod image;
mod registries;
mod signing;
mod track;

pub(super) use azure::azure_keys;
use registries::Registries;

struct Lowerer<'a> {
    file: &'a Path,
    source: &'a str,
    /// Line starts of `source`, so that each error is located in O(log n), not O(n).
    lines: LineIndex,
    base_dir: PathBuf,
    today: time::Date,
    errors: Vec<ConfigError>,
}

impl Lowerer<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<&str>) {
        self.errors.push(ConfigError::at_indexed(
            self.file,
            self.source,
            &self.lines,
            Some(span),
            message,
            help.map(str::to_string),
        ));
    }
}

pub fn lower(
    raw: RawConfig,
    file: &Path,
    source: &str,
    today: time::Date,
) -> Result<DesiredState, Vec<ConfigError>> {
    let base_dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut l = Lowerer {
        file,
        source,
        lines: LineIndex::new(source),
        base_dir,
        today,
        errors: Vec::new(),
    };

    let mut registries = Registries::default();
    for (key, reg) in &raw.registries {
        if let Some(spec) = registries::lower_registry(&mut l, key, reg) {
            registries.insert(spec);
        }
    }

    let mut resolve_area_registry = |l: &mut Lowerer, name: &Spanned<String>| -> String {
        let n = name.get_ref();
        if !registries.contains(n) {
            if registries::looks_like_host(n) {
                match endpoint::check(&default_endpoint(n)) {
                    Ok(_) => registries.insert(default_registry(n)),
                    Err(e) => l.err(
                        name.span(),
                        format!("`{n}` is not a registry host: {}", e.message),
                        Some("write an alias defined in [registries], or a host such as `myregistry.azurecr.io` or `localhost:5000`"),
                    ),
                }
            } else {
                let known: Vec<&str> = raw
                    .registries
                    .keys()
                    .map(|k| k.get_ref().as_str())
                    .collect();
                l.err(
                    name.span(),
                    format!("unknown registry alias `{n}`"),
                    Some(&if known.is_empty() {
                        format!("define it as [registries.{n}] with an endpoint, or write a host such as `myregistry.azurecr.io`")
                    } else {
                        format!("use one of: {} — or define [registries.{n}]", known.join(", "))
                    }),
                );
            }
        }
        n.clone()
    };

    let file_span = 0..0;
    let quarantine = match &raw.quarantine {
        Some(q) => {
            let registry = resolve_area_registry(&mut l, &q.get_ref().registry);
            let prefix = lower_prefix(&mut l, q.get_ref().prefix.as_ref(), "quarantine");
            Area { registry, prefix }
        }
        None => {
            l.err(
                file_span.clone(),
                "missing [quarantine] table",
                Some("add [quarantine] with registry = \"<alias or host>\" and prefix = \"quarantine\""),
            );
            Area {
                registry: String::new(),
                prefix: String::new(),
            }
        }
    };
    let (live, prune) = match &raw.live {
        Some(lv) => {
            let registry = resolve_area_registry(&mut l, &lv.get_ref().registry);
            let prefix = lower_prefix(&mut l, lv.get_ref().prefix.as_ref(), "live");
            (Area { registry, prefix }, lv.get_ref().prune)
        }
        None => {
            l.err(
                file_span,
                "missing [live] table",
                Some("add [live] with registry = \"<alias or host>\" and prefix = \"live\""),
            );
            (
                Area {
                    registry: String::new(),
                    prefix: String::new(),
                },
                false,
            )
        }
    };
    if let Some(lv) = &raw.live
        && !quarantine.registry.is_empty()
        && quarantine == live
    {
        l.err(
            lv.span(),
            "quarantine and live are the same registry and prefix",
            Some("give live its own prefix (e.g. prefix = \"live\") or registry"),
        );
    }

    let scanners = gate::lower_scanners(&mut l, &raw.scanners);
    let gate = gate::lower_gate(&mut l, &raw.gate, &scanners);

    let mut images: Vec<ImageSpec> = Vec::new();
    // Image key -> byte offset of the first entry declaring it (its line is only needed for
    // an error).
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut tracks: Vec<TrackSpec> = Vec::new();
    let mut entries = Entries::default();
    for img in &raw.images {
        if img.get_ref().track.is_some() {
            if let Some(t) = track::lower_track(&mut l, img, &mut registries, &tracks) {
                let at = l
                    .lines
                    .line_col(l.source, img.get_ref().source.span().start);
                entries.tracks.insert(t.source.repository(), at);
                tracks.push(t);
            }
            continue;
        }
        track::check_untracked(&mut l, img);
        let Some(spec) = image::lower_image(&mut l, img, &mut registries) else {
            continue;
        };
        let key = spec.key();
        if let Some(&offset) = seen.get(&key) {
            let first = l.lines.line(offset);
            l.err(
                img.get_ref().source.span(),
                format!(
                    "two images map to the same live tag `{}`",
                    live.repository(&key)
                ),
                Some(&format!(
                    "the [[images]] entry at line {first} already declares it; remove one of them"
                )),
            );
            continue;
        }
        seen.insert(key.clone(), img.span().start);
        let at = l
            .lines
            .line_col(l.source, img.get_ref().source.span().start);
        entries.images.insert(key, at);
        images.push(spec);
    }
    images.sort_by_cached_key(|i| i.key());
    let registries = registries.by_key;
    tracks.sort_by_key(|t| t.source.repository());
    azure::check_azure_uses(&mut l, &raw, &registries, &quarantine, &gate);
    if !cfg!(feature = "azure") {
        for (span, key) in azure_keys(&raw) {
            l.err(
                span,
                format!("{key} needs Azure support: this airlock was built without Azure support"),
                Some("build airlock with the `azure` cargo feature (on by default), or remove the key"),
            );
        }
    }
    let admission = signing::lower_admission(&mut l, &raw.admission);
    let azure_cloud = azure::lower_cloud(&mut l, &raw);
    let signing = signing::lower_signing(&mut l, &raw.signing, azure_cloud);

    if !l.errors.is_empty() {
        return Err(l.errors);
    }
    Ok(DesiredState {
        file: file.to_path_buf(),
        registries,
        quarantine,
        live,
        prune,
        gate,
        scanners,
        images,
        admission,
        azure_cloud,
        tracks,
        signing,
        entries,
    })
}

fn lower_prefix(l: &mut Lowerer, prefix: Option<&Spanned<String>>, default: &str) -> String {
    match prefix {
        None => default.to_string(),
        Some(p) => {
            let v = p.get_ref().trim_matches('/');
            if !v.is_empty() && !valid_path(v) {
                l.err(
                    p.span(),
                    format!("`{}` is not a valid repository prefix", p.get_ref()),
                    Some("use lowercase path components such as \"quarantine\" or \"team/live\""),
                );
            }
            v.to_string()
        }
    }
}

fn parse_duration(l: &mut Lowerer, v: &Spanned<String>, what: &str) -> Option<Duration> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        _ => {
            l.err(
                v.span(),
                format!("invalid {what} `{}`", v.get_ref()),
                Some("write a duration such as \"7d\", \"12h\" or \"30m\""),
            );
            None
        }
    }
}

/// Each platform (`os/arch[/variant]`) in `list`, in order; an error at each that does not parse.
fn parse_platforms(l: &mut Lowerer, list: &[Spanned<String>]) -> Vec<Platform> {
    let mut out = Vec::new();
    for s in list {
        match s.get_ref().parse::<Platform>() {
            Ok(p) => out.push(p),
            Err(e) => l.err(s.span(), e.to_string(), None),
        }
    }
    out
}
