//! The experiment matrix: targets x workloads x worker counts x rounds, and
//! the order the runs go in.

use crate::model::workload::{applies, Workload};

/// One run of the matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// Target name.
    pub target: String,
    /// Workload.
    pub workload: &'static Workload,
    /// Worker processes.
    pub workers: usize,
    /// Round, from 1.
    pub round: usize,
}

/// Rounds of a fault scenario at most: its analysis (recovery, requests
/// lost) reads each run on its own, not an interval across rounds, and a
/// scenario run is 1.2-3 s of load.
pub const FAULT_ROUNDS: usize = 3;

/// The run order: every round runs every cell once, in an order shuffled
/// afresh each round (seeded), so that A and B alternate across rounds and a
/// slow drift of the machine does not favour whoever runs first; a fault
/// scenario runs in the first [`FAULT_ROUNDS`] rounds only.
pub fn plan(
    targets: &[String],
    fault_targets: &[String],
    workloads: &[&'static Workload],
    workers: &[usize],
    rounds: usize,
    seed: u64,
) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut rng = seed | 1;
    for round in 1..=rounds {
        let mut cells: Vec<Planned> = Vec::new();
        let most = workers.iter().copied().max().unwrap_or(1);
        for &w in workers {
            for wl in workloads {
                // A fault scenario runs once per session's largest worker
                // count: with 2 workers, losing one is half the server.
                if wl.fault.is_some() && (w != most || round > FAULT_ROUNDS) {
                    continue;
                }
                for t in targets {
                    if !applies(t, wl) || (wl.fault.is_some() && !fault_targets.contains(t)) {
                        continue;
                    }
                    cells.push(Planned {
                        target: t.clone(),
                        workload: wl,
                        workers: w,
                        round,
                    });
                }
            }
        }
        // Fisher-Yates with xorshift64.
        for i in (1..cells.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            cells.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        out.extend(cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::names::STRATEGIES;
    use crate::model::workload::WORKLOADS;

    #[test]
    fn every_cell_runs_once_per_round_in_a_different_order() {
        let targets: Vec<String> = STRATEGIES.iter().map(|s| s.to_string()).collect();
        let wl: Vec<&Workload> = WORKLOADS.iter().collect();
        let n = STRATEGIES.len();
        let p = plan(&targets, &targets, &wl, &[2, 4], 3, 7);
        // 7 steady workloads at 2 and 4 workers; 4 fault scenarios at 4 only.
        assert_eq!(p.len(), n * 7 * 2 * 3 + n * 4 * 3);
        let five = plan(&targets, &targets, &wl, &[4], 5, 7);
        assert_eq!(
            five.len(),
            n * 7 * 5 + n * 4 * FAULT_ROUNDS,
            "fault scenarios stop at FAULT_ROUNDS"
        );
        assert!(p
            .iter()
            .all(|x| x.workload.fault.is_none() || x.workers == 4));
        let round = |r: usize| {
            p.iter()
                .filter(|x| x.round == r)
                .map(|x| (x.target.clone(), x.workload.name, x.workers))
                .collect::<Vec<_>>()
        };
        let (r1, r2) = (round(1), round(2));
        assert_ne!(r1, r2, "rounds are shuffled independently");
        let mut s1 = r1.clone();
        let mut s2 = r2.clone();
        s1.sort();
        s2.sort();
        assert_eq!(s1, s2, "each round has every cell exactly once");
        s1.dedup();
        assert_eq!(s1.len(), n * 7 * 2 + n * 4);
    }

    #[test]
    fn fault_scenarios_run_on_their_targets_and_migrate_variants_only_where_a_listener_closes() {
        let targets: Vec<String> = [
            "master-pass",
            "reuseport",
            "reuseport+migrate",
            "shared:epoll",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let faulty: Vec<String> = targets[..3].to_vec();
        let wl: Vec<&Workload> = WORKLOADS.iter().collect();
        let p = plan(&targets, &faulty, &wl, &[2, 4], 1, 3);
        let cells = |t: &str| -> Vec<&str> {
            let mut v: Vec<&str> = p
                .iter()
                .filter(|x| x.target == t)
                .map(|x| x.workload.name)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        assert_eq!(
            cells("reuseport+migrate"),
            ["rolling-restart", "worker-crash"]
        );
        assert_eq!(cells("reuseport").len(), 11);
        assert_eq!(
            cells("shared:epoll"),
            [
                "close",
                "heavy-tail",
                "heavy-tail-close",
                "keepalive",
                "open-50",
                "open-90",
                "recycled"
            ]
        );
    }
}
