//! How a container runtime reads the image config's `User`, for `forbid_root`. The runtime
//! (containerd, CRI-O, docker) decodes the config with Go's `encoding/json`, which matches
//! keys case-insensitively (`user`, `USER`, even `uſer` with a long s are `User`) and keeps
//! the last of repeated keys; airlock's JSON reader does neither. So every value that a
//! runtime could take as `config.User` is collected ([`user_values`]) and the image runs as
//! root if any of them is root, or if there is none ([`root_user`]).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Why the config makes the container run as root (None when it does not), given every
/// value a runtime could read as its `User`.
pub fn root_user(values: &[serde_json::Value]) -> Option<String> {
    if values.is_empty() {
        return one_root_user(None);
    }
    let why = values.iter().find_map(|v| one_root_user(Some(v)))?;
    Some(if values.len() > 1 {
        format!("{why}; the config spells User {} times", values.len())
    } else {
        why
    })
}

/// Every value under a key Go would decode as `config.User`: keys equal to `config` and
/// `User` under Go's case folding, at any repetition, in document order. Empty when the
/// config has none (or is not a JSON object).
pub fn user_values(config: &[u8]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(config);
    // Not JSON (or not an object): the runtime cannot read it either; what was found so
    // far is kept, and none found means root.
    let _ = (Top { out: &mut out }).deserialize(&mut de);
    out
}

/// Go's key matching: equal under simple case folding. Besides ASCII case, `ſ` (U+017F)
/// folds to `s` and the Kelvin sign (U+212A) to `k`.
fn go_fold_eq(key: &str, name: &str) -> bool {
    let folded = key.chars().map(|c| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(name.chars())
}

/// The top-level object: descend into every `config`.
struct Top<'a> {
    out: &'a mut Vec<serde_json::Value>,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an image config object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if go_fold_eq(&key, "config") {
                let v: serde_json::Value = map.next_value()?;
                if let serde_json::Value::Object(_) = v {
                    Config { out: self.out }
                        .deserialize(v)
                        .map_err(serde::de::Error::custom)?;
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A `config` object: collect every `User`. Its keys arrive as serde_json left them (a
/// repeated key inside one object keeps only its last value, which is also what Go keeps).
struct Config<'a> {
    out: &'a mut Vec<serde_json::Value>,
}

impl Config<'_> {
    fn deserialize(self, v: serde_json::Value) -> Result<(), String> {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                if go_fold_eq(&k, "user") {
                    self.out.push(v);
                }
            }
        }
        Ok(())
    }
}

/// Why one `User` value makes the container run as root, read the way container runtimes
/// read it; None when it does not. Only the user part (before the first `:`) matters: the
/// group never makes a process root.
///
/// - missing, `null` or empty user part: the runtime's default, uid 0;
/// - `root` by name (the image's own `/etc/passwd` is not read: another name mapped to uid 0
///   there is not seen);
/// - a number whose value is 0 as the runtime parses it: Go's `strconv.Atoi` takes a sign and
///   any number of leading zeros (`0`, `00`, `+0`, `-0`, `0000:1`), and containerd releases
///   that convert with `uint32(v)` wrap multiples of 2^32 (`4294967296`) to 0. A base-prefixed
///   zero (`0x0`, `0o0`, `0b0`, `0_0`), which a base-0 Go parse accepts, counts too.
///
/// Decided toward blocking: whitespace around the user part is ignored (runc would refuse to
/// start `" 0"`, but a runtime that trims runs it as root), and a `User` that is not a string
/// (a runtime cannot read the config) is reported.
fn one_root_user(user: Option<&serde_json::Value>) -> Option<String> {
    let user = match user {
        None | Some(serde_json::Value::Null) => "",
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(other) => return Some(format!("config User is not a string: {other}")),
    };
    let name = user.split(':').next().unwrap_or("").trim();
    let shown = if user.is_empty() {
        "config User is empty".to_string()
    } else {
        format!("config User is `{user}`")
    };
    if name.is_empty() {
        return Some(format!("{shown}: the runtime's default user, uid 0"));
    }
    if name == "root" {
        return Some(shown);
    }
    numeric_zero(name).then(|| format!("{shown}: uid 0"))
}

