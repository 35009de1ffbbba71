//! Comparing two cells with an interval: the ratio of one figure, round by
//! round (the rounds interleave, so round r of A ran beside round r of B),
//! its median and a bootstrap 95% interval, and whether the whole interval
//! lies outside the band of "no difference" (the figure's minimum effect
//! either way). Only a significant comparison becomes a winner or a
//! finding; the rest is said as "no significant difference".

use super::stats::{bootstrap_median_ci, median};
use crate::model::summary::{Cell, Interval, Lead, RoundFigures};

/// A figure two cells are compared on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Successful requests per second (higher is better).
    Throughput,
    /// p99 latency (lower is better).
    P99,
    /// Jain's index of connections per worker (higher is better).
    Jain,
    /// Server CPU time per request (lower is better).
    CpuPerRequest,
    /// Workers' voluntary context switches per connection (lower is better).
    WorkersVcsPerConnection,
}

impl Figure {
    /// The round's value of this figure.
    pub fn of(self, r: &RoundFigures) -> f64 {
        match self {
            Figure::Throughput => r.throughput_rps,
            Figure::P99 => r.p99_us as f64,
            Figure::Jain => r.jain_connections,
            Figure::CpuPerRequest => r.cpu_us_per_request,
            Figure::WorkersVcsPerConnection => r.workers_vcs_per_connection,
        }
    }

    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Figure::Throughput | Figure::Jain)
    }

    /// The smallest ratio that counts as a difference (0.10: 10%), set
    /// from the A/A check (harness/BENCH.md): in 10 sessions of one target
    /// under two labels, the paired rounds of throughput and CPU per
    /// request never all differed by 10%, but p99s did by 25% (twice) and
    /// not by 50%, a burst's Jain's index by 10% (once) and not by 25%, and
    /// context switches by 10% and not by 25%.
    pub fn min_effect(self) -> f64 {
        match self {
            Figure::Throughput | Figure::CpuPerRequest => 0.10,
            Figure::Jain | Figure::WorkersVcsPerConnection => 0.25,
            Figure::P99 => 0.50,
        }
    }

    /// The median over a cell's steady rounds.
    pub fn median(self, c: &Cell) -> f64 {
        let v: Vec<f64> = c
            .per_round
            .iter()
            .filter(|r| r.steady)
            .map(|r| self.of(r))
            .collect();
        median(&v)
    }
}

/// Fewest paired steady rounds for an interval.
pub const MIN_PAIRS: usize = 3;

/// `a / b` of `figure`, paired by round over the rounds steady in both;
/// `None` with fewer than [`MIN_PAIRS`] pairs.
pub fn ratio(a: &Cell, b: &Cell, figure: Figure) -> Option<Interval> {
    let ratios: Vec<f64> = a
        .per_round
        .iter()
        .filter(|r| r.steady)
        .filter_map(|ra| {
            let rb = b
                .per_round
                .iter()
                .find(|r| r.round == ra.round && r.steady)?;
            let (x, y) = (figure.of(ra), figure.of(rb));
            (x > 0.0 && y > 0.0).then(|| x / y)
        })
        .collect();
    if ratios.len() < MIN_PAIRS {
        return None;
    }
    let seed = ratios.len() as u64 * 7919 + a.target.len() as u64 * 31 + b.target.len() as u64;
    let [low, estimate, high] = bootstrap_median_ci(&ratios, seed);
    let band = 1.0 + figure.min_effect();
    Some(Interval {
        low,
        estimate,
        high,
        rounds: ratios.len(),
        significant: low > band || high < 1.0 / band,
    })
}

/// The ratio oriented so that above 1 means `better` is better than `worse`.
pub fn advantage(better: &Cell, worse: &Cell, figure: Figure) -> Option<Interval> {
    if figure.higher_is_better() {
        ratio(better, worse, figure)
    } else {
        ratio(worse, better, figure)
    }
}

