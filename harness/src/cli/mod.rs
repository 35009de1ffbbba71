//! The command line: parses it ([`opts`]) and runs the command; each
//! failure is an [`Error`] whose kind sets the exit code.

mod error;
pub mod opts;

pub use error::{Error, EXIT_INTERRUPTED};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::measure::guard;
use crate::regress;
use crate::run as runner;
use crate::run::EndedEarly;
use opts::{Cli, Command};

/// Runs the command.
pub fn run(cli: Cli) -> Result<(), Error> {
    if let Command::Guard(g) = &cli.command {
        // Before the harness's own signal handling: the guard handles its
        // signals itself, and exits with its program's status.
        std::process::exit(guard::run(g.parent, &g.program));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
    }
    if let Command::Regress(o) = &cli.command {
        return regress_command(o, &stop);
    }
    if let Command::Trace(o) = &cli.command {
        return trace_command(o, &stop);
    }
    if let Command::UnderTheHood(o) = &cli.command {
        return under_the_hood_command(o, &stop);
    }
    let cfg = match &cli.command {
        Command::Bench(o) => o.config().map_err(Error::Usage)?,
        Command::Run(o) => o.config().map_err(Error::Usage)?,
        Command::Regress(_) | Command::Guard(_) | Command::Trace(_) | Command::UnderTheHood(_) => {
            unreachable!("handled above")
        }
        Command::Report { dir } => {
            let session = crate::store::session::read_session(dir).map_err(Error::Failed)?;
            let runs = crate::store::session::read_runs(dir).map_err(Error::Failed)?;
            if runs.is_empty() {
                return Err(Error::Failed(format!(
                    "{} holds no run files: nothing to report",
                    dir.display()
                )));
            }
            runner::finish(dir, &session, &runs).map_err(Error::Failed)?;
            println!("report: {}", dir.join("report.md").display());
            return Ok(());
        }
    };
    let outcome = runner::bench(&cfg, &stop).map_err(Error::Failed)?;
    for w in &outcome.summary.warnings {
        eprintln!("warning: {}", w.message());
    }
    println!("report: {}", outcome.dir.join("report.md").display());
    match outcome.ended_early {
        Some(EndedEarly::Interrupted(why)) => Err(Error::Interrupted(format!(
            "{why}; the partial results and report are in {}",
            outcome.dir.display()
        ))),
        Some(EndedEarly::Failed(why)) => Err(Error::Failed(format!(
            "{why}; the results so far are in {}",
            outcome.dir.display()
        ))),
        None => Ok(()),
    }
}

