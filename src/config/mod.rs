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
mod read;
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

/// Validate configuration text that came from `path`. Every unknown key is reported, and
/// when the rest of the file reads, every error of its values too, in one run.
pub fn parse(source: &str, path: &Path, today: time::Date) -> Result<DesiredState, ConfigErrors> {
    let read = read::read(source);
    let mut errors: Vec<ConfigError> = read
        .errors
        .iter()
        .map(|e| {
            ConfigError::at(
                path,
                source,
                e.span.clone(),
                e.message.clone(),
                help_for(&e.message),
            )
        })
        .collect();
    let Some(raw) = read.raw else {
        return Err(ConfigErrors(errors));
    };
    // Offsets in the text read are those of `source` (unknown keys were blanked in place).
    match lower::lower(raw, path, source, today) {
        Ok(desired) if errors.is_empty() => Ok(desired),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) if errors.is_empty() => Err(ConfigErrors(more)),
        Err(more) => {
            errors.extend(more);
            errors.sort_by_key(|e| (e.line, e.col));
            Err(ConfigErrors(errors))
        }
    }
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
