//! The walker with fake steps: no registry, no plan, only the DAG rules.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;

use super::*;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a{i}")).collect()
}

fn limits() -> Limits {
    Limits {
        max_actions: MAX_ACTIONS,
        per_group: BTreeMap::new(),
        grace: Duration::from_secs(60),
    }
}

fn done() -> Status {
    Status::Done {
        detail: "done".into(),
    }
}

fn failed() -> Status {
    Status::Failed {
        error: "boom".into(),
    }
}

/// No signal ever.
fn quiet() -> impl Stream<Item = i32> + Unpin {
    futures_util::stream::pending()
}

/// Signals sent through the returned sender.
fn signals() -> (
    tokio::sync::mpsc::UnboundedSender<i32>,
    impl Stream<Item = i32> + Unpin,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) });
    (tx, Box::pin(s))
}

/// Records every event as a line.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn observer(&self) -> impl Fn(&ApplyEvent<'_>) + Send + Sync + use<> {
        let log = self.0.clone();
        move |e| {
            let line = match e {
                ApplyEvent::Started { id, .. } => format!("start {id}"),
                ApplyEvent::Finished { id, status, .. } => {
                    format!("end {id} {}", status.tally().word())
                }
                ApplyEvent::Skipped { id, because, .. } => format!("skip {id} because {because}"),
                ApplyEvent::Interrupted {
                    signal, running, ..
                } => {
                    format!("signal {signal} running {running}")
                }
                ApplyEvent::Stopped { why, running } => format!("stop {why:?} running {running}"),
                other => format!("{other:?}"),
            };
            log.lock().unwrap().push(line);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn a_chain_runs_in_dependency_order() {
    let dag = Dag::new(ids(3), &[(0, 1), (1, 2)]);
    let log = Log::default();
    let w = rt().block_on(walk(
        &dag,
        &limits(),
        quiet(),
        |_| async { done() },
        &log.observer(),
    ));
    assert_eq!(w.status, vec![done(), done(), done()]);
    assert_eq!(w.interrupted, None);
    assert_eq!(
        log.lines(),
        [
            "start a0",
            "end a0 done",
            "start a1",
            "end a1 done",
            "start a2",
            "end a2 done"
        ]
    );
}

#[test]
fn unchanged_lets_dependents_run_and_blocked_does_not() {
    let dag = Dag::new(ids(4), &[(0, 1), (2, 3)]);
    let w = rt().block_on(walk(
        &dag,
        &limits(),
        quiet(),
        |i| async move {
            match i {
                0 => Status::Unchanged {
                    detail: "held".into(),
                },
                2 => Status::Blocked {
                    detail: "gate".into(),
                    findings: vec![],
                },
                _ => done(),
            }
        },
        &|_: &ApplyEvent<'_>| {},
    ));
    assert_eq!(w.status[1], done());
    assert_eq!(
        w.status[3],
        Status::Skipped {
            because: "a2".into()
        }
    );
}

#[test]
fn a_failure_skips_its_dependents_once_naming_the_root_and_independent_actions_run() {
    // a0 → a1 → a3, a0 → a2 → a3 (a diamond under the failure), a4 → a5 independent.
    let dag = Dag::new(ids(6), &[(0, 1), (0, 2), (1, 3), (2, 3), (4, 5)]);
    let log = Log::default();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let r = ran.clone();
    let w = rt().block_on(walk(
        &dag,
        &limits(),
        quiet(),
        move |i| {
            r.lock().unwrap().push(i);
            async move { if i == 0 { failed() } else { done() } }
        },
        &log.observer(),
    ));
    let skipped = |root: &str| Status::Skipped {
        because: root.into(),
    };
    assert_eq!(
        w.status,
        vec![
            failed(),
            skipped("a0"),
            skipped("a0"),
            skipped("a0"),
            done(),
            done()
        ]
    );
    let mut ran = ran.lock().unwrap().clone();
    ran.sort();
    assert_eq!(ran, [0, 4, 5], "skipped actions never run");
    let skips: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("skip"))
        .collect();
    assert_eq!(skips.len(), 3, "each dependent reported once: {skips:?}");
    assert!(skips.iter().all(|l| l.ends_with("because a0")), "{skips:?}");
}

#[test]
fn a_skip_names_the_root_cause_not_the_skipped_parent() {
    let dag = Dag::new(ids(3), &[(0, 1), (1, 2)]);
    let w = rt().block_on(walk(
        &dag,
        &limits(),
        quiet(),
        |i| async move { if i == 0 { failed() } else { done() } },
        &|_: &ApplyEvent<'_>| {},
    ));
    assert_eq!(
        w.status[2],
        Status::Skipped {
            because: "a0".into()
        }
    );
}

#[test]
fn an_action_waits_for_all_its_dependencies() {
    // a2 depends on a0 (fails) and a1 (done): skipped, never started.
    let dag = Dag::new(ids(3), &[(0, 2), (1, 2)]);
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let w = rt().block_on(walk(
        &dag,
        &limits(),
        quiet(),
        move |i| {
            s.fetch_add(1, Ordering::SeqCst);
            async move { if i == 0 { failed() } else { done() } }
        },
        &|_: &ApplyEvent<'_>| {},
    ));
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert!(matches!(w.status[2], Status::Skipped { .. }));
}

/// Counts the actions running at once, overall and per group.
#[derive(Default)]
struct Gauge {
    now: Mutex<BTreeMap<String, usize>>,
    max: Mutex<BTreeMap<String, usize>>,
}

impl Gauge {
    fn enter(&self, group: &str) {
        let mut now = self.now.lock().unwrap();
        let mut max = self.max.lock().unwrap();
        for g in [group, "*"] {
            let c = now.entry(g.to_string()).or_default();
            *c += 1;
            let m = max.entry(g.to_string()).or_default();
            *m = (*m).max(*c);
        }
    }

