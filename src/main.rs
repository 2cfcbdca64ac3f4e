//! The `membrane` command line: the verbs and their dispatch. Each verb lives in its own
//! file under `commands/`.

mod admin_client;
mod commands;
mod common;
mod exit;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: a served request allocates on one thread what
/// another frees (a response body, the span bytes the export thread sends), and glibc takes
/// the allocating thread's arena lock for each such free, so the threads wait on each
/// other; mimalloc hands the block back to its page without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(Box<commands::serve::ServeCommand>),
    Status(commands::status::StatusCommand),
    Swap(commands::swap::SwapCommand),
    Rollback(commands::swap::RollbackCommand),
    Restart(commands::swap::RestartCommand),
    Chaos(commands::chaos::ChaosCommand),
    Pull(commands::pull::PullCommand),
    Push(commands::push::PushCommand),
    Keygen(commands::keygen::KeygenCommand),
    Sign(commands::sign::SignCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs its address, its access log and shutdown; the other verbs only warnings.
    init_logging(match cli.command {
        Verb::Serve(_) => "warn,membrane::access=info,membrane::serve=info",
        // The report is the output; each injected fault would otherwise log an error.
        Verb::Chaos(_) => "off",
        _ => "warn",
    });
    let result = match cli.command {
        Verb::Run(cmd) => cmd.execute(),
        Verb::Inspect(cmd) => cmd.execute().map(|()| 0),
        Verb::Check(cmd) => cmd.execute(),
        Verb::Serve(cmd) => cmd.execute(),
        Verb::Status(cmd) => cmd.execute(),
        Verb::Swap(cmd) => cmd.execute(),
        Verb::Rollback(cmd) => cmd.execute(),
        Verb::Restart(cmd) => cmd.execute(),
        Verb::Chaos(cmd) => cmd.execute(),
        Verb::Pull(cmd) => cmd.execute().map(|()| 0),
        Verb::Push(cmd) => cmd.execute().map(|()| 0),
        Verb::Keygen(cmd) => cmd.execute().map(|()| 0),
        Verb::Sign(cmd) => cmd.execute().map(|()| 0),
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
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMBRANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
