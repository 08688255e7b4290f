//! `spore-drive`: provision hosts and install the bundled Tau node.

mod commands;

use std::process::ExitCode;

use clap::Parser;

/// Spore Drive: provision hosts and install the bundled Tau node, a cloud in minutes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    match commands::run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spore-drive: {}", tau_proto::text::printable_lines(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
