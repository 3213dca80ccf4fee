//! Lowering of `[scanners.*]` and `[gate]`: scanner formats and commands, the gate's
//! scanner list, severity threshold, verdict age, allow entries and policy checks.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::{Lowerer, parse_duration, parse_platforms};
use crate::config::desired::*;
use crate::config::schema::{RawGate, RawScanner};
use crate::model::Severity;
use crate::model::finding_id;
use crate::model::reference::valid_path;
use crate::model::size::parse_size;

const DEFAULT_SCANNER_TIMEOUT: Duration = Duration::from_secs(600);
/// Defender scans an image within hours of its push; a day without results fails closed.
const DEFAULT_DEFENDER_MAX_PENDING: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_VERDICT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn lower_scanners(
    l: &mut Lowerer,
    raw: &BTreeMap<Spanned<String>, Spanned<RawScanner>>,
) -> BTreeMap<String, ScannerSpec> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let r = s.get_ref();
        if name.get_ref() == "policy" {
            l.err(
                name.span(),
                "`policy` is the built-in scanner and cannot be redefined",
                Some("give the external scanner another name, e.g. [scanners.trivy]"),
            );
            continue;
        }
        let format = match r.format.get_ref().as_str() {
            "trivy" => ScannerFormat::Trivy,
            "grype" => ScannerFormat::Grype,
            "defender" => ScannerFormat::Defender,
            other => {
                l.err(
                    r.format.span(),
                    format!("unknown scanner format `{other}`"),
                    Some("use one of: trivy, grype, defender"),
                );
                continue;
            }
        };
        match (&format, &r.command) {
            (ScannerFormat::Defender, Some(c)) => l.err(
                c.span(),
                format!("scanner `{}` (defender) takes no command", name.get_ref()),
                Some("Defender for Cloud scans images in the registry itself; airlock reads its results from Azure Resource Graph: remove command"),
            ),
            (ScannerFormat::Defender, None) => {}
            (_, Some(c)) if !c.get_ref().is_empty() && !c.get_ref()[0].trim().is_empty() => {}
            (_, c) => l.err(
                c.as_ref().map(|c| c.span()).unwrap_or(s.span()),
                format!("scanner `{}` has an empty command", name.get_ref()),
                Some("e.g. command = [\"trivy\", \"image\", \"--quiet\", \"--format\", \"json\", \"{ref}\"]"),
            ),
        }
        let timeout = match &r.timeout {
            Some(t) => parse_duration(l, t, "timeout").unwrap_or(DEFAULT_SCANNER_TIMEOUT),
            None => DEFAULT_SCANNER_TIMEOUT,
        };
        // How long Defender may leave an image unscanned before the gate fails it.
        let max_pending = match (&format, &r.max_pending) {
            (ScannerFormat::Defender, Some(t)) => {
                Some(parse_duration(l, t, "max_pending").unwrap_or(DEFAULT_DEFENDER_MAX_PENDING))
            }
            (ScannerFormat::Defender, None) => Some(DEFAULT_DEFENDER_MAX_PENDING),
            (_, Some(t)) => {
                l.err(
                    t.span(),
                    format!(
                        "`max_pending` is only used by the defender scanner (scanner `{}` runs a command)",
                        name.get_ref()
                    ),
                    Some("remove max_pending, or use it on a scanner with format = \"defender\""),
                );
                None
            }
            (_, None) => None,
        };
        out.insert(
            name.get_ref().clone(),
            ScannerSpec {
                name: name.get_ref().clone(),
                command: r
                    .command
                    .as_ref()
                    .map(|c| c.get_ref().clone())
                    .unwrap_or_default(),
                format,
                timeout,
                max_pending,
            },
        );
    }
    out
}

