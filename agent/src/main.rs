//! `twill`: the node agent binary. For now it carries the demo (two speakers in two network
//! namespaces exchanging pod prefixes); the agent proper arrives with the node-agent issue.

mod demo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "twill",
    version,
    about = "Twill: a BGP pod-network fabric for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Two Twill speakers in two network namespaces peer over iBGP, exchange their pod
    /// prefixes (IPv4 and IPv6), and print what each learned. Needs root.
    Demo {
        /// Seconds to wait for the routes before giving up.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { timeout } => match demo::run(std::time::Duration::from_secs(timeout)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("twill demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
