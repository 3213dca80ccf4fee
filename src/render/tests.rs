//! Snapshots of hand-made plans in every format, the JSON round trip, and plan-file checks.

use super::*;
use crate::model::{Platform, Severity};
use crate::observed::FindingSummary;
use crate::plan::{Location, Op, Precondition};

fn dg(seed: &str) -> Digest {
    Digest::of(seed.as_bytes())
}

fn loc(registry: &str, repository: &str, tag: &str) -> Location {
    Location {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag: Some(tag.to_string()),
    }
}

fn entry(repository: &str, tag: &str, digest: &str) -> CatalogEntry {
    CatalogEntry {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: dg(digest),
    }
}

fn policy() -> Digest {
    dg("policy")
}

/// One image's import → scan → promote chain; `replaces` gives (quarantine, live) old digests.
struct Chain<'a> {
    host: &'a str,
    path: &'a str,
    tag: &'a str,
    digest: Digest,
    size: Option<u64>,
    platform_count: Option<usize>,
    replaces: (Option<Digest>, Option<Digest>),
}

fn chain(c: Chain<'_>) -> Vec<Action> {
    let key = format!("{}:{}", c.path, c.tag);
    let q = loc("acr", &format!("quarantine/{}", c.path), c.tag);
    let l = loc("acr", &format!("live/{}", c.path), c.tag);
    let import = Action {
        id: format!("import:{key}"),
        target: q.clone(),
        digest: c.digest.clone(),
        replaces: c.replaces.0.clone(),
        preconditions: vec![Precondition {
            location: q.clone(),
            digest: c.replaces.0.clone(),
        }],
        depends_on: vec![],
        reason: match c.replaces.0 {
            Some(_) => "quarantine tag points elsewhere".to_string(),
            None => "not in quarantine".to_string(),
        },
        op: Op::Import {
            image: key.clone(),
            source: loc(c.host, c.path, c.tag),
            source_digest: c.digest.clone(),
            platforms: None,
            size: c.size,
            platform_count: c.platform_count,
        },
    };
    let scan = Action {
        id: format!("scan:{key}"),
        target: q.clone(),
        digest: c.digest.clone(),
        replaces: None,
        preconditions: vec![],
        depends_on: vec![import.id.clone()],
        reason: "no verdict".to_string(),
        op: Op::Scan {
            image: key.clone(),
            size: None,
            platform_count: None,
        },
    };
    let promote = Action {
        id: format!("promote:{key}"),
        target: l.clone(),
        digest: c.digest.clone(),
        replaces: c.replaces.1.clone(),
        preconditions: vec![Precondition {
            location: l,
            digest: c.replaces.1.clone(),
        }],
        depends_on: vec![scan.id.clone()],
        reason: match c.replaces.1 {
            Some(_) => "live tag points elsewhere".to_string(),
            None => "not in live".to_string(),
        },
        op: Op::Promote {
            image: key.clone(),
            source: q.clone(),
            size: c.size,
            platform_count: c.platform_count,
        },
    };
    vec![import, scan, promote]
}

/// Two fresh images, one of them a two-platform index.
fn fresh_import() -> Plan {
    let mut actions = chain(Chain {
        host: "docker.io",
        path: "library/busybox",
        tag: "1.33.0",
        digest: dg("busybox-1.33.0"),
        size: Some(1_258_291),
        platform_count: None,
        replaces: (None, None),
    });
    actions.extend(chain(Chain {
        host: "ghcr.io",
        path: "fluxcd/kustomize-controller",
        tag: "v0.6.3",
        digest: dg("kustomize-controller-v0.6.3"),
        size: Some(87_031_808),
        platform_count: Some(2),
        replaces: (None, None),
    }));
    Plan::new(
        PlanParts {
            actions,
            live_after: vec![
                entry("live/library/busybox", "1.33.0", "busybox-1.33.0"),
                entry(
                    "live/fluxcd/kustomize-controller",
                    "v0.6.3",
                    "kustomize-controller-v0.6.3",
                ),
            ],
            ..PlanParts::default()
        },
        policy(),
    )
    .expect("valid plan")
}

