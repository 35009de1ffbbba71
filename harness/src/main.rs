//! `harness bench | run | report`.

use clap::Parser;

fn main() {
    if let Err((code, message)) = harness::run(harness::opts::Cli::parse()) {
        eprintln!("harness: error: {message}");
        std::process::exit(code);
    }
}
