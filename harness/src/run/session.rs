//! The session loop: which targets can run here, the runs planned, the
//! calibration, then every planned run in order, each written as it ends.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::measure::faults;
use crate::measure::procs::Binaries;
use crate::measure::targets::TargetSpec;
use crate::model::names::migrate_req;
use crate::model::record::RunRecord;
use crate::model::session::Session;
use crate::model::summary::{Calibration, Skipped};
use crate::model::workload::{applies, Capacity, CALIBRATION_TARGET, WORKLOADS};
use crate::store::results::write_json;

use super::one::{run_one, RunSpec};
use super::plan::{plan, Planned};
use super::remote::RemoteSetup;
use super::{placement, BenchConfig, EndedEarly};

/// The targets that can run here. References whose server is not
/// installed are skipped with a plain message, not a failed bench; so is a
/// workload a target cannot serve (both recorded in `session.skipped`).
pub(super) fn runnable_targets(
    cfg: &BenchConfig,
    session: &mut Session,
) -> Result<Vec<String>, String> {
    let mut active: Vec<String> = Vec::new();
    for name in &cfg.targets {
        let spec = TargetSpec::parse(name).ok_or_else(|| format!("unknown target {name:?}"))?;
        let available = spec.available().and_then(|()| {
            if migrate_req(name) {
                faults::check_migrate_req()
                    .map_err(|e| format!("{e}: the +migrate runs are skipped"))
            } else {
                Ok(())
            }
        });
        match available {
            Ok(()) => active.push(name.clone()),
            Err(reason) => {
                eprintln!("harness: {name}: {reason}");
                session.skipped.push(Skipped {
                    target: name.clone(),
                    workload: None,
                    reason,
                });
            }
        }
    }
    if active.is_empty() {
        return Err("none of the targets asked for can run here (see the messages above)".into());
    }
    for name in &active {
        let spec = TargetSpec::parse(name).expect("parsed above");
        for w in &cfg.workloads {
            if !applies(name, w) {
                continue;
            }
            if let Err(reason) = spec.supports(w) {
                session.skipped.push(Skipped {
                    target: name.clone(),
                    workload: Some(w.name.into()),
                    reason,
                });
            }
        }
    }
    Ok(active)
}

/// The run order of the `active` targets, without the skipped cells.
pub(super) fn planned_runs(
    cfg: &BenchConfig,
    active: &[String],
    session: &Session,
) -> Vec<Planned> {
    plan(
        active,
        &cfg.fault_targets,
        &cfg.workloads,
        &cfg.workers,
        cfg.rounds,
        cfg.seed,
    )
    .into_iter()
    .filter(|p| {
        !session
            .skipped
            .iter()
            .any(|s| s.target == p.target && s.workload.as_deref() == Some(p.workload.name))
    })
    .collect()
}

/// The progress bar on a terminal, log lines elsewhere.
pub(super) struct Progress {
    bar: ProgressBar,
    tty: bool,
}

impl Progress {
    /// Hidden until [`Runner::announce`] knows how many runs there are.
    pub(super) fn new() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

/// What every run of a session shares, and the progress bar.
pub(super) struct Runner<'a> {
    pub(super) cfg: &'a BenchConfig,
    pub(super) bins: &'a Binaries,
    pub(super) remote: Option<&'a RemoteSetup>,
    /// The session directory.
    pub(super) dir: &'a Path,
    /// The CPUs this process may use.
    pub(super) cpus: &'a [usize],
    /// Set by SIGINT and SIGTERM.
    pub(super) stop: &'a AtomicBool,
    pub(super) progress: Progress,
}

