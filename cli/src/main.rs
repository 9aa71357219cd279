//! `ringbus`: the broker daemon and its command-line clients.
#![deny(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

mod cli;
mod http;
mod journal;
mod metrics;
mod record;
mod top;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        // `ringbus topics | head`: a closed stdout is not an error.
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbus: error: {e:#}");
            cli::exit_code(&e)
        }
    }
}
