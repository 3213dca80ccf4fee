//! `airlock.toml`: the serde schema (`schema`), its lowering into a validated
//! `DesiredState` (`lower`), and errors that name file, line and column (`error`).

pub mod desired;

pub use desired::*;
