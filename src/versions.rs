//! Which upstream tags are newer versions of a declared tag (pure; `airlock outdated`).
//!
//! A tag is a version when it is a well-formed tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) and
//! reads `[v]MAJOR[.MINOR[.PATCH]][-SUFFIX]`: one to three numeric components (no leading
//! zeros, as in semver), optionally prefixed by `v`, then nothing or a suffix starting with
//! `-`. Everything else (`latest`, `stable`, `main`, `1.2.3.4`,
//! `sha-1a2b3c`) is not a version and is never offered as an upgrade.
//!
//! Rules, decided for `outdated` and documented in README.md ("Day two"):
//! - **Same precision.** Candidates have as many numeric components as the declared tag:
//!   `1.33` (a rolling minor tag) is compared with `1.34`, `1.36`; `1.33.0` with `1.34.0`,
//!   `1.36.1`. Missing components count as 0 for ordering (`1.33` is 1.33.0).
//! - **`v` is spelling, not meaning.** `v1.2.3` and `1.2.3` are the same version; when both
//!   exist, the spelling of the declared tag wins.
//! - **Suffixes.** A suffix that reads like a prerelease (`-rc.1`, `-beta2`, `-alpha`,
//!   `-pre`, `-dev`…) is a prerelease; any other suffix (`-alpine`, `-slim-bookworm`) is a
//!   variant. A stable declared tag gets stable candidates only; a variant gets
//!   candidates with exactly the same suffix (`-alpine` stays `-alpine`, `-alpine3.18` is a
//!   different variant); a prerelease gets stable and prerelease candidates, ordered by semver
//!   (`1.0.0-rc.2` < `1.0.0`; identifiers with letters compare as text, so `rc10` < `rc2`).

use std::cmp::Ordering;

use semver::{Prerelease, Version};

/// A tag read as a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionTag {
    /// The tag as the registry spells it.
    pub tag: String,
    /// Spelled with a leading `v`.
    pub v: bool,
    /// Number of numeric components written (1–3).
    pub precision: u8,
    /// The semver reading: missing components are 0; the prerelease only for a prerelease
    /// suffix.
    pub version: Version,
    /// Everything after the numeric components (`""`, `-alpine`, `-rc.1`).
    pub suffix: String,
    pub kind: SuffixKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuffixKind {
    Stable,
    Prerelease,
    Variant,
}

/// `None` when the tag is not a version (see the module documentation).
pub fn parse(tag: &str) -> Option<VersionTag> {
    // Registry answers are untrusted: only well-formed tags are ever read (and shown).
    if !crate::model::reference::valid_tag(tag) {
        return None;
    }
    let (v, rest) = match tag.strip_prefix('v') {
        Some(r) => (true, r),
        None => (false, tag),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (numbers, suffix) = rest.split_at(end);
    if !(suffix.is_empty() || suffix.starts_with('-')) {
        return None;
    }
    let parts: Vec<&str> = numbers.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut nums = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        nums[i] = p.parse().ok()?;
    }
    let kind = classify(suffix);
    let mut version = Version::new(nums[0], nums[1], nums[2]);
    if kind == SuffixKind::Prerelease {
        version.pre = Prerelease::new(&suffix[1..]).ok()?;
    }
    Some(VersionTag {
        tag: tag.to_string(),
        v,
        precision: parts.len() as u8,
        version,
        suffix: suffix.to_string(),
        kind,
    })
}

/// Prerelease when the suffix is `-` + a prerelease word, optionally followed by digits,
/// dots and dashes (`-rc`, `-rc.1`, `-beta2`, `-alpha-1`); variant otherwise.
fn classify(suffix: &str) -> SuffixKind {
    let Some(body) = suffix.strip_prefix('-') else {
        return if suffix.is_empty() {
            SuffixKind::Stable
        } else {
            SuffixKind::Variant
        };
    };
    let body = body.to_ascii_lowercase();
    const WORDS: [&str; 12] = [
        "alpha", "beta", "rc", "pre", "preview", "dev", "snapshot", "nightly", "canary", "test",
        "a", "b",
    ];
    let word_end = body
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(body.len());
    let (word, tail) = body.split_at(word_end);
    let tail_ok = tail
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    if WORDS.contains(&word) && tail_ok && !(word.len() == 1 && tail.is_empty()) {
        SuffixKind::Prerelease
    } else {
        SuffixKind::Variant
    }
}

