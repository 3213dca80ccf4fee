//! Apply: execute exactly a validated plan. Actions start when their dependencies succeed;
//! a failure skips its dependents (named with the root cause) and independent branches go on.
//! On the first SIGINT/SIGTERM nothing new starts and in-flight actions get a grace period;
//! a second signal stops at once. Because content goes in before tags, an interrupted run
//! leaves at most untagged blobs, and the next plan shows exactly what remains.

pub mod acr;
pub mod preconditions;
pub mod progress;
pub mod report;
pub mod result;
pub mod signatures;
pub mod steps;
pub mod transfer;
pub mod verdict_gate;
pub mod walk;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::DesiredState;
use crate::plan::Plan;
use crate::registry::Registries;
pub use report::{ActionResult, Report};
pub use result::{Status, Tally};
use transfer::{BlobLedger, Stats};
pub use walk::{ApplyEvent, Dag, Limits, Observer, walk};

tokio::task_local! {
    /// The index of the action a step runs for: its copied bytes are counted to it.
    static ACTION: usize;
}

/// `f` called as if from the action running now, wherever it is called from later (a
/// streamed blob is read by the HTTP client's connection task, outside the action's task).
pub(crate) fn bound_to_current_action(f: transfer::OnBytes) -> transfer::OnBytes {
    match ACTION.try_with(|i| *i) {
        Ok(i) => std::sync::Arc::new(move |n| ACTION.sync_scope(i, || f(n))),
        Err(_) => f,
    }
}

/// What apply uses besides the registries, built once by `commands`: the gate's scanners,
/// the signing key (already loaded and checked against the public key), and the Azure
/// context (acr-import) when this build has one.
pub struct Tools {
    pub scanners: crate::gate::Scanners,
    pub signer: Option<crate::signing::Signer>,
    #[cfg(feature = "azure")]
    pub azure: std::sync::Arc<crate::azure::Azure>,
}

/// Execute `plan`: the steps of `steps`, walked by [`walk`] within `limits`, everything shown
/// through `observer`. `signals` yields each SIGINT/SIGTERM (its number) as it arrives.
pub async fn execute<S>(
    plan: &Plan,
    desired: &DesiredState,
    registries: &Registries,
    limits: &Limits,
    tools: Tools,
    observer: Observer,
    signals: S,
) -> Report
where
    S: futures_util::Stream<Item = i32> + Unpin,
{
    let progress = observer.clone();
    let ctx = steps::Context {
        desired,
        registries,
        plan_hash: plan.hash(),
        ledger: BlobLedger::default(),
        stats: Stats::default(),
        verdicts: Mutex::new(HashMap::new()),
        imported: Mutex::new(Default::default()),
        verdicts_listed: Mutex::new(HashMap::new()),
        live_failing: Mutex::new(Vec::new()),
        on_bytes: Some(std::sync::Arc::new(move |bytes| {
            progress(&ApplyEvent::Progress {
                action: ACTION.try_with(|i| *i).ok(),
                bytes,
            })
        })),
        scanners: tools.scanners,
        signer: Ok(tools.signer),
        #[cfg(feature = "azure")]
        azure: tools.azure,
    };
    let actions = plan.actions();
    let ctx = &ctx;
    let walked = walk(
        &Dag::of(plan),
        limits,
        signals,
        |i| {
            ACTION.scope(i, async move {
                match steps::run(ctx, &actions[i]).await {
                    Ok(s) => s,
                    Err(e) => Status::Failed {
                        error: e.to_string(),
                    },
                }
            })
        },
        &*observer,
    )
    .await;
    if walked.interrupted.is_some() {
        let count = registries.abort_open_uploads().await;
        if count > 0 {
            observer(&ApplyEvent::UploadsCancelled { count });
        }
    }
    let results = actions
        .iter()
        .zip(walked.status)
        .map(|(a, st)| ActionResult::new(a, st))
        .collect();
    Report {
        results,
        stats: ctx.stats.snapshot(),
        interrupted: walked.interrupted,
        plan_blocked: plan.blocked.iter().filter(|b| !b.live).count(),
        live_failing: {
            let mut v: Vec<String> = plan
                .blocked
                .iter()
                .filter(|b| b.live)
                .map(|b| b.image.clone())
                .chain(
                    ctx.live_failing
                        .lock()
                        .expect("live failing lock")
                        .iter()
                        .cloned(),
                )
                .collect();
            v.sort();
            v.dedup();
            v
        },
    }
}