pub(super) fn lower_gate(
    l: &mut Lowerer,
    g: &RawGate,
    scanners: &BTreeMap<String, ScannerSpec>,
) -> Gate {
    let names: Vec<String> = match &g.scanners {
        None => vec!["policy".to_string()],
        Some(list) if list.get_ref().is_empty() => {
            l.err(
                list.span(),
                "scanners is empty: with no checks every image would pass the gate",
                Some("list at least one scanner, e.g. scanners = [\"policy\"] (the built-in checks) or [\"policy\", \"trivy\"]; remove the key for the default [\"policy\"]"),
            );
            Vec::new()
        }
        Some(list) => {
            let mut v = Vec::new();
            for s in list.get_ref() {
                let n = s.get_ref();
                if n != "policy" && !scanners.contains_key(n) {
                    let mut known = vec!["policy".to_string()];
                    known.extend(scanners.keys().cloned());
                    l.err(
                        s.span(),
                        format!("unknown scanner `{n}`"),
                        Some(&format!(
                            "use one of: {} — or define [scanners.{n}] with command and format",
                            known.join(", ")
                        )),
                    );
                } else if !v.contains(n) {
                    v.push(n.clone());
                }
            }
            v
        }
    };
    let fail_on = match &g.fail_on {
        None => Severity::High,
        Some(f) => {
            f.get_ref()
                .parse()
                .unwrap_or_else(|e: crate::model::severity::SeverityError| {
                    l.err(f.span(), e.to_string(), Some("e.g. fail_on = \"high\""));
                    Severity::High
                })
        }
    };
    let max_verdict_age = match &g.max_verdict_age {
        None => DEFAULT_MAX_VERDICT_AGE,
        Some(a) => parse_duration(l, a, "max_verdict_age").unwrap_or(DEFAULT_MAX_VERDICT_AGE),
    };
    let on_fail = match g.on_fail.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
        None | Some(("report", _)) => OnFail::Report,
        Some(("demote", _)) => OnFail::Demote,
        Some((other, span)) => {
            l.err(
                span,
                format!("unknown on_fail `{other}`"),
                Some("use \"report\" (default) or \"demote\" (delete the live tag of an image whose renewed verdict fails)"),
            );
            OnFail::Report
        }
    };
    let mut allow = Vec::new();
    for a in &g.allow {
        let r = a.get_ref();
        let id = r.id.get_ref();
        if id.trim().is_empty() {
            l.err(
                r.id.span(),
                "an allow entry needs a finding id",
                Some("e.g. id = \"CVE-2021-42378\""),
            );
        } else if id.trim().eq_ignore_ascii_case(finding_id::SCANNER_FAILED) {
            l.err(
                r.id.span(),
                format!("`{id}` can never be allowed: a scanner that could not report blocks the image (the gate fails closed)"),
                Some("fix the scanner (the verdict says why it failed), or remove it from gate.scanners; then remove this entry"),
            );
        } else if finding_id::is_airlock(id) && !finding_id::ALLOWABLE.contains(&id.as_str()) {
            let close = finding_id::ALLOWABLE
                .iter()
                .find(|k| k.eq_ignore_ascii_case(id.trim()));
            l.err(
                r.id.span(),
                format!("`{id}` is not a finding airlock reports, so this entry would never apply"),
                Some(&match close {
                    Some(k) => format!("ids are case-sensitive: write `{k}`"),
                    None => format!(
                        "the built-in ids an entry may name are: {}",
                        finding_id::ALLOWABLE.join(", ")
                    ),
                }),
            );
        }
        if r.reason.get_ref().trim().is_empty() {
            l.err(
                r.reason.span(),
                "an allow entry needs a reason",
                Some("say why the finding is acceptable; reviewers read it"),
            );
        }
        let mut images = Vec::new();
        for p in r.images.iter().flatten() {
            let path = p.get_ref().trim_matches('/');
            let normalised = if path.contains('/') {
                path.to_string()
            } else {
                format!("library/{path}")
            };
            if !valid_path(&normalised) {
                l.err(
                    p.span(),
                    format!("`{}` is not an image path", p.get_ref()),
                    Some("write the source path without host or tag, e.g. \"library/busybox\""),
                );
            }
            images.push(normalised);
        }
        let expires = match parse_date(r.expires.get_ref()) {
            Some(d) => d,
            None => {
                l.err(
                    r.expires.span(),
                    "invalid expires date",
                    Some("write a date as YYYY-MM-DD, e.g. expires = \"2027-01-31\""),
                );
                continue;
            }
        };
        if expires < l.today {
            l.err(
                r.expires.span(),
                format!(
                    "the allow entry for `{}` expired on {expires}",
                    r.id.get_ref()
                ),
                Some("an expired exception no longer applies: remove the entry, or extend expires after a new review"),
            );
        }
        allow.push(Allow {
            id: r.id.get_ref().clone(),
            images,
            expires,
            reason: r.reason.get_ref().clone(),
        });
    }
    let p = &g.policy;
    let platforms = parse_platforms(l, &p.platforms);
    let max_size = p
        .max_size
        .as_ref()
        .and_then(|s| match parse_size(s.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                l.err(s.span(), e.to_string(), None);
                None
            }
        });
    let max_age_days = p
        .max_age
        .as_ref()
        .and_then(|a| parse_duration(l, a, "max_age"))
        .map(|d| d.as_secs().div_ceil(86400));
    Gate {
        scanners: names,
        fail_on,
        max_verdict_age,
        allow,
        policy: Policy {
            platforms,
            forbid_root: p.forbid_root,
            max_size,
            required_labels: p
                .required_labels
                .iter()
                .map(|s| s.get_ref().clone())
                .collect(),
            max_age_days,
        },
        on_fail,
    }
}

fn parse_date(v: &toml::Value) -> Option<time::Date> {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        _ => return None,
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt).ok()
}