fn trace_command(o: &opts::TraceOpts, stop: &AtomicBool) -> Result<(), Error> {
    use crate::measure::targets::TargetSpec;
    use crate::trace::session;
    let spec = TargetSpec::parse(&o.target).ok_or_else(|| {
        Error::Usage(format!(
            "unknown target {:?}: name a lab strategy or a reference server (see harness bench --help)",
            o.target
        ))
    })?;
    if o.workers == 0 || o.connections == 0 {
        return Err(Error::Usage(
            "--workers and --connections must be at least 1".into(),
        ));
    }
    let plan = session::Plan {
        spec,
        workers: o.workers,
        connections: o.connections,
        burst: o.burst,
        results: o.results.clone(),
        kernel: !o.no_kernel,
        into: None,
    };
    let out = session::run(&plan, stop).map_err(|e| {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            Error::Interrupted(e)
        } else {
            Error::Failed(e)
        }
    })?;
    let s = &out.skeleton;
    let pids: Vec<String> = s.pids.iter().map(|(r, p)| format!("{r}={p}")).collect();
    println!("traced {} ({})", s.target, pids.join(" "));
    for (role, calls) in &s.life {
        println!("{role}:");
        for c in calls {
            println!("  {}", c.text);
        }
    }
    let q = &s.sequential;
    println!(
        "accepted by {}; per connection: {:.2} accept EAGAIN, {:.2} wakeups without accept, {:.2} SCM_RIGHTS messages (fds {:?}), {:.2} replies per hand-off",
        q.who_accepts.join(", "),
        q.accept_eagain_per_conn,
        q.wakeups_without_accept_per_conn,
        q.scm_rights_messages_per_conn,
        q.fds_per_message,
        q.replies_per_handoff
    );
    let burst: Vec<String> = s
        .burst_roles
        .iter()
        .filter(|b| b.accepts + b.accept_eagain + b.wakeups + b.received_fds > 0)
        .map(|b| {
            format!(
                "{} {} accepted, {} EAGAIN, {} wakeups, {} fds received",
                b.role, b.accepts, b.accept_eagain, b.wakeups, b.received_fds
            )
        })
        .collect();
    println!("burst of {}: {}", s.burst, burst.join("; "));
    if let Some(h) = &out.herd {
        let roles: Vec<String> = h
            .burst_roles
            .iter()
            .filter(|r| r.woken + r.accepts + r.accept_eagain > 0)
            .map(|r| {
                format!(
                    "{} woken {} (back to sleep in the kernel {}), {} accepted, {} EAGAIN",
                    r.role, r.woken, r.slept_again, r.accepts, r.accept_eagain
                )
            })
            .collect();
        println!(
            "kernel (tracepoints, no strace): {:.2} processes woken per connection's arrival, {:.2} of them back to sleep in the kernel; burst of {}: {:.2} woken per connection, at most {} by one arrival: {}",
            h.woken_per_conn,
            h.slept_again_per_conn,
            h.burst,
            h.burst_woken_per_conn,
            h.burst_most_woken,
            roles.join("; ")
        );
    }
    println!("diagram: {}", out.dir.join("diagram.svg").display());
    println!(
        "under the hood: {}",
        out.dir.join("under-the-hood.md").display()
    );
    println!("trace: {}", out.dir.display());
    Ok(())
}

fn under_the_hood_command(o: &opts::UnderTheHoodOpts, stop: &AtomicBool) -> Result<(), Error> {
    use crate::trace::doc;
    if o.workers == 0 || o.connections == 0 {
        return Err(Error::Usage(
            "--workers and --connections must be at least 1".into(),
        ));
    }
    let plan = doc::DocPlan {
        targets: if o.targets.is_empty() {
            doc::TARGETS.iter().map(|t| t.to_string()).collect()
        } else {
            o.targets.clone()
        },
        traces: o.traces.clone(),
        out: o.out.clone(),
        workers: o.workers,
        connections: o.connections,
        burst: o.burst,
    };
    // Bad names and missing servers are refused before anything runs.
    let specs = doc::check(&plan).map_err(Error::Usage)?;
    let page = doc::run(&plan, specs, stop).map_err(|e| {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            Error::Interrupted(e)
        } else {
            Error::Failed(e)
        }
    })?;
    println!("page: {}", page.display());
    Ok(())
}

fn regress_command(o: &opts::RegressOpts, stop: &AtomicBool) -> Result<(), Error> {
    // A baseline file that cannot be written is refused before anything runs.
    if let Some(path) = &o.save_baseline {
        outfile::Output::check("--save-baseline", path, outfile::Dash::FileName)
            .map_err(|e| Error::Usage(e.to_string()))?;
    }
    // --save-baseline alone measures the candidate and writes the file.
    let built = match &o.baseline_rev {
        Some(rev) => Some(regress::revision::build(rev).map_err(Error::Failed)?),
        None => None,
    };
    let cfg = o
        .config(built.as_ref().map(|(_, bin)| bin.clone()))
        .map_err(Error::Usage)?;
    let save_only = matches!(&cfg.baseline, regress::Baseline::File(p) if p.as_os_str().is_empty());
    let result = if save_only {
        let mut c = cfg.clone();
        c.baseline = regress::Baseline::Bin(c.candidate_bin.clone());
        regress::run(&c, stop)
    } else {
        regress::run(&cfg, stop)
    };
    if let Some((dir, _)) = built {
        regress::revision::remove(&dir);
    }
    let outcome = result.map_err(Error::Failed)?;
    if save_only {
        println!(
            "baseline written to {}",
            o.save_baseline
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return Ok(());
    }
    regress::print(&outcome);
    if outcome.regressed() {
        return Err(Error::Regression(
            "performance regression found (see the lines marked REGRESSION)".into(),
        ));
    }
    Ok(())
}
