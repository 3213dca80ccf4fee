//! `airlock.toml`: the serde schema (`schema`), its lowering into a validated
//! `DesiredState` (`lower`), and errors that name file, line and column (`error`).
//! Loading a configuration never touches a registry.

pub mod defaults;
pub mod desired;
pub mod endpoint;
pub mod error;
#[cfg(test)]
pub mod fixture;
pub mod lower;
pub mod schema;

use std::path::Path;

pub use defaults::{default_endpoint, default_registry};
pub use desired::*;
pub use error::{ConfigError, ConfigErrors};

/// Read and validate a configuration file. `today` decides which allow entries have expired.
pub fn load(path: &Path, today: time::Date) -> Result<DesiredState, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::file(
            path,
            format!("cannot read the configuration: {e}"),
        )])
    })?;
    parse(&source, path, today)
}

/// Validate configuration text that came from `path`.
pub fn parse(source: &str, path: &Path, today: time::Date) -> Result<DesiredState, ConfigErrors> {
    let raw: schema::RawConfig = toml::from_str(source).map_err(|e| {
        ConfigErrors(vec![ConfigError::at(
            path,
            source,
            e.span(),
            e.message().trim().to_string(),
            help_for(e.message()),
        )])
    })?;
    lower::lower(raw, path, source, today).map_err(ConfigErrors)
}

fn help_for(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some(
            "remove the key or fix its spelling; the configuration reference is in README.md"
                .into(),
        )
    } else if message.contains("missing field") {
        Some("add the missing key; the configuration reference is in README.md".into())
    } else if message.contains("invalid type") {
        Some("check the value's type (string in quotes, number, true/false, [list])".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