/// An upstream tag that moved (replace), a prune delete, and an image the gate blocks.
fn replace_prune_blocked() -> Plan {
    let mut actions = chain(Chain {
        host: "docker.io",
        path: "library/nginx",
        tag: "1.25",
        digest: dg("nginx-1.25-new"),
        size: Some(71_345_152),
        platform_count: Some(1),
        replaces: (Some(dg("nginx-1.25-old")), Some(dg("nginx-1.25-old"))),
    });
    let old = loc("acr", "live/old/thing", "1");
    actions.push(Action {
        id: "delete:live/old/thing:1".to_string(),
        target: old.clone(),
        digest: dg("old-thing-1"),
        replaces: None,
        preconditions: vec![Precondition {
            location: old,
            digest: Some(dg("old-thing-1")),
        }],
        depends_on: vec![],
        reason: "pruned: not declared".to_string(),
        op: Op::Delete { image: None },
    });
    let blocked = Blocked {
        image: "library/busybox:1.33.0".to_string(),
        digest: dg("busybox-1.33.0"),
        location: loc("acr", "quarantine/library/busybox", "1.33.0"),
        verdict: Some(dg("verdict-busybox-1.33.0")),
        verdict_reference: Some(format!(
            "acraks0001.azurecr.io/quarantine/library/busybox@{}",
            dg("verdict-busybox-1.33.0")
        )),
        reason: "verdict fail".to_string(),
        findings: vec![
            FindingSummary {
                id: "CVE-2021-42378".to_string(),
                severity: Severity::Critical,
                message: Some("busybox: use-after-free in awk leads to denial of service".into()),
                package: Some("busybox".to_string()),
                installed_version: Some("1.33.0-r0".to_string()),
                fixed_version: Some("1.34.0".to_string()),
            },
            FindingSummary {
                id: "CVE-2021-42386".to_string(),
                severity: Severity::High,
                message: Some("busybox: use-after-free in awk (nvalloc)".into()),
                package: Some("busybox".to_string()),
                installed_version: Some("1.33.0-r0".to_string()),
                fixed_version: Some("1.34.0".to_string()),
            },
            FindingSummary {
                id: "policy/forbid_root".to_string(),
                severity: Severity::High,
                message: Some("the image runs as root (user is empty) | set `USER`".into()),
                package: None,
                installed_version: None,
                fixed_version: None,
            },
        ],
        live: false,
    };
    Plan::new(
        PlanParts {
            actions,
            blocked: vec![blocked],
            warnings: vec![format!(
                "upstream tag docker.io/library/nginx:1.25 moved from {} (in live) to {}",
                dg("nginx-1.25-old").short(),
                dg("nginx-1.25-new").short()
            )],
            live_before: vec![
                entry("live/library/alpine", "3.19", "alpine-3.19"),
                entry("live/library/nginx", "1.25", "nginx-1.25-old"),
                entry("live/old/thing", "1", "old-thing-1"),
            ],
            live_after: vec![
                entry("live/library/alpine", "3.19", "alpine-3.19"),
                entry("live/library/nginx", "1.25", "nginx-1.25-new"),
            ],
            ..PlanParts::default()
        },
        policy(),
    )
    .expect("valid plan")
}

/// Nothing to do; live holds tags nobody declares.
fn empty_with_unmanaged() -> Plan {
    let live = vec![
        entry("live/library/alpine", "3.19", "alpine-3.19"),
        entry("live/team/hand-pushed", "latest", "hand-pushed"),
    ];
    Plan::new(
        PlanParts {
            unmanaged: vec![
                LiveTag {
                    repository: "live/team/hand-pushed".to_string(),
                    tag: "latest".to_string(),
                    digest: dg("hand-pushed"),
                },
                LiveTag {
                    repository: "live/debug/netshoot".to_string(),
                    tag: "v0.11".to_string(),
                    digest: dg("netshoot"),
                },
            ],
            live_before: live.clone(),
            live_after: live,
            ..PlanParts::default()
        },
        policy(),
    )
    .expect("valid plan")
}

