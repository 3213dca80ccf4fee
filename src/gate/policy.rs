//! Built-in policy checks (`scanners = ["policy"]`): decided from manifests and image configs
//! alone, no vulnerability database. A check the team configured is a requirement, so its
//! findings are `critical` and block whatever `fail_on` says.

use crate::config::Policy;
use crate::model::manifest::ContentRef;
use crate::model::{Platform, Severity};
use crate::records::Finding;

pub const SCANNER: &str = "policy";

pub use crate::model::finding_id::{
    CONFIG_MISMATCH, FOREIGN_LAYER, IMAGE_AGE, LABEL_MISSING, PLATFORM_MISSING, ROOT_USER, SIZE,
};

/// What the checks look at for one platform image.
pub struct PlatformImage {
    pub platform: Option<Platform>,
    pub config: serde_json::Value,
    pub config_size: u64,
    pub layers: Vec<ContentRef>,
}

fn finding(id: &str, severity: Severity, message: String, platform: Option<&Platform>) -> Finding {
    Finding {
        id: id.to_string(),
        severity,
        scanner: SCANNER.to_string(),
        message,
        package: None,
        installed_version: None,
        fixed_version: None,
        platform: platform.map(|p| p.to_string()),
        allowed_by: None,
    }
}

/// The platform an image config declares.
pub fn config_platform(config: &serde_json::Value) -> Option<Platform> {
    let os = config.get("os")?.as_str()?;
    let arch = config.get("architecture")?.as_str()?;
    Some(Platform::new(
        os,
        arch,
        config.get("variant").and_then(|v| v.as_str()),
    ))
}

