//! The observer that shows an apply as it runs: on a terminal a progress bar (bytes, rate,
//! actions); without one, a log line per finished action and heartbeat lines (each running
//! action's bytes of its size, rate and elapsed time; the total) at least every
//! [`heartbeat::INTERVAL`]. Both print the signal notices.

use std::io::IsTerminal;
use std::sync::Arc;

use super::Tally;
use super::walk::{ApplyEvent, Observer, StopReason};
use crate::heartbeat;
use crate::plan::Plan;

/// The observer for stderr as it is, and the heartbeat to stop when the apply ends (none on a
/// terminal).
pub fn for_stderr(plan: &Plan) -> (Observer, Option<heartbeat::Heartbeat>) {
    if std::io::stderr().is_terminal() {
        (terminal(), None)
    } else {
        let beat = heartbeat::Heartbeat::start(plan, heartbeat::INTERVAL, Arc::new(notices));
        let progress = beat.progress.clone();
        let observer: Observer = Arc::new(move |e| match e {
            ApplyEvent::Progress { action, bytes } => progress.copied(*action, *bytes),
            ApplyEvent::Started { index, .. } => {
                progress.started(*index);
                notices(e);
            }
            ApplyEvent::Finished {
                index,
                id,
                status,
                finished,
                total,
            } => {
                progress.finished(*index);
                eprintln!("[{finished}/{total}] {} {id}", status.tally().word());
            }
            other => notices(other),
        });
        (observer, Some(beat))
    }
}

fn terminal() -> Observer {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {binary_bytes} copied ({binary_bytes_per_sec}) {elapsed}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Arc::new(move |e| match e {
        ApplyEvent::Progress { bytes, .. } => bar.inc(*bytes),
        ApplyEvent::Finished {
            id,
            status,
            finished,
            total,
            ..
        } => {
            bar.set_message(format!("[{finished}/{total}] {id}"));
            if status.tally() == Tally::Failed {
                bar.println(format!("failed: {id}"));
            }
            if finished == total {
                bar.finish_and_clear();
            }
        }
        other => notices(other),
    })
}

/// What both displays show the same way: the signal notices, heartbeat lines and log records.
fn notices(e: &ApplyEvent<'_>) {
    match e {
        ApplyEvent::Started { id, .. } => tracing::info!("start {id}"),
        ApplyEvent::Skipped { id, because, .. } => {
            tracing::info!("skip {id}: {because} did not succeed")
        }
        ApplyEvent::Interrupted { running, grace, .. } => eprintln!(
            "airlock: signal received; starting nothing new, waiting up to {} for {running} running action(s) (signal again to stop now)",
            humantime::format_duration(*grace),
        ),
        ApplyEvent::Stopped {
            why: StopReason::SecondSignal,
            ..
        } => tracing::warn!("second signal: stopping now"),
        ApplyEvent::Stopped {
            why: StopReason::GraceOver,
            running,
        } => tracing::warn!("grace period over: stopping {running} running action(s)"),
        ApplyEvent::UploadsCancelled { count } => {
            eprintln!("airlock: cancelled {count} unfinished upload session(s)")
        }
        ApplyEvent::Heartbeat { lines } => eprintln!("{}", lines.join("\n")),
        ApplyEvent::Progress { .. } | ApplyEvent::Finished { .. } => {}
    }
}