/// A verdict renewal (scan only), a platform-subset import, and warnings.
fn renewal_subset_warnings() -> Plan {
    let alpine = loc("acr", "quarantine/library/alpine", "3.19");
    let renew = Action {
        id: "scan:library/alpine:3.19".to_string(),
        target: alpine,
        digest: dg("alpine-3.19"),
        replaces: None,
        preconditions: vec![],
        depends_on: vec![],
        reason: "verdict older than 7d".to_string(),
        op: Op::Scan {
            image: "library/alpine:3.19".to_string(),
            size: None,
            platform_count: None,
        },
    };
    let mut actions = chain(Chain {
        host: "docker.io",
        path: "library/redis",
        tag: "7.2",
        digest: dg("redis-7.2-subset"),
        size: Some(45_088_768),
        platform_count: Some(2),
        replaces: (None, None),
    });
    let Op::Import {
        source_digest,
        platforms,
        ..
    } = &mut actions[0].op
    else {
        unreachable!("a chain starts with its import")
    };
    *source_digest = dg("redis-7.2-index");
    *platforms = Some(vec![
        Platform::new("linux", "amd64", None),
        Platform::new("linux", "arm64", Some("v8")),
    ]);
    actions[0].reason = "not in quarantine | subset index built from upstream".to_string();
    actions.push(renew);
    Plan::new(
        PlanParts {
            actions,
            warnings: vec![
                "gate.allow entry CVE-2021-42378 expires in 5 days (2027-01-31)".to_string(),
                "registry `docker.io` has no credentials: anonymous pulls are rate-limited"
                    .to_string(),
            ],
            live_before: vec![entry("live/library/alpine", "3.19", "alpine-3.19")],
            live_after: vec![
                entry("live/library/alpine", "3.19", "alpine-3.19"),
                entry("live/library/redis", "7.2", "redis-7.2-subset"),
            ],
            ..PlanParts::default()
        },
        policy(),
    )
    .expect("valid plan")
}

fn fixtures() -> Vec<(&'static str, Plan)> {
    vec![
        ("fresh_import", fresh_import()),
        ("replace_prune_blocked", replace_prune_blocked()),
        ("empty_with_unmanaged", empty_with_unmanaged()),
        ("renewal_subset_warnings", renewal_subset_warnings()),
    ]
}

fn rendered(plan: &Plan, format: Format, color: bool) -> String {
    let mut out = Vec::new();
    render(plan, format, &HumanOptions { color }, &mut out).expect("render to a Vec");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn snapshots() {
    for (name, plan) in fixtures() {
        for format in Format::ALL {
            let mut text = rendered(&plan, format, false);
            if format == Format::Json {
                // Keep the snapshots stable across releases.
                text = super::redact_version(&text);
            }
            insta::with_settings!({
                snapshot_path => "../../snapshots",
                prepend_module_to_snapshot => false,
                omit_expression => true,
            }, {
                insta::assert_snapshot!(format!("plan_{name}.{format}"), text);
            });
        }
    }
}

#[test]
fn colour_off_writes_no_escape_codes() {
    for (name, plan) in fixtures() {
        for format in Format::ALL {
            let text = rendered(&plan, format, false);
            assert!(
                !text.contains('\x1b'),
                "{name} as {format} has escape codes"
            );
        }
        // Only the human form is ever coloured.
        assert!(
            rendered(&plan, Format::Human, true).contains('\x1b'),
            "{name}"
        );
        assert!(
            !rendered(&plan, Format::Json, true).contains('\x1b'),
            "{name}"
        );
        assert!(
            !rendered(&plan, Format::Markdown, true).contains('\x1b'),
            "{name}"
        );
    }
}

#[test]
fn output_has_no_trailing_whitespace_and_ends_in_one_newline() {
    for (name, plan) in fixtures() {
        for format in Format::ALL {
            let text = rendered(&plan, format, false);
            assert!(
                text.ends_with('\n') && !text.ends_with("\n\n"),
                "{name} {format}"
            );
            for line in text.lines() {
                assert_eq!(line, line.trim_end(), "{name} {format}: {line:?}");
            }
        }
    }
}

#[test]
fn summary_counts_a_replaced_image_once() {
    // nginx's quarantine and live tags both move: one image replaced, not two.
    let s = replace_prune_blocked().summary();
    assert_eq!((s.import, s.promote, s.replace, s.delete), (1, 1, 1, 1));
    // A second replaced image counts once more; a fresh one does not count.
    let s = generated(20).summary();
    let replaced_images = (0..20).filter(|i| i % 10 != 0 && i % 2 == 0).count();
    assert_eq!(s.replace, replaced_images);
}

#[test]
fn summary_line_is_worded_as_specified() {
    let text = rendered(&replace_prune_blocked(), Format::Human, false);
    assert!(text.contains(
        "\nPlan: 1 to import, 1 to scan, 1 to promote, 1 to replace, 1 to delete, 1 blocked.\n"
    ));
}

#[test]
fn formats_parse_by_name() {
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
    }
    let err = "yaml".parse::<Format>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid format `yaml`: expected one of human, json, markdown"
    );
}

