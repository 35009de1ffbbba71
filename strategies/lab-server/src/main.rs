//! `lab-server --strategy NAME --workers N --listen 127.0.0.1:0`

use clap::Parser;

fn main() {
    let opts = lab_server::Opts::parse();
    if let Err(message) = lab_server::run(opts) {
        eprintln!("lab-server: error: {message}");
        std::process::exit(1);
    }
}
