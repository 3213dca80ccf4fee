//! The one integration-test binary: real registries started by `support`, the airlock
//! binary and library driven against them.

mod apply;
mod apply_rechecks;
mod architecture;
#[cfg(feature = "azure")]
mod azure;
mod ci_output;
mod cluster;
mod day_two;
mod gate;
mod gate_hygiene;
mod harness;
mod hostile_registry;
mod interrupt;
#[cfg(feature = "azure")]
mod kms;
mod large_transfer;
mod plan_view;
mod plans_ci;
mod quickstart;
mod records_bound;
mod referrers_api;
mod registry_client;
mod request_counts;
mod saved_plan;
mod scenarios;
mod signed_records;
mod support;
mod tls_trust;