    fn leave(&self, group: &str) {
        let mut now = self.now.lock().unwrap();
        for g in [group, "*"] {
            *now.get_mut(g).unwrap() -= 1;
        }
    }
}

#[test]
fn per_registry_and_overall_limits_are_respected() {
    let groups: Vec<Option<String>> = (0..30)
        .map(|i| {
            Some(match i % 3 {
                0 => "quarantine".to_string(),
                1 => "live".to_string(),
                _ => "unlimited".to_string(),
            })
        })
        .collect();
    let dag = Dag::new(ids(30), &[]).with_groups(groups.clone());
    let limits = Limits {
        max_actions: 5,
        per_group: BTreeMap::from([("quarantine".into(), 2), ("live".into(), 1)]),
        grace: Duration::from_secs(60),
    };
    let gauge = Arc::new(Gauge::default());
    let g = gauge.clone();
    let w = rt().block_on(walk(
        &dag,
        &limits,
        quiet(),
        move |i| {
            let g = g.clone();
            let group = groups[i].clone().unwrap();
            async move {
                g.enter(&group);
                tokio::time::sleep(Duration::from_millis(3)).await;
                g.leave(&group);
                done()
            }
        },
        &|_: &ApplyEvent<'_>| {},
    ));
    assert!(w.status.iter().all(|s| *s == done()));
    let max = gauge.max.lock().unwrap().clone();
    assert_eq!(max["quarantine"], 2, "{max:?}");
    assert_eq!(max["live"], 1, "{max:?}");
    assert_eq!(max["*"], 5, "{max:?}");
}

#[test]
fn a_full_group_does_not_hold_up_other_groups() {
    // a0 (group x, limit 1) runs until a1 (group y) has finished: a1 must not wait behind
    // a2 (group x) in the queue.
    let dag = Dag::new(ids(3), &[]).with_groups(vec![
        Some("x".into()),
        Some("x".into()),
        Some("y".into()),
    ]);
    let limits = Limits {
        max_actions: 8,
        per_group: BTreeMap::from([("x".into(), 1)]),
        grace: Duration::from_secs(60),
    };
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let w = rt()
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                walk(
                    &dag,
                    &limits,
                    quiet(),
                    move |i| {
                        let r = r.clone();
                        async move {
                            match i {
                                0 => r.notified().await,
                                2 => r.notify_one(),
                                _ => {}
                            }
                            done()
                        }
                    },
                    &|_: &ApplyEvent<'_>| {},
                ),
            )
            .await
        })
        .expect("a2 ran while a0 held group x");
    assert!(w.status.iter().all(|s| *s == done()), "{:?}", w.status);
}

#[test]
fn a_signal_starts_nothing_new_and_running_actions_end_interrupted_after_the_grace() {
    // a0 hangs; a1 depends on a0; a2 is independent but queued behind the limit of one.
    let dag = Dag::new(ids(3), &[(0, 1)]);
    let limits = Limits {
        max_actions: 1,
        per_group: BTreeMap::new(),
        grace: Duration::from_millis(30),
    };
    let (tx, signals) = signals();
    let log = Log::default();
    let seen = log.observer();
    let observer = move |e: &ApplyEvent<'_>| {
        if let ApplyEvent::Started { index: 0, .. } = e {
            tx.send(2).unwrap();
        }
        seen(e);
    };
    let w = rt().block_on(walk(
        &dag,
        &limits,
        signals,
        |i| async move {
            if i == 0 {
                std::future::pending::<()>().await;
            }
            done()
        },
        &observer,
    ));
    assert_eq!(w.interrupted, Some(2));
    assert_eq!(
        w.status,
        vec![Status::Interrupted, Status::NotStarted, Status::NotStarted]
    );
    assert_eq!(
        log.lines(),
        ["start a0", "signal 2 running 1", "stop GraceOver running 1"]
    );
}

#[test]
fn actions_finishing_within_the_grace_keep_their_result() {
    let dag = Dag::new(ids(2), &[(0, 1)]);
    let (tx, signals) = signals();
    let observer = move |e: &ApplyEvent<'_>| {
        if let ApplyEvent::Started { index: 0, .. } = e {
            tx.send(15).unwrap();
        }
    };
    let w = rt().block_on(walk(
        &dag,
        &limits(),
        signals,
        |_| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            done()
        },
        &observer,
    ));
    assert_eq!(w.interrupted, Some(15));
    assert_eq!(w.status, vec![done(), Status::NotStarted]);
}

#[test]
fn a_second_signal_stops_at_once() {
    let dag = Dag::new(ids(2), &[]);
    let (tx, signals) = signals();
    let log = Log::default();
    let seen = log.observer();
    let observer = move |e: &ApplyEvent<'_>| {
        if let ApplyEvent::Started { index: 1, .. } = e {
            tx.send(2).unwrap();
            tx.send(2).unwrap();
        }
        seen(e);
    };
    let w = rt().block_on(walk(
        &dag,
        &limits(), // a grace of a minute: only the second signal can end this test
        signals,
        |_| std::future::pending::<Status>(),
        &observer,
    ));
    assert_eq!(w.status, vec![Status::Interrupted, Status::Interrupted]);
    assert_eq!(
        log.lines().last().map(String::as_str),
        Some("stop SecondSignal running 2")
    );
}

#[test]
fn an_empty_plan_walks_to_nothing() {
    let w = rt().block_on(walk(
        &Dag::default(),
        &limits(),
        quiet(),
        |_| async { done() },
        &|_: &ApplyEvent<'_>| {},
    ));
    assert!(w.status.is_empty());
}
