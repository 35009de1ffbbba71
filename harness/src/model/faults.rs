//! The fault scenarios' data: what the injector did during a run (in the
//! run record), and what the analysis made of it (in the summary's
//! `faults`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::summary::Spread;

/// What a fault run recorded about its fault.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultRecord {
    /// `worker-crash`, `rolling-restart`, `slow-worker` or `overload`.
    pub kind: String,
    /// The worker the fault hit (crash, slow worker): the one that had used
    /// the most CPU since the load began, i.e. the busiest one, so that a
    /// strategy that loads one worker heavily is not spared by chance.
    pub victim_pid: Option<i32>,
    /// Every action taken, in order.
    pub injections: Vec<Injection>,
    /// Overload: the offered rate before, during and after the surge, req/s.
    pub surge: Option<Surge>,
}

/// One action of the injector.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Injection {
    /// What: `SIGKILL`, `SIGHUP`, `SIGSTOP`, `SIGCONT`.
    pub action: String,
    /// To whom.
    pub pid: i32,
    /// Planned offset from the start of the measured window, ms.
    pub planned_ms: u64,
    /// When it happened, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// Why it failed, if it did (the process was already gone...).
    pub error: Option<String>,
}

/// An overload's rates.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Surge {
    /// Offered rate outside the surge, req/s.
    pub base_rps: f64,
    /// Offered rate during it, req/s.
    pub surge_rps: f64,
    /// Start, ms from the start of the measured window.
    pub from_ms: u64,
    /// End, ms from the start of the measured window.
    pub to_ms: u64,
}

/// A window of a fault run's timeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowJson {
    /// Start, s from the start of the measured window.
    pub from_s: f64,
    /// End, s.
    pub to_s: f64,
    /// Requests due in it (one connection each in the fault scenarios).
    pub due: u64,
    /// Of those, answered with a 2xx.
    pub ok: u64,
    /// Of those, failed (any kind).
    pub errors: u64,
    /// p99 latency of its successful requests, µs (0: none).
    pub p99_us: u64,
}

/// One slice of a run's timeline, as the report plots it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SliceJson {
    /// Start, s from the start of the measured window.
    pub start_s: f64,
    /// Requests due.
    pub due: u64,
    /// Failed.
    pub errors: u64,
    /// p99 of the successful ones, µs.
    pub p99_us: u64,
}

/// One fault run, analysed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultRun {
    /// Round.
    pub round: usize,
    /// First injection, s from the start of the measured window.
    pub fault_start_s: f64,
    /// End of the fault (the kill, the restart request, the last SIGCONT,
    /// the end of the surge), s.
    pub fault_end_s: f64,
    /// Requests due in the measured window.
    pub due: u64,
    /// Client-visible errors in the whole measured window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Client-visible errors per 10,000 requests (= connections) due.
    pub errors_per_10k: f64,
    /// p99 of the slices before the fault, µs.
    pub baseline_p99_us: u64,
    /// The affected window.
    pub affected: WindowJson,
    /// Everything else.
    pub rest: WindowJson,
    /// From the end of the fault to recovery, s; `None`: not recovered
    /// within the measured window.
    pub recovered_after_s: Option<f64>,
    /// Slow worker: p99 of the requests the stopped worker answered, µs.
    pub victim_p99_us: Option<u64>,
    /// Slow worker: p99 of the requests every other worker answered, µs.
    pub others_p99_us: Option<u64>,
    /// Slow worker: the stopped worker's share of the answered requests.
    pub victim_share: Option<f64>,
    /// TcpExt/Tcp counter deltas over the run.
    pub counters: BTreeMap<String, u64>,
    /// `net.ipv4.tcp_migrate_req` during the run.
    pub tcp_migrate_req: Option<u64>,
    /// Workers the master replaced (lab-server's stats file).
    pub replacements: Option<u64>,
    /// master-pass: connections the master re-routed to another worker.
    pub rerouted: Option<u64>,
    /// The timeline.
    pub timeline: Vec<SliceJson>,
}

/// One target under one fault scenario, over its rounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultCell {
    /// Target.
    pub target: String,
    /// Scenario (workload name).
    pub scenario: String,
    /// Worker processes.
    pub workers: usize,
    /// A reference server rather than a lab strategy.
    pub reference: bool,
    /// `net.ipv4.tcp_migrate_req` in its runs (`None`: not there).
    pub tcp_migrate_req: Option<u64>,
    /// Client-visible errors per 10,000 connections, per round.
    pub errors_per_10k: Spread,
    /// Errors by kind, all rounds added.
    pub errors: BTreeMap<String, u64>,
    /// p99 of the requests due in the affected window, µs, per round.
    pub affected_p99_us: Spread,
    /// p99 of the rest, µs, per round.
    pub rest_p99_us: Spread,
    /// Time to recover after the fault ended, ms, over the rounds that
    /// recovered within their window.
    pub recover_ms: Spread,
    /// Rounds that had not recovered when the window ended.
    pub not_recovered: usize,
    /// Slow worker: the stopped worker's p99 vs the others', µs, per round.
    pub victim_p99_us: Option<Spread>,
    /// Slow worker: the others' p99, µs, per round.
    pub others_p99_us: Option<Spread>,
    /// Kernel counters with a non-zero delta in some round, per round.
    pub counters: BTreeMap<String, Spread>,
    /// Worker replacements the server reported, per round (lab-server).
    pub replacements: Option<Spread>,
    /// master-pass: connections re-routed, per round.
    pub rerouted: Option<Spread>,
    /// Every round, analysed.
    pub runs: Vec<FaultRun>,
}
