//! Progress without a terminal (CI logs), like Terraform's "Still creating… [10s elapsed]":
//! at least every [`INTERVAL`] while actions run, one line on stderr per running action with
//! its size, then the bytes copied so far, the rate and the time elapsed. The lines are built
//! by a pure function from a snapshot; a thread hands them to the apply's observer as an
//! [`ApplyEvent::Heartbeat`], which prints them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::apply::walk::{ApplyEvent, Observer};
use crate::model::size::format_size;
use crate::plan::{Op, Plan};

/// The longest a CI log stays silent while actions run.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What the progress callbacks record.
#[derive(Default)]
pub struct Progress {
    pub bytes: AtomicU64,
    pub finished: Mutex<BTreeSet<usize>>,
    stop: AtomicBool,
}

/// One running action as the heartbeat shows it.
pub struct Running {
    pub id: String,
    pub size: Option<u64>,
}

/// The heartbeat lines for this moment: one per running action, then a total.
pub fn lines(
    running: &[Running],
    done: usize,
    total: usize,
    bytes: u64,
    elapsed: Duration,
) -> Vec<String> {
    let secs = elapsed.as_secs();
    let mut out: Vec<String> = running
        .iter()
        .map(|r| match r.size {
            Some(s) => format!(
                "Still running {} ({}) [{secs}s elapsed]",
                r.id,
                format_size(s)
            ),
            None => format!("Still running {} [{secs}s elapsed]", r.id),
        })
        .collect();
    let rate = if elapsed.as_secs_f64() > 0.0 {
        (bytes as f64 / elapsed.as_secs_f64()) as u64
    } else {
        0
    };
    out.push(format!(
        "Progress: {done}/{total} actions finished, {} copied ({}/s), {secs}s elapsed",
        format_size(bytes),
        format_size(rate)
    ));
    out
}

/// Actions that can be running: not finished, every dependency finished.
fn running(plan: &Plan, finished: &BTreeSet<usize>) -> Vec<Running> {
    (0..plan.actions().len())
        .filter(|i| !finished.contains(i))
        .filter(|&i| plan.dependencies(i).iter().all(|d| finished.contains(d)))
        .map(|i| {
            let a = &plan.actions()[i];
            Running {
                id: a.id.clone(),
                size: match &a.op {
                    Op::Import { size, .. } | Op::Promote { size, .. } => *size,
                    Op::Scan { .. } | Op::Delete { .. } => None,
                },
            }
        })
        .collect()
}

/// Send heartbeat lines to `sink` every `interval` until [`Heartbeat::stop`] (or drop).
pub struct Heartbeat {
    pub progress: Arc<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(plan: &Plan, interval: Duration, sink: Observer) -> Heartbeat {
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let plan = plan.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut next = start + interval;
            while !p.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if Instant::now() < next {
                    continue;
                }
                next += interval;
                let finished = p.finished.lock().expect("progress lock").clone();
                let total = plan.actions().len();
                if finished.len() >= total {
                    break;
                }
                let text = lines(
                    &running(&plan, &finished),
                    finished.len(),
                    total,
                    p.bytes.load(Ordering::Relaxed),
                    start.elapsed(),
                );
                sink(&ApplyEvent::Heartbeat { lines: &text });
            }
        });
        Heartbeat {
            progress,
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        self.progress.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_running_action_then_the_total_with_rate() {
        let running = [
            Running {
                id: "import:library/nginx:1.25".into(),
                size: Some(70 * 1024 * 1024),
            },
            Running {
                id: "scan:library/alpine:3.19".into(),
                size: None,
            },
        ];
        let l = lines(&running, 2, 7, 40 * 1024 * 1024, Duration::from_secs(20));
        assert_eq!(
            l,
            [
                "Still running import:library/nginx:1.25 (70.0 MiB) [20s elapsed]",
                "Still running scan:library/alpine:3.19 [20s elapsed]",
                "Progress: 2/7 actions finished, 40.0 MiB copied (2.0 MiB/s), 20s elapsed",
            ]
        );
    }
}
