//! `ringbus`: the broker daemon and its command-line clients.

use clap::Parser;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringbus: error: {e:#}");
            cli::exit_code(&e)
        }
    }
}
