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
use crate::plan::Plan;
use crate::plan::diff::{self, PlanOptions};
use crate::registry::Registries;
use crate::render::{self, Format, HumanOptions};
use crate::select::Selection;
use futures_util::StreamExt;

mod day_two;
pub use day_two::{outdated, pin, resolve_tracks};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn load(path: &Path) -> Result<DesiredState, Error> {
    Ok(config::load(path, now().date())?)
}

/// The plug-ins of this build for one command, built once from the configuration and the
/// environment: with the `azure` feature, one Azure context (cloud, credential chain and its
/// token cache, ARM client) and a Key Vault client on it, handed to the registry client (ACR
/// token exchange), the gate (Defender), apply (acr-import) and signing (`azurekms://`).
pub(crate) struct Plugins {
    #[cfg(feature = "azure")]
    azure: std::sync::Arc<crate::azure::Azure>,
    #[cfg(feature = "azure")]
    vaults: crate::azure::keyvault::Vaults,
}

impl Plugins {
    pub(crate) fn new(desired: &DesiredState) -> Plugins {
        #[cfg(feature = "azure")]
        {
            let azure = std::sync::Arc::new(crate::azure::Azure::from_env(desired.azure_cloud));
            let vaults = crate::azure::keyvault::Vaults(std::sync::Arc::new(
                crate::azure::keyvault::KeyVault::new(azure.clone()),
            ));
            Plugins { azure, vaults }
        }
        #[cfg(not(feature = "azure"))]
        {
            let _ = desired;
            Plugins {}
        }
    }

    /// The registries of `desired`, with the plug-in for `auth = "azure"` entries when this
    /// build has one (src/azure: the ACR token exchange).
    pub(crate) fn registries(&self, desired: &DesiredState) -> Registries {
        #[cfg(feature = "azure")]
        let identity: Option<std::sync::Arc<dyn crate::registry::auth::IdentitySource>> = Some(
            std::sync::Arc::new(crate::azure::acr::AcrExchange::new(self.azure.clone())),
        );
        #[cfg(not(feature = "azure"))]
        let identity = None;
        Registries::with_identity(desired, identity)
    }

    /// The gate's scanners: the built-ins, and the plug-ins this build has (src/azure: the
    /// `defender` format).
    pub(crate) fn scanners(&self) -> crate::gate::Scanners {
        let s = crate::gate::Scanners::builtin();
        #[cfg(feature = "azure")]
        let s = s.with(
            config::ScannerFormat::Defender,
            std::sync::Arc::new(crate::azure::defender::Defender::new(self.azure.clone())),
        );
        s
    }

    /// The key management service (src/azure: Key Vault), when this build has one.
    fn kms(&self) -> Option<&dyn crate::signing::Kms> {
        #[cfg(feature = "azure")]
        return Some(&self.vaults);
        #[cfg(not(feature = "azure"))]
        None
    }

    /// `desired` with its `azurekms://` public key read from Key Vault (borrowed unchanged
    /// when there is none to read): before anything reads records.
    pub(crate) async fn with_public_key<'d>(
        &self,
        desired: &'d DesiredState,
    ) -> Result<std::borrow::Cow<'d, DesiredState>, Error> {
        if desired.signing.public_key_kms.is_none() || desired.signing.public_key.is_some() {
            return Ok(std::borrow::Cow::Borrowed(desired));
        }
        let mut d = desired.clone();
        d.signing
            .resolve_public_key(self.kms())
            .await
            .map_err(|e| Error::Other(format!("[signing] public_key: {e}")))?;
        Ok(std::borrow::Cow::Owned(d))
    }

    /// The signing key of `desired` (None without one), checked against the public key.
    pub(crate) async fn signer(
        &self,
        desired: &DesiredState,
    ) -> Result<Option<crate::signing::Signer>, crate::signing::SigningError> {
        desired.signing.signer(self.kms()).await
    }
}

/// The registries of `desired` with this build's plug-ins (commands that need nothing else).
pub(crate) fn registries(desired: &DesiredState) -> Registries {
    Plugins::new(desired).registries(desired)
}

/// Run `work` with the registries of `desired` (plug-ins wired in, its public key read),
/// unless a signal comes first (then `Err(Outcome::Interrupted)`). Biased, signals first:
/// their handlers are installed before the first request goes out (a SIGINT before that
/// would kill the process without a report).
async fn unless_interrupted<T>(
    desired: &DesiredState,
    work: impl AsyncFnOnce(&DesiredState, &Registries) -> Result<T, Error>,
) -> Result<Result<T, Outcome>, Error> {
    let mut signals = Signals::install()?;
    let plugins = Plugins::new(desired);
    let desired = &*plugins.with_public_key(desired).await?;
    let registries = plugins.registries(desired);
    tokio::select! {
        biased;
        sig = signals.recv() => Ok(Err(Outcome::Interrupted(sig))),
        r = work(desired, &registries) => r.map(Ok),
    }
}

