//! `lab-server`: options, the strategy registry, and `run`.
//!
//! `main.rs` only parses the command line and prints the error; everything
//! else is here so that it reads as one short pipeline:
//! options -> validated configuration -> strategy -> supervisor.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use lab_common::stats::{StatsSink, MAX_WORKERS};
use lab_common::supervisor::{serve, ServerConfig, Strategy};
use strategy_master_pass::{MasterPass, Policy};
use strategy_reuseport::ReusePort;
use strategy_shared::{SharedListener, Variant};

/// Every strategy, by the name `--strategy` takes, with one line on what it is.
pub const STRATEGIES: &[(&str, &str)] = &[
    (
        "master-pass",
        "master accepts, passes fds with SCM_RIGHTS, Node cluster round-robin with acks",
    ),
    (
        "master-pass:rotate",
        "master accepts, passes fds in blind rotation, no acks",
    ),
    (
        "master-pass:least-conn",
        "master accepts, passes fds to the worker with the fewest open connections",
    ),
    (
        "shared:blocking",
        "inherited listener, every worker blocks in accept()",
    ),
    (
        "shared:epoll",
        "inherited listener, level-triggered epoll in every worker (Node SCHED_NONE)",
    ),
    (
        "shared:epoll-exclusive",
        "inherited listener, epoll with EPOLLEXCLUSIVE (nginx default)",
    ),
    (
        "shared:accept-mutex",
        "inherited listener, nginx accept_mutex: only the lock holder polls it",
    ),
    (
        "reuseport",
        "one SO_REUSEPORT listener per worker, the kernel hashes connections",
    ),
    (
        "reuseport:cbpf-cpu",
        "SO_REUSEPORT steered by a cBPF program by receiving CPU, workers pinned",
    ),
];

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "lab-server",
    version,
    about = "A pre-forked HTTP/1.1 server with the lab's connection-sharing strategies"
)]
pub struct Opts {
    /// Strategy: master-pass, master-pass:rotate, master-pass:least-conn,
    /// shared:blocking, shared:epoll, shared:epoll-exclusive,
    /// shared:accept-mutex, reuseport, reuseport:cbpf-cpu.
    #[arg(long, value_name = "NAME")]
    pub strategy: String,
    /// Number of worker processes [default: CPUs this process may use].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// listen() backlog (nginx's and Node's default).
    #[arg(long, value_name = "N", default_value_t = 511)]
    pub backlog: i32,
    /// Write per-worker counters as JSON here at shutdown.
    #[arg(long, value_name = "FILE")]
    pub stats_out: Option<PathBuf>,
    /// shared:accept-mutex only: how long a worker without the lock waits
    /// before it tries again, in ms (nginx's accept_mutex_delay).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub accept_mutex_delay_ms: u64,
    /// TEST ONLY, never for measurements: burn this many extra µs of CPU in
    /// every request, to prove that the regression check catches a slowdown.
    #[arg(long, value_name = "US", default_value_t = 0, hide = true)]
    pub test_only_inject_cpu_us: u64,
}

/// Builds the strategy named `name`, or says which names exist.
pub fn strategy_by_name(name: &str, opts: &Opts) -> Result<Box<dyn Strategy>, String> {
    Ok(match name {
        "master-pass" => Box::new(MasterPass::new(Policy::NodeRr)),
        "master-pass:rotate" => Box::new(MasterPass::new(Policy::Rotate)),
        "master-pass:least-conn" => Box::new(MasterPass::new(Policy::LeastConn)),
        "shared:blocking" => Box::new(SharedListener::new(Variant::Blocking)),
        "shared:epoll" => Box::new(SharedListener::new(Variant::Epoll)),
        "shared:epoll-exclusive" => Box::new(SharedListener::new(Variant::EpollExclusive)),
        "shared:accept-mutex" => Box::new(SharedListener::new(Variant::AcceptMutex {
            delay: Duration::from_millis(opts.accept_mutex_delay_ms),
        })),
        "reuseport" => Box::new(ReusePort::new(false)),
        "reuseport:cbpf-cpu" => Box::new(ReusePort::new(true)),
        other => {
            let names: Vec<&str> = STRATEGIES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown strategy {other:?}: choose one of {}",
                names.join(", ")
            ));
        }
    })
}

/// Checks the options and turns them into the server's configuration.
pub fn config(opts: &Opts) -> Result<ServerConfig, String> {
    let workers = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 {
        return Err(
            "--workers 0: a server needs at least one worker; pass --workers 1 or more".into(),
        );
    }
    if workers > MAX_WORKERS {
        return Err(format!(
            "--workers {workers}: at most {MAX_WORKERS} workers are supported"
        ));
    }
    if opts.backlog < 1 {
        return Err(format!("--backlog {}: must be at least 1", opts.backlog));
    }
    let stats = opts
        .stats_out
        .as_deref()
        .map(StatsSink::check)
        .transpose()?;
    if opts.test_only_inject_cpu_us > 0 {
        eprintln!(
            "lab-server: TEST ONLY: every request burns {} extra µs of CPU (--test-only-inject-cpu-us); do not publish these numbers",
            opts.test_only_inject_cpu_us
        );
    }
    Ok(ServerConfig {
        strategy: opts.strategy.clone(),
        workers,
        listen: opts.listen,
        backlog: opts.backlog,
        stats,
        injected_cpu_us: opts.test_only_inject_cpu_us,
    })
}

/// Runs the server until SIGTERM/SIGINT.
pub fn run(opts: Opts) -> Result<(), String> {
    let strategy = strategy_by_name(&opts.strategy, &opts)?;
    let config = config(&opts)?;
    serve(config, strategy).map_err(|e| e.to_string())
}
