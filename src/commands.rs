//! One function per command: load, observe, plan, render, apply — wiring only; the work
//! happens in the modules they call. Returns an `Outcome` that `exit` maps to a code.

use std::io::{IsTerminal, Write};
use std::path::Path;

use time::OffsetDateTime;

use crate::apply;
use crate::config::{self, DesiredState};
use crate::error::Error;
use crate::exit::Outcome;
use crate::observe;
use crate::plan::{Plan, diff};
use crate::registry::Registries;
use crate::render::{self, Format, HumanOptions};
use futures_util::StreamExt;

mod day_two;
pub use day_two::{outdated, pin, resolve_tracks};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn load(path: &Path) -> Result<DesiredState, Error> {
    Ok(config::load(path, now().date())?)
}

/// Colour only on a terminal, and never with NO_COLOR set.
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("failed to start the async runtime", e))
}

/// SIGINT and SIGTERM handlers, installed synchronously when created (so that a signal
/// arriving while the first requests go out is never missed).
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers; must be called inside the runtime.
    pub fn install() -> Result<Signals, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate())
                .map_err(|e| Error::io("failed to install the SIGTERM handler", e))?;
            let int = signal(SignalKind::interrupt())
                .map_err(|e| Error::io("failed to install the SIGINT handler", e))?;
            Ok(Signals { term, int })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's number (2 for SIGINT, 15 for SIGTERM).
    pub async fn recv(&mut self) -> i32 {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => 15,
                _ = self.int.recv() => 2,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }

    /// Every further signal, as a stream.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = i32> + Unpin {
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            let sig = s.recv().await;
            Some((sig, s))
        }))
    }
}

pub fn validate(path: &Path) -> Result<Outcome, Error> {
    let d = load(path)?;
    day_two::print_warnings(&d);
    println!(
        "{} is valid: {} image{}; quarantine {}/{}, live {}/{}{}; gate: {} (fail on {}).",
        path.display(),
        d.images.len(),
        if d.images.len() == 1 { "" } else { "s" },
        d.quarantine.registry,
        d.quarantine.prefix,
        d.live.registry,
        d.live.prefix,
        if d.prune { " (prune)" } else { "" },
        d.gate.scanners.join(", "),
        d.gate.fail_on
    );
    for t in &d.tracks {
        println!(
            "  tracks {} ({}, keep {}, {} pinned)",
            t.source.repository(),
            t.track,
            t.keep,
            t.pins.len()
        );
    }
    Ok(Outcome::Success)
}

/// Observe and plan (shared by `plan` and `apply`).
pub async fn make_plan(desired: &DesiredState, registries: &Registries) -> Result<Plan, Error> {
    let desired = &resolve_tracks(desired, registries).await?;
    let observed = observe::observe(desired, registries).await?;
    Ok(diff::plan(desired, &observed, now())?)
}

/// Write `bytes` to `path` atomically: a temporary file beside it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("failed to write {}", path.display()), e)
    })
}

pub fn render_plan(plan: &Plan, format: Format) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    render::render(
        plan,
        format,
        &HumanOptions {
            color: color_stdout() && matches!(format, Format::Human),
        },
        &mut out,
    )
    .and_then(|_| out.flush())
    .map_err(|e| Error::io("failed to write the plan to stdout", e))
}

pub fn plan(
    path: &Path,
    out: Option<&Path>,
    format: Format,
    detailed_exitcode: bool,
) -> Result<Outcome, Error> {
    let desired = load(path)?;
    day_two::print_warnings(&desired);
    let rt = runtime()?;
    rt.block_on(async {
        let mut signals = Signals::install()?;
        let registries = Registries::from_desired(&desired);
        // Biased, signals first: their handlers are installed before the first request
        // goes out (a SIGINT before that would kill the process without a report).
        let plan = tokio::select! {
            biased;
            sig = signals.recv() => return Ok(Outcome::Interrupted(sig)),
            p = make_plan(&desired, &registries) => p?,
        };
        if let Some(out) = out {
            let mut json = Vec::new();
            render::render(
                &plan,
                Format::Json,
                &HumanOptions { color: false },
                &mut json,
            )
            .map_err(|e| Error::io("failed to serialise the plan", e))?;
            write_atomic(out, &json)?;
            tracing::info!("plan written to {}", out.display());
        }
        render_plan(&plan, format)?;
        Ok(if detailed_exitcode && plan.has_changes() {
            Outcome::Changes
        } else {
            Outcome::Success
        })
    })
}

pub fn read_plan_file(path: &Path) -> Result<Plan, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("failed to read plan file {}", path.display()), e))?;
    render::parse_plan_file(&bytes).map_err(|source| Error::PlanFile {
        path: path.to_path_buf(),
        source,
    })
}

pub fn show(path: &Path, format: Format) -> Result<Outcome, Error> {
    let plan = read_plan_file(path)?;
    render_plan(&plan, format)?;
    Ok(Outcome::Success)
}

