//! `harness bench | run | report | regress`.

use clap::Parser;

fn main() {
    if let Err(e) = harness::cli::run(harness::cli::opts::Cli::parse()) {
        eprintln!("harness: error: {e}");
        std::process::exit(e.exit_code());
    }
}