#[test]
fn markdown_escapes_free_text() {
    assert_eq!(markdown::text("a|b <c>", true), "a\\|b \\<c\\>");
    assert_eq!(markdown::text("a|b_c", false), "a|b\\_c");
    // Backtick spans stay code; only `|` is escaped inside them, and only in tables.
    assert_eq!(
        markdown::text("tag `a_b|c` moved", true),
        "tag `a_b\\|c` moved"
    );
    assert_eq!(
        markdown::text("tag `a_b|c` moved", false),
        "tag `a_b|c` moved"
    );
    assert_eq!(markdown::text("one ` tick", false), "one \\` tick");
    assert_eq!(markdown::text("two\nlines", false), "two lines");
    assert_eq!(markdown::code("a|b", true), "`a\\|b`");
    assert_eq!(markdown::code("a`b", false), "`` a`b ``");
}

#[test]
fn blocked_only_plan_says_nothing_will_be_done() {
    let mut parts = replace_prune_blocked().parts();
    parts.actions.clear();
    let plan = Plan::new(parts, policy()).unwrap();
    let text = rendered(&plan, Format::Human, false);
    assert!(
        text.starts_with("airlock has no actions to perform; the gate blocks these images:\n"),
        "{text}"
    );
    assert!(
        text.contains("  ! blocked  acr/quarantine/library/busybox:1.33.0"),
        "{text}"
    );
}

/// `n` images: every tenth blocked by the gate (three findings each, no actions), every
/// seventh with a warning, the rest a fresh import → scan → promote; live holds the old
/// half, so the catalog diff is long too.
fn generated(n: usize) -> Plan {
    let mut parts = PlanParts::default();
    for i in 0..n {
        let path = format!("team-{}/service-{i:04}", i % 13);
        let tag = format!("1.{}.{}", i % 7, i % 3);
        let key = format!("{path}:{tag}");
        if i % 10 == 0 {
            parts.blocked.push(Blocked {
                image: key.clone(),
                digest: dg(&key),
                location: loc("acr", &format!("quarantine/{path}"), &tag),
                verdict: Some(dg(&format!("verdict {key}"))),
                verdict_reference: Some(format!(
                    "acraks0001.azurecr.io/quarantine/{path}@{}",
                    dg(&format!("verdict {key}"))
                )),
                reason: "the verdict fails".to_string(),
                findings: (0..3)
                    .map(|k| FindingSummary {
                        id: format!("CVE-2024-{:05}", i * 3 + k),
                        severity: Severity::Critical,
                        message: Some(format!(
                            "openssl: a crafted certificate makes the parser read out of bounds ({k})"
                        )),
                        package: Some("libssl3".to_string()),
                        installed_version: Some("3.0.11-1~deb12u1".to_string()),
                        fixed_version: Some("3.0.13-1~deb12u1".to_string()),
                    })
                    .collect(),
                live: false,
            });
            continue;
        }
        if i % 7 == 0 {
            parts.warnings.push(format!(
                "upstream tag docker.io/{key} moved since the last plan"
            ));
        }
        let old = (i % 2 == 0).then(|| dg(&format!("old {key}")));
        if old.is_some() {
            parts
                .live_before
                .push(entry(&format!("live/{path}"), &tag, &format!("old {key}")));
        }
        parts
            .live_after
            .push(entry(&format!("live/{path}"), &tag, &key));
        parts.actions.extend(chain(Chain {
            host: "docker.io",
            path: &path,
            tag: &tag,
            digest: dg(&key),
            size: Some(10_000_000 + i as u64),
            platform_count: Some(1 + i % 3),
            replaces: (old.clone(), old),
        }));
    }
    Plan::new(parts, policy()).expect("valid plan")
}

