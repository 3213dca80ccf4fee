//! Reading `airlock.toml` into the serde schema so that every unknown key is reported in one
//! run. serde stops at the first unknown field; each one it names is blanked out (replaced
//! by spaces, so every offset in the text stays that of the file) and the text is read
//! again, until it reads or an error that is not an unknown key remains. Pure.

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

use super::schema::RawConfig;

/// Enough for any hand-written file; a file with more unknown keys reports this many.
const MAX_UNKNOWN: usize = 100;

/// One error of the TOML layer: byte span (when toml gives one) and message.
pub struct ReadError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// The schema read from `source`, and every error met on the way. `raw` is `Some` when the
/// text read once its unknown keys were blanked out (their errors are then all in `errors`).
pub struct Read {
    pub raw: Option<RawConfig>,
    pub errors: Vec<ReadError>,
}

pub fn read(source: &str) -> Read {
    let mut text = source.to_string();
    let mut errors: Vec<ReadError> = Vec::new();
    loop {
        let e = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => {
                sort(&mut errors);
                return Read {
                    raw: Some(raw),
                    errors,
                };
            }
            Err(e) => e,
        };
        let span = e.span();
        let unknown = e.message().contains("unknown field");
        errors.push(ReadError {
            span: span.clone(),
            message: e.message().trim().to_string(),
        });
        let extent = match span {
            Some(s) if unknown && errors.len() < MAX_UNKNOWN => key_value_extent(&text, &s),
            _ => None,
        };
        let Some(extent) = extent else {
            sort(&mut errors);
            return Read { raw: None, errors };
        };
        blank(&mut text, extent);
    }
}

/// In file order (serde meets keys in the schema's order); errors without a place last.
fn sort(errors: &mut [ReadError]) {
    errors.sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
}

/// Spaces for every byte of `range` but line breaks (multi-line values keep their lines).
fn blank(text: &mut String, range: Range<usize>) {
    // Same length in bytes: multi-byte characters become as many spaces as they had bytes.
    let blanked: String = text[range.clone()]
        .char_indices()
        .flat_map(|(_, c)| {
            let n = c.len_utf8();
            let fill = if c == '\n' || c == '\r' { c } else { ' ' };
            std::iter::repeat_n(fill, if fill == ' ' { n } else { 1 })
        })
        .collect();
    debug_assert_eq!(blanked.len(), range.len());
    text.replace_range(range, &blanked);
}

/// The bytes of the `key = value` whose key starts at `key.start` (and, in an inline table,
/// the comma after it), or None when it is not a plain key-value (a table header).
fn key_value_extent(text: &str, key: &Range<usize>) -> Option<Range<usize>> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let found = find_in_table(doc.as_table(), key.start)?;
    Some(extend_over_comma(text, found))
}

fn extend_over_comma(text: &str, r: Range<usize>) -> Range<usize> {
    let rest = &text[r.end..];
    let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    if rest[skipped..].starts_with(',') {
        r.start..r.end + skipped + 1
    } else {
        r
    }
}

/// The key-value in `t` (or in a table below it) whose key starts at `at`.
fn find_in_table(t: &dyn TableLike, at: usize) -> Option<Range<usize>> {
    for (k, _) in t.iter() {
        let (key, item) = t.get_key_value(k)?;
        if key.span().is_some_and(|s| s.start == at) {
            return match item {
                Item::Value(v) => Some(at..v.span()?.end),
                _ => None,
            };
        }
        if let Some(r) = find_in_item(item, at) {
            return Some(r);
        }
    }
    None
}

fn find_in_item(item: &Item, at: usize) -> Option<Range<usize>> {
    match item {
        Item::Table(t) => find_in_table(t, at),
        Item::ArrayOfTables(a) => a.iter().find_map(|t| find_in_table(t, at)),
        Item::Value(v) => find_in_value(v, at),
        Item::None => None,
    }
}

fn find_in_value(v: &Value, at: usize) -> Option<Range<usize>> {
    match v {
        Value::InlineTable(t) => find_in_table(t, at),
        Value::Array(a) => a.iter().find_map(|v| find_in_value(v, at)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[quarantine]\nregistry = \"r\"\n[live]\nregistry = \"r\"\n";

    fn messages(text: &str) -> (bool, Vec<String>) {
        let r = read(text);
        (
            r.raw.is_some(),
            r.errors.into_iter().map(|e| e.message).collect(),
        )
    }

    #[test]
    fn every_unknown_key_is_reported_at_its_place_and_the_rest_still_reads() {
        let text = format!(
            "{BASE}bogus = 1\n[registries.r]\nendpoint = \"http://x\"\nuser = \"é\"\n\
             [[images]]\nsource = \"a/b:1\"\nplatfroms = [\n  \"linux/amd64\",\n]\n\
             [[images]]\nsource = \"a/c:1\"\n"
        );
        let r = read(&text);
        assert!(
            r.raw.is_some(),
            "the rest reads once the unknown keys are out"
        );
        let found: Vec<(String, String)> = r
            .errors
            .iter()
            .map(|e| {
                let s = e.span.clone().unwrap();
                (text[s].to_string(), e.message.clone())
            })
            .collect();
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["bogus", "user", "platfroms"], "{found:?}");
        assert!(found.iter().all(|(_, m)| m.contains("unknown field")));
    }

    #[test]
    fn unknown_keys_in_inline_tables_go_with_their_comma() {
        let text = format!(
            "images = [{{ bogus = 1, source = \"a/b:1\" }}, {{ source = \"a/c:1\", tagg = \"x\" }}]\n{BASE}"
        );
        let (read, errors) = messages(&text);
        assert!(read, "{errors:?}");
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn other_errors_stop_the_reading_and_are_reported() {
        let (read, errors) = messages(&format!(
            "{BASE}bogus = 1\n[gate]\nmax_verdict_age = 7\n[registries.r]\nuser = 1\n"
        ));
        assert!(!read);
        assert!(
            errors.iter().any(|e| e.contains("invalid type")),
            "{errors:?}"
        );
        assert!(errors.len() <= 3, "{errors:?}");
        let (read, errors) = messages("this is not toml");
        assert!(!read);
        assert_eq!(errors.len(), 1);
    }
}