pub fn images(path: &Path, kustomize: bool) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let registries = Registries::from_desired(&desired);
        let desired = resolve_tracks(&desired, &registries).await?;
        let live = registries.get(&desired.live.registry)?;
        let host = live.host();
        let mut out = String::new();
        let mut missing = Vec::new();
        if kustomize {
            out.push_str("images:\n");
        }
        for spec in &desired.images {
            let repo = desired.live.repository(&spec.path);
            match live.head_manifest(&repo, &spec.tag).await? {
                Some(d) => {
                    if kustomize {
                        out.push_str(&format!(
                            "  - name: {}\n    newName: {host}/{repo}\n    digest: {}\n",
                            spec.source.repository(),
                            d.digest
                        ));
                    } else {
                        out.push_str(&format!("{host}/{repo}:{}@{}\n", spec.tag, d.digest));
                    }
                }
                None => missing.push(format!("{host}/{repo}:{}", spec.tag)),
            }
        }
        print!("{out}");
        if missing.is_empty() {
            Ok(Outcome::Success)
        } else {
            Err(Error::Other(format!(
                "not in live yet (run `airlock apply`): {}",
                missing.join(", ")
            )))
        }
    })
}

fn confirm() -> Result<bool, Error> {
    use std::io::BufRead;
    eprint!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("failed to read the answer", e))?;
    Ok(line.trim() == "yes")
}

/// Progress on a terminal (bytes, rate, actions), plain log lines otherwise.
fn progress_options(grace: std::time::Duration) -> apply::Options {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {binary_bytes} copied ({binary_bytes_per_sec}) {elapsed}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let b1 = bar.clone();
        let b2 = bar.clone();
        apply::Options {
            grace,
            on_bytes: Some(std::sync::Arc::new(move |n| b1.inc(n))),
            on_done: Some(std::sync::Arc::new(move |r, done, total| {
                b2.set_message(format!("[{done}/{total}] {}", r.id));
                if matches!(r.status, apply::Status::Failed { .. }) {
                    b2.println(format!("failed: {}", r.id));
                }
                if done == total {
                    b2.finish_and_clear();
                }
            })),
        }
    } else {
        apply::Options {
            grace,
            on_bytes: None,
            on_done: Some(std::sync::Arc::new(|r, done, total| {
                let word = match &r.status {
                    apply::Status::Done { .. } => "done",
                    apply::Status::Unchanged { .. } => "unchanged",
                    apply::Status::Failed { .. } => "FAILED",
                    apply::Status::Blocked { .. } => "BLOCKED",
                    apply::Status::Skipped { .. } => "skipped",
                    apply::Status::Interrupted => "interrupted",
                    apply::Status::NotStarted => "not started",
                };
                eprintln!("[{done}/{total}] {word} {}", r.id);
            })),
        }
    }
}

pub fn apply(
    path: &Path,
    plan_file: Option<&Path>,
    auto_approve: bool,
    json: bool,
    grace: std::time::Duration,
) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let registries = Registries::from_desired(&desired);
        let mut signals = Signals::install()?.into_stream();
        let plan = match plan_file {
            Some(f) => {
                let plan = read_plan_file(f)?;
                if plan.policy_hash != desired.policy_hash() {
                    eprintln!(
                        "The plan is stale: the gate configuration changed since it was made (policy hash {} → {}). Nothing was applied; run `airlock plan` again.",
                        plan.policy_hash.short(),
                        desired.policy_hash().short()
                    );
                    return Ok(Outcome::Stale);
                }
                let moved = tokio::select! {
                    m = apply::preconditions::check(&plan, &registries) => m?,
                    Some(sig) = signals.next() => return Ok(Outcome::Interrupted(sig)),
                };
                if !moved.is_empty() {
                    eprintln!("The plan is stale: these tags moved since it was made. Nothing was applied; run `airlock plan` again.");
                    for m in &moved {
                        eprintln!("  {m}");
                    }
                    return Ok(Outcome::Stale);
                }
                plan
            }
            None => {
                let plan = tokio::select! {
                    p = make_plan(&desired, &registries) => p?,
                    Some(sig) = signals.next() => return Ok(Outcome::Interrupted(sig)),
                };
                if json {
                    let mut err = std::io::stderr().lock();
                    render::render(&plan, Format::Human, &HumanOptions { color: false }, &mut err)
                        .map_err(|e| Error::io("failed to write the plan", e))?;
                } else {
                    render_plan(&plan, Format::Human)?;
                }
                if plan.has_changes() && !auto_approve {
                    if !std::io::stdin().is_terminal() {
                        return Err(Error::Usage(
                            "refusing to apply without confirmation: stdin is not a terminal. Review the plan and pass --auto-approve, or apply a saved plan file (`airlock plan --out plan.json`, then `airlock apply plan.json`)".into(),
                        ));
                    }
                    if !confirm()? {
                        return Err(Error::Other("apply cancelled; nothing was changed".into()));
                    }
                }
                plan
            }
        };
        let report = apply::execute(&plan, &desired, &registries, progress_options(grace), signals).await;
        let mut out = std::io::stdout().lock();
        if json {
            report.write_json(&mut out)
        } else {
            report.write_human(&mut out)
        }
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("failed to write the report", e))?;
        Ok(report.outcome())
    })
}

pub fn audit(path: &Path, json: bool) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut signals = Signals::install()?;
        let registries = Registries::from_desired(&desired);
        let report = tokio::select! {
            biased;
            sig = signals.recv() => return Ok(Outcome::Interrupted(sig)),
            r = crate::audit::audit(&desired, &registries, now()) => r?,
        };
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, &report)
                .map_err(std::io::Error::other)
                .and_then(|_| writeln!(out))
        } else {
            report.write_human(&mut out)
        }
        .map_err(|e| Error::io("failed to write the audit report", e))?;
        Ok(if report.violations > 0 {
            Outcome::Violations
        } else {
            Outcome::Success
        })
    })
}