/// The count in a section's "… and N more" line (0 when none).
fn omitted_after(text: &str, heading: &str) -> usize {
    let rest = &text[text.find(heading).unwrap_or_else(|| panic!("no {heading}"))..];
    let end = rest[1..]
        .find("\n#### ")
        .into_iter()
        .chain(rest[1..].find("\n<details>"))
        .min()
        .map_or(rest.len(), |e| e + 1);
    let section = &rest[..end];
    section
        .lines()
        .find_map(|l| {
            l.strip_prefix("… and ")?
                .strip_suffix(" more; the full plan is in the artifact.")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[test]
fn markdown_of_large_plans_stays_within_budget_and_accounts_for_every_image() {
    for n in [200, 1000] {
        let plan = generated(n);
        let text = rendered(&plan, Format::Markdown, false);
        assert!(
            text.len() <= markdown::BUDGET,
            "{n} images: {} bytes",
            text.len()
        );
        // Deterministic, whatever order the parts came in.
        let mut parts = plan.parts();
        parts.actions.reverse();
        parts.blocked.reverse();
        parts.warnings.reverse();
        let again = Plan::new(parts, policy()).unwrap();
        assert_eq!(rendered(&again, Format::Markdown, false), text, "{n}");

        // Blocked images and warnings come first, in plain view; the rest is folded.
        let blocked_at = text.find("#### Blocked by the gate (").unwrap();
        let warnings_at = text.find("#### Warnings (").unwrap();
        let changes_at = text.find("<details><summary>Changes: ").unwrap();
        assert!(blocked_at < warnings_at && warnings_at < changes_at, "{n}");
        assert!(!text[..changes_at].contains("<details>"), "{n}");

        // Every image is either a row or counted: one row per image, never three.
        let view = PlanView::from_plan(&plan);
        let images: std::collections::BTreeSet<&str> = view
            .actions
            .iter()
            .filter_map(|a| a.image.as_deref())
            .collect();
        let rows = text
            .lines()
            .filter(|l| l.starts_with("| `+` |") || l.starts_with("| `~` |"))
            .count();
        assert!(
            text.lines()
                .filter(|l| l.contains("| import → scan → promote |"))
                .count()
                == rows,
            "{n}: one row per image"
        );
        assert_eq!(
            rows + omitted_after(&text, "<details><summary>Changes: "),
            images.len(),
            "{n}"
        );
        let blocked_shown = text.lines().filter(|l| l.starts_with("- **`")).count();
        assert_eq!(
            blocked_shown + omitted_after(&text, "#### Blocked by the gate ("),
            view.blocked.len(),
            "{n}"
        );
        let warnings_shown = text[warnings_at..changes_at]
            .lines()
            .filter(|l| l.starts_with("- "))
            .count();
        assert_eq!(
            warnings_shown + omitted_after(&text, "#### Warnings ("),
            view.warnings.len(),
            "{n}"
        );
        // The folds are closed, whatever was cut.
        assert_eq!(
            text.matches("<details>").count(),
            text.matches("</details>").count(),
            "{n}"
        );
        assert_eq!(text.matches("```").count() % 2, 0, "{n}");
        for line in text.lines() {
            assert_eq!(line, line.trim_end(), "{n}: {line:?}");
        }
    }
    // 1000 images cannot fit: the cut is said where it happens.
    let text = rendered(&generated(1000), Format::Markdown, false);
    assert!(text.contains(" more; the full plan is in the artifact.\n"));
}

#[test]
fn markdown_blocked_image_rows_come_first() {
    // A live image whose renewed verdict fails is demoted (a delete in its row).
    let mut parts = fresh_import().parts();
    let l = loc("acr", "live/zzz/last", "1");
    parts.actions.push(Action {
        id: "delete:live/zzz/last:1".to_string(),
        target: l.clone(),
        digest: dg("zzz"),
        replaces: None,
        preconditions: vec![Precondition {
            location: l.clone(),
            digest: Some(dg("zzz")),
        }],
        depends_on: vec![],
        reason: "demoted: the renewed verdict fails".to_string(),
        op: Op::Delete {
            image: Some("zzz/last:1".to_string()),
        },
    });
    parts.blocked.push(Blocked {
        image: "zzz/last:1".to_string(),
        digest: dg("zzz"),
        location: loc("acr", "quarantine/zzz/last", "1"),
        verdict: None,
        verdict_reference: None,
        reason: "the renewed verdict fails for an image that is live".to_string(),
        findings: vec![],
        live: true,
    });
    let text = rendered(
        &Plan::new(parts, policy()).unwrap(),
        Format::Markdown,
        false,
    );
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| `")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].starts_with("| `-` | `zzz/last:1` | delete |"),
        "{text}"
    );
}

#[test]
fn blocked_reasons_are_in_every_format() {
    let plan = replace_prune_blocked();
    let reference = format!(
        "acraks0001.azurecr.io/quarantine/library/busybox@{}",
        dg("verdict-busybox-1.33.0")
    );
    for format in Format::ALL {
        let text = rendered(&plan, format, false);
        for needle in [
            reference.as_str(),
            "busybox: use-after-free in awk leads to denial of service",
            "1.33.0-r0",
            "1.34.0",
            "CVE-2021-42386",
        ] {
            assert!(text.contains(needle), "{format} lacks {needle}:\n{text}");
        }
    }
    let v = json_value(&plan);
    let f = &v["blocked"][0]["findings"][0];
    assert_eq!(f["package"], "busybox");
    assert_eq!(f["installed_version"], "1.33.0-r0");
    assert_eq!(f["fixed_version"], "1.34.0");
    assert_eq!(v["blocked"][0]["verdict_reference"], reference.as_str());
}

#[test]
fn finding_messages_are_one_short_line_without_control_characters() {
    assert_eq!(FindingSummary::short_message(" \n "), None);
    assert_eq!(
        FindingSummary::short_message("a\x1b[31m red\nline\tand\r\n more").as_deref(),
        Some("a [31m red line and more")
    );
    let long = "x".repeat(5_000);
    let short = FindingSummary::short_message(&long).unwrap();
    assert_eq!(short.chars().count(), FindingSummary::MESSAGE_MAX);
    assert!(short.ends_with('…'));
}

#[test]
fn a_partial_plan_says_so_in_every_format_and_keeps_it_in_the_file() {
    let mut parts = fresh_import().parts();
    parts.partial = true;
    let plan = Plan::new(parts, policy()).unwrap();
    for format in Format::ALL {
        let text = rendered(&plan, format, false);
        let needle = match format {
            Format::Json => "\"partial\": true",
            _ => "Partial plan: only the images selected with --image; nothing is pruned",
        };
        assert!(text.contains(needle), "{format}:\n{text}");
    }
    let json = rendered(&plan, Format::Json, false);
    assert!(parse_plan_file(json.as_bytes()).unwrap().partial);
    // A whole plan does not mention it at all (the field is left out).
    for format in Format::ALL {
        let text = rendered(&fresh_import(), format, false);
        assert!(!text.to_lowercase().contains("partial"), "{format}");
    }
}

fn json_value(plan: &Plan) -> serde_json::Value {
    serde_json::to_value(PlanView::from_plan(plan)).expect("serialises")
}

mod plan_file;
