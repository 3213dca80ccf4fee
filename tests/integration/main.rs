//! The one integration-test binary: real registries started by `support`, the airlock
//! binary and library driven against them.

mod apply;
#[cfg(feature = "azure")]
mod azure;
mod gate;
mod harness;
mod hostile_registry;
mod interrupt;
mod quickstart;
mod registry_client;
mod scenarios;
mod support;
