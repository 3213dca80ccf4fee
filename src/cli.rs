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

    /// Colour in the human plan (stdout) and the logs (stderr): `auto` colours a stream only
    /// when it is a terminal and NO_COLOR is unset or empty.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether a stream gets ANSI colour: `always`, or `auto` on a terminal without NO_COLOR.
    pub fn enabled(self, terminal: bool, no_color: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        }
    }
}

/// NO_COLOR is set to something non-empty (https://no-color.org).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AdmissionFormat {
    /// ValidatingAdmissionPolicy + ValidatingAdmissionPolicyBinding (Kubernetes >= 1.30).
    Vap,
    /// Gatekeeper ConstraintTemplate (Rego) + Constraint.
    Gatekeeper,
    /// Kyverno ClusterPolicy (CEL).
    Kyverno,
    /// Parameters for the Azure Policy built-in "Kubernetes cluster containers should only
    /// use allowed images".
    AzurePolicy,
}

impl From<AdmissionFormat> for crate::admission::Format {
    fn from(f: AdmissionFormat) -> Self {
        use crate::admission::Format;
        match f {
            AdmissionFormat::Vap => Format::Vap,
            AdmissionFormat::Gatekeeper => Format::Gatekeeper,
            AdmissionFormat::Kyverno => Format::Kyverno,
            AdmissionFormat::AzurePolicy => Format::AzurePolicy,
        }
    }
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
        /// Exit 2 when the plan has changes; 3 when it has none but the gate blocks images;
        /// 0 when live is converged and nothing is blocked (1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Only the declared images whose key (`path:tag`) matches this glob (`*`, `?`,
        /// `[…]`); repeatable. The plan is then partial and never prunes.
        #[arg(long = "image", value_name = "PATTERN")]
        image: Vec<String>,
        /// Scan again even when the verdict is current: the images whose key matches a
        /// PATTERN, or every (selected) image when none is given.
        #[arg(long, value_name = "PATTERN", num_args = 0..)]
        rescan: Option<Vec<String>>,
    },

    /// Execute a plan. With FILE (from `plan --out`), check that every action is one the
    /// configuration could produce (exit 1 otherwise), re-check its preconditions and apply
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
        /// Only the declared images whose key (`path:tag`) matches this glob (`*`, `?`,
        /// `[…]`); repeatable. Plans a partial plan (never prunes). Not with a plan FILE,
        /// which is applied exactly as it was saved.
        #[arg(long = "image", value_name = "PATTERN", conflicts_with = "plan")]
        image: Vec<String>,
        /// Scan again even when the verdict is current: the images whose key matches a
        /// PATTERN, or every (selected) image when none is given. Not with a plan FILE.
        #[arg(long, value_name = "PATTERN", num_args = 0.., conflicts_with = "plan")]
        rescan: Option<Vec<String>>,
    },

    /// Prove that everything in live passed the gate: each live tag needs a promotion record
    /// pointing at a quarantined digest with a passing, unexpired verdict. Exit 3 on violations.
    Audit {
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
        /// Only the live tags of images whose key (`path:tag`) matches this glob; repeatable.
        #[arg(long = "image", value_name = "PATTERN")]
        image: Vec<String>,
    },

    /// Print a saved plan file, after checking it against the configuration as apply does.
    Show {
        /// A plan written by `airlock plan --out FILE`.
        plan: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: PlanFormat,
    },

    /// Print the live references of the declared images, pinned by digest. Exit 0 when every
    /// declared image is in live; otherwise the others are named on stderr with the reason and
    /// the exit code is 3 when the gate blocks all of them, 1 otherwise.
    Images {
        #[arg(long, value_enum, default_value = "list")]
        format: ImagesFormat,
        /// The registry host clusters pull live images from (default: the live registry's;
        /// required when live is an OCI layout directory).
        #[arg(long, value_name = "HOST[:PORT]")]
        live_host: Option<String>,
    },

    /// Print an admission policy that admits a pod only when every image of it is in live,
    /// pinned by a digest now in live (exempt namespaces: `[admission] exempt_namespaces`).
    Admission {
        #[arg(long, value_enum, default_value = "vap")]
        format: AdmissionFormat,
        /// The registry host clusters pull live images from (default: the live registry's;
        /// required when live is an OCI layout directory).
        #[arg(long, value_name = "HOST[:PORT]")]
        live_host: Option<String>,
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
    commands::set_color_stdout(cli.color.enabled(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        no_color(),
    ));
    match cli.command {
        Command::Validate => commands::validate(&cli.config),
        Command::Plan {
            out,
            format,
            detailed_exitcode,
            image,
            rescan,
        } => commands::plan(
            &cli.config,
            out.as_deref(),
            format.into(),
            detailed_exitcode,
            &image,
            rescan.as_deref(),
        ),
        Command::Apply {
            plan,
            auto_approve,
            format,
            grace_period,
            image,
            rescan,
        } => commands::apply(
            &cli.config,
            plan.as_deref(),
            auto_approve,
            matches!(format, ReportFormat::Json),
            grace_period,
            &image,
            rescan.as_deref(),
        ),
        Command::Audit { format, image } => {
            commands::audit(&cli.config, matches!(format, ReportFormat::Json), &image)
        }
        Command::Show { plan, format } => commands::show(&cli.config, &plan, format.into()),
        Command::Images { format, live_host } => commands::images(
            &cli.config,
            matches!(format, ImagesFormat::Kustomize),
            live_host.as_deref(),
        ),
        Command::Admission { format, live_host } => {
            commands::admission(&cli.config, format.into(), live_host.as_deref())
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
