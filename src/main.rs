//! The `membrane` command line: the verbs and their dispatch. Each verb lives in its own
//! file under `commands/`.

mod commands;
mod common;
mod exit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Run applications built from WebAssembly components, each behind its own membrane:
/// isolated, deny-by-default, limited and contained.
#[derive(Parser)]
#[command(name = "membrane", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    Run(Box<commands::run::RunCommand>),
    Inspect(commands::inspect::InspectCommand),
    Check(commands::check::CheckCommand),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Verb::Run(cmd) => cmd.execute(),
        Verb::Inspect(cmd) => cmd.execute().map(|()| 0),
        Verb::Check(cmd) => cmd.execute(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit::code_for(&error))
        }
    }
}

/// Logs go to stderr; `MEMBRANE_LOG` sets the filter (e.g. `debug`, `membrane_runtime=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMBRANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
