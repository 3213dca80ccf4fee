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
    /// Images that could not be observed: every one of them, each line `error: …`.
    #[error("{0}")]
    Unobserved(#[from] crate::unobserved::Unobserved),
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

/// An error and its causes on one line, `outer: cause: root cause`, each cause once (a
/// message that already quotes its source does not repeat it). `error sending request` alone
/// says nothing; its root cause (`Connection refused`, a DNS failure) says what to fix.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod cause_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to read the manifest on `acr`: {0}")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_whole_cause_chain_is_printed_once() {
        let e = Outer(Middle(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        assert_eq!(
            with_causes(&e),
            "failed to read the manifest on `acr`: error sending request: Connection refused (os error 111)"
        );
        let plain = Error::Other("nothing below".into());
        assert_eq!(with_causes(&plain), "nothing below");
    }
}
