//! The human plan, read like Terraform's: actions grouped by image, one aligned line per
//! action with its symbol, then unmanaged tags, warnings, the summary line and the diff of
//! the live catalog. ANSI colour only when asked for.

use std::io;

use super::{
    ActionView, Group, HumanOptions, PARTIAL_NOTE, PlanView, catalog_diff, groups,
    size_and_platforms, summary_line, symbol,
};
use crate::plan::{ActionKind, Blocked};

const KIND_WIDTH: usize = 7; // "promote", "blocked"

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    const GREEN: &'static str = "\x1b[32m";
    const YELLOW: &'static str = "\x1b[33m";
    const RED: &'static str = "\x1b[31m";
    const CYAN: &'static str = "\x1b[36m";
    const GREEN_BOLD: &'static str = "\x1b[1;32m";
    const BOLD: &'static str = "\x1b[1m";
    const DIM: &'static str = "\x1b[2m";
    const RESET: &'static str = "\x1b[0m";

    fn paint(self, code: &str, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("{code}{text}{}", Self::RESET)
        } else {
            text.to_string()
        }
    }

    fn for_symbol(sym: char) -> &'static str {
        match sym {
            '+' => Self::GREEN,
            '~' => Self::YELLOW,
            _ => Self::RED,
        }
    }
}

/// One action or blocked line, before alignment.
struct Row {
    symbol: char,
    label: &'static str,
    what: String,
    digest: String,
    detail: String,
    note: String,
    /// Further lines under a blocked image (findings, where the verdict is).
    extra: Vec<String>,
}

fn action_row(a: &ActionView) -> Row {
    let what = match (&a.kind, &a.source) {
        (ActionKind::Import | ActionKind::Promote, Some(src)) => format!("{src} → {}", a.target),
        _ => a.target.to_string(),
    };
    let mut details = Vec::new();
    let sp = size_and_platforms(a);
    if !sp.is_empty() {
        details.push(sp);
    }
    if let Some(src) = &a.source_digest
        && *src != a.digest
    {
        details.push(format!("subset of {}", src.short()));
    }
    match (&a.replaces, a.kind) {
        (Some(old), ActionKind::Scan) => details.push(format!("renews verdict {}", old.short())),
        (Some(old), _) => details.push(format!("replaces {}", old.short())),
        (None, _) => {}
    }
    Row {
        symbol: symbol(a),
        label: a.kind.as_str(),
        what,
        digest: a.digest.short(),
        detail: details.join(", "),
        note: a.reason.clone(),
        extra: Vec::new(),
    }
}

