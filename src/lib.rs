//! airlock: declarative container-image quarantine.
//!
//! Data flows one way (see README.md, Architecture):
//! `config` → DesiredState; `observe` (registry reads) → ObservedState;
//! `plan::diff` (pure) → Plan; `render` (pure) → human | json | markdown;
//! `apply` executes exactly the plan against the registries.

pub mod admission;
pub mod apply;
pub mod audit;
#[cfg(feature = "azure")]
pub mod azure;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod exit;
pub mod gate;
pub mod heartbeat;
pub mod model;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod records;
pub mod registry;
pub mod render;
pub mod select;
pub mod signing;
