//! The summary as the report walks it: targets, workloads and worker counts
//! in the configured order, then whatever the cells add.

use std::collections::BTreeMap;

use crate::model::names::migrate_req;
use crate::model::summary::{Calibration, Cell, Summary, WorkloadJson};
use crate::model::workload::CALIBRATION_TARGET;

/// The summary's cells by target, workload and worker count: the axes of
/// the matrix in report order (as configured, then whatever the cells add).
pub(super) struct Index<'a> {
    /// Targets: as configured, then any only the cells name.
    pub targets: Vec<&'a str>,
    /// Workloads: as configured, then any only the cells name.
    pub workloads: Vec<&'a str>,
    /// Worker counts, ascending.
    pub workers: Vec<usize>,
    cells: &'a [Cell],
    config_workloads: &'a [WorkloadJson],
    calibration: &'a [Calibration],
}

impl<'a> Index<'a> {
    pub(super) fn new(summary: &'a Summary) -> Index<'a> {
        fn push<'b>(v: &mut Vec<&'b str>, s: &'b str) {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        let mut targets = Vec::new();
        let mut workloads = Vec::new();
        let mut workers: Vec<usize> = summary.config.workers.clone();
        // The fault scenarios and the +migrate targets (which only run
        // them) have their own section.
        summary
            .config
            .targets
            .iter()
            .filter(|t| !migrate_req(t))
            .for_each(|t| push(&mut targets, t));
        summary
            .config
            .workloads
            .iter()
            .filter(|w| w.fault.is_none())
            .for_each(|w| push(&mut workloads, &w.name));
        for c in &summary.cells {
            push(&mut targets, &c.target);
            push(&mut workloads, &c.workload);
            workers.push(c.workers);
        }
        workers.sort_unstable();
        workers.dedup();
        Index {
            targets,
            workloads,
            workers,
            cells: &summary.cells,
            config_workloads: &summary.config.workloads,
            calibration: &summary.calibration,
        }
    }

    /// Position of a target, for its colour in every plot.
    pub(super) fn target_index(&self, target: &str) -> usize {
        self.targets.iter().position(|t| *t == target).unwrap_or(0)
    }

    /// The cell of (target, workload, workers).
    pub(super) fn cell(&self, target: &str, workload: &str, workers: usize) -> Option<&'a Cell> {
        self.cells
            .iter()
            .find(|c| c.target == target && c.workload == workload && c.workers == workers)
    }

    /// Cells of one workload and worker count, in target order.
    pub(super) fn cells_of(&self, workload: &str, workers: usize) -> Vec<&'a Cell> {
        self.targets
            .iter()
            .filter_map(|t| self.cell(t, workload, workers))
            .collect()
    }

    /// All cells of one workload.
    pub(super) fn cells_of_workload<'s>(
        &'s self,
        workload: &'s str,
    ) -> impl Iterator<Item = &'a Cell> + 's {
        self.cells.iter().filter(move |c| c.workload == workload)
    }

    /// Worker counts that have a cell of `workload`.
    pub(super) fn workers_of(&self, workload: &str) -> Vec<usize> {
        self.workers
            .iter()
            .copied()
            .filter(|&w| {
                self.cells
                    .iter()
                    .any(|c| c.workload == workload && c.workers == w)
            })
            .collect()
    }

    /// The configured description of a workload.
    pub(super) fn workload_json(&self, workload: &str) -> Option<&'a WorkloadJson> {
        self.config_workloads.iter().find(|w| w.name == workload)
    }

    /// What a workload's spread of connections shows (`burst` or
    /// `steady`), from its cells, else its configuration; `None` when
    /// neither says.
    pub(super) fn fairness_kind(&self, workload: &str) -> Option<&'a str> {
        self.cells
            .iter()
            .filter(|c| c.workload == workload)
            .map(|c| c.fairness_kind.as_str())
            .chain(self.workload_json(workload).map(|w| w.fairness.as_str()))
            .find(|k| !k.is_empty())
    }

    /// The workload's name with the kind of its connection spread:
    /// `keepalive (burst)`.
    pub(super) fn workload_with_kind(&self, workload: &str) -> String {
        match self.fairness_kind(workload) {
            Some(k) => format!("{workload} ({k})"),
            None => workload.to_string(),
        }
    }

    /// The calibration the open-loop rates of a workload at a worker count
    /// are shares of: that of the calibration target (reuseport) with the
    /// workload's kind of connection, else the first of that kind.
    pub(super) fn calibration(&self, workload: &str, workers: usize) -> Option<&'a Calibration> {
        let mode = self
            .workload_json(workload)
            .map_or("keepalive", |w| w.calibration.as_str());
        let of = move |n: usize| {
            self.calibration
                .iter()
                .filter(move |c| c.workers == n && c.mode == mode)
        };
        of(workers)
            .find(|c| c.target == CALIBRATION_TARGET)
            .or_else(|| of(workers).next())
    }

    /// All cells, in summary order.
    pub(super) fn all_cells(&self) -> &'a [Cell] {
        self.cells
    }

    /// Open-loop workloads grouped by their loadgen arguments: within a group
    /// only the offered rate differs (open-50 and open-90), so latency can be
    /// drawn against offered load. Groups of one are left out (heavy-tail is
    /// open loop too, but another request mix).
    pub(super) fn load_groups(&self) -> Vec<Vec<&'a str>> {
        let mut groups: BTreeMap<Vec<String>, Vec<&'a str>> = BTreeMap::new();
        let mut order: Vec<Vec<String>> = Vec::new();
        for &w in &self.workloads {
            if !self
                .cells
                .iter()
                .any(|c| c.workload == w && c.offered_rps.is_some())
            {
                continue;
            }
            let key = match self.workload_json(w) {
                Some(j) => j.loadgen_args.clone(),
                None => vec![format!("workload {w}")],
            };
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(w);
        }
        order
            .into_iter()
            .filter_map(|k| groups.remove(&k))
            .filter(|g| g.len() > 1)
            .collect()
    }
}
