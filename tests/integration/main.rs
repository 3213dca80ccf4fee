//! The one integration-test binary: real registries started by `support`, the airlock
//! binary and library driven against them.

mod apply;
#[cfg(feature = "azure")]
mod azure;
mod gate;
mod harness;
mod interrupt;
mod plans_ci;
mod quickstart;
mod registry_client;
mod scenarios;
mod support;
