//! Python tools the tests call: `jsonschema` (the JSON contract in `schemas/`) and
//! `yamllint` (the README's CI examples), from the interpreter `AIRLOCK_TEST_PYTHON` names.
//! `scripts/test` creates that venv (`$CARGO_TARGET_DIR/pyenv`); without it these tests fail
//! loudly, never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter with `jsonschema` and `yamllint` installed.
pub fn python() -> PathBuf {
    match std::env::var_os("AIRLOCK_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "AIRLOCK_TEST_PYTHON is not set: run scripts/test, or `python3 -m venv target/pyenv && \
             target/pyenv/bin/pip install jsonschema yamllint` and export \
             AIRLOCK_TEST_PYTHON=target/pyenv/bin/python"
        ),
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Validate files against `schemas/<schema>`; Err with the validator's report.
pub fn check_schema_files(schema: &str, files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new(python())
        .arg(repo().join("tests/tools/check_json_schema.py"))
        .arg(repo().join("schemas"))
        .arg(schema)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python().display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(report),
        _ => panic!("the schema check could not run ({}):\n{report}", out.status),
    }
}

/// Validate JSON documents (text) against `schemas/<schema>`; Err with the report.
pub fn check_schema(schema: &str, docs: &[&str]) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = dir.path().join(format!("doc-{i}.json"));
            std::fs::write(&p, d).expect("write a document");
            p
        })
        .collect();
    check_schema_files(schema, &files)
}

/// Panic with the validator's report unless every document matches `schemas/<schema>`.
pub fn assert_schema(schema: &str, docs: &[&str]) {
    if let Err(report) = check_schema(schema, docs) {
        panic!("documents do not match schemas/{schema}:\n{report}");
    }
}
