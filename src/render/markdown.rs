//! The markdown plan, for pull-request comments: the summary first, blocked images with
//! their top findings in plain view, then the actions, the live catalog diff, unmanaged
//! tags and warnings. Long parts fold into `<details>`.

use std::io;

use super::{PlanView, catalog_diff, groups, size_and_platforms, summary_line, symbol};
use crate::plan::{Action, ActionKind, Blocked};

/// Free text. Backtick spans are kept as code (their content verbatim); everywhere else
/// each character markdown could read as syntax is backslash-escaped. `in_table` also
/// escapes `|`, which GFM reads as a cell border even inside code. Line breaks become spaces.
pub(super) fn text(s: &str, in_table: bool) -> String {
    let s = s.replace(['\r', '\n'], " ");
    let segments: Vec<&str> = s.split('`').collect();
    // Balanced backticks: odd segments are code spans. Unbalanced: all of it is text.
    let spans = segments.len() % 2 == 1;
    let mut out = String::with_capacity(s.len());
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 && !spans {
            out.push_str("\\`");
        }
        if spans && i % 2 == 1 {
            out.push_str(&code(seg, in_table));
            continue;
        }
        for c in seg.chars() {
            match c {
                '|' if !in_table => out.push('|'),
                '\\' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '&' => out.push_str("&amp;"),
                c => out.push(c),
            }
        }
    }
    out
}

/// A code span; `in_table` escapes `|`, which GFM reads as a cell border even in code.
pub(super) fn code(s: &str, in_table: bool) -> String {
    let mut body = s.replace(['\r', '\n'], " ");
    if in_table {
        body = body.replace('|', "\\|");
    }
    // A fence longer than any run of backticks inside.
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 || body.starts_with(' ') || body.ends_with(' ') {
        format!("{fence} {body} {fence}")
    } else {
        format!("{fence}{body}{fence}")
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn summary_section(view: &PlanView) -> String {
    let s = &view.summary;
    let mut out = format!("**{}**\n\n", summary_line(s));
    out.push_str("| import | scan | promote | replace | delete | blocked |\n");
    out.push_str("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
    out.push_str(&row(&[
        s.import, s.scan, s.promote, s.replace, s.delete, s.blocked,
    ]
    .map(|n| n.to_string())));
    out
}

fn blocked_section(blocked: &[Blocked]) -> String {
    let mut out = format!("#### Blocked by the gate ({})\n", blocked.len());
    for b in blocked {
        out.push('\n');
        out.push_str(&format!(
            "**{}** {} in {}",
            code(&b.image, false),
            code(&b.digest.short(), false),
            code(&b.location.to_string(), false)
        ));
        if !b.reason.is_empty() {
            out.push_str(&format!(": {}", text(&b.reason, false)));
        }
        if b.live {
            out.push_str(" (already in live)");
        }
        out.push('\n');
        if let Some(v) = &b.verdict {
            out.push_str(&format!(
                "\nFull verdict: {}\n",
                code(
                    &format!("{}/{}@{v}", b.location.registry, b.location.repository),
                    false
                )
            ));
        }
        if !b.findings.is_empty() {
            out.push_str("\n| id | severity | package | fixed version |\n");
            out.push_str("| --- | --- | --- | --- |\n");
            for f in &b.findings {
                out.push_str(&row(&[
                    text(&f.id, true),
                    f.severity.as_str().to_string(),
                    f.package
                        .as_deref()
                        .map(|p| text(p, true))
                        .unwrap_or_default(),
                    match (&f.package, &f.fixed_version) {
                        (_, Some(v)) => text(v, true),
                        (Some(_), None) => "no fix yet".to_string(),
                        (None, None) => String::new(),
                    },
                ]));
            }
        }
    }
    out
}

fn action_cells(a: &Action) -> [String; 7] {
    let from_to = match (&a.kind, &a.source) {
        (ActionKind::Import | ActionKind::Promote, Some(src)) => format!(
            "{} → {}",
            code(&src.to_string(), true),
            code(&a.target.to_string(), true)
        ),
        _ => code(&a.target.to_string(), true),
    };
    let mut digest = code(&a.digest.short(), true);
    if let Some(old) = &a.replaces {
        digest.push_str(&format!(" (replaces {})", code(&old.short(), true)));
    }
    [
        code(&symbol(a).to_string(), true),
        a.kind.as_str().to_string(),
        a.image
            .as_deref()
            .map(|i| code(i, true))
            .unwrap_or_else(|| "(not declared)".to_string()),
        from_to,
        digest,
        text(&size_and_platforms(a), true),
        text(&a.reason, true),
    ]
}

fn actions_section(view: &PlanView) -> String {
    let mut out = format!(
        "<details><summary>Actions ({})</summary>\n\n",
        view.actions.len()
    );
    out.push_str("| | action | image | from → to | digest | size | reason |\n");
    out.push_str("| :-: | --- | --- | --- | --- | --- | --- |\n");
    for g in groups(view) {
        for a in g.actions {
            out.push_str(&row(&action_cells(a)));
        }
    }
    out.push_str("\n</details>\n");
    out
}

fn diff_section(diff: &str) -> String {
    format!(
        "<details><summary>Live catalog (before → after)</summary>\n\n```diff\n{diff}```\n\n</details>\n"
    )
}

pub(super) fn render(view: &PlanView, out: &mut dyn io::Write) -> io::Result<()> {
    let quiet = view.actions.is_empty() && view.blocked.is_empty();
    let mut sections = vec!["### airlock plan\n".to_string()];
    if quiet {
        sections.push("No changes. Live matches the configuration.\n".to_string());
    } else {
        sections.push(summary_section(view));
    }
    if !view.blocked.is_empty() {
        sections.push(blocked_section(&view.blocked));
    }
    if !view.actions.is_empty() {
        sections.push(actions_section(view));
    }
    if let Some(diff) = catalog_diff(view) {
        sections.push(diff_section(&diff));
    }
    if !view.unmanaged.is_empty() {
        let mut s = format!(
            "#### Unmanaged live tags ({})\n\nNot declared; set `prune = true` to delete them.\n\n",
            view.unmanaged.len()
        );
        for t in &view.unmanaged {
            s.push_str(&format!(
                "- {} @ {}\n",
                code(&format!("{}:{}", t.repository, t.tag), false),
                code(&t.digest.short(), false)
            ));
        }
        sections.push(s);
    }
    if !view.warnings.is_empty() {
        let mut s = "#### Warnings\n\n".to_string();
        for w in &view.warnings {
            s.push_str(&format!("- {}\n", text(w, false)));
        }
        sections.push(s);
    }
    out.write_all(sections.join("\n").as_bytes())
}
