//! `loadgen --target 127.0.0.1:PORT [...]` and `loadgen merge A.json B.json --json OUT`.

use clap::Parser;
use loadgen::opts::{Cli, Command};
use loadgen::result::{check_output, read_json, summary, write_json};

fn main() {
    if let Err(message) = run(Cli::parse()) {
        eprintln!("loadgen: error: {message}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::Merge { inputs, json }) => {
            let out = check_output(&json)?;
            let parts = inputs
                .iter()
                .map(|p| Ok((p.display().to_string(), read_json(p)?)))
                .collect::<Result<Vec<_>, String>>()?;
            let merged = loadgen::merge::merge(&parts)?;
            write_json(&merged, &out)?;
            show(&summary(&merged), &out);
            Ok(())
        }
        None => {
            let cfg = cli.run.config()?;
            let out = cli.run.json.as_deref().map(check_output).transpose()?;
            let result = loadgen::run(&cfg)?;
            if let Some(out) = &out {
                write_json(&result, out)?;
            }
            if !cli.run.quiet {
                match &out {
                    Some(out) => show(&summary(&result), out),
                    None => print!("{}", summary(&result)),
                }
            }
            Ok(())
        }
    }
}

/// The human summary goes to standard output, or to standard error when the
/// JSON result took standard output (`--json -`).
fn show(text: &str, json: &loadgen::result::Output) {
    if json.is_stdout() {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}