/// The best of `cells` on `figure` (median over steady rounds), the
/// runner-up, the best's lead with its interval and the targets it cannot
/// be told apart from; `None` when no cell has a steady round.
pub fn lead(cells: &[&Cell], figure: Figure) -> Option<Lead> {
    let mut ranked: Vec<(&Cell, f64)> = cells
        .iter()
        .filter(|c| c.per_round.iter().any(|r| r.steady && figure.of(r) > 0.0))
        .map(|c| (*c, figure.median(c)))
        .collect();
    ranked.sort_by(|a, b| {
        if figure.higher_is_better() {
            b.1.total_cmp(&a.1)
        } else {
            a.1.total_cmp(&b.1)
        }
    });
    let (best, value) = *ranked.first()?;
    let runner_up = ranked.get(1).map(|(c, _)| *c);
    let mut tied = vec![best.target.clone()];
    for (c, _) in ranked.iter().skip(1) {
        if !advantage(best, c, figure).is_some_and(|i| i.significant) {
            tied.push(c.target.clone());
        }
    }
    Some(Lead {
        target: best.target.clone(),
        value,
        runner_up: runner_up.map(|c| c.target.clone()),
        lead: runner_up.and_then(|r| advantage(best, r, figure)),
        tied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cell(target: &str, tps: &[f64]) -> Cell {
        Cell {
            target: target.into(),
            per_round: tps
                .iter()
                .enumerate()
                .map(|(i, &t)| RoundFigures {
                    round: i + 1,
                    steady: true,
                    throughput_rps: t,
                    ..Default::default()
                })
                .collect(),
            ..crate::analyse::steady::empty_cell()
        }
    }

    #[test]
    fn the_same_server_twice_is_no_difference() {
        // Rounds of one target under two labels: noise of +-8% either way.
        let a = cell(
            "reuseport",
            &[30_000.0, 28_500.0, 31_000.0, 29_000.0, 30_500.0],
        );
        let b = cell(
            "reuseport@b",
            &[29_000.0, 30_500.0, 28_800.0, 31_200.0, 29_500.0],
        );
        let i = ratio(&a, &b, Figure::Throughput).unwrap();
        assert!(!i.significant, "{i:?}");
        let l = lead(&[&a, &b], Figure::Throughput).unwrap();
        assert_eq!(l.tied.len(), 2, "a tie, not a winner: {l:?}");
    }

    #[test]
    fn a_real_difference_is_significant_and_one_noisy_round_is_not_enough() {
        let a = cell("fast", &[30_000.0, 28_500.0, 31_000.0, 29_000.0, 30_500.0]);
        let b = cell("slow", &[20_000.0, 21_000.0, 19_500.0, 20_500.0, 20_000.0]);
        let i = ratio(&a, &b, Figure::Throughput).unwrap();
        assert!(i.significant && i.low > 1.3, "{i:?}");
        let l = lead(&[&b, &a], Figure::Throughput).unwrap();
        assert_eq!((l.target.as_str(), l.tied.len()), ("fast", 1));
        // The same medians, but in one round the slow one was faster.
        let c = cell("slow", &[20_000.0, 21_000.0, 32_000.0, 20_500.0, 20_000.0]);
        assert!(!ratio(&a, &c, Figure::Throughput).unwrap().significant);
    }

    #[test]
    fn unsteady_rounds_are_left_out_and_too_few_pairs_give_no_interval() {
        let a = cell("a", &[30_000.0, 30_000.0, 30_000.0]);
        let mut b = cell("b", &[10_000.0, 10_000.0, 10_000.0]);
        assert!(ratio(&a, &b, Figure::Throughput).unwrap().significant);
        b.per_round[0].steady = false;
        assert!(ratio(&a, &b, Figure::Throughput).is_none());
    }

    #[test]
    fn lower_is_better_for_tails() {
        let mut a = cell("a", &[1.0; 5]);
        let mut b = cell("b", &[1.0; 5]);
        for r in &mut a.per_round {
            r.p99_us = 1000;
        }
        for r in &mut b.per_round {
            r.p99_us = 3000;
        }
        let l = lead(&[&b, &a], Figure::P99).unwrap();
        assert_eq!(l.target, "a");
        assert!(l.lead.unwrap().estimate > 2.9);
    }
}
