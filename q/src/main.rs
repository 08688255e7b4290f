//! `q`: parses arguments, runs the library, prints, and maps errors to the exit code (0 done,
//! 1 failed).

mod commands;

use std::process::ExitCode;

use clap::Parser;

/// q: collects the signed execution counters of a Tau cloud's nodes into a database (SQLite by
/// default, PostgreSQL by URL), verified, each record once.
#[derive(Debug, Parser)]
#[command(version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

#[tokio::main]
async fn main() -> ExitCode {
    q::push::install_tls_provider();
    match Cli::parse().command.run().await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("q: {}", tau_proto::text::printable_lines(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
