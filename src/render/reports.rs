//! The apply and audit reports, as text for people and as JSON for machines. The JSON shapes
//! are versioned (`format_version`) and described by `schemas/apply-report.schema.json` and
//! `schemas/audit-report.schema.json`. Pure: a report in, bytes out.

use std::io::Write;

use crate::apply::{Report, Status};
use crate::audit::AuditReport;

/// The `format_version` of `airlock apply --json`.
pub const APPLY_REPORT_FORMAT_VERSION: u32 = 1;

/// One line per action, the live images failing the gate, then the totals.
pub fn apply_human(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    for r in &report.results {
        let (mark, text) = match &r.status {
            Status::Done { detail } => ("✓", detail.clone()),
            Status::Unchanged { detail } => ("=", format!("unchanged: {detail}")),
            Status::Failed { error } => ("✗", format!("FAILED: {error}")),
            Status::Skipped { because } => ("-", format!("skipped: {because} did not succeed")),
            Status::Blocked { detail, findings } => (
                "!",
                format!(
                    "BLOCKED by the gate: {detail}{}",
                    findings
                        .iter()
                        .map(|f| format!(
                            "\n      {} {} {}{}{}{}",
                            f.id,
                            f.severity,
                            f.package.as_deref().unwrap_or(""),
                            f.installed_version
                                .as_deref()
                                .map(|v| format!(" {v}"))
                                .unwrap_or_default(),
                            f.fixed_version
                                .as_deref()
                                .map(|v| format!(" (fixed in {v})"))
                                .unwrap_or_default(),
                            f.message
                                .as_deref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ))
                        .collect::<String>()
                ),
            ),
            Status::Interrupted => (
                "~",
                "interrupted before it finished (nothing tagged)".to_string(),
            ),
            Status::NotStarted => ("·", "not started".to_string()),
        };
        writeln!(
            out,
            "{mark} {:<8} {}: {text}",
            r.kind.as_str(),
            r.image.as_deref().unwrap_or(&r.target)
        )?;
    }
    for img in &report.live_failing {
        writeln!(
            out,
            "! LIVE IMAGE FAILS THE GATE: {img} (see `airlock plan`; on_fail = \"demote\" removes it)"
        )?;
    }
    let c = report.counts();
    if let Some(sig) = report.interrupted {
        writeln!(
            out,
            "\nInterrupted by {}: {} completed, {} interrupted, {} not started. Run `airlock plan` to see what remains.",
            if sig == 2 { "SIGINT" } else { "SIGTERM" },
            c.done + c.unchanged,
            c.interrupted,
            c.not_started
        )?;
    }
    writeln!(
        out,
        "\nApply: {} done, {} unchanged, {} failed, {} skipped, {} blocked. ({} blob(s) uploaded, {} mounted, {} already present)",
        c.done,
        c.unchanged,
        c.failed,
        c.skipped,
        c.blocked,
        report.stats.blobs_uploaded,
        report.stats.blobs_mounted,
        report.stats.blobs_present
    )
}

/// `{format_version, counts, outcome, report}` (schemas/apply-report.schema.json).
pub fn apply_json(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let doc = serde_json::json!({
        "format_version": APPLY_REPORT_FORMAT_VERSION,
        "counts": report.counts(),
        "outcome": format!("{:?}", report.outcome()).to_lowercase(),
        "report": report,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// One line per live tag (ok or VIOLATION), then the totals.
pub fn audit_human(report: &AuditReport, out: &mut dyn Write) -> std::io::Result<()> {
    for t in &report.tags {
        match &t.violation {
            None => writeln!(
                out,
                "ok         {}:{} @ {} (from {}, {}){}",
                t.repository,
                t.tag,
                t.digest.short(),
                t.promoted_from.as_deref().unwrap_or("?"),
                t.signature.as_deref().unwrap_or("unsigned"),
                if t.declared { "" } else { " (undeclared)" }
            )?,
            Some(v) => writeln!(
                out,
                "VIOLATION  {}:{} @ {}{}: {v}",
                t.repository,
                t.tag,
                t.digest.short(),
                if t.declared { "" } else { " (undeclared)" }
            )?,
        }
    }
    writeln!(
        out,
        "\nAudit of {}: {} tag(s) checked, {} violation(s).",
        report.live, report.checked, report.violations
    )
}

/// The audit report as it is (schemas/audit-report.schema.json), its `format_version` first.
pub fn audit_json(report: &AuditReport, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::other)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::ActionResult;
    use crate::plan::ActionKind;

    fn result(kind: ActionKind, status: Status) -> ActionResult {
        ActionResult {
            id: format!("{}:library/app:1", kind.as_str()),
            kind,
            image: Some("library/app:1".into()),
            target: "live/library/app:1".into(),
            status,
        }
    }

    fn report(interrupted: Option<i32>) -> Report {
        Report {
            results: vec![
                result(
                    ActionKind::Import,
                    Status::Done {
                        detail: "copied".into(),
                    },
                ),
                result(
                    ActionKind::Scan,
                    Status::Unchanged {
                        detail: "held".into(),
                    },
                ),
                result(
                    ActionKind::Promote,
                    Status::Failed {
                        error: "boom".into(),
                    },
                ),
                result(
                    ActionKind::Promote,
                    Status::Skipped {
                        because: "scan:x".into(),
                    },
                ),
                result(
                    ActionKind::Promote,
                    Status::Blocked {
                        detail: "CVE".into(),
                        findings: vec![],
                    },
                ),
                result(ActionKind::Import, Status::Interrupted),
                result(ActionKind::Scan, Status::NotStarted),
            ],
            stats: Default::default(),
            interrupted,
            plan_blocked: 2,
            live_failing: vec![],
        }
    }

    #[test]
    fn the_json_apply_report_counts_each_kind_of_result_under_its_format_version() {
        let mut out = Vec::new();
        apply_json(&report(None), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["format_version"], APPLY_REPORT_FORMAT_VERSION);
        assert_eq!(
            v["counts"],
            serde_json::json!({
                "done": 1, "unchanged": 1, "failed": 1, "skipped": 1,
                "blocked": 3, "interrupted": 1, "not_started": 1
            })
        );
        assert_eq!(v["outcome"], "actionsfailed");
        assert_eq!(v["report"]["results"][2]["status"], "failed");
        assert_eq!(v["report"]["results"][2]["error"], "boom");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["counts", "format_version", "outcome", "report"]);
    }

    #[test]
    fn the_human_apply_report_names_the_signal_and_the_totals() {
        let mut out = Vec::new();
        apply_human(&report(Some(2)), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("- promote  library/app:1: skipped: scan:x did not succeed"),
            "{text}"
        );
        assert!(
            text.contains("Interrupted by SIGINT: 2 completed, 1 interrupted, 1 not started."),
            "{text}"
        );
        assert!(
            text.contains("Apply: 1 done, 1 unchanged, 1 failed, 1 skipped, 3 blocked."),
            "{text}"
        );
    }
}