fn blocked_row(b: &Blocked) -> Row {
    let mut extra = Vec::new();
    let id_w = b
        .findings
        .iter()
        .map(|f| f.id.chars().count())
        .max()
        .unwrap_or(0);
    let sev_w = b
        .findings
        .iter()
        .map(|f| f.severity.as_str().len())
        .max()
        .unwrap_or(0);
    for f in &b.findings {
        let mut line = format!("{:<id_w$}  {:<sev_w$}", f.id, f.severity.as_str());
        if let Some(p) = &f.package {
            line.push_str("  ");
            line.push_str(p);
            if let Some(v) = &f.installed_version {
                line.push(' ');
                line.push_str(v);
            }
        }
        match (&f.package, &f.fixed_version) {
            (_, Some(v)) => line.push_str(&format!("  → fixed in {v}")),
            (Some(_), None) => line.push_str("  (no fix yet)"),
            (None, None) => {}
        }
        extra.push(line.trim_end().to_string());
        if let Some(m) = &f.message {
            extra.push(format!("{:id_w$}  {m}", ""));
        }
    }
    match (&b.verdict_reference, &b.verdict) {
        (Some(r), _) => extra.push(format!("full verdict: {r}")),
        (None, Some(v)) => extra.push(format!(
            "full verdict: {}/{}@{v}",
            b.location.registry, b.location.repository
        )),
        (None, None) => {}
    }
    let mut note = b.reason.clone();
    if b.live {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str("already in live");
    }
    Row {
        symbol: '!',
        label: "blocked",
        what: b.location.to_string(),
        digest: b.digest.short(),
        detail: String::new(),
        note,
        extra,
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// The action lines of every group, aligned as one table; one section per group.
fn group_sections(paint: Paint, groups: &[Group<'_>]) -> Vec<String> {
    let rows: Vec<Vec<Row>> = groups
        .iter()
        .map(|g| {
            g.actions
                .iter()
                .map(|a| action_row(a))
                .chain(g.blocked.iter().map(|b| blocked_row(b)))
                .collect()
        })
        .collect();
    let all = || rows.iter().flatten();
    let what_w = all().map(|r| width(&r.what)).max().unwrap_or(0);
    let indent = " ".repeat(2 + 2 + KIND_WIDTH + 2);
    let mut sections = Vec::new();
    for (g, rows) in groups.iter().zip(&rows) {
        let header = match g.image {
            Some(image) => format!("# {image}"),
            None => "# live tags no image declares (prune = true)".to_string(),
        };
        let mut s = format!("  {}\n", paint.paint(Paint::BOLD, &header));
        for r in rows {
            let head = format!("{} {:<KIND_WIDTH$}", r.symbol, r.label);
            s.push_str(&format!(
                "  {}  {:<what_w$}  {}",
                paint.paint(Paint::for_symbol(r.symbol), &head),
                r.what,
                r.digest
            ));
            if !r.detail.is_empty() {
                s.push_str("  ");
                s.push_str(&r.detail);
            }
            if !r.note.is_empty() {
                s.push_str("  ");
                s.push_str(&paint.paint(Paint::DIM, &format!("({})", r.note)));
            }
            s.push('\n');
            for e in &r.extra {
                s.push_str(&format!("{indent}{e}\n"));
            }
        }
        sections.push(s);
    }
    sections
}

pub(super) fn render(
    view: &PlanView,
    opts: &HumanOptions,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let paint = Paint { on: opts.color };
    let quiet = view.actions.is_empty() && view.blocked.is_empty();
    // Sections, each ending in a newline, separated by one blank line.
    let mut sections: Vec<String> = Vec::new();

    if view.partial {
        sections.push(format!("{}\n", paint.paint(Paint::YELLOW, PARTIAL_NOTE)));
    }
    if quiet {
        sections.push(format!(
            "{} Live matches the configuration.\n",
            paint.paint(Paint::GREEN_BOLD, "No changes.")
        ));
    } else {
        sections.push(if view.actions.is_empty() {
            "airlock has no actions to perform; the gate blocks these images:\n".to_string()
        } else {
            "airlock will perform the following actions:\n".to_string()
        });
        sections.extend(group_sections(paint, &groups(view)));
    }

    if !view.unmanaged.is_empty() {
        let mut s =
            "Unmanaged live tags (not declared; set prune = true to delete them):\n".to_string();
        for t in &view.unmanaged {
            s.push_str(&format!(
                "  {}:{} @ {}\n",
                t.repository,
                t.tag,
                t.digest.short()
            ));
        }
        sections.push(s);
    }

    if !view.warnings.is_empty() {
        let s: String = view
            .warnings
            .iter()
            .map(|w| format!("{} {w}\n", paint.paint(Paint::YELLOW, "Warning:")))
            .collect();
        sections.push(s);
    }

    if !quiet {
        sections.push(format!(
            "{}\n",
            paint.paint(Paint::BOLD, &summary_line(&view.summary))
        ));
    }

    if let Some(diff) = catalog_diff(view) {
        let mut s = "Live catalog (before → after):\n".to_string();
        for line in diff.lines() {
            let code = if line.starts_with("---") || line.starts_with("+++") {
                Paint::BOLD
            } else if line.starts_with("@@") {
                Paint::CYAN
            } else if line.starts_with('+') {
                Paint::GREEN
            } else if line.starts_with('-') {
                Paint::RED
            } else {
                ""
            };
            if code.is_empty() {
                s.push_str(line);
            } else {
                s.push_str(&paint.paint(code, line));
            }
            s.push('\n');
        }
        sections.push(s);
    }

    out.write_all(sections.join("\n").as_bytes())
}