/// What the tags of a repository say about a declared tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// The declared tag is not a version: nothing to compare.
    NotAVersion,
    /// Newer versions, oldest first (empty: up to date). `latest` is the newest version
    /// among the declared tag and its candidates.
    Versions { latest: String, newer: Vec<String> },
}

/// Compare `declared` with every tag of its repository.
pub fn newer(declared: &str, tags: &[String]) -> Comparison {
    let Some(current) = parse(declared) else {
        return Comparison::NotAVersion;
    };
    let mut candidates: Vec<VersionTag> = tags
        .iter()
        .filter_map(|t| parse(t))
        .filter(|c| c.precision == current.precision && compatible(&current, c))
        .filter(|c| c.version > current.version)
        .collect();
    // Oldest first; for one version, the declared spelling (`v` or not) first, then by tag.
    candidates.sort_by(|a, b| {
        a.version
            .cmp(&b.version)
            .then_with(|| spelled_like(&current, b).cmp(&spelled_like(&current, a)))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    candidates.dedup_by(|later, first| later.version.cmp(&first.version) == Ordering::Equal);
    let newer: Vec<String> = candidates.into_iter().map(|c| c.tag).collect();
    let latest = newer
        .last()
        .cloned()
        .unwrap_or_else(|| declared.to_string());
    Comparison::Versions { latest, newer }
}

fn spelled_like(current: &VersionTag, c: &VersionTag) -> bool {
    c.v == current.v
}

/// May `c` replace `current`? Stable → stable; variant → the same variant; prerelease →
/// stable or prerelease.
fn compatible(current: &VersionTag, c: &VersionTag) -> bool {
    match current.kind {
        SuffixKind::Stable => c.kind == SuffixKind::Stable,
        SuffixKind::Variant => c.kind == SuffixKind::Variant && c.suffix == current.suffix,
        SuffixKind::Prerelease => matches!(c.kind, SuffixKind::Stable | SuffixKind::Prerelease),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// One repository's tags, of every kind the rules distinguish.
    const REPO: &[&str] = &[
        "latest",
        "stable",
        "main",
        "edge",
        "sha-1a2b3c4",
        "1.2.3.4",
        "01.2.3",
        "1.33.0",
        "1.33.1",
        "1.34.0",
        "1.36.1",
        "v1.36.1",
        "1.35.0-rc.1",
        "1.37.0-rc.1",
        "1.37.0-rc.2",
        "1.33.0-alpine",
        "1.34.0-alpine",
        "1.36.1-alpine",
        "1.36.1-alpine3.18",
        "1.37.0-slim",
        "1.33",
        "1.34",
        "1.36",
        "1",
        "2",
        "20230101",
    ];

    fn versions(declared: &str, repo: &[&str]) -> (String, Vec<String>) {
        match newer(declared, &tags(repo)) {
            Comparison::Versions { latest, newer } => (latest, newer),
            Comparison::NotAVersion => panic!("{declared} should be a version"),
        }
    }

    #[test]
    fn the_table() {
        // (declared, latest, newer)
        let cases: &[(&str, &str, &[&str])] = &[
            // stable: stable three-part tags only; the `v` spelling of 1.36.1 is the same
            // version and the declared spelling wins
            ("1.33.0", "1.36.1", &["1.33.1", "1.34.0", "1.36.1"]),
            ("1.36.1", "1.36.1", &[]),
            // v-prefixed declared tag: same versions, its own spelling preferred
            ("v1.34.0", "v1.36.1", &["v1.36.1"]),
            // variant: exactly the same suffix
            (
                "1.33.0-alpine",
                "1.36.1-alpine",
                &["1.34.0-alpine", "1.36.1-alpine"],
            ),
            ("1.36.1-alpine3.18", "1.36.1-alpine3.18", &[]),
            ("1.33.0-slim", "1.37.0-slim", &["1.37.0-slim"]),
            // prerelease: stable and prerelease candidates, semver order
            (
                "1.35.0-rc.1",
                "1.37.0-rc.2",
                &["1.36.1", "1.37.0-rc.1", "1.37.0-rc.2"],
            ),
            // two-part: other two-part tags
            ("1.33", "1.36", &["1.34", "1.36"]),
            // one-part: other one-part tags (a date tag is one big number)
            ("1", "20230101", &["2", "20230101"]),
        ];
        for (declared, latest, newer) in cases {
            let (l, n) = versions(declared, REPO);
            assert_eq!(&l, latest, "latest for {declared}");
            assert_eq!(n, tags(newer), "newer for {declared}");
        }
    }

    #[test]
    fn non_versions_are_not_compared() {
        for declared in [
            "latest",
            "stable",
            "main",
            "sha-1a2b3c4",
            "1.2.3.4",
            "01.2.3",
            "v",
            "1..2",
            "1.2.",
            "1.2.3_x",
            "vv1.2",
            "1.2.3-a|b",
            "1.2.3-alpine\n",
            "1.2.3-`x`",
        ] {
            assert_eq!(
                newer(declared, &tags(REPO)),
                Comparison::NotAVersion,
                "{declared}"
            );
        }
    }

    #[test]
    fn parse_readings() {
        let t = parse("v1.2").unwrap();
        assert!(t.v);
        assert_eq!(t.precision, 2);
        assert_eq!(t.version, Version::new(1, 2, 0));
        assert_eq!(t.kind, SuffixKind::Stable);
        let t = parse("1.2.3-rc.1").unwrap();
        assert_eq!(t.kind, SuffixKind::Prerelease);
        assert_eq!(t.version, Version::parse("1.2.3-rc.1").unwrap());
        // `+` is not allowed in a tag (semver build metadata cannot be a tag)
        assert!(parse("1.2.3+build").is_none());
        assert_eq!(parse("1.2.3-alpine").unwrap().kind, SuffixKind::Variant);
        assert_eq!(parse("1.2.3-beta2").unwrap().kind, SuffixKind::Prerelease);
        assert_eq!(parse("1.2.3-a1").unwrap().kind, SuffixKind::Prerelease);
        // a lone letter is a variant (`-a` could be anything)
        assert_eq!(parse("1.2.3-b").unwrap().kind, SuffixKind::Variant);
        assert_eq!(parse("1.2.3-alpha").unwrap().kind, SuffixKind::Prerelease);
        assert_eq!(parse("1.2.3-rc1-alpine").unwrap().kind, SuffixKind::Variant);
        assert!(parse("18446744073709551616.0.0").is_none());
        assert!(parse("").is_none());
        assert!(parse(&format!("1.2.3-{}", "x".repeat(200))).is_none());
    }

    #[test]
    fn stable_ignores_prereleases_and_variants() {
        let repo = [
            "1.0.0",
            "1.1.0-rc.1",
            "1.1.0-alpine",
            "1.1.0+meta",
            "latest",
        ];
        assert_eq!(versions("1.0.0", &repo), ("1.0.0".into(), vec![]));
    }

    #[test]
    fn mixed_spellings_deduplicate_deterministically() {
        let repo = ["v2.0.0", "2.0.0", "v3.0.0"];
        assert_eq!(
            versions("1.0.0", &repo),
            ("v3.0.0".into(), tags(&["2.0.0", "v3.0.0"]))
        );
        assert_eq!(
            versions("v1.0.0", &repo),
            ("v3.0.0".into(), tags(&["v2.0.0", "v3.0.0"]))
        );
        // the input order does not matter
        let mut rev = repo.to_vec();
        rev.reverse();
        assert_eq!(versions("1.0.0", &rev), versions("1.0.0", &repo));
    }

    #[test]
    fn prerelease_ordering_is_semver() {
        let repo = ["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "0.9.0", "1.0.1-beta.1"];
        assert_eq!(
            versions("1.0.0-rc.1", &repo),
            (
                "1.0.1-beta.1".into(),
                tags(&["1.0.0-rc.2", "1.0.0", "1.0.1-beta.1"])
            )
        );
    }
}
