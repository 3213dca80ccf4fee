//! The walker: runs the actions of a DAG in dependency order, knowing nothing of what an action
//! does. The step runner is a parameter (so the walk is unit-tested with fake steps) and
//! everything worth showing leaves as an [`ApplyEvent`] to an observer (progress bars,
//! heartbeat lines, log lines are the observer's business, see `apply::progress`).
//!
//! Rules: an action starts when every dependency ended Done or Unchanged; any other end skips
//! its transitive dependents, each reported once and naming the root cause; independent
//! branches go on. At most [`Limits::max_actions`] actions run at once, and at most a group's
//! limit per group (the target registry's `max_concurrency`). On the first signal nothing new
//! starts and running actions get [`Limits::grace`]; a second signal, or the end of the grace
//! period, stops at once: running actions end Interrupted, the rest NotStarted.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::result::Status;
use crate::config::DesiredState;
use crate::plan::Plan;

/// What the walker and the steps report while an apply runs.
#[derive(Debug)]
pub enum ApplyEvent<'a> {
    /// An action started.
    Started { index: usize, id: &'a str },
    /// Bytes of a blob were copied, by `action` (its index) when known.
    Progress { action: Option<usize>, bytes: u64 },
    /// An action ended (`finished` of `total` have ended so far, skipped ones not counted).
    Finished {
        index: usize,
        id: &'a str,
        status: &'a Status,
        finished: usize,
        total: usize,
    },
    /// An action will not run because `because` (an action it depends on) did not succeed.
    Skipped {
        index: usize,
        id: &'a str,
        because: &'a str,
    },
    /// The first signal: nothing new starts; `running` actions get `grace`.
    Interrupted {
        signal: i32,
        running: usize,
        grace: Duration,
    },
    /// The walk stops with `running` actions unfinished (they end Interrupted).
    Stopped { why: StopReason, running: usize },
    /// Upload sessions left open by interrupted actions were cancelled.
    UploadsCancelled { count: usize },
    /// Periodic progress lines for logs without a terminal (`crate::heartbeat`).
    Heartbeat { lines: &'a [String] },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    SecondSignal,
    GraceOver,
}

/// Receives every [`ApplyEvent`]; called from the walk and from transfer tasks.
pub type Observer = std::sync::Arc<dyn Fn(&ApplyEvent<'_>) + Send + Sync>;

/// The shape the walker needs: ids, edges, and a concurrency group per action.
#[derive(Clone, Debug, Default)]
pub struct Dag {
    ids: Vec<String>,
    dependencies: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    groups: Vec<Option<String>>,
}

impl Dag {
    /// `edges` are (dependency, dependent) pairs of indexes into `ids`.
    pub fn new(ids: Vec<String>, edges: &[(usize, usize)]) -> Dag {
        let n = ids.len();
        let mut dependencies = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for &(from, to) in edges {
            dependencies[to].push(from);
            dependents[from].push(to);
        }
        for v in dependencies.iter_mut().chain(dependents.iter_mut()) {
            v.sort_unstable();
            v.dedup();
        }
        Dag {
            ids,
            dependencies,
            dependents,
            groups: vec![None; n],
        }
    }

    /// Put action `i` in concurrency group `group` (see [`Limits::per_group`]).
    pub fn with_groups(mut self, groups: Vec<Option<String>>) -> Dag {
        assert_eq!(groups.len(), self.ids.len(), "one group per action");
        self.groups = groups;
        self
    }

    /// The plan's actions, grouped by target registry.
    pub fn of(plan: &Plan) -> Dag {
        let actions = plan.actions();
        let ids = actions.iter().map(|a| a.id.clone()).collect();
        let edges: Vec<(usize, usize)> = (0..actions.len())
            .flat_map(|i| plan.dependents(i).into_iter().map(move |j| (i, j)))
            .collect();
        Dag::new(ids, &edges).with_groups(
            actions
                .iter()
                .map(|a| Some(a.target.registry.clone()))
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// How much may run at once, and how long running actions may finish after a signal.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_actions: usize,
    /// Group → most actions of that group running at once (0 counts as 1).
    pub per_group: BTreeMap<String, usize>,
    pub grace: Duration,
}

/// At most this many actions run at once (each registry also bounds its own requests).
pub const MAX_ACTIONS: usize = 32;

impl Limits {
    /// [`MAX_ACTIONS`], and each registry's `max_concurrency` for the actions targeting it.
    pub fn of(desired: &DesiredState, grace: Duration) -> Limits {
        Limits {
            max_actions: MAX_ACTIONS,
            per_group: desired
                .registries
                .iter()
                .map(|(k, r)| (k.clone(), r.max_concurrency))
                .collect(),
            grace,
        }
    }
}

/// How the walk ended: a status per action, and the signal that interrupted it, if one did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walked {
    pub status: Vec<Status>,
    pub interrupted: Option<i32>,
}

/// Walk `dag`: `run_step(i)` runs action `i`; `signals` yields each SIGINT/SIGTERM number.
pub async fn walk<S, R, F>(
    dag: &Dag,
    limits: &Limits,
    mut signals: S,
    run_step: R,
    observer: &(dyn Fn(&ApplyEvent<'_>) + Send + Sync),
) -> Walked
where
    S: futures_util::Stream<Item = i32> + Unpin,
    R: Fn(usize) -> F,
    F: Future<Output = Status>,
{
    let n = dag.len();
    let mut waiting: Vec<usize> = dag.dependencies.iter().map(Vec::len).collect();
    let mut status: Vec<Option<Status>> = vec![None; n];
    let mut started = vec![false; n];
    // Kept in descending order: the end holds the first ready action in plan order.
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| waiting[i] == 0).collect();
    let mut in_group: BTreeMap<&str, usize> = BTreeMap::new();
    let mut running = FuturesUnordered::new();
    let mut interrupted: Option<i32> = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut finished = 0usize;
    let room = |g: &Option<String>, in_group: &BTreeMap<&str, usize>| match g {
        Some(g) => match limits.per_group.get(g) {
            Some(&max) => in_group.get(g.as_str()).copied().unwrap_or(0) < max.max(1),
            None => true,
        },
        None => true,
    };

    loop {
        while interrupted.is_none() && running.len() < limits.max_actions.max(1) {
            let Some(pos) = ready.iter().rposition(|&i| room(&dag.groups[i], &in_group)) else {
                break;
            };
            let i = ready.remove(pos);
            if let Some(g) = &dag.groups[i] {
                *in_group.entry(g.as_str()).or_default() += 1;
            }
            started[i] = true;
            observer(&ApplyEvent::Started {
                index: i,
                id: &dag.ids[i],
            });
            let step = run_step(i);
            running.push(async move { (i, step.await) });
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
                if let Some(g) = &dag.groups[i]
                    && let Some(c) = in_group.get_mut(g.as_str())
                {
                    *c -= 1;
                }
                if st.succeeded() {
                    for &j in &dag.dependents[i] {
                        waiting[j] -= 1;
                        if waiting[j] == 0 && status[j].is_none() {
                            ready.push(j);
                        }
                    }
                    ready.sort_by(|a, b| b.cmp(a));
                }
                observer(&ApplyEvent::Finished {
                    index: i,
                    id: &dag.ids[i],
                    status: &st,
                    finished,
                    total: n,
                });
                let ok = st.succeeded();
                status[i] = Some(st);
                if !ok {
                    skip_dependents(dag, i, &mut status, observer);
                }
            }
            sig = signals.next() => {
                let sig = sig.unwrap_or(15);
                if interrupted.is_some() {
                    observer(&ApplyEvent::Stopped { why: StopReason::SecondSignal, running: running.len() });
                    break;
                }
                interrupted = Some(sig);
                observer(&ApplyEvent::Interrupted { signal: sig, running: running.len(), grace: limits.grace });
                deadline = Some(tokio::time::Instant::now() + limits.grace);
            }
            _ = sleep => {
                observer(&ApplyEvent::Stopped { why: StopReason::GraceOver, running: running.len() });
                break;
            }
        }
    }
    drop(running);
    let status = status
        .into_iter()
        .enumerate()
        .map(|(i, st)| {
            st.unwrap_or(if interrupted.is_some() && started[i] {
                Status::Interrupted
            } else {
                Status::NotStarted
            })
        })
        .collect();
    Walked {
        status,
        interrupted,
    }
}

/// Mark every transitive dependent of `i` as skipped because of `i`, each once.
fn skip_dependents(
    dag: &Dag,
    i: usize,
    status: &mut [Option<Status>],
    observer: &(dyn Fn(&ApplyEvent<'_>) + Send + Sync),
) {
    let root = &dag.ids[i];
    let mut stack = dag.dependents[i].clone();
    while let Some(j) = stack.pop() {
        if status[j].is_none() {
            status[j] = Some(Status::Skipped {
                because: root.clone(),
            });
            observer(&ApplyEvent::Skipped {
                index: j,
                id: &dag.ids[j],
                because: root,
            });
            stack.extend(dag.dependents[j].iter().copied());
        }
    }
}

#[cfg(test)]
mod tests;
