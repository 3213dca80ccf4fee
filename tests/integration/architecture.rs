//! The README's architecture invariants, checked against the source so they stay true.
//!
//! "Planning is pure": the planner, the renderers, the configuration, the model and the record
//! builders name no async runtime and no HTTP client, and have no `async` code. A test plans
//! from in-memory state because of this.

use std::path::{Path, PathBuf};

/// Modules that must stay pure (files or directories under `src/`).
const PURE: &[&str] = &[
    "plan",
    "render",
    "config",
    "model",
    "observed.rs",
    "records.rs",
    "versions.rs",
    "outdated.rs",
    "pin.rs",
    "track.rs",
];

/// Words that mean I/O or an async runtime crept in.
/// (`std::net` address types are pure parsing; sockets and name lookups are not.)
const FORBIDDEN: &[&str] = &[
    "tokio",
    "reqwest",
    "async ",
    "async{",
    ".await",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "ToSocketAddrs",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            rust_files(&p, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Source text without comments, so a doc line that mentions tokio is not a violation.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn pure_modules_name_no_runtime_no_http_and_no_async() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for m in PURE {
        let p = src.join(m);
        assert!(
            p.exists(),
            "{} is listed as pure but does not exist",
            p.display()
        );
        rust_files(&p, &mut files);
    }
    assert!(
        files.len() >= 10,
        "found only {} files to check",
        files.len()
    );
    let mut violations = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        for (n, line) in code_only(&text).lines().enumerate() {
            for word in FORBIDDEN {
                if line.contains(word) {
                    violations.push(format!(
                        "{}:{}: `{word}` in a pure module: {}",
                        f.strip_prefix(&src).unwrap_or(f).display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "planning must stay pure (README, Architecture):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_a_violation() {
    // The rule above must be able to fail: an async function is caught, a comment is not.
    let text = "// tokio in a comment is fine\npub async fn f() {}\n";
    let code = code_only(text);
    assert!(!code.lines().next().unwrap().contains("tokio"));
    assert!(FORBIDDEN.iter().any(|w| code.contains(w)));
}
