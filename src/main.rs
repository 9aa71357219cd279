//! Temporary front end on the `bench` branch (the real CLI lives in
//! `cli.rs` on main): `ringbus bench [..]` and the hidden bench child.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ringbus", version, about = "Shared-memory message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Measure ringbus against the hardware floor.
    Bench(ringbus::bench::BenchArgs),
    #[command(name = "__bench-child", hide = true)]
    BenchChild { spec: String },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bench(args) => ringbus::bench::run(args),
        Command::BenchChild { spec } => ringbus::bench::child_main(spec),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
