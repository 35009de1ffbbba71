//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Mode, Recycle, RunConfig, DEFAULT_TIMELINE_INTERVAL, MAX_TIMELINE_SLICES};
use crate::duration::parse_duration;
use crate::mix::{check_path, Mix};
use crate::schedule::{Arrivals, RateStep};
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
        /// Where to write the merged result (`-`: standard output; the
        /// summary then goes to standard error).
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
    /// With --rate: from AT into the measured time (after --warmup) on, the
    /// rate is RATE req/s, e.g. --rate-step 300ms:2000 (repeatable, AT
    /// increasing; --rate is the rate before the first step).
    #[arg(long = "rate-step", value_name = "AT:RATE")]
    pub rate_steps: Vec<String>,
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
    /// Keep-alive: a connection closes after this many responses and a new
    /// one takes its place, as clients and proxies recycle theirs, so that
    /// connections keep arriving while the run is measured [default: never].
    #[arg(long, value_name = "N")]
    pub requests_per_conn: Option<u64>,
    /// Keep-alive: a connection closes after its first response past this
    /// age and a new one takes its place [default: never].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub conn_lifetime: Option<Duration>,
    /// Width of the slices of the JSON `timeline` [default: 100ms, or the
    /// duration if shorter].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeline_interval: Option<Duration>,
    /// Write the result as JSON here: a file is replaced whole (temporary
    /// file + rename; a symlink is followed), a device or FIFO is written in
    /// place, `-` is standard output (the summary then goes to standard error).
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
        let mut rate_steps = Vec::with_capacity(self.rate_steps.len());
        for s in &self.rate_steps {
            if self.rate.is_none() {
                return Err(format!(
                    "--rate-step {s} needs --rate (the open-loop rate before the first step); closed loop has no rate to change"
                ));
            }
            rate_steps.push(RateStep::parse(s)?);
        }
        RateStep::check_all(&rate_steps, self.duration)?;
        let timeline_interval = match self.timeline_interval {
            Some(i) if i.is_zero() => {
                return Err(
                    "--timeline-interval 0s: give the slices some width, e.g. 100ms".into(),
                )
            }
            Some(i) if i > self.duration => {
                return Err(format!(
                    "--timeline-interval {:?} is longer than --duration {:?}: give at most the duration",
                    i, self.duration
                ))
            }
            Some(i) => i,
            None if self.duration.is_zero() => DEFAULT_TIMELINE_INTERVAL,
            None => DEFAULT_TIMELINE_INTERVAL.min(self.duration),
        };
        let slices = self
            .duration
            .as_nanos()
            .div_ceil(timeline_interval.as_nanos());
        if slices > MAX_TIMELINE_SLICES as u128 {
            return Err(format!(
                "--timeline-interval {timeline_interval:?} cuts --duration {:?} into {slices} slices, more than {MAX_TIMELINE_SLICES}: give a longer interval",
                self.duration
            ));
        }
        if self.timeout.is_zero() {
            return Err("--timeout 0s: requests need some time to be answered".into());
        }
        let recycle = Recycle {
            requests: self.requests_per_conn,
            lifetime: self.conn_lifetime,
        };
        if recycle.requests == Some(0) {
            return Err("--requests-per-conn 0: a connection serves at least one request".into());
        }
        if recycle.lifetime.is_some_and(|l| l.is_zero()) {
            return Err("--conn-lifetime 0s: give connections some life, e.g. 1s".into());
        }
        if recycle.is_on() && self.mode == Mode::Close {
            return Err("--requests-per-conn and --conn-lifetime recycle keep-alive connections; --mode close already opens one per request".into());
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
            rate_steps,
            arrivals: self.arrivals,
            mix,
            timeout: self.timeout,
            seed,
            timeline_interval,
            recycle,
        })
    }
}
