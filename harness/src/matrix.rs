//! The experiment matrix: targets x workloads x worker counts x rounds, and
//! the order the runs go in.

use crate::summary::WorkloadJson;

/// Every lab-server strategy, in report order.
pub const STRATEGIES: &[&str] = &[
    "master-pass",
    "master-pass:rotate",
    "master-pass:least-conn",
    "shared:blocking",
    "shared:epoll",
    "shared:epoll-exclusive",
    "shared:accept-mutex",
    "reuseport",
    "reuseport:cbpf-cpu",
];

/// The request target every open-loop workload uses, and the calibration.
pub const CALIBRATION_PATH: &str = "/?cpu_us=50";

/// How a workload drives load.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Name (`--workloads`).
    pub name: &'static str,
    /// One line on what it is.
    pub description: &'static str,
    /// loadgen arguments, without target/duration/json/rate.
    pub args: &'static [&'static str],
    /// Open loop at this share of the calibrated capacity.
    pub capacity_share: Option<f64>,
}

/// The default workloads.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "keepalive",
        description: "closed loop, keep-alive, 64 connections, GET / (cheap requests)",
        args: &["--mode", "keepalive", "--connections", "64", "--path", "/"],
        capacity_share: None,
    },
    Workload {
        name: "close",
        description: "closed loop, a new TCP connection per request, 32 at a time, GET /",
        args: &["--mode", "close", "--connections", "32", "--path", "/"],
        capacity_share: None,
    },
    Workload {
        name: "open-50",
        description: "open loop (Poisson) at 50% of capacity, keep-alive, 64 connections, 50 us of CPU per request",
        args: &["--mode", "keepalive", "--connections", "64", "--arrivals", "poisson", "--path", CALIBRATION_PATH],
        capacity_share: Some(0.5),
    },
    Workload {
        name: "open-90",
        description: "open loop (Poisson) at 90% of capacity, keep-alive, 64 connections, 50 us of CPU per request",
        args: &["--mode", "keepalive", "--connections", "64", "--arrivals", "poisson", "--path", CALIBRATION_PATH],
        capacity_share: Some(0.9),
    },
    Workload {
        name: "heavy-tail",
        description: "open loop (Poisson) at 50% of capacity, 99% of requests 20 us of CPU, 1% 2000 us",
        args: &["--mode", "keepalive", "--connections", "64", "--arrivals", "poisson", "--mix", "99:/?cpu_us=20,1:/?cpu_us=2000"],
        capacity_share: Some(0.5),
    },
];

impl Workload {
    /// By name.
    pub fn by_name(name: &str) -> Option<&'static Workload> {
        WORKLOADS.iter().find(|w| w.name == name)
    }

    /// As recorded in the summary.
    pub fn json(&self) -> WorkloadJson {
        WorkloadJson {
            name: self.name.into(),
            description: self.description.into(),
            loadgen_args: self.args.iter().map(|s| s.to_string()).collect(),
            capacity_share: self.capacity_share,
        }
    }
}

/// The strategy family of a target name (`master-pass:rotate` -> `master-pass`,
/// `nginx:reuseport` -> `nginx`).
pub fn family(target: &str) -> String {
    target.split(':').next().unwrap_or(target).to_string()
}

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

/// The run order: every round runs every cell once, in an order shuffled
/// afresh each round (seeded), so that A and B alternate across rounds and a
/// slow drift of the machine does not favour whoever runs first.
pub fn plan(
    targets: &[String],
    workloads: &[&'static Workload],
    workers: &[usize],
    rounds: usize,
    seed: u64,
) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut rng = seed | 1;
    for round in 1..=rounds {
        let mut cells: Vec<Planned> = Vec::new();
        for &w in workers {
            for wl in workloads {
                for t in targets {
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

    #[test]
    fn every_cell_runs_once_per_round_in_a_different_order() {
        let targets: Vec<String> = STRATEGIES.iter().map(|s| s.to_string()).collect();
        let wl: Vec<&Workload> = WORKLOADS.iter().collect();
        let p = plan(&targets, &wl, &[2, 4], 3, 7);
        assert_eq!(p.len(), 9 * 5 * 2 * 3);
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
        assert_eq!(s1.len(), 90);
    }

    #[test]
    fn families() {
        assert_eq!(family("master-pass:rotate"), "master-pass");
        assert_eq!(family("reuseport"), "reuseport");
    }
}
