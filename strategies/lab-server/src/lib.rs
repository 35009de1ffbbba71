//! `lab-server`: options, the strategy registry, and `run`.
//!
//! `main.rs` only parses the command line and prints the error; everything
//! else is here so that it reads as one short pipeline:
//! options -> validated configuration -> strategy -> supervisor.
//!
//! # Limits on slow and idle clients
//!
//! A worker serves thousands of connections on one thread, so no client may
//! hold it: every limit is a deadline in the worker's timer heap or a count,
//! never a blocked thread. (`shared:prefork` is the exception it measures:
//! its worker is one connection's until that connection ends; the same
//! deadlines apply to that connection.)
//! - `--header-timeout` (default 10s): a request's head must be complete
//!   within this time from its first byte (the first request on a
//!   connection: from the accept). Otherwise `408 Request Timeout` and the
//!   connection is closed; a connection on which nothing arrived is just
//!   closed. Bytes trickling in do not extend it (slowloris).
//! - `--keepalive-timeout` (default 5s, Node's `keepAliveTimeout`): a
//!   keep-alive connection idle this long between requests is closed.
//! - `--max-conns` (default 4096) per worker, like nginx's
//!   `worker_connections`: at the cap the worker takes no new connection
//!   until one of its own closes. Shared listener: it leaves the listener
//!   (the other workers take the queue); blocking accept: its acceptor
//!   waits (classic pre-fork holds one connection whatever the cap); reuseport: it stops accepting and its own queue waits (the kernel
//!   keeps hashing connections to it; past the backlog they are dropped);
//!   master-pass (Node RR): it refuses the descriptor and the master routes
//!   it to another worker, or holds it until one has room; rotate and
//!   least-conn: served anyway (the master kept no copy; refusing would lose
//!   the connection), so the cap does not hold there; pipelined: the master
//!   never gives a worker more outstanding connections than the cap (its
//!   credit window), the rest wait in the kernel's queue.
//!   The server raises its soft `RLIMIT_NOFILE` to `max-conns` + 64 if the
//!   hard limit allows; where it does not, `--max-conns` is lowered to fit
//!   (a stderr line says so), so a worker reaches its cap before `accept`
//!   fails with `EMFILE`. Should `accept` fail for lack of descriptors anyway,
//!   the worker leaves the listener alone for 100 ms (the connection stays
//!   queued).
//! - A request head larger than 16 KiB (`http::MAX_HEAD_BYTES`) gets `400`
//!   and a close as soon as that many bytes are buffered.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use lab_common::config::Timeouts;
use lab_common::stats::{StatsSink, MAX_WORKERS};
use lab_common::strategy::{ServerConfig, Strategy};
use lab_common::supervisor::serve;
use lab_common::sys::process::raise_nofile_limit;
use strategy_master_pass::{MasterPass, Policy};
use strategy_reuseport::ReusePort;
use strategy_shared::{SharedListener, Variant};

/// One strategy `--strategy` can name.
pub struct StrategyEntry {
    /// The name `--strategy` takes.
    pub name: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// Builds it (only `shared:accept-mutex` reads an option).
    pub build: fn(&Opts) -> Box<dyn Strategy>,
}

