//! `airlock pin` without the I/O: which images are mutable, which `--image` patterns select
//! them, and the rewrite of airlock.toml with `toml_edit` (comments, order and formatting
//! kept; only `digest` values are added or replaced). The command resolves the digests.

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{DocumentMut, Item, Value};

use crate::config::{DesiredState, ImageSpec, TrackSpec};
use crate::model::{Digest, Reference};

/// One line per mutable reference: an unpinned tag (the upstream tag can move), `latest`
/// even when pinned (it names no version: `outdated` cannot compare it), and a tracked
/// repository without any pin.
pub fn mutable_tag_warnings(desired: &DesiredState) -> Vec<String> {
    let file = desired.file.display();
    desired
        .images
        .iter()
        .filter_map(|s| match (&s.pin, s.tag.as_str()) {
            (None, "latest") => Some(format!(
                "{}: `latest` moves with every upstream release and is not pinned: pin a digest (`airlock pin`) or declare a version tag ({file})",
                s.source
            )),
            (None, _) => Some(format!(
                "{} is not pinned: the upstream tag can move; `airlock pin` writes its digest ({file})",
                s.source
            )),
            (Some(_), "latest") => Some(format!(
                "{}: pinned, but `latest` names no version (`airlock outdated` cannot compare it); prefer a version tag ({file})",
                s.source
            )),
            (Some(_), _) => None,
        })
        .chain(desired.tracks.iter().filter(|t| t.pins.is_empty()).map(|t| {
            format!(
                "{} (track {}) has no pins: its versions' upstream tags can move; `airlock pin` writes pins ({file})",
                t.source.repository(),
                t.track
            )
        }))
        .collect()
}

/// Does `pattern` select `spec`? It is matched against `path:tag`, `path`, `host/path:tag`
/// and `host/path`; `*` matches any run of characters (including `/`).
pub fn matches(pattern: &str, spec: &ImageSpec) -> bool {
    let repo = spec.source.repository();
    [
        spec.key(),
        spec.path.clone(),
        format!("{repo}:{}", spec.tag),
        repo,
    ]
    .iter()
    .any(|s| glob(pattern, s))
}

/// Does `pattern` select the tracked repository `t`? Matched against `path` and
/// `host/path`.
pub fn matches_track(pattern: &str, t: &TrackSpec) -> bool {
    glob(pattern, &t.path) || glob(pattern, &t.source.repository())
}

/// `*` wildcards only; everything else literal.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Write `digest = "…"` into the `[[images]]` entries whose `path:tag` is a key of `edits`:
/// a new key goes right after `source`; an existing one gets its value replaced, keeping its
/// comments. Nothing else in the text changes.
pub fn rewrite(text: &str, edits: &BTreeMap<String, Digest>) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("cannot parse: {}", e.message()))?;
    let mut done = 0;
    let images = doc
        .get_mut("images")
        .ok_or_else(|| "no [[images]] entries".to_string())?;
    match images {
        Item::ArrayOfTables(tables) => {
            for t in tables.iter_mut() {
                if let Some(d) = edit_for(t.get("source").and_then(|s| s.as_str()), edits)? {
                    set_digest_table(t, &d);
                    done += 1;
                }
            }
        }
        Item::Value(Value::Array(list)) => {
            for v in list.iter_mut() {
                let Some(t) = v.as_inline_table_mut() else {
                    continue;
                };
                if let Some(d) = edit_for(t.get("source").and_then(|s| s.as_str()), edits)? {
                    match t.get_mut("digest") {
                        Some(old) => replace_value(old, &d),
                        None => {
                            t.insert("digest", Value::from(d.to_string()));
                        }
                    }
                    done += 1;
                }
            }
        }
        _ => return Err("`images` is not a list of tables".into()),
    }
    if done != edits.len() {
        return Err(format!(
            "found {done} of the {} [[images]] entries to pin",
            edits.len()
        ));
    }
    Ok(doc.to_string())
}

