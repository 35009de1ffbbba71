//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Mode, RunConfig};
use crate::duration::parse_duration;
use crate::mix::{check_path, Mix};
use crate::schedule::Arrivals;
use crate::target::resolve;

/// `loadgen`: HTTP/1.1 load, closed or open loop, honest about latency.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Run options (when no subcommand is given).
    #[command(flatten)]
    pub run: RunOpts,
    /// Subcommands.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add the results of several loadgen runs exactly (histograms added,
    /// counts summed; percentiles never averaged).
    Merge {
        /// Result files written with --json.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the merged result.
        #[arg(long, value_name = "FILE")]
        json: PathBuf,
    },
}

/// Options of a run.
#[derive(Args, Debug)]
pub struct RunOpts {
    /// Server address, HOST:PORT (loopback unless --allow-remote).
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Concurrent connections (close mode: concurrent requests).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Generator threads, each its own event loop.
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Measured time, e.g. 10s, 500ms.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the measured time (measured separately, discarded).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// keepalive: reuse connections; close: a new connection per request.
    #[arg(long, value_enum, default_value_t = Mode::Keepalive)]
    pub mode: Mode,
    /// Open loop at R requests per second (latency from each request's due time).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Arrival spacing for --rate.
    #[arg(long, value_enum, default_value_t = Arrivals::Uniform)]
    pub arrivals: Arrivals,
    /// Request target, e.g. /?cpu_us=50.
    #[arg(long, default_value = "/", conflicts_with = "mix")]
    pub path: String,
    /// Weighted request targets: WEIGHT:PATH,... e.g. 99:/?cpu_us=20,1:/?cpu_us=2000.
    #[arg(long)]
    pub mix: Option<String>,
    /// A request without a whole response after this long is a timeout error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the result as JSON here (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Seed for Poisson arrivals and the path mix [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Allow a target outside loopback (only machines or namespaces you own).
    #[arg(long)]
    pub allow_remote: bool,
    /// Print nothing on success (the JSON still has everything).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl RunOpts {
    /// Checks the options; every refusal says what to do.
    pub fn config(&self) -> Result<RunConfig, String> {
        let target = self
            .target
            .as_deref()
            .ok_or("--target HOST:PORT is required (e.g. --target 127.0.0.1:8080)")?;
        let target = resolve(target, self.allow_remote)?;
        if self.connections == 0 {
            return Err("--connections 0: at least one connection is needed".into());
        }
        if self.threads == 0 {
            return Err("--threads 0: at least one thread is needed".into());
        }
        if self.threads > self.connections {
            return Err(format!(
                "--threads {} is more than --connections {}: each thread needs a connection",
                self.threads, self.connections
            ));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!(
                    "--rate {r}: give a positive number of requests per second"
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err("--timeout 0s: requests need some time to be answered".into());
        }
        let mix = match &self.mix {
            Some(spec) => Mix::parse(spec)?,
            None => {
                check_path(&self.path)?;
                Mix::single(&self.path)
            }
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        Ok(RunConfig {
            target,
            connections: self.connections,
            threads: self.threads,
            duration: self.duration,
            warmup: self.warmup,
            mode: self.mode,
            rate: self.rate,
            arrivals: self.arrivals,
            mix,
            timeout: self.timeout,
            seed,
        })
    }
}
