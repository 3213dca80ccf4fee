//! The top-level error: what a command can fail with. Messages name the file, registry or
//! reference they concern; registry errors keep the registry's own code.

use std::path::PathBuf;

use crate::config::ConfigErrors;
use crate::plan::PlanError;
use crate::registry::RegistryError;
use crate::render::ViewError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("invalid plan: {0}")]
    Plan(#[from] PlanError),
    #[error("cannot use plan file {}: {source}", path.display())]
    PlanFile { path: PathBuf, source: ViewError },
    /// A saved plan holds actions the current configuration would never produce.
    #[error(
        "refusing plan file {}: it holds actions that {} cannot produce; nothing was applied\n{}",
        path.display(),
        config.display(),
        problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
    )]
    Inadmissible {
        path: PathBuf,
        config: PathBuf,
        problems: Vec<crate::plan::admissible::Inadmissible>,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