/// Write `"<tag>" = "<digest>"` into the `pins` of the tracked entries (`track` set) whose
/// repository (`host/path`) is a key of `edits`; `pins` is created as an inline table after
/// the entry's last key when missing. Existing pins of other versions are kept.
pub fn rewrite_track_pins(
    text: &str,
    edits: &BTreeMap<String, BTreeMap<String, Digest>>,
) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("cannot parse: {}", e.message()))?;
    let mut done = 0;
    let tables: Vec<&mut dyn toml_edit::TableLike> = match doc.get_mut("images") {
        Some(Item::ArrayOfTables(a)) => a
            .iter_mut()
            .map(|t| t as &mut dyn toml_edit::TableLike)
            .collect(),
        Some(Item::Value(Value::Array(list))) => list
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut())
            .map(|t| t as &mut dyn toml_edit::TableLike)
            .collect(),
        _ => return Err("no [[images]] entries".into()),
    };
    for t in tables {
        if t.get("track").is_none() {
            continue;
        }
        let Some(source) = t.get("source").and_then(|s| s.as_str()).map(str::to_string) else {
            continue;
        };
        let r: Reference = source.parse().map_err(|e| format!("{e}"))?;
        let Some(pins) = edits.get(&r.repository()) else {
            continue;
        };
        let item = t
            .entry("pins")
            .or_insert(Item::Value(Value::InlineTable(Default::default())));
        let inline = item.is_inline_table();
        let table = item
            .as_table_like_mut()
            .ok_or_else(|| format!("{source}: pins is not a table"))?;
        for (tag, d) in pins {
            match table.get_mut(tag).and_then(|i| i.as_value_mut()) {
                Some(v) => replace_value(v, d),
                None => {
                    // In an inline table the space before `}` is the last value's suffix:
                    // hand it on to the new last value (`{ a = 1, b = 2 }`, not `1 , b`).
                    let mut suffix = None;
                    if inline
                        && let Some((_, last)) = table.iter_mut().last()
                        && let Some(v) = last.as_value_mut()
                        && let Some(s) = v.decor().suffix().cloned()
                    {
                        v.decor_mut().set_suffix("");
                        suffix = Some(s);
                    }
                    table.insert(tag, toml_edit::value(d.to_string()));
                    if let Some(s) = suffix
                        && let Some(v) = table.get_mut(tag).and_then(|i| i.as_value_mut())
                    {
                        v.decor_mut().set_suffix(s);
                    }
                }
            }
        }
        done += 1;
    }
    if done != edits.len() {
        return Err(format!(
            "found {done} of the {} tracked entries to pin",
            edits.len()
        ));
    }
    Ok(doc.to_string())
}

/// The digest to write for the entry with this `source`, if any.
fn edit_for(
    source: Option<&str>,
    edits: &BTreeMap<String, Digest>,
) -> Result<Option<Digest>, String> {
    let Some(source) = source else {
        return Ok(None);
    };
    let r: Reference = source.parse().map_err(|e| format!("{e}"))?;
    let key = format!("{}:{}", r.path, r.tag.unwrap_or_default());
    Ok(edits.get(&key).cloned())
}

fn set_digest_table(t: &mut toml_edit::Table, d: &Digest) {
    if let Some(item) = t.get_mut("digest")
        && let Some(v) = item.as_value_mut()
    {
        replace_value(v, d);
        return;
    }
    // A new key: insert, then move it right after `source` (a stable sort by the original
    // positions; everything else keeps its order and its comments).
    let order: Vec<String> = t.iter().map(|(k, _)| k.to_string()).collect();
    let source_at = order.iter().position(|k| k == "source").unwrap_or(0);
    t.insert("digest", toml_edit::value(d.to_string()));
    let rank = |k: &str| match order.iter().position(|o| o == k) {
        Some(i) => 2 * i,
        None => 2 * source_at + 1,
    };
    t.sort_values_by(|k1, _, k2, _| rank(k1.get()).cmp(&rank(k2.get())));
}

/// Replace a value, keeping the comments and spacing around it.
fn replace_value(v: &mut Value, d: &Digest) {
    let decor = v.decor().clone();
    *v = Value::from(d.to_string());
    *v.decor_mut() = decor;
}

