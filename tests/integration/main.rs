//! The one integration-test binary: real registries started by `support`, the airlock
//! binary and library driven against them.

mod gate;
mod harness;
mod scenarios;
mod support;
