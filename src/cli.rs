//! Command-line interface: clap types, help texts and dispatch. The only module that knows clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;
use crate::error::Error;
use crate::exit::Outcome;
use crate::render::Format;

/// Declarative container-image quarantine: import upstream images into quarantine, scan them,
/// and promote only what passes the gate to live.
///
/// Typical use: `airlock plan` in a pull request, `airlock apply plan.json` in the release
/// pipeline, `airlock audit` on a schedule. See README.md for the configuration reference.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "AIRLOCK_CONFIG",
        default_value = "airlock.toml"
    )]
    pub config: PathBuf,

    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    Human,
    Json,
    Markdown,
}

impl From<PlanFormat> for Format {
    fn from(f: PlanFormat) -> Format {
        match f {
            PlanFormat::Human => Format::Human,
            PlanFormat::Json => Format::Json,
            PlanFormat::Markdown => Format::Markdown,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImagesFormat {
    /// One pullable live reference per line, pinned by digest.
    List,
    /// A kustomize `images:` list mapping upstream names to live names and digests.
    Kustomize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration without contacting any registry. Exit 0 when valid, 1 with
    /// every problem (file:line:col and a fix) otherwise.
    Validate,

    /// Read the registries and print the actions that would bring live in line with the
    /// configuration: import → scan → promote (and delete with prune). Changes nothing.
    Plan {
        /// Also write the plan as JSON (with every observed precondition) for `apply FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value = "human")]
        format: PlanFormat,
        /// Exit 2 when the plan has changes, 0 when it has none (1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
    },

    /// Execute a plan. With FILE (from `plan --out`), re-check its preconditions and apply
    /// exactly it (exit 4 if anything moved). Without, plan now, show it and ask.
    Apply {
        /// A saved plan from `airlock plan --out FILE`.
        plan: Option<PathBuf>,
        /// Apply without asking (needed when stdin is not a terminal and no FILE is given).
        #[arg(long)]
        auto_approve: bool,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
        /// On SIGINT/SIGTERM, how long in-flight transfers may take to finish.
        #[arg(long, default_value = "25s", value_parser = humantime::parse_duration)]
        grace_period: std::time::Duration,
    },

    /// Prove that everything in live passed the gate: each live tag needs a promotion record
    /// pointing at a quarantined digest with a passing, unexpired verdict. Exit 3 on violations.
    Audit {
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
    },

    /// Print a saved plan file.
    Show {
        /// A plan written by `airlock plan --out FILE`.
        plan: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: PlanFormat,
    },

    /// Print the live references of the declared images, pinned by digest.
    Images {
        #[arg(long, value_enum, default_value = "list")]
        format: ImagesFormat,
    },

    /// List newer upstream versions of each declared image (semver tags with the same
    /// variant; prereleases only for a prerelease). Changes nothing.
    Outdated {
        #[arg(long, value_enum, default_value = "human")]
        format: PlanFormat,
        /// Exit 2 when any image has a newer version, 0 when none has (1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
    },

    /// Resolve each declared tag to its upstream digest and write `digest = "sha256:…"`
    /// into the configuration (comments and formatting kept). Pinned images are kept.
    Pin {
        /// Only images matching this pattern (`path:tag`, `path`, `host/path[:tag]`; `*`
        /// wildcard). Repeatable.
        #[arg(long = "image", value_name = "PATTERN")]
        images: Vec<String>,
        /// Write nothing, contact no registry: exit 1 when any selected image is unpinned.
        #[arg(long, conflicts_with = "update")]
        check: bool,
        /// Also re-resolve images that already have a `digest` (moves the pin to where the
        /// upstream tag is now).
        #[arg(long)]
        update: bool,
    },

    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<Outcome, Error> {
    match cli.command {
        Command::Validate => commands::validate(&cli.config),
        Command::Plan {
            out,
            format,
            detailed_exitcode,
        } => commands::plan(
            &cli.config,
            out.as_deref(),
            format.into(),
            detailed_exitcode,
        ),
        Command::Apply {
            plan,
            auto_approve,
            format,
            grace_period,
        } => commands::apply(
            &cli.config,
            plan.as_deref(),
            auto_approve,
            matches!(format, ReportFormat::Json),
            grace_period,
        ),
        Command::Audit { format } => {
            commands::audit(&cli.config, matches!(format, ReportFormat::Json))
        }
        Command::Show { plan, format } => commands::show(&plan, format.into()),
        Command::Images { format } => {
            commands::images(&cli.config, matches!(format, ImagesFormat::Kustomize))
        }
        Command::Outdated {
            format,
            detailed_exitcode,
        } => commands::outdated(&cli.config, format.into(), detailed_exitcode),
        Command::Pin {
            images,
            check,
            update,
        } => commands::pin(&cli.config, &images, check, update),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "airlock", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
    }
}
