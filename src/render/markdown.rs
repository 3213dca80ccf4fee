//! The markdown plan, for pull-request comments and `$GITHUB_STEP_SUMMARY`: the summary
//! first, blocked images (with their findings and the verdict's reference) and warnings in
//! plain view, then one row per image, the live catalog diff and unmanaged tags folded into
//! `<details>`. It never exceeds [`BUDGET`] bytes: what does not fit is counted instead.

use std::io;

use super::{
    ActionView, Group, PARTIAL_NOTE, PlanView, catalog_diff, groups, size_and_platforms,
    summary_line,
};
use crate::observed::FindingSummary;
use crate::plan::{ActionKind, Blocked};

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

/// The most a markdown plan may take, in bytes (so also in characters): GitHub comments
/// stop at 65,536 characters, and a little room stays for a wrapper's own text.
pub const BUDGET: usize = 60_000;

/// What stands where items were left out for the budget.
fn trailer(omitted: usize) -> String {
    format!("\n… and {omitted} more; the full plan is in the artifact.\n")
}

/// A part of the document whose items may be cut: `head`, the items that fit, `close`,
/// the trailer when some were left out, then `tail`.
struct Section {
    head: String,
    items: Vec<String>,
    close: String,
    tail: String,
}

impl Section {
    /// Room the section needs besides its items: frame, the longest trailer, one separator.
    fn frame(&self) -> usize {
        self.head.len() + self.close.len() + self.tail.len() + trailer(usize::MAX).len() + 1
    }
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

/// `` `CVE-1` critical in `pkg` 1.0 (fixed in 1.1): message ``
fn finding_line(f: &FindingSummary) -> String {
    let mut line = format!("{} **{}**", code(&f.id, false), f.severity.as_str());
    if let Some(p) = &f.package {
        line.push_str(&format!(" in {}", code(p, false)));
        if let Some(v) = &f.installed_version {
            line.push_str(&format!(" {}", code(v, false)));
        }
        match &f.fixed_version {
            Some(v) => line.push_str(&format!(" (fixed in {})", code(v, false))),
            None => line.push_str(" (no fix yet)"),
        }
    } else if let Some(v) = &f.fixed_version {
        line.push_str(&format!(" (fixed in {})", code(v, false)));
    }
    if let Some(m) = &f.message {
        line.push_str(&format!(": {}", text(m, false)));
    }
    line
}

/// One blocked image: what, why, where the full verdict is, and its top findings.
fn blocked_item(b: &Blocked) -> String {
    let mut out = format!(
        "- **{}** {} in {}",
        code(&b.image, false),
        code(&b.digest.short(), false),
        code(&b.location.to_string(), false)
    );
    if !b.reason.is_empty() {
        out.push_str(&format!(": {}", text(&b.reason, false)));
    }
    if b.live {
        out.push_str(" (already in live)");
    }
    out.push('\n');
    match (&b.verdict_reference, &b.verdict) {
        (Some(r), _) => out.push_str(&format!("  verdict: {}\n", code(r, false))),
        (None, Some(v)) => out.push_str(&format!(
            "  verdict: {}\n",
            code(
                &format!("{}/{}@{v}", b.location.registry, b.location.repository),
                false
            )
        )),
        (None, None) => {}
    }
    for f in &b.findings {
        out.push_str(&format!("  - {}\n", finding_line(f)));
    }
    out
}

/// One image's actions as one table row: `import → scan → promote`, from the first source
/// to the last target.
fn image_row(g: &Group<'_>) -> String {
    let acts = &g.actions;
    // A scan's `replaces` is the verdict it renews, not content.
    let replaced = |a: &&&ActionView| a.replaces.is_some() && a.kind != ActionKind::Scan;
    let symbol = if acts.iter().any(|a| replaced(&a)) {
        '~'
    } else if acts.iter().all(|a| a.kind == ActionKind::Delete) {
        '-'
    } else {
        '+'
    };
    let steps: Vec<&str> = acts.iter().map(|a| a.kind.as_str()).collect();
    let last = acts.last().expect("a group has actions");
    let from_to = match acts.iter().find_map(|a| a.source.as_ref()) {
        Some(src) => format!(
            "{} → {}",
            code(&src.to_string(), true),
            code(&last.target.to_string(), true)
        ),
        None => code(&last.target.to_string(), true),
    };
    let main = acts
        .iter()
        .find(|a| a.kind != ActionKind::Delete)
        .unwrap_or(last);
    let mut digest = code(&main.digest.short(), true);
    if let Some(old) = acts
        .iter()
        .filter(replaced)
        .find_map(|a| a.replaces.as_ref())
    {
        digest.push_str(&format!(" (replaces {})", code(&old.short(), true)));
    }
    let size = acts
        .iter()
        .map(|a| size_and_platforms(a))
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let mut reasons: Vec<&str> = Vec::new();
    for a in acts {
        if !a.reason.is_empty() && !reasons.contains(&a.reason.as_str()) {
            reasons.push(&a.reason);
        }
    }
    let image = match g.image {
        Some(i) => code(i, true),
        None => "(not declared)".to_string(),
    };
    row(&[
        code(&symbol.to_string(), true),
        image,
        steps.join(" → "),
        from_to,
        digest,
        text(&size, true),
        text(&reasons.join("; "), true),
    ])
}

fn changes_section(view: &PlanView) -> Option<Section> {
    let mut gs: Vec<Group<'_>> = groups(view)
        .into_iter()
        .filter(|g| !g.actions.is_empty())
        .collect();
    // Undeclared tags: one row per tag. Blocked images' rows first (the sort is stable).
    let mut rows: Vec<(bool, bool, String)> = Vec::new(); // (blocked, declared, row)
    for g in gs.drain(..) {
        if g.image.is_none() {
            for a in &g.actions {
                let one = Group {
                    image: None,
                    actions: vec![*a],
                    blocked: Vec::new(),
                };
                rows.push((false, false, image_row(&one)));
            }
        } else {
            rows.push((!g.blocked.is_empty(), true, image_row(&g)));
        }
    }
    if rows.is_empty() {
        return None;
    }
    rows.sort_by_key(|(blocked, _, _)| !*blocked);
    let images = rows.iter().filter(|(_, declared, _)| *declared).count();
    let tags = rows.len() - images;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut what = vec![plural(images, "image", "images")];
    if tags > 0 {
        what.push(plural(tags, "undeclared tag", "undeclared tags"));
    }
    Some(Section {
        head: format!(
            "<details><summary>Changes: {} ({})</summary>\n\n\
             | | image | actions | from → to | digest | size | reason |\n\
             | :-: | --- | --- | --- | --- | --- | --- |\n",
            what.join(", "),
            plural(view.actions.len(), "action", "actions"),
        ),
        items: rows.into_iter().map(|(_, _, r)| r).collect(),
        close: String::new(),
        tail: "\n</details>\n".to_string(),
    })
}

fn blocked_section(view: &PlanView) -> Option<Section> {
    if view.blocked.is_empty() {
        return None;
    }
    Some(Section {
        head: format!("#### Blocked by the gate ({})\n\n", view.blocked.len()),
        items: view.blocked.iter().map(blocked_item).collect(),
        close: String::new(),
        tail: String::new(),
    })
}

fn warnings_section(view: &PlanView) -> Option<Section> {
    if view.warnings.is_empty() {
        return None;
    }
    Some(Section {
        head: format!("#### Warnings ({})\n\n", view.warnings.len()),
        items: view
            .warnings
            .iter()
            .map(|w| format!("- {}\n", text(w, false)))
            .collect(),
        close: String::new(),
        tail: String::new(),
    })
}

fn diff_section(view: &PlanView) -> Option<Section> {
    let diff = catalog_diff(view)?;
    Some(Section {
        head: "<details><summary>Live catalog (before → after)</summary>\n\n```diff\n".to_string(),
        items: diff.lines().map(|l| format!("{l}\n")).collect(),
        close: "```\n".to_string(),
        tail: "\n</details>\n".to_string(),
    })
}

fn unmanaged_section(view: &PlanView) -> Option<Section> {
    if view.unmanaged.is_empty() {
        return None;
    }
    Some(Section {
        head: format!(
            "<details><summary>Unmanaged live tags ({})</summary>\n\n\
             Not declared; set `prune = true` to delete them.\n\n",
            view.unmanaged.len()
        ),
        items: view
            .unmanaged
            .iter()
            .map(|t| {
                format!(
                    "- {} @ {}\n",
                    code(&format!("{}:{}", t.repository, t.tag), false),
                    code(&t.digest.short(), false)
                )
            })
            .collect(),
        close: String::new(),
        tail: "\n</details>\n".to_string(),
    })
}

/// The markdown plan within [`BUDGET`]: blocked images and warnings in plain view, then the
/// changes (one row per image), the live catalog diff and unmanaged tags folded. Items are
/// taken in that order while they fit; from the first that does not, every later item is
/// left out and counted in its section's trailer, so the output is deterministic.
pub(super) fn render(view: &PlanView, out: &mut dyn io::Write) -> io::Result<()> {
    let quiet = view.actions.is_empty() && view.blocked.is_empty();
    let mut doc = "### airlock plan\n\n".to_string();
    if view.partial {
        doc.push_str(&format!("> **{}**\n\n", text(PARTIAL_NOTE, false)));
    }
    if quiet {
        doc.push_str("No changes. Live matches the configuration.\n");
    } else {
        doc.push_str(&summary_section(view));
    }
    let sections: Vec<Section> = [
        blocked_section(view),
        warnings_section(view),
        changes_section(view),
        diff_section(view),
        unmanaged_section(view),
    ]
    .into_iter()
    .flatten()
    .collect();
    let frames: usize = sections.iter().map(Section::frame).sum();
    let mut room = BUDGET.saturating_sub(doc.len() + frames);
    let mut full = false;
    for s in sections {
        doc.push('\n');
        doc.push_str(&s.head);
        let mut omitted = 0;
        for item in &s.items {
            if !full && item.len() <= room {
                room -= item.len();
                doc.push_str(item);
            } else {
                full = true;
                omitted += 1;
            }
        }
        doc.push_str(&s.close);
        if omitted > 0 {
            doc.push_str(&trailer(omitted));
        }
        doc.push_str(&s.tail);
    }
    out.write_all(doc.as_bytes())
}