/// Run every configured check over the images of one manifest (one per platform).
pub fn check(policy: &Policy, images: &[PlatformImage], now: time::OffsetDateTime) -> Vec<Finding> {
    let mut out = Vec::new();
    let offered: Vec<Platform> = images
        .iter()
        .filter_map(|i| i.platform.clone().or_else(|| config_platform(&i.config)))
        .collect();
    for want in &policy.platforms {
        if !offered.iter().any(|p| want.selects(p)) {
            out.push(finding(
                PLATFORM_MISSING,
                Severity::Critical,
                format!(
                    "required platform {want} is not offered (offered: {})",
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                None,
            ));
        }
    }
    for img in images {
        let platform = img
            .platform
            .clone()
            .or_else(|| config_platform(&img.config));
        let p = platform.as_ref();
        let cfg = img.config.get("config");
        if policy.forbid_root
            && let Some(why) = root_user(cfg.and_then(|c| c.get("User")))
        {
            out.push(finding(
                ROOT_USER,
                Severity::Critical,
                format!("the image runs as root ({why})"),
                p,
            ));
        }
        if let Some(max) = policy.max_size {
            // Checked: a descriptor claiming 2^64-1 bytes must not wrap the sum below the limit.
            let total = crate::model::size::checked_total(
                std::iter::once(img.config_size).chain(img.layers.iter().map(|l| l.size)),
            );
            let over = match total {
                Some(size) if size > max => Some(crate::model::size::format_size(size)),
                Some(_) => None,
                None => Some("more than 2^64 bytes (the descriptor sizes overflow)".to_string()),
            };
            if let Some(size) = over {
                out.push(finding(
                    SIZE,
                    Severity::Critical,
                    format!(
                        "compressed size {size} exceeds max_size {}",
                        crate::model::size::format_size(max)
                    ),
                    p,
                ));
            }
        }
        let labels = cfg
            .and_then(|c| c.get("Labels"))
            .and_then(|l| l.as_object());
        for label in &policy.required_labels {
            if labels.is_none_or(|l| {
                l.get(label)
                    .and_then(|v| v.as_str())
                    .is_none_or(|v| v.is_empty())
            }) {
                out.push(finding(
                    LABEL_MISSING,
                    Severity::Critical,
                    format!("required label `{label}` is missing"),
                    p,
                ));
            }
        }
        if let Some(days) = policy.max_age_days {
            let created = img
                .config
                .get("created")
                .and_then(|c| c.as_str())
                .and_then(|c| {
                    time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            match created {
                Some(c) if (now - c).whole_days() > days as i64 => out.push(finding(
                    IMAGE_AGE,
                    Severity::Critical,
                    format!(
                        "the image was built {} days ago (max_age {days} days)",
                        (now - c).whole_days()
                    ),
                    p,
                )),
                Some(_) => {}
                None => out.push(finding(
                    IMAGE_AGE,
                    Severity::Critical,
                    "the image config has no valid `created` time, so its age cannot be checked"
                        .into(),
                    p,
                )),
            }
        }
        for l in &img.layers {
            if l.media_type.contains("foreign") || l.media_type.contains("nondistributable") {
                out.push(finding(
                    FOREIGN_LAYER,
                    Severity::Medium,
                    format!("layer {} is non-distributable ({}) and is fetched from elsewhere at pull time", l.digest.short(), l.media_type),
                    p,
                ));
            }
        }
        if img.config.get("rootfs").is_none_or(|r| {
            r.get("diff_ids")
                .and_then(|d| d.as_array())
                .is_none_or(|d| d.len() != img.layers.len())
        }) {
            out.push(finding(
                CONFIG_MISMATCH,
                Severity::High,
                "the config's rootfs.diff_ids do not match the manifest's layers".into(),
                p,
            ));
        }
    }
    out
}

/// Why the config's `User` makes the container run as root, read the way container runtimes
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
pub fn root_user(user: Option<&serde_json::Value>) -> Option<String> {
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

/// Whether a user part is a number the runtime reads as uid 0 (see [`root_user`]).
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
    use crate::model::Digest;

    fn img(user: &str, labels: serde_json::Value, size: u64) -> PlatformImage {
        PlatformImage {
            platform: None,
            config: serde_json::json!({
                "os": "linux", "architecture": "amd64", "created": "2026-11-01T00:00:00Z",
                "config": {"User": user, "Labels": labels},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:x"]}
            }),
            config_size: 100,
            layers: vec![ContentRef {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: Digest::of(b"l"),
                size,
                platform: None,
            }],
        }
    }

    #[test]
    fn checks_fire_only_when_configured() {
        let now = time::macros::datetime!(2026-11-27 0:00 UTC);
        let none = check(
            &Policy::default(),
            &[img("", serde_json::json!({}), 10)],
            now,
        );
        assert!(none.is_empty(), "{none:?}");
        let policy = Policy {
            platforms: vec![
                "linux/arm64".parse().unwrap(),
                "linux/amd64".parse().unwrap(),
            ],
            forbid_root: true,
            max_size: Some(1000),
            required_labels: vec!["org.opencontainers.image.source".into()],
            max_age_days: Some(7),
        };
        let f = check(&policy, &[img("0:0", serde_json::json!({}), 5000)], now);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                "AIRLOCK-PLATFORM-MISSING",
                "AIRLOCK-ROOT-USER",
                "AIRLOCK-SIZE",
                "AIRLOCK-LABEL-MISSING",
                "AIRLOCK-IMAGE-AGE"
            ]
        );
        let ok = check(
            &Policy {
                platforms: vec!["linux/amd64".parse().unwrap()],
                ..policy.clone()
            },
            &[{
                let mut i = img(
                    "1000",
                    serde_json::json!({"org.opencontainers.image.source": "x"}),
                    10,
                );
                i.config["created"] = serde_json::json!("2026-11-25T00:00:00Z");
                i
            }],
            now,
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    /// The runtime's reading of `User`, case by case (see `root_user` for the rules).
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
        for user in root {
            let v = serde_json::json!(user);
            assert!(root_user(Some(&v)).is_some(), "`{user}` runs as root");
        }
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
        for user in not_root {
            let v = serde_json::json!(user);
            assert_eq!(root_user(Some(&v)), None, "`{user}` is not root");
        }
        // Missing or null: the default user. Not a string: no runtime can read it.
        assert!(root_user(None).unwrap().contains("empty"));
        assert!(root_user(Some(&serde_json::Value::Null)).is_some());
        for odd in [
            serde_json::json!(0),
            serde_json::json!(1000),
            serde_json::json!(["x"]),
        ] {
            let why = root_user(Some(&odd)).unwrap();
            assert!(why.contains("not a string"), "{why}");
        }
        assert_eq!(
            root_user(Some(&serde_json::json!("00:1"))).unwrap(),
            "config User is `00:1`: uid 0"
        );
    }

    #[test]
    fn forbid_root_blocks_every_spelling_of_uid_0() {
        let now = time::macros::datetime!(2026-11-27 0:00 UTC);
        let policy = Policy {
            forbid_root: true,
            ..Policy::default()
        };
        for user in ["00", "+0", "0000:1"] {
            let f = check(&policy, &[img(user, serde_json::json!({}), 10)], now);
            assert_eq!(f.len(), 1, "{user}: {f:?}");
            assert_eq!(f[0].id, ROOT_USER);
            assert_eq!(f[0].severity, Severity::Critical);
            assert!(
                f[0].message.contains(&format!("`{user}`")),
                "{}",
                f[0].message
            );
        }
        assert!(check(&policy, &[img("65534:0", serde_json::json!({}), 10)], now).is_empty());
    }

    #[test]
    fn a_size_sum_that_overflows_fails_closed() {
        let now = time::macros::datetime!(2026-11-27 0:00 UTC);
        let policy = Policy {
            max_size: Some(100 << 10),
            ..Policy::default()
        };
        // One layer of 2^64-1 bytes: config (100) + layer wraps to 99 without checking.
        let mut huge = img("1000", serde_json::json!({}), u64::MAX);
        let f = check(&policy, std::slice::from_ref(&huge), now);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].id, SIZE);
        assert!(f[0].message.contains("overflow"), "{}", f[0].message);
        // Two layers whose sum wraps.
        huge.layers[0].size = u64::MAX / 2 + 1;
        huge.layers.push(huge.layers[0].clone());
        huge.config["rootfs"]["diff_ids"] = serde_json::json!(["sha256:x", "sha256:y"]);
        let f = check(&policy, std::slice::from_ref(&huge), now);
        assert_eq!(f.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), [SIZE]);
        // The limit itself passes; one byte more fails.
        let at = img("1000", serde_json::json!({}), (100 << 10) - 100);
        assert!(check(&policy, &[at], now).is_empty());
        let over = img("1000", serde_json::json!({}), (100 << 10) - 99);
        assert_eq!(check(&policy, &[over], now).len(), 1);
    }
}
