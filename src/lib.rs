//! airlock: declarative container-image quarantine.
//!
//! See README.md (Architecture) for the code map and invariants.

pub mod config;
pub mod model;
pub mod observed;
pub mod plan;
pub mod registry;
pub mod render;