/// Load the configuration narrowed to the `--image` patterns (true when that made it
/// partial), and the planner's options from `--rescan`.
fn load_selected(
    path: &Path,
    images: &[String],
    rescan: Option<&[String]>,
) -> Result<(DesiredState, bool, PlanOptions), Error> {
    let selection = Selection::parse(images)?;
    let rescan = match rescan {
        None => None,
        Some([]) => Some(Selection::all()),
        Some(patterns) => Selection::parse(patterns)?,
    };
    let mut desired = load(path)?;
    if let Some(s) = &selection {
        s.restrict(&mut desired)?;
    }
    if let Some(r) = &rescan {
        r.check("--rescan", &desired)?;
    }
    Ok((desired, selection.is_some(), PlanOptions { rescan }))
}

static COLOR_STDOUT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Decide once whether stdout gets colour (`--color`, see [`crate::cli::ColorChoice`]).
pub fn set_color_stdout(on: bool) {
    let _ = COLOR_STDOUT.set(on);
}

/// The `--color` decision for stdout; without one, colour only on a terminal and never
/// with NO_COLOR set.
pub fn color_stdout() -> bool {
    *COLOR_STDOUT.get_or_init(|| {
        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    })
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
    make_plan_with(desired, registries, &PlanOptions::default()).await
}

/// [`make_plan`] with the run's options (`--rescan`).
pub async fn make_plan_with(
    desired: &DesiredState,
    registries: &Registries,
    opts: &PlanOptions,
) -> Result<Plan, Error> {
    let desired = &resolve_tracks(desired, registries).await?;
    let observed = observe::observe(desired, registries).await?;
    // ACR's import limits, before a plan offers what ARM would refuse.
    crate::apply::acr::check_import_limits(desired, registries, &observed).await?;
    Ok(diff::plan_with(desired, &observed, now(), opts)?)
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
    images: &[String],
    rescan: Option<&[String]>,
) -> Result<Outcome, Error> {
    let (desired, partial, opts) = load_selected(path, images, rescan)?;
    day_two::print_warnings(&desired);
    let rt = runtime()?;
    rt.block_on(async {
        let work = async |d: &DesiredState, r: &Registries| make_plan_with(d, r, &opts).await;
        let mut plan = match unless_interrupted(&desired, work).await? {
            Ok(plan) => plan,
            Err(interrupted) => return Ok(interrupted),
        };
        plan.partial = partial;
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
        Ok(if !detailed_exitcode {
            Outcome::Success
        } else if plan.has_changes() {
            Outcome::Changes
        } else if !plan.blocked.is_empty() {
            Outcome::Blocked
        } else {
            Outcome::Success
        })
    })
}

/// Read a saved plan: untrusted input. Besides the file checks (format version, graph,
/// plan_hash), every action must be one the current configuration could produce
/// (`plan::admissible`); otherwise nothing is shown or applied (exit 1).
pub fn read_plan_file(path: &Path, desired: &DesiredState) -> Result<Plan, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("failed to read plan file {}", path.display()), e))?;
    let plan = render::parse_plan_file(&bytes).map_err(|source| Error::PlanFile {
        path: path.to_path_buf(),
        source,
    })?;
    let problems = crate::plan::admissible::check(desired, &plan);
    if !problems.is_empty() {
        return Err(Error::Inadmissible {
            path: path.to_path_buf(),
            config: desired.file.clone(),
            problems,
        });
    }
    Ok(plan)
}

/// Print a saved plan after the same validation apply does: what is shown is what runs.
pub fn show(config: &Path, path: &Path, format: Format) -> Result<Outcome, Error> {
    let desired = load(config)?;
    let plan = read_plan_file(path, &desired)?;
    render_plan(&plan, format)?;
    Ok(Outcome::Success)
}

/// Read the live set of the declared images (`images`, `admission`).
fn read_live_set(
    desired: &DesiredState,
    live_host: Option<&str>,
) -> Result<crate::cluster::LiveSet, Error> {
    let rt = runtime()?;
    rt.block_on(async {
        let plugins = Plugins::new(desired);
        let desired = &*plugins.with_public_key(desired).await?;
        let registries = plugins.registries(desired);
        let desired = &resolve_tracks(desired, &registries).await?;
        let host = crate::cluster::read::live_host(desired, &registries, live_host)?;
        crate::cluster::read::read(desired, &registries, host).await
    })
}

pub fn images(path: &Path, kustomize: bool, live_host: Option<&str>) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let set = read_live_set(&desired, live_host)?;
    let out = if kustomize {
        crate::cluster::kustomize::render(&set)
    } else {
        set.live()
            .map(|(i, d)| format!("{}:{}@{d}\n", set.live_name(&i.repository), i.tag))
            .collect()
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(|e| Error::io("failed to write to stdout", e))?;
    let missing = set.missing_report();
    for line in &missing {
        eprintln!("{line}");
    }
    if missing.is_empty() {
        Ok(Outcome::Success)
    } else if set.missing().all(|(_, m)| m.is_blocked()) {
        Ok(Outcome::Blocked)
    } else {
        Err(Error::Other(format!(
            "{} declared image(s) not in live yet (see above)",
            missing.len()
        )))
    }
}