/// The rewritten text must still validate, declare the same images, and pin exactly the
/// edited ones to their new digests (everything else unchanged).
pub fn check_rewrite(
    text: &str,
    path: &Path,
    today: time::Date,
    before: &DesiredState,
    edits: &BTreeMap<String, Digest>,
    track_edits: &BTreeMap<String, BTreeMap<String, Digest>>,
) -> Result<(), String> {
    let after = crate::config::parse(text, path, today)
        .map_err(|e| format!("the rewritten configuration does not validate:\n{e}"))?;
    let want: Vec<ImageSpec> = before
        .images
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if let Some(d) = edits.get(&s.key()) {
                s.pin = Some(d.clone());
            }
            s
        })
        .collect();
    if after.images != want {
        return Err("the rewritten configuration declares different images".into());
    }
    let want: Vec<TrackSpec> = before
        .tracks
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if let Some(p) = track_edits.get(&t.source.repository()) {
                t.pins.extend(p.clone());
            }
            t
        })
        .collect();
    if after.tracks != want {
        return Err("the rewritten configuration tracks different repositories".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# top comment
[registries.r]
endpoint = "http://127.0.0.1:9"   # trailing
auth = "anonymous"

[quarantine]
registry = "r"

[live]
registry = "r"

# Busybox: utility container.
[[images]]
source = "docker.io/library/busybox:1.33.0"   # the walkthrough's
platforms = ["linux/amd64"]      # amd64 only

[[images]]
# pinned already
source   =   "ghcr.io/fluxcd/source-controller:v0.6.3"
digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"  # keep me

[[images]]
source = "docker.io/library/alpine:latest"
"#;

    /// [`check_rewrite`] of `out` against `before`, as `airlock.toml` on the fixture's day.
    fn check(
        out: &str,
        before: &DesiredState,
        edits: &BTreeMap<String, Digest>,
        track_edits: &BTreeMap<String, BTreeMap<String, Digest>>,
    ) -> Result<(), String> {
        check_rewrite(
            out,
            Path::new("airlock.toml"),
            crate::config::fixture::TODAY,
            before,
            edits,
            track_edits,
        )
    }

    fn load(text: &str) -> DesiredState {
        crate::config::fixture::desired(text)
    }

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn adds_after_source_and_replaces_in_place() {
        let mut edits = BTreeMap::new();
        edits.insert("library/busybox:1.33.0".to_string(), d('a'));
        edits.insert("fluxcd/source-controller:v0.6.3".to_string(), d('b'));
        let out = rewrite(FILE, &edits).unwrap();
        let want = FILE
            .replace(
                "source = \"docker.io/library/busybox:1.33.0\"   # the walkthrough's\n",
                &format!(
                    "source = \"docker.io/library/busybox:1.33.0\"   # the walkthrough's\ndigest = \"{}\"\n",
                    d('a')
                ),
            )
            .replace(&d('1').to_string(), &d('b').to_string());
        assert_eq!(out, want);
        let before = load(FILE);
        check(&out, &before, &edits, &BTreeMap::new()).unwrap();
        let after = load(&out);
        let pins: Vec<Option<Digest>> = after.images.iter().map(|i| i.pin.clone()).collect();
        assert_eq!(pins, vec![Some(d('b')), None, Some(d('a'))]);
    }

    #[test]
    fn inline_tables_and_missing_entries() {
        let text = "images = [ { source = \"busybox:1\" } ]\n[registries.r]\nendpoint = \"http://127.0.0.1:9\"\n[quarantine]\nregistry = \"r\"\n[live]\nregistry = \"r\"\n";
        let mut edits = BTreeMap::new();
        edits.insert("library/busybox:1".to_string(), d('c'));
        let out = rewrite(text, &edits).unwrap();
        assert_eq!(load(&out).images[0].pin, Some(d('c')));
        edits.insert("library/other:1".to_string(), d('c'));
        assert!(
            rewrite(text, &edits)
                .unwrap_err()
                .contains("found 1 of the 2")
        );
    }

    #[test]
    fn a_rewrite_that_changes_anything_else_is_refused() {
        let before = load(FILE);
        let mut edits = BTreeMap::new();
        edits.insert("library/busybox:1.33.0".to_string(), d('a'));
        let other = FILE.replace("1.33.0", "1.34.0");
        let out = rewrite(&other, &BTreeMap::new()).unwrap();
        assert!(check(&out, &before, &edits, &BTreeMap::new()).is_err());
    }

    #[test]
    fn track_pins_are_added_to_the_pins_table() {
        let text = "[registries.r]\nendpoint = \"http://127.0.0.1:9\"\n[quarantine]\nregistry = \"r\"\n[live]\nregistry = \"r\"\n\n[[images]]\nsource = \"docker.io/library/busybox\"  # tracked\ntrack = \">=1.33, <2\"\nkeep = 2\n\n[[images]]\nsource = \"ghcr.io/x/y\"\ntrack = \"^1\"\npins = { \"1.0.0\" = \"sha256:1111111111111111111111111111111111111111111111111111111111111111\" }  # old\n";
        let before = load(text);
        let mut edits = BTreeMap::new();
        edits.insert(
            "docker.io/library/busybox".to_string(),
            BTreeMap::from([
                ("1.36.1".to_string(), d('a')),
                ("1.34.0".to_string(), d('b')),
            ]),
        );
        edits.insert(
            "ghcr.io/x/y".to_string(),
            BTreeMap::from([("1.1.0".to_string(), d('c'))]),
        );
        let out = rewrite_track_pins(text, &edits).unwrap();
        check(&out, &before, &BTreeMap::new(), &edits).unwrap();
        assert!(
            out.contains(&format!(
                "keep = 2\npins = {{ \"1.34.0\" = \"{}\", \"1.36.1\" = \"{}\" }}\n",
                d('b'),
                d('a')
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "\"1.0.0\" = \"{}\", \"1.1.0\" = \"{}\" }}  # old\n",
                d('1'),
                d('c')
            )),
            "{out}"
        );
        assert!(out.contains("source = \"docker.io/library/busybox\"  # tracked\n"));
        let after = load(&out);
        assert_eq!(after.tracks[0].pins.len(), 2);
        assert_eq!(after.tracks[1].pins.len(), 2);
    }

    #[test]
    fn warnings_and_patterns() {
        let desired = load(FILE);
        let w = mutable_tag_warnings(&desired);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("docker.io/library/alpine:latest: `latest` moves"));
        assert!(w[1].starts_with("docker.io/library/busybox:1.33.0 is not pinned"));
        let busybox = &desired.images[2];
        for p in [
            "library/busybox:1.33.0",
            "library/busybox",
            "docker.io/library/busybox",
            "docker.io/library/busybox:1.33.0",
            "*busybox*",
            "library/*:1.33.0",
            "*",
        ] {
            assert!(matches(p, busybox), "{p}");
        }
        for p in [
            "busybox",
            "library/busybox:1.33",
            "ghcr.io/*",
            "*:latest",
            "library/busy",
        ] {
            assert!(!matches(p, busybox), "{p}");
        }
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b*c", "aXcYb") && glob("ab*b", "abb"));
        assert!(!glob("ab*ba", "aba"));
    }
}