/// Whether a user part is a number the runtime reads as uid 0 (see [`one_root_user`]).
fn numeric_zero(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        // The value modulo 2^32: what `uint32(v)` keeps.
        let rem = unsigned
            .bytes()
            .fold(0u64, |r, b| (r * 10 + u64::from(b - b'0')) % (1 << 32));
        return rem == 0;
    }
    // Go base-0 literals: 0x…, 0o…, 0b…, digits with `_` separators.
    let lower = unsigned.to_ascii_lowercase();
    let digits = ["0x", "0o", "0b"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    digits.contains('0') && digits.bytes().all(|b| b == b'0' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's reading of `User`, case by case (see `one_root_user` for the rules).
    #[test]
    fn root_is_read_as_the_runtime_reads_it() {
        let root = [
            "",
            "0",
            "00",
            "0000",
            "+0",
            "-0",
            "0000:1",
            "0:0",
            "0:1000",
            ":1000",
            ":",
            "root",
            "root:root",
            "root:1000",
            " 0",
            "0 ",
            " root",
            "4294967296",
            "+4294967296",
            "-4294967296",
            "8589934592:5",
            "0x0",
            "0X00",
            "0o0",
            "0b0",
            "0_0",
            "-0x0",
        ];
        let not_root = [
            "1000",
            "1000:0",
            "65534:0",
            "nobody",
            "nobody:root",
            "ROOT",
            "Root",
            "rootless",
            "toor",
            "1",
            "+1",
            "-1",
            "4294967295",
            "4294967297",
            "0x1",
            "0_1",
            "+",
            "-",
            "0x",
            "_",
            "1000:",
            "10 00",
        ];
        for (users, is_root) in [(&root[..], true), (&not_root[..], false)] {
            for user in users {
                let v = serde_json::json!(user);
                let why = one_root_user(Some(&v));
                assert_eq!(why.is_some(), is_root, "`{user}`: {why:?}");
            }
        }
        // Missing or null: the default user. Not a string: no runtime can read it.
        assert!(one_root_user(None).unwrap().contains("empty"));
        assert!(one_root_user(Some(&serde_json::Value::Null)).is_some());
        for odd in [
            serde_json::json!(0),
            serde_json::json!(1000),
            serde_json::json!(["x"]),
        ] {
            let why = one_root_user(Some(&odd)).unwrap();
            assert!(why.contains("not a string"), "{why}");
        }
        assert_eq!(
            one_root_user(Some(&serde_json::json!("00:1"))).unwrap(),
            "config User is `00:1`: uid 0"
        );
    }

    #[test]
    fn every_spelling_of_user_is_collected() {
        let users = |json: &str| user_values(json.as_bytes());
        assert_eq!(
            users(r#"{"config": {"User": "1000"}}"#),
            [serde_json::json!("1000")]
        );
        assert_eq!(
            users(r#"{"config": {"User": "1000", "user": "0"}}"#).len(),
            2
        );
        assert_eq!(
            users(r#"{"config": {"USER": "0"}}"#),
            [serde_json::json!("0")]
        );
        assert_eq!(
            users(r#"{"config": {"u\u017fer": "0"}}"#),
            [serde_json::json!("0")]
        );
        assert_eq!(
            users("{\"config\": {\"u\u{17f}er\": \"0\"}}"),
            [serde_json::json!("0")]
        );
        assert_eq!(
            users(r#"{"Config": {"User": "1000"}, "config": {"User": "0"}}"#).len(),
            2
        );
        assert!(users(r#"{"config": {"Username": "0"}}"#).is_empty());
        assert!(users(r#"{"config": null}"#).is_empty());
        assert!(users("not json").is_empty());
        assert!(users("[]").is_empty());

        let root = |json: &str| root_user(&users(json));
        assert!(
            root(r#"{"config": {"User": "1000", "USER": "0"}}"#)
                .unwrap()
                .contains("2 times")
        );
        assert!(root(r#"{"config": {"User": "1000"}}"#).is_none());
        assert!(root(r#"{"config": {}}"#).unwrap().contains("empty"));
        assert!(root("{}").is_some());
        assert!(root(r#"{"config": {"User": "1000"}, "config": {"User": "0"}}"#).is_some());
    }
}
