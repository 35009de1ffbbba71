//! "Environment" and "Configuration": the machine and what was asked for.

use crate::model::summary::Summary;
use crate::report::doc::{heading, text, Block, Inline, Line};
use crate::report::fmt::{fmt_cpus, fmt_num, fmt_rps, fmt_seconds, fmt_share};

/// The machine.
pub(super) fn environment(doc: &mut Vec<Block>, summary: &Summary) {
    let env = &summary.environment;
    doc.push(heading(2, "Environment"));
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s.to_string()
        }
    };
    let mut rows: Vec<Vec<Line>> = vec![
        vec![text("host"), text(or_unknown(&env.hostname))],
        vec![text("kernel"), text(or_unknown(&env.kernel))],
        vec![text("CPUs online"), text(env.cpus_online.to_string())],
        vec![text("CPUs allowed"), text(fmt_cpus(&env.cpus_allowed))],
        vec![text("CPU model"), text(or_unknown(&env.cpu_model))],
        vec![text("memory"), text(format!("{} MiB", env.memory_mib))],
        vec![
            text("git commit"),
            vec![Inline::Code(or_unknown(&env.git_commit))],
        ],
        vec![text("rustc"), text(or_unknown(&env.rustc))],
    ];
    // What else used the CPUs during the measured windows.
    let rounds = summary.cells.iter().flat_map(|c| c.per_round.iter());
    let worst = |f: fn(&crate::model::summary::RoundFigures) -> f64| {
        rounds
            .clone()
            .map(f)
            .filter(|v| v.is_finite())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    if let Some(steal) = worst(|r| r.steal_pct) {
        rows.push(vec![
            text("CPU steal (max over runs)"),
            text(format!("{}% of the machine", fmt_num(steal, 1))),
        ]);
    }
    if let Some(other) = worst(|r| r.other_cpu_pct) {
        rows.push(vec![
            text("other processes' CPU (max over runs)"),
            text(format!("{}% of the machine", fmt_num(other, 1))),
        ]);
    }
    for (tool, version) in &env.tools {
        rows.push(vec![text(tool), text(version)]);
    }
    for (name, value) in &env.sysctls {
        rows.push(vec![
            vec![Inline::Code(name.clone())],
            vec![Inline::Code(value.clone())],
        ]);
    }
    doc.push(Block::Table {
        header: vec!["what".into(), "value".into()],
        numeric: vec![false, false],
        rows,
    });
}

/// What the session was asked to do.
pub(super) fn configuration(doc: &mut Vec<Block>, summary: &Summary) {
    let c = &summary.config;
    doc.push(heading(2, "Configuration"));
    let hosts = match &c.remote {
        None => text("hosts: the server and the load generator on this machine"),
        Some(r) => text(format!(
            "hosts (over ssh): load from {}{}; the server on {}",
            if r.loadgen_hosts.is_empty() {
                "this machine".to_string()
            } else {
                r.loadgen_hosts.join(", ")
            },
            match r.loadgen_hosts.len() {
                0 | 1 => String::new(),
                n => format!(
                    " (each generator 1/{n} of the connections and of the offered rate, started together, results merged exactly with loadgen merge)"
                ),
            },
            r.server_host.as_deref().unwrap_or("this machine"),
        )),
    };
    let mut items = vec![
        hosts,
        vec![
            Inline::Text("targets: ".into()),
            Inline::Code(c.targets.join(", ")),
        ],
        text(format!(
            "worker counts: {}",
            c.workers
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        text(format!(
            "rounds: {}, each run {} s measured after at least {} s of warm-up and until steady, at most {}{}",
            c.rounds,
            fmt_seconds(c.duration_s),
            fmt_seconds(c.warmup_s),
            c.warmup_cap_s
                .map_or("each target's own cap".into(), |s| format!("{} s", fmt_seconds(s))),
            if c.quick {
                " (--quick)"
            } else if c.full {
                " (--full)"
            } else {
                ""
            }
        )),
    ];
    if !c.test_only_inject_cpu_us.is_empty() {
        items.push(vec![Inline::Strong(format!(
            "TEST ONLY: targets slowed on purpose ({}): not a measurement to publish",
            c.test_only_inject_cpu_us.join(", ")
        ))]);
    }
    items.push(vec![
        Inline::Text("raw data: ".into()),
        Inline::Link {
            text: "summary.json".into(),
            href: "summary.json".into(),
        },
        Inline::Text(" (each cell lists its run files under ".into()),
        Inline::Code("runs".into()),
        Inline::Text(")".into()),
    ]);
    doc.push(Block::List(items));
    if !c.workloads.is_empty() {
        doc.push(Block::Table {
            header: [
                "workload",
                "description",
                "loadgen arguments",
                "share of capacity",
                "fairness",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, false, false, true, false],
            rows: c
                .workloads
                .iter()
                .map(|w| {
                    vec![
                        text(&w.name),
                        text(&w.description),
                        vec![Inline::Code(w.loadgen_args.join(" "))],
                        text(w.capacity_share.map_or("closed loop".into(), fmt_share)),
                        text(if w.fairness.is_empty() {
                            "–"
                        } else {
                            &w.fairness
                        }),
                    ]
                })
                .collect(),
        });
    }
    if !summary.calibration.is_empty() {
        doc.push(Block::Paragraph(text(
            "Capacity measured at the start of the session, the base of the open-loop rates:",
        )));
        doc.push(Block::Table {
            header: ["workers", "measured with", "capacity", "loadgen arguments"]
                .map(String::from)
                .to_vec(),
            numeric: vec![true, false, true, false],
            rows: summary
                .calibration
                .iter()
                .map(|k| {
                    vec![
                        text(k.workers.to_string()),
                        text(&k.target),
                        text(fmt_rps(k.capacity_rps)),
                        vec![Inline::Code(k.loadgen_args.join(" "))],
                    ]
                })
                .collect(),
        });
    }
}
