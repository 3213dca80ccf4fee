//! The airlock binary: parse arguments, set up logging on stderr, run, map to an exit code.

use std::io::IsTerminal;

use clap::Parser;

fn main() {
    let cli = airlock::cli::Cli::parse();
    init_logging(
        cli.verbose,
        cli.color
            .enabled(std::io::stderr().is_terminal(), airlock::cli::no_color()),
    );
    let result = airlock::cli::run(cli);
    match &result {
        // Configuration errors and unobserved images carry their own `error:` lines, one per
        // problem.
        Err(airlock::error::Error::Config(e)) => eprintln!("{e}"),
        Err(airlock::error::Error::Unobserved(e)) => eprintln!("{e}"),
        Err(e) => eprintln!("error: {}", airlock::error::with_causes(e)),
        Ok(_) => {}
    }
    std::process::exit(airlock::exit::code(&result));
}

/// Logs on stderr; ANSI only when `ansi` (the `--color` decision for stderr).
fn init_logging(verbose: u8, ansi: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "airlock=info,warn",
        2 => "airlock=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
