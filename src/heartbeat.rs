//! Progress without a terminal (CI logs), like Terraform's "Still creating… [10s elapsed]":
//! at least every [`INTERVAL`] while actions run, one line on stderr per running action — for
//! a transfer its bytes copied of its size, its rate and its time elapsed — then the total
//! bytes copied, the rate and the time elapsed. The lines are built by a pure function from a
//! snapshot; a thread hands them to the apply's observer as an [`ApplyEvent::Heartbeat`],
//! which prints them.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Started actions: when, and the bytes each copied.
    started: Mutex<BTreeMap<usize, (Instant, u64)>>,
    stop: AtomicBool,
}

impl Progress {
    /// Action `index` started now.
    pub fn started(&self, index: usize) {
        self.started
            .lock()
            .expect("progress lock")
            .insert(index, (Instant::now(), 0));
    }

    /// `bytes` were copied, by `action` when known.
    pub fn copied(&self, action: Option<usize>, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(i) = action
            && let Some((_, n)) = self.started.lock().expect("progress lock").get_mut(&i)
        {
            *n += bytes;
        }
    }

    /// Action `index` ended.
    pub fn finished(&self, index: usize) {
        self.finished.lock().expect("progress lock").insert(index);
    }
}

/// One running action as the heartbeat shows it.
pub struct Running {
    pub id: String,
    /// The bytes its transfer moves, when it moves any.
    pub size: Option<u64>,
    /// Bytes copied so far.
    pub bytes: u64,
    /// Since it started.
    pub elapsed: Duration,
}

/// `n/s` over `elapsed` (0 before a second has passed).
fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let per = if secs > 0.0 {
        (bytes as f64 / secs) as u64
    } else {
        0
    };
    format!("{}/s", format_size(per))
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
        .map(|r| {
            let own = r.elapsed.as_secs();
            match r.size {
                Some(size) => format!(
                    "Still running {}: {} of {} copied ({}) [{own}s elapsed]",
                    r.id,
                    format_size(r.bytes),
                    format_size(size),
                    rate(r.bytes, r.elapsed)
                ),
                None if r.bytes > 0 => format!(
                    "Still running {}: {} copied ({}) [{own}s elapsed]",
                    r.id,
                    format_size(r.bytes),
                    rate(r.bytes, r.elapsed)
                ),
                None => format!("Still running {} [{own}s elapsed]", r.id),
            }
        })
        .collect();
    out.push(format!(
        "Progress: {done}/{total} actions finished, {} copied ({}), {secs}s elapsed",
        format_size(bytes),
        rate(bytes, elapsed)
    ));
    out
}

/// Actions started and not finished, with their progress.
fn running(plan: &Plan, progress: &Progress, finished: &BTreeSet<usize>) -> Vec<Running> {
    let started = progress.started.lock().expect("progress lock");
    started
        .iter()
        .filter(|(i, _)| !finished.contains(i))
        .filter_map(|(&i, &(at, bytes))| {
            let a = plan.actions().get(i)?;
            Some(Running {
                id: a.id.clone(),
                size: match &a.op {
                    Op::Import { size, .. } | Op::Promote { size, .. } => *size,
                    Op::Scan { .. } | Op::Delete { .. } => None,
                },
                bytes,
                elapsed: at.elapsed(),
            })
        })
        .collect()
}

/// Send heartbeat lines to `sink` every `interval` until [`Heartbeat::stop`] (or drop).
pub struct Heartbeat {
    pub progress: Arc<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Dropped by [`Heartbeat::stop`]: wakes the thread at once (an apply's exit does not
    /// wait for the thread's next tick).
    wake: Option<std::sync::mpsc::Sender<()>>,
}

impl Heartbeat {
    pub fn start(plan: &Plan, interval: Duration, sink: Observer) -> Heartbeat {
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let plan = plan.clone();
        let (wake, woken) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut next = start + interval;
            while !p.stop.load(Ordering::Relaxed) {
                let wait = next.saturating_duration_since(Instant::now());
                match woken.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    // Stopped (the sender is dropped), or told to.
                    _ => break,
                }
                if p.stop.load(Ordering::Relaxed) {
                    break;
                }
                next += interval;
                let finished = p.finished.lock().expect("progress lock").clone();
                let total = plan.actions().len();
                if finished.len() >= total {
                    break;
                }
                let text = lines(
                    &running(&plan, &p, &finished),
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
            wake: Some(wake),
        }
    }

    pub fn stop(&mut self) {
        self.progress.stop.store(true, Ordering::Relaxed);
        drop(self.wake.take());
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
    fn a_line_per_running_action_with_its_bytes_then_the_total_with_rate() {
        let running = [
            Running {
                id: "import:library/nginx:1.25".into(),
                size: Some(70 * 1024 * 1024),
                bytes: 12 * 1024 * 1024,
                elapsed: Duration::from_secs(8),
            },
            Running {
                id: "promote:library/redis:7".into(),
                size: None,
                bytes: 3 * 1024,
                elapsed: Duration::from_secs(1),
            },
            Running {
                id: "scan:library/alpine:3.19".into(),
                size: None,
                bytes: 0,
                elapsed: Duration::from_millis(400),
            },
        ];
        let l = lines(&running, 2, 7, 40 * 1024 * 1024, Duration::from_secs(20));
        assert_eq!(
            l,
            [
                "Still running import:library/nginx:1.25: 12.0 MiB of 70.0 MiB copied \
                 (1.5 MiB/s) [8s elapsed]",
                "Still running promote:library/redis:7: 3.0 KiB copied (3.0 KiB/s) [1s elapsed]",
                "Still running scan:library/alpine:3.19 [0s elapsed]",
                "Progress: 2/7 actions finished, 40.0 MiB copied (2.0 MiB/s), 20s elapsed",
            ]
        );
    }

    #[test]
    fn bytes_are_counted_per_started_action() {
        let p = Progress::default();
        p.started(1);
        p.copied(Some(1), 100);
        p.copied(Some(2), 7); // not started: only the total counts it
        p.copied(None, 5);
        p.copied(Some(1), 20);
        assert_eq!(p.bytes.load(Ordering::Relaxed), 132);
        assert_eq!(p.started.lock().unwrap()[&1].1, 120);
        assert!(!p.started.lock().unwrap().contains_key(&2));
    }
}
