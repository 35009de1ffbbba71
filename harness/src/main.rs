//! `harness bench | run | report | regress`.

use clap::Parser;

fn main() {
    if let Err((code, message)) = harness::cli::run(harness::cli::opts::Cli::parse()) {
        eprintln!("harness: error: {message}");
        std::process::exit(code);
    }
}