impl Runner<'_> {
    /// The targets to calibrate, each with the kind of connection its
    /// capacity is measured with: the one the rates are shares of (for
    /// each kind an open-loop workload needs), then every target with a
    /// steady open-loop run planned (its own capacity says how close the
    /// offered rate is to what it can do).
    fn calibration_targets(&self, planned: &[Planned]) -> Vec<(String, Capacity)> {
        let mut out: Vec<(String, Capacity)> = Vec::new();
        for p in planned
            .iter()
            .filter(|p| p.workload.capacity_share.is_some())
        {
            let base = (CALIBRATION_TARGET.to_string(), p.workload.capacity);
            if !out.contains(&base) {
                out.push(base);
            }
        }
        for p in planned {
            let own = (p.target.clone(), p.workload.capacity);
            if p.workload.capacity_share.is_some()
                && p.workload.fault.is_none()
                && !out.contains(&own)
            {
                out.push(own);
            }
        }
        out
    }

    fn calibrations(&self, planned: &[Planned]) -> usize {
        self.calibration_targets(planned).len() * self.cfg.workers.len()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A progress line: in the bar on a terminal, else a log line.
    fn say(&self, line: String) {
        if self.progress.tty {
            self.progress.bar.set_message(line);
        } else {
            eprintln!("harness: {line}");
        }
    }

    /// Starts the progress bar and says what the session will do and for
    /// about how long.
    pub(super) fn announce(&mut self, planned: &[Planned], targets: usize) {
        let cfg = self.cfg;
        // Start, lead-in and stop take about 0.3 s; a JIT warms for about 2 s.
        let overhead = Duration::from_millis(300);
        let warmup = |target: &str| {
            let jit =
                TargetSpec::parse(target).is_some_and(|t| t.warmup_cap() > Duration::from_secs(3));
            cfg.warmup.max(Duration::from_millis(500)).max(if jit {
                Duration::from_secs(4)
            } else {
                Duration::ZERO
            })
        };
        let estimate: Duration = planned
            .iter()
            .map(|p| {
                let measured = p
                    .workload
                    .fault
                    .map_or(cfg.duration, |f| Duration::from_millis(f.measured_ms()));
                warmup(&p.target) + measured + overhead
            })
            .sum();
        let calibrations = self.calibrations(planned);
        let per_run = cfg.warmup.max(Duration::from_millis(500))
            + cfg.duration.max(Duration::from_secs(1))
            + overhead;
        self.progress.bar = ProgressBar::new((planned.len() + calibrations) as u64);
        self.progress.bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        eprintln!(
            "harness: {} runs ({} targets x {} workloads x {:?} workers x {} rounds), about {:.0} s; results in {}",
            planned.len(),
            targets,
            cfg.workloads.len(),
            cfg.workers,
            cfg.rounds,
            (estimate + per_run * calibrations as u32).as_secs_f64(),
            self.dir.display()
        );
    }

    /// Measures the capacity per worker count, for the open-loop workloads:
    /// the calibration target's (the rates are shares of it) and each
    /// open-loop target's own; `Some` when the session must end.
    pub(super) fn calibrate(
        &self,
        planned: &[Planned],
        session: &mut Session,
    ) -> Result<Option<EndedEarly>, String> {
        let targets = self.calibration_targets(planned);
        let mut ended_early = None;
        let cells = self
            .cfg
            .workers
            .iter()
            .flat_map(|&w| targets.iter().map(move |(t, k)| (w, t, *k)));
        for (workers, target, kind) in cells {
            if self.stopped() {
                break;
            }
            self.say(format!(
                "calibrating {target} with {workers} workers ({} connections)",
                kind.name()
            ));
            let args = kind.loadgen_args();
            let place = placement(self.cpus, workers);
            let probe = Planned {
                target: target.clone(),
                workload: &WORKLOADS[0],
                workers,
                round: 0,
            };
            let spec = RunSpec {
                bins: self.bins,
                remote: self.remote,
                planned: &probe,
                workload_args: &args,
                rate: None,
                duration: self.cfg.duration.max(Duration::from_secs(1)),
                warmup: self.cfg.warmup,
                warmup_cap: self.cfg.warmup_cap,
                place: &place,
                dir: self.dir,
                index: 0,
                ready_timeout: self.cfg.ready_timeout,
                inject_cpu_us: self.cfg.injected(target),
            };
            match run_one(&spec, self.stop) {
                Ok(r) => session.calibration.push(Calibration {
                    workers,
                    target: target.clone(),
                    loadgen_args: args,
                    capacity_rps: r.loadgen.throughput_rps,
                    mode: kind.name().into(),
                }),
                Err(e) => {
                    let why = format!("calibrating {target} with {workers} workers failed: {e}");
                    ended_early = Some(if self.stopped() {
                        EndedEarly::Interrupted(why)
                    } else {
                        EndedEarly::Failed(why)
                    });
                    break;
                }
            }
            self.progress.bar.inc(1);
        }
        write_json(&self.dir.join("session.json"), session)?;
        Ok(ended_early)
    }

    /// Runs the planned runs in order, writing each record as it ends;
    /// `Some` when the session ended before the last.
    pub(super) fn run_planned(
        &self,
        planned: &[Planned],
        session: &mut Session,
        records: &mut Vec<RunRecord>,
    ) -> Result<Option<EndedEarly>, String> {
        let cfg = self.cfg;
        let interrupted = |done: usize| {
            EndedEarly::Interrupted(format!(
                "interrupted after {done} of {} runs",
                planned.len()
            ))
        };
        for (i, p) in planned.iter().enumerate() {
            if self.stopped() {
                return Ok(Some(interrupted(records.len())));
            }
            let capacity = session
                .calibration
                .iter()
                .find(|c| {
                    c.workers == p.workers
                        && c.target == CALIBRATION_TARGET
                        && c.mode == p.workload.capacity.name()
                })
                .map(|c| c.capacity_rps);
            let rate = p
                .workload
                .capacity_share
                .and_then(|share| capacity.map(|c| (c * share).max(1.0)));
            self.say(format!(
                "{} / {} / {} workers / round {}",
                p.target, p.workload.name, p.workers, p.round
            ));
            let place = placement(self.cpus, p.workers);
            let mut args: Vec<String> = p.workload.args.iter().map(|s| s.to_string()).collect();
            if let (Some(fault), Some(rate), Some(capacity)) = (p.workload.fault, rate, capacity) {
                args.extend(faults::loadgen_args(&fault, rate, capacity));
            }
            let duration = p
                .workload
                .fault
                .map_or(cfg.duration, |f| Duration::from_millis(f.measured_ms()));
            let spec = RunSpec {
                bins: self.bins,
                remote: self.remote,
                planned: p,
                workload_args: &args,
                rate,
                duration,
                warmup: cfg.warmup,
                warmup_cap: cfg.warmup_cap,
                place: &place,
                dir: self.dir,
                index: i + 1,
                ready_timeout: cfg.ready_timeout,
                inject_cpu_us: cfg.injected(&p.target),
            };
            match run_one(&spec, self.stop) {
                Ok(record) => {
                    write_json(&self.dir.join(record.file_name()), &record)?;
                    records.push(record);
                    session.completed_runs = records.len();
                }
                Err(_) if self.stopped() => return Ok(Some(interrupted(records.len()))),
                Err(e) => {
                    return Ok(Some(EndedEarly::Failed(format!(
                        "{} / {} / {} workers failed: {e}",
                        p.target, p.workload.name, p.workers
                    ))))
                }
            }
            self.progress.bar.inc(1);
        }
        Ok(None)
    }

    /// Clears the progress bar.
    pub(super) fn done(&self) {
        self.progress.bar.finish_and_clear();
    }
}
