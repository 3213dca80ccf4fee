//! Duplicate keys in a scanner's report. serde_json (like most JSON readers) silently keeps
//! the last value of a repeated key, so `{"Severity": "CRITICAL", "Severity": "LOW"}` reads
//! as LOW here and may read as CRITICAL elsewhere: a report that repeats a key in any object
//! is refused, and the gate fails closed. Keys are compared after unescaping (`"Sev\u0065rity"`
//! is `Severity`) and as Go's `encoding/json` matches them, ignoring case (`severity`,
//! `SEVERITY`; `ſ` is `s`, the Kelvin sign `k`): the scanners and most consumers of their
//! reports are Go programs, and to them such keys are the same field.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Err naming the first repeated key and where it is (`Results[0].Vulnerabilities[2]`).
/// The bytes are expected to be valid JSON already; a syntax error is reported as is.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Walk { at: &Node::Root }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
}

/// Where a value is: a chain of keys and indexes back to the document root.
enum Node<'a> {
    Root,
    Key(&'a Node<'a>, &'a str),
    Index(&'a Node<'a>, usize),
}

impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Root => f.write_str("the top level"),
            Node::Key(Node::Root, k) => f.write_str(k),
            Node::Key(parent, k) => write!(f, "{parent}.{k}"),
            Node::Index(Node::Root, i) => write!(f, "[{i}]"),
            Node::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Visits every value, checking the keys of every object.
struct Walk<'a> {
    at: &'a Node<'a>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walk {
                at: &Node::Index(self.at, i),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Folded key -> the key as first written.
        let mut seen: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let folded = fold(&key);
            if let Some(first) = seen.get(&folded) {
                let same = if *first == key {
                    String::new()
                } else {
                    format!(" (the same as `{first}` to a case-insensitive reader)")
                };
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`{same} in {}",
                    match self.at {
                        Node::Root => "the top-level object".to_string(),
                        at => format!("the object at {at}"),
                    }
                )));
            }
            map.next_value_seed(Walk {
                at: &Node::Key(self.at, &key),
            })?;
            seen.insert(folded, key);
        }
        Ok(())
    }
}

/// A key as Go compares it to a field name: simple case folding.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_pass() {
        for ok in [
            &b"{}"[..],
            b"[]",
            b"null",
            b"\"x\"",
            br#"{"a": 1, "b": {"a": 2, "b": [{"a": 3}, {"a": 4}]}, "c": 5}"#,
            br#"[{"Severity": "LOW"}, {"Severity": "HIGH"}]"#,
        ] {
            assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn a_repeated_key_anywhere_is_named_with_its_place() {
        let e = check(br#"{"SchemaVersion": 2, "SchemaVersion": 1}"#).unwrap_err();
        assert!(
            e.starts_with("duplicate key `SchemaVersion` in the top-level object"),
            "{e}"
        );
        let e = check(
            br#"{"Results": [{"Vulnerabilities": [{"Severity": "LOW"},
                {"VulnerabilityID": "CVE-1", "Severity": "CRITICAL", "Severity": "LOW"}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "duplicate key `Severity` in the object at Results[0].Vulnerabilities[1]"
            ),
            "{e}"
        );
        assert!(e.contains("line 2"), "serde_json says where: {e}");
        // Escapes are decoded before comparing.
        let e = check(br#"{"matches": [], "m\u0061tches": []}"#).unwrap_err();
        assert!(e.contains("duplicate key `matches`"), "{e}");
        // Keys a Go reader takes for the same field.
        for (json, key) in [
            (
                &br#"{"Severity": "LOW", "severity": "CRITICAL"}"#[..],
                "`severity` (the same as `Severity`",
            ),
            (
                br#"{"VulnerabilityID": "a", "VULNERABILITYID": "b"}"#,
                "`VULNERABILITYID`",
            ),
            (
                "{\"Status\": 1, \"\u{17f}tatus\": 2}".as_bytes(),
                "`\u{17f}tatus`",
            ),
        ] {
            let e = check(json).unwrap_err();
            assert!(e.contains(&format!("duplicate key {key}")), "{e}");
        }
        let e = check(br#"[1, [{"a": {}, "a": {}}]]"#).unwrap_err();
        assert!(e.contains("the object at [1][0]"), "{e}");
    }
}
