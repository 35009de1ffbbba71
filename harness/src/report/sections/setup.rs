//! "Environment" and "Configuration": the machine and what was asked for.

use crate::model::summary::Summary;
use crate::report::doc::{heading, text, Block, Inline, Line};
use crate::report::fmt::{fmt_cpus, fmt_rps, fmt_seconds, fmt_share};

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
    doc.push(Block::List(vec![
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
            "rounds: {}, each run {} s measured after {} s of warm-up{}",
            c.rounds,
            fmt_seconds(c.duration_s),
            fmt_seconds(c.warmup_s),
            if c.quick { " (--quick)" } else { "" }
        )),
        vec![
            Inline::Text("raw data: ".into()),
            Inline::Link {
                text: "summary.json".into(),
                href: "summary.json".into(),
            },
            Inline::Text(" (each cell lists its run files under ".into()),
            Inline::Code("runs".into()),
            Inline::Text(")".into()),
        ],
    ]));
    if !c.workloads.is_empty() {
        doc.push(Block::Table {
            header: [
                "workload",
                "description",
                "loadgen arguments",
                "share of capacity",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, false, false, true],
            rows: c
                .workloads
                .iter()
                .map(|w| {
                    vec![
                        text(&w.name),
                        text(&w.description),
                        vec![Inline::Code(w.loadgen_args.join(" "))],
                        text(w.capacity_share.map_or("closed loop".into(), fmt_share)),
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