/// Every strategy, by the name `--strategy` takes, in the order `--help`
/// lists them: the one catalogue. `--strategy` is looked up here, and its
/// `--help` line and the unknown-name error list these names.
pub const STRATEGIES: &[StrategyEntry] = &[
    StrategyEntry {
        name: "master-pass",
        about: "master accepts, passes fds with SCM_RIGHTS: Node 20 cluster round-robin (one accept per wakeup, two acks, no re-routing)",
        build: |_| Box::new(MasterPass::new(Policy::NodeRr)),
    },
    StrategyEntry {
        name: "master-pass:reroute",
        about: "Node's round-robin improved: accepts until EAGAIN, re-routes a dead worker's unacked fd",
        build: |_| Box::new(MasterPass::new(Policy::NodeRrReroute)),
    },
    StrategyEntry {
        name: "master-pass:rotate",
        about: "master accepts, passes fds in blind rotation, no acks",
        build: |_| Box::new(MasterPass::new(Policy::Rotate)),
    },
    StrategyEntry {
        name: "master-pass:least-conn",
        about: "master accepts, passes fds to the worker with the fewest open connections",
        build: |_| Box::new(MasterPass::new(Policy::LeastConn)),
    },
    StrategyEntry {
        name: "master-pass:pipelined",
        about: "master accepts, passes fds to the worker with the fewest outstanding, under a credit window, several fds per sendmsg, no acks",
        build: |_| Box::new(MasterPass::new(Policy::Pipelined)),
    },
    StrategyEntry {
        name: "shared:prefork",
        about: "classic pre-fork (Apache prefork MPM): one process, blocking accept(), serves that one connection to its end",
        build: |_| Box::new(SharedListener::new(Variant::Prefork)),
    },
    StrategyEntry {
        name: "shared:blocking-thread",
        about: "inherited listener, an acceptor thread per worker blocks in accept() and feeds its event loop",
        build: |_| Box::new(SharedListener::new(Variant::BlockingThread)),
    },
    StrategyEntry {
        name: "shared:epoll",
        about: "inherited listener, level-triggered epoll in every worker (Node SCHED_NONE)",
        build: |_| Box::new(SharedListener::new(Variant::Epoll)),
    },
    StrategyEntry {
        name: "shared:epoll-exclusive",
        about: "inherited listener, epoll with EPOLLEXCLUSIVE, re-added every 16 accepts (nginx 1.22 default)",
        build: |_| Box::new(SharedListener::new(Variant::EpollExclusive)),
    },
    StrategyEntry {
        name: "shared:epoll-exclusive-raw",
        about: "inherited listener, epoll with EPOLLEXCLUSIVE, never re-added (the kernel's order alone)",
        build: |_| Box::new(SharedListener::new(Variant::EpollExclusiveRaw)),
    },
    StrategyEntry {
        name: "shared:accept-mutex",
        about: "inherited listener, nginx accept_mutex: only the lock holder polls it",
        build: |opts| {
            Box::new(SharedListener::new(Variant::AcceptMutex {
                delay: Duration::from_millis(opts.accept_mutex_delay_ms),
            }))
        },
    },
    StrategyEntry {
        name: "reuseport",
        about: "one SO_REUSEPORT listener per worker, opened and kept by the master (nginx), the kernel hashes connections",
        build: |_| Box::new(ReusePort::new(strategy_reuseport::Variant::MasterOwned)),
    },
    StrategyEntry {
        name: "reuseport:worker-owned",
        about: "one SO_REUSEPORT listener per worker, each opened by its worker after fork (its queue dies with it)",
        build: |_| Box::new(ReusePort::new(strategy_reuseport::Variant::WorkerOwned)),
    },
    StrategyEntry {
        name: "reuseport:cbpf-cpu",
        about: "worker-owned SO_REUSEPORT steered by a cBPF program by receiving CPU, workers pinned",
        build: |_| Box::new(ReusePort::new(strategy_reuseport::Variant::CbpfCpu)),
    },
    StrategyEntry {
        name: "reuseport:ebpf-least-loaded",
        about: "master-owned SO_REUSEPORT steered by an eBPF program to the least-loaded worker (needs root)",
        build: |_| Box::new(ReusePort::new(strategy_reuseport::Variant::EbpfLeastLoaded)),
    },
];

/// The names in [`STRATEGIES`], in order, joined with `", "`.
pub fn strategy_names() -> String {
    let names: Vec<&str> = STRATEGIES.iter().map(|s| s.name).collect();
    names.join(", ")
}

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "lab-server",
    version,
    about = "A pre-forked HTTP/1.1 server with the lab's connection-sharing strategies"
)]
pub struct Opts {
    /// Strategy: one of the names in [`STRATEGIES`].
    #[arg(long, value_name = "NAME", help = format!("Strategy: {}", strategy_names()))]
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
    /// A request's head must be complete within this time from its first
    /// byte (a connection's first request: from the accept), else 408 and
    /// close (just close if nothing arrived). E.g. 10s, 300ms.
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub header_timeout: String,
    /// Close a keep-alive connection idle this long between requests
    /// (Node's default). E.g. 5s, 300ms.
    #[arg(long, value_name = "DUR", default_value = "5s")]
    pub keepalive_timeout: String,
    /// Connections open at once per worker (nginx's worker_connections); at
    /// the cap a worker takes no new connection until one closes. Lowered to
    /// fit the process's descriptor limit if need be.
    #[arg(long, value_name = "N", default_value = "4096")]
    pub max_conns: String,
    /// TEST ONLY, never for measurements: burn this many extra µs of CPU in
    /// every request, to prove that the regression check catches a slowdown.
    #[arg(long, value_name = "US", default_value_t = 0, hide = true)]
    pub test_only_inject_cpu_us: u64,
}

