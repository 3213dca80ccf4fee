//! Apply: execute exactly a validated plan. Actions start when their dependencies succeed;
//! a failure skips its dependents (named with the root cause) and independent branches go on.
//! On the first SIGINT/SIGTERM nothing new starts and in-flight actions get a grace period;
//! a second signal stops at once. Because content goes in before tags, an interrupted run
//! leaves at most untagged blobs, and the next plan shows exactly what remains.

pub mod acr;
pub mod preconditions;
pub mod report;
pub mod signatures;
pub mod steps;
pub mod transfer;
pub mod verdict_gate;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::config::DesiredState;
use crate::plan::Plan;
use crate::registry::Registries;
pub use report::{ActionResult, Report};
pub use steps::Status;
use transfer::{BlobLedger, OnBytes, Stats};

/// At most this many actions run at once (each registry also bounds its own requests).
const MAX_ACTIONS: usize = 32;

/// Called with an action's result, how many have finished, and how many there are.
pub type OnDone = Arc<dyn Fn(&ActionResult, usize, usize) + Send + Sync>;

pub struct Options {
    /// How long in-flight actions may run after the first signal.
    pub grace: Duration,
    /// Called with the bytes of each chunk streamed (progress display).
    pub on_bytes: Option<OnBytes>,
    /// Called when an action ends (progress display / log lines).
    pub on_done: Option<OnDone>,
}

/// Execute `plan`. `signals` yields each SIGINT/SIGTERM (its number) as it arrives.
pub async fn execute<S>(
    plan: &Plan,
    desired: &DesiredState,
    registries: &Registries,
    opts: Options,
    mut signals: S,
) -> Report
where
    S: futures_util::Stream<Item = i32> + Unpin,
{
    let ctx = steps::Context {
        desired,
        registries,
        plan_hash: plan.hash(),
        ledger: BlobLedger::default(),
        stats: Stats::default(),
        verdicts: Mutex::new(HashMap::new()),
        live_failing: Mutex::new(Vec::new()),
        on_bytes: opts.on_bytes.clone(),
        signer: desired.signing.signer().map_err(|e| e.to_string()),
    };
    let actions = plan.actions();
    let n = actions.len();
    let mut waiting: Vec<usize> = (0..n).map(|i| plan.dependencies(i).len()).collect();
    let mut status: Vec<Option<Status>> = vec![None; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    ready.reverse(); // pop() takes them in plan order
    type Running<'f> = Pin<Box<dyn Future<Output = (usize, Status)> + 'f>>;
    let mut running: FuturesUnordered<Running<'_>> = FuturesUnordered::new();
    let mut interrupted: Option<i32> = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut finished = 0usize;

    loop {
        while interrupted.is_none() && running.len() < MAX_ACTIONS {
            let Some(i) = ready.pop() else { break };
            let ctx = &ctx;
            let a = &actions[i];
            running.push(Box::pin(async move {
                tracing::info!("start {}", a.id);
                let st = match steps::run(ctx, a).await {
                    Ok(s) => s,
                    Err(e) => Status::Failed {
                        error: e.to_string(),
                    },
                };
                (i, st)
            }));
        }
        if running.is_empty() {
            break;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((i, st)) = running.next() => {
                finished += 1;
                let ok = matches!(st, Status::Done { .. } | Status::Unchanged { .. });
                if ok {
                    for j in plan.dependents(i) {
                        waiting[j] -= 1;
                        if waiting[j] == 0 && status[j].is_none() {
                            ready.push(j);
                        }
                    }
                    ready.sort_by(|a, b| b.cmp(a));
                } else {
                    skip_dependents(plan, i, &actions[i].id, &mut status);
                }
                if let Some(f) = &opts.on_done {
                    f(&ActionResult::new(&actions[i], st.clone()), finished, n);
                }
                status[i] = Some(st);
            }
            sig = signals.next() => {
                let sig = sig.unwrap_or(15);
                if interrupted.is_some() {
                    tracing::warn!("second signal: stopping now");
                    break;
                }
                interrupted = Some(sig);
                eprintln!(
                    "airlock: signal received; starting nothing new, waiting up to {} for {} running action(s) (signal again to stop now)",
                    humantime::format_duration(opts.grace),
                    running.len()
                );
                deadline = Some(tokio::time::Instant::now() + opts.grace);
            }
            _ = sleep => {
                tracing::warn!("grace period over: stopping {} running action(s)", running.len());
                break;
            }
        }
    }
    drop(running);
    if interrupted.is_some() {
        let n = registries.abort_open_uploads().await;
        if n > 0 {
            eprintln!("airlock: cancelled {n} unfinished upload session(s)");
        }
    }
    let results = actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let st = status[i].clone().unwrap_or(if interrupted.is_some() {
                // Started but unfinished, or never started.
                if waiting[i] == 0 && !ready.contains(&i) {
                    Status::Interrupted
                } else {
                    Status::NotStarted
                }
            } else {
                Status::NotStarted
            });
            ActionResult::new(a, st)
        })
        .collect();
    Report {
        results,
        stats: ctx.stats.snapshot(),
        interrupted,
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

/// Mark every transitive dependent of `i` as skipped because of `root`.
fn skip_dependents(plan: &Plan, i: usize, root: &str, status: &mut [Option<Status>]) {
    let mut stack = plan.dependents(i);
    while let Some(j) = stack.pop() {
        if status[j].is_none() {
            status[j] = Some(Status::Skipped {
                because: root.to_string(),
            });
            stack.extend(plan.dependents(j));
        }
    }
}
