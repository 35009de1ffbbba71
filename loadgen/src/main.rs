//! `loadgen --target 127.0.0.1:PORT [...]` and `loadgen merge A.json B.json --json OUT`.

use clap::Parser;
use loadgen::opts::{Cli, Command};
use loadgen::result::{check_writable, read_json, summary, write_json};

fn main() {
    if let Err(message) = run(Cli::parse()) {
        eprintln!("loadgen: error: {message}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::Merge { inputs, json }) => {
            check_writable(&json)?;
            let parts = inputs
                .iter()
                .map(|p| Ok((p.display().to_string(), read_json(p)?)))
                .collect::<Result<Vec<_>, String>>()?;
            let merged = loadgen::merge::merge(&parts)?;
            write_json(&merged, &json)?;
            print!("{}", summary(&merged));
            Ok(())
        }
        None => {
            let cfg = cli.run.config()?;
            if let Some(path) = &cli.run.json {
                check_writable(path)?;
            }
            let result = loadgen::run(&cfg)?;
            if let Some(path) = &cli.run.json {
                write_json(&result, path)?;
            }
            if !cli.run.quiet {
                print!("{}", summary(&result));
            }
            Ok(())
        }
    }
}