/// Former strategy names `--strategy` still takes, and the name each stands
/// for now: `shared:blocking` became `shared:blocking-thread` when classic
/// pre-fork (`shared:prefork`) came in.
pub const ALIASES: &[(&str, &str)] = &[("shared:blocking", "shared:blocking-thread")];

/// Builds the strategy named `name` (or a former name of one, see
/// [`ALIASES`]), or says which names exist.
pub fn strategy_by_name(name: &str, opts: &Opts) -> Result<Box<dyn Strategy>, String> {
    let name = ALIASES
        .iter()
        .find(|(old, _)| *old == name)
        .map_or(name, |(_, new)| new);
    match STRATEGIES.iter().find(|s| s.name == name) {
        Some(entry) => Ok((entry.build)(opts)),
        None => Err(format!(
            "unknown strategy {name:?}: choose one of {}",
            strategy_names()
        )),
    }
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
    let timeouts = Timeouts {
        header: timeout_option("--header-timeout", &opts.header_timeout)?,
        keepalive: timeout_option("--keepalive-timeout", &opts.keepalive_timeout)?,
    };
    let max_conns = match opts.max_conns.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONNS).contains(&n) => n,
        _ => {
            return Err(format!(
            "--max-conns {:?}: give a whole number of connections per worker from 1 to {MAX_CONNS}",
            opts.max_conns
        ))
        }
    };
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
        timeouts,
        max_conns,
    })
}

/// Largest `--max-conns`.
pub const MAX_CONNS: usize = 1 << 20;

/// Descriptors a worker needs besides its connections (stdio, epoll,
/// signalfd, control channel, listener, acceptor waker) with room to spare.
pub const FD_RESERVE: usize = 64;

/// Longest `--header-timeout` or `--keepalive-timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn timeout_option(flag: &str, value: &str) -> Result<Duration, String> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => Err(format!("{flag} {value}: must be more than 0")),
        Ok(d) if d > MAX_TIMEOUT => Err(format!("{flag} {value}: at most 24h")),
        Ok(d) => Ok(d),
        Err(why) => Err(format!("{flag} {value:?}: {why}")),
    }
}

/// Parses `N` with a unit: `us`, `ms`, `s`, `m` (e.g. `300ms`, `1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "not a duration; write it like 10s, 300ms or 2m".to_string())?;
    let secs = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "" => return Err(format!("no unit; write it like {t}s or {t}ms")),
        other => return Err(format!("unknown unit {other:?}; use us, ms, s or m")),
    };
    if !secs.is_finite() || secs > 1e9 {
        return Err("too long".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Makes room for `--max-conns` connections per worker in the descriptor
/// limit (raising the soft limit), or lowers `max_conns` to what fits.
pub fn fit_descriptor_limit(config: &mut ServerConfig) -> Result<(), String> {
    let want = (config.max_conns + FD_RESERVE) as u64;
    let got = raise_nofile_limit(want)
        .map_err(|e| format!("cannot read or raise the descriptor limit: {e}"))?;
    if got < want {
        let fits = (got as usize).saturating_sub(FD_RESERVE).max(1);
        eprintln!(
            "lab-server: --max-conns {} does not fit the descriptor limit ({got}, hard limit reached); using --max-conns {fits}",
            config.max_conns
        );
        config.max_conns = fits;
    }
    Ok(())
}

/// Runs the server until SIGTERM/SIGINT.
pub fn run(opts: Opts) -> Result<(), String> {
    let strategy = strategy_by_name(&opts.strategy, &opts)?;
    let mut config = config(&opts)?;
    fit_descriptor_limit(&mut config)?;
    serve(config, strategy).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
    }

    #[test]
    fn zero_and_huge_timeouts_are_refused() {
        assert!(timeout_option("--header-timeout", "0s")
            .unwrap_err()
            .contains("more than 0"));
        assert!(timeout_option("--keepalive-timeout", "1500m")
            .unwrap_err()
            .contains("at most 24h"));
        assert_eq!(
            timeout_option("--header-timeout", "10s"),
            Ok(Duration::from_secs(10))
        );
    }
}
