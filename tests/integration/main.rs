//! The one integration-test binary: real registries started by `support`, the airlock
//! binary and library driven against them.

mod apply;
mod architecture;
#[cfg(feature = "azure")]
mod azure;
mod day_two;
mod gate;
mod harness;
mod interrupt;
mod quickstart;
mod registry_client;
mod scenarios;
mod support;