pub fn admission(
    path: &Path,
    format: crate::admission::Format,
    live_host: Option<&str>,
) -> Result<Outcome, Error> {
    let desired = load(path)?;
    let set = read_live_set(&desired, live_host)?;
    for line in set.missing_report() {
        eprintln!("warning: not admitted: {line}");
    }
    let rules = crate::admission::Rules::new(&set, &desired.admission.exempt_namespaces)
        .with_signing(&desired.signing);
    let out = crate::admission::render(&rules, format);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(|e| Error::io("failed to write to stdout", e))?;
    Ok(Outcome::Success)
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

pub fn apply(
    path: &Path,
    plan_file: Option<&Path>,
    auto_approve: bool,
    json: bool,
    grace: std::time::Duration,
    images: &[String],
    rescan: Option<&[String]>,
) -> Result<Outcome, Error> {
    let (desired, partial, opts) = load_selected(path, images, rescan)?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut signals = Signals::install()?.into_stream();
        let plugins = Plugins::new(&desired);
        let desired = &*plugins
            .with_public_key(&desired)
            .await
            .map_err(|e| Error::Other(format!("{e}; nothing was applied")))?;
        // The signing key must load before anything changes (a Key Vault key: its public key
        // read, and checked against the configured one).
        let signer = plugins
            .signer(desired)
            .await
            .map_err(|e| Error::Other(format!("{e}; nothing was applied")))?;
        let registries = plugins.registries(desired);
        let plan = match plan_file {
            Some(f) => {
                let plan = read_plan_file(f, desired)?;
                if plan.policy_hash != desired.policy_hash() {
                    eprintln!(
                        "The plan is stale: the gate configuration changed since it was made (policy hash {} → {}). Nothing was applied; run `airlock plan` again.",
                        plan.policy_hash.short(),
                        desired.policy_hash().short()
                    );
                    return Ok(Outcome::Stale);
                }
                let moved = tokio::select! {
                    m = apply::preconditions::check(&plan, desired, &registries) => m?,
                    Some(sig) = signals.next() => return Ok(Outcome::Interrupted(sig)),
                };
                if !moved.is_empty() {
                    eprintln!(
                        "The plan is stale: {} tag(s) changed since it was made. Nothing was applied; run `airlock plan` again.",
                        moved.len()
                    );
                    for m in &moved {
                        eprintln!("  {m}");
                    }
                    return Ok(Outcome::Stale);
                }
                plan
            }
            None => {
                let mut plan = tokio::select! {
                    p = make_plan_with(desired, &registries, &opts) => p?,
                    Some(sig) = signals.next() => return Ok(Outcome::Interrupted(sig)),
                };
                plan.partial = partial;
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
        let (observer, mut heartbeat) = apply::progress::for_stderr(&plan);
        let limits = apply::Limits::of(desired, grace);
        let report =
            apply::execute(
                &plan,
                desired,
                &registries,
                &limits,
                apply::Tools {
                    scanners: plugins.scanners(),
                    signer,
                    #[cfg(feature = "azure")]
                    azure: plugins.azure.clone(),
                },
                observer,
                signals,
            )
            .await;
        if let Some(h) = &mut heartbeat {
            h.stop();
        }
        let mut out = std::io::stdout().lock();
        if json {
            render::reports::apply_json(&report, &mut out)
        } else {
            render::reports::apply_human(&report, &mut out)
        }
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("failed to write the report", e))?;
        Ok(report.outcome())
    })
}

pub fn audit(path: &Path, json: bool, images: &[String]) -> Result<Outcome, Error> {
    let selection = Selection::parse(images)?;
    let desired = load(path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let work = async |d: &DesiredState, r: &Registries| crate::audit::audit(d, r, now()).await;
        let mut report = match unless_interrupted(&desired, work).await? {
            Ok(report) => report,
            Err(interrupted) => return Ok(interrupted),
        };
        if let Some(s) = &selection {
            // Live tags are keyed like images: the path under the live prefix, and the tag.
            let prefix = format!("{}/", desired.live.prefix);
            report.tags.retain(|t| {
                let path = t.repository.strip_prefix(&prefix).unwrap_or(&t.repository);
                s.matches(&format!("{path}:{}", t.tag))
            });
            report.checked = report.tags.len();
            report.violations = report.tags.iter().filter(|t| t.violation.is_some()).count();
        }
        let mut out = std::io::stdout().lock();
        if json {
            render::reports::audit_json(&report, &mut out)
        } else {
            render::reports::audit_human(&report, &mut out)
        }
        .map_err(|e| Error::io("failed to write the audit report", e))?;
        Ok(if report.violations > 0 {
            Outcome::Violations
        } else {
            Outcome::Success
        })
    })
}
