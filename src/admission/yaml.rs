//! A small YAML writer for the policies: block mappings (keys in the order the JSON value
//! holds them), block sequences, plain scalars only where YAML cannot read them as anything
//! but the same string, literal blocks for multi-line text, JSON double quotes otherwise
//! (a JSON string is a valid YAML double-quoted scalar).

use serde_json::Value;

/// One YAML document (no `---`), ending with a newline.
pub fn document(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&inline(other).unwrap_or_else(|| quoted(other)));
            out.push('\n');
        }
    }
    out
}

/// A scalar as YAML reads it back unchanged: plain when that is unambiguous, else quoted.
pub fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else if !s.chars().any(|c| c.is_control() || c == '\u{feff}') {
        // Single quotes: backslashes stay literal, only `'` is doubled.
        format!("'{}'", s.replace('\'', "''"))
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

fn is_plain_safe(s: &str) -> bool {
    let first = match s.bytes().next() {
        Some(b) => b,
        None => return false,
    };
    let reserved = ["y", "n", "yes", "no", "true", "false", "on", "off", "null"];
    (first.is_ascii_alphabetic() || first == b'/')
        && !reserved.contains(&s.to_ascii_lowercase().as_str())
        && !s.ends_with(':')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'@' | b':' | b'-')
        })
}

fn quoted(v: &Value) -> String {
    serde_json::to_string(v).expect("json")
}

/// A value that fits after `key: ` on one line, or None for a non-empty collection or a
/// multi-line string.
fn inline(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if literal_block(s).is_some() => None,
        Value::String(s) => Some(scalar(s)),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// Multi-line text a literal block keeps exactly: its indicator (`|` or `|-`) and lines.
fn literal_block(s: &str) -> Option<(&'static str, Vec<&str>)> {
    if !s.contains('\n') {
        return None;
    }
    let (body, indicator) = match s.strip_suffix('\n') {
        Some(b) => (b, "|"),
        None => (s, "|-"),
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let ok = !body.ends_with('\n')
        && !lines
            .first()
            .is_some_and(|l| l.starts_with(' ') || l.is_empty())
        && lines.iter().all(|l| {
            !l.ends_with(' ')
                && l.chars()
                    .all(|c| c == '\t' || (!c.is_control() && c != '\u{feff}'))
        });
    ok.then_some((indicator, lines))
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        out.push_str(&pad(indent));
        out.push_str(&scalar(k));
        out.push(':');
        write_after_key(out, v, indent);
    }
}

/// The value of a mapping key at `indent` (the key and `:` are written).
fn write_after_key(out: &mut String, v: &Value, indent: usize) {
    if let Some(s) = inline(v) {
        out.push(' ');
        out.push_str(&s);
        out.push('\n');
        return;
    }
    match v {
        Value::String(s) => {
            let (indicator, lines) = literal_block(s).expect("a literal block");
            out.push(' ');
            out.push_str(indicator);
            out.push('\n');
            for l in lines {
                if !l.is_empty() {
                    out.push_str(&pad(indent + 2));
                    out.push_str(l);
                }
                out.push('\n');
            }
        }
        Value::Object(m) => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) => {
            out.push('\n');
            write_seq(out, a, indent);
        }
        _ => unreachable!("scalars are inline"),
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for item in a {
        out.push_str(&pad(indent));
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key shares the line with `- `.
                let mut inner = String::new();
                write_map(&mut inner, m, indent + 2);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => match inline(other) {
                Some(s) => {
                    out.push(' ');
                    out.push_str(&s);
                    out.push('\n');
                }
                None => {
                    // A multi-line string item: quoted keeps it on one line.
                    out.push(' ');
                    out.push_str(&quoted(other));
                    out.push('\n');
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_that_yaml_would_misread_are_quoted() {
        assert_eq!(scalar("it's \\."), "'it''s \\.'");
        assert_eq!(scalar("a\tb"), "\"a\\tb\"");
        for s in [
            "", "true", "No", "null", "1.30", "0x1f", "-x", "a: b", "a #b", "x:", "*a", "&a", "'a",
            "\"a", "{a}", "[a]", "a b",
        ] {
            assert!(scalar(s).starts_with(['\'', '"']), "{s:?} → {}", scalar(s));
        }
        for s in [
            "Pod",
            "kube-system",
            "sha256:abc",
            "acr.io/live/a@sha256:ab",
            "v1",
            "/x",
        ] {
            assert_eq!(scalar(s), s);
        }
    }

    #[test]
    fn nested_documents() {
        let v = json!({
            "a": {"b": [ {"c": "d", "e": ["f", ""]}, "g" ], "h": []},
            "r": "line 1\n  line 2\n\nend\n",
            "s": "no newline at end\nx",
        });
        assert_eq!(
            document(&v),
            "a:\n  b:\n  - c: d\n    e:\n    - f\n    - \'\'\n  - g\n  h: []\nr: |\n  line 1\n    line 2\n\n  end\ns: |-\n  no newline at end\n  x\n"
        );
    }

    #[test]
    fn multi_line_text_that_a_block_would_change_is_quoted() {
        for s in [" lead\nx", "trail \nx", "two\n\n", "\nfirst empty"] {
            let d = document(&json!({ "k": s }));
            assert!(
                d.starts_with("k: '") || d.starts_with("k: \""),
                "{s:?}: {d}"
            );
        }
    }
}
