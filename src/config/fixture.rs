//! The configuration unit tests start from (compiled for tests only): one registry `acr`
//! holding both areas, and a parser that dates the file on the day the test data is written
//! for, so that allow entries and verdict ages read the same on every run.

use std::path::Path;

use super::{ConfigErrors, DesiredState};

/// The day the test configurations are read on.
pub const TODAY: time::Date = time::macros::date!(2026 - 11 - 27);

/// `[registries.acr]` with `quarantine` and `live` prefixes on it; append tables or
/// `[[images]]` entries. The last table is `[live]`, so a key written first goes there.
pub const BASE: &str = r#"
[registries.acr]
endpoint = "https://acraks0001.azurecr.io"
auth = "docker"

[quarantine]
registry = "acr"
prefix = "quarantine"

[live]
registry = "acr"
prefix = "live"
"#;

/// `text` read as `airlock.toml` on [`TODAY`].
pub fn parse(text: &str) -> Result<DesiredState, ConfigErrors> {
    super::parse(text, Path::new("airlock.toml"), TODAY)
}

/// `text` read as `airlock.toml` on [`TODAY`]; panics with the errors if it is invalid.
pub fn desired(text: &str) -> DesiredState {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// [`BASE`] followed by `extra`, read as [`desired`] reads it.
pub fn with_base(extra: &str) -> DesiredState {
    desired(&format!("{BASE}{extra}"))
}

/// [`BASE`] with `[gate]` holding `gate`, and busybox 1.33.0 declared.
pub fn gated(gate: &str) -> DesiredState {
    with_base(&format!(
        "[gate]\n{gate}\n[[images]]\nsource = \"docker.io/library/busybox:1.33.0\"\n"
    ))
}
