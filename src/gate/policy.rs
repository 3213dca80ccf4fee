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
    /// The image config (`null` when it is not JSON).
    pub config: serde_json::Value,
    /// Every value a runtime could read as `config.User` (see `gate::user`).
    pub users: Vec<serde_json::Value>,
    pub config_size: u64,
    pub layers: Vec<ContentRef>,
}

impl PlatformImage {
    /// Read an image config's bytes.
    pub fn new(
        platform: Option<Platform>,
        config: &[u8],
        config_size: u64,
        layers: Vec<ContentRef>,
    ) -> PlatformImage {
        PlatformImage {
            platform,
            config: serde_json::from_slice(config).unwrap_or(serde_json::Value::Null),
            users: super::user::user_values(config),
            config_size,
            layers,
        }
    }
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
            && let Some(why) = super::user::root_user(&img.users)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Digest;

    fn img(user: &str, labels: serde_json::Value, size: u64) -> PlatformImage {
        let config = serde_json::json!({
            "os": "linux", "architecture": "amd64", "created": "2026-11-01T00:00:00Z",
            "config": {"User": user, "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:x"]}
        });
        PlatformImage::new(
            None,
            &serde_json::to_vec(&config).unwrap(),
            100,
            vec![ContentRef {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: Digest::of(b"l"),
                size,
                platform: None,
            }],
        )
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

    #[test]
    fn forbid_root_blocks_every_spelling_of_uid_0() {
        // A config that spells User twice: the runtime may read either.
        let two = PlatformImage::new(
            None,
            br#"{"config": {"User": "1000", "user": "0"}, "rootfs": {"diff_ids": []}}"#,
            10,
            vec![],
        );
        let f = check(
            &Policy {
                forbid_root: true,
                ..Policy::default()
            },
            &[two],
            time::macros::datetime!(2026-11-27 0:00 UTC),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].id, ROOT_USER);
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
