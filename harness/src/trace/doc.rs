//! `harness under-the-hood`: traces every twin pair, Node first, one
//! folder per target, and writes `docs/under-the-hood.md` from those
//! traces. The page answers the question the lab started from ("when
//! Node's cluster master accepts a connection and a worker serves it, who
//! calls accept, how does the descriptor travel, where is it registered?")
//! with Node's own system calls, quoted and explained, then shows the same
//! for every mechanism, who the kernel wakes for one connection, and each
//! twin checked against its server field by field.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::latest::{self, Found};
use super::session::{self, Plan};
use super::{diagram, page, twin_check};
use crate::measure::targets::TargetSpec;
use crate::model::names;

/// Every twin pair, each reference before its twin, Node's round-robin
/// first (it is the question the page answers).
pub const TARGETS: &[&str] = &[
    "node:rr",
    "master-pass",
    "node:none",
    "shared:epoll",
    "nginx:epoll-exclusive",
    "shared:epoll-exclusive",
    "nginx:accept-mutex",
    "shared:accept-mutex",
    "nginx:reuseport",
    "reuseport",
    "apache:prefork",
    "shared:prefork",
];

/// What to trace and where to write.
pub struct DocPlan {
    /// The targets, in the page's order.
    pub targets: Vec<String>,
    /// One folder per target below this.
    pub traces: PathBuf,
    /// The page.
    pub out: PathBuf,
    /// Worker processes.
    pub workers: usize,
    /// Sequential connections.
    pub connections: usize,
    /// The burst.
    pub burst: usize,
}

/// A target's folder name: `node:rr` -> `node-rr`.
pub fn slug(target: &str) -> String {
    target
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Checks every target before anything runs: known, installed.
pub fn check(plan: &DocPlan) -> Result<Vec<TargetSpec>, String> {
    let mut specs = Vec::new();
    let mut missing = Vec::new();
    for t in &plan.targets {
        let spec = TargetSpec::parse(t).ok_or_else(|| {
            format!("unknown target {t:?}: name lab strategies or reference servers (see harness bench --help)")
        })?;
        if let Err(why) = spec.available() {
            missing.push(format!("{t}: {why}"));
        }
        specs.push(spec);
    }
    if !missing.is_empty() {
        return Err(format!(
            "cannot trace {} (scripts/test installs nginx, Apache and Node.js; or pass --targets)",
            missing.join("; ")
        ));
    }
    Ok(specs)
}

/// Traces every target (`specs`, from [`check`]), then writes the page;
/// the page's path.
pub fn run(plan: &DocPlan, specs: Vec<TargetSpec>, stop: &AtomicBool) -> Result<PathBuf, String> {
    let out = outfile::Output::check("--out", &plan.out, outfile::Dash::FileName)
        .map_err(|e| e.to_string())?;
    for spec in specs {
        let name = spec.name();
        eprintln!("tracing {name}");
        session::run(
            &Plan {
                spec,
                workers: plan.workers,
                connections: plan.connections,
                burst: plan.burst,
                results: plan.traces.clone(),
                kernel: true,
                into: Some(plan.traces.join(slug(&name))),
            },
            stop,
        )
        .map_err(|e| format!("{name}: {e}"))?;
    }
    let mut found: Vec<Found> = latest::all(&plan.traces)
        .into_iter()
        .filter(|f| plan.targets.contains(&f.skeleton.target))
        .collect();
    // The page's order is the plan's.
    found.sort_by_key(|f| plan.targets.iter().position(|t| *t == f.skeleton.target));
    let md = markdown(plan, &found);
    out.write(md.as_bytes()).map_err(|e| e.to_string())?;
    Ok(plan.out.clone())
}

/// The path from folder `from` to `to`, both absolute.
fn relative(from: &Path, to: &Path) -> String {
    let a: Vec<_> = from.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); a.len() - common];
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().to_string()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(p))
}

/// Headings one level down, outside code blocks.
fn demote(md: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('#') {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn by_target<'a>(found: &'a [Found], target: &str) -> Option<&'a Found> {
    found.iter().find(|f| f.skeleton.target == target)
}

/// The page.
pub fn markdown(plan: &DocPlan, found: &[Found]) -> String {
    let mut m = String::new();
    let first = found.first().map(|f| &f.skeleton);
    let _ = writeln!(
        m,
        "# Under the hood: what the processes do for one connection\n"
    );
    let _ = writeln!(
        m,
        "Generated by `just under-the-hood` (`harness under-the-hood`, as root: it needs strace, tracefs, and Node.js, nginx and Apache installed as `scripts/test` installs them) from the traces in `{}`; run it again to regenerate this page from fresh traces. Nothing in it is written by hand.\n",
        plan.traces.display()
    );
    if let Some(s) = first {
        let _ = writeln!(
            m,
            "Traced on Linux {} with {}; {} worker processes per target, {} connections sent one at a time, then a burst of {}.\n",
            s.kernel, s.strace, plan.workers, plan.connections, plan.burst
        );
    }
    let _ = writeln!(
        m,
        "Tracing slows every process it watches (strace stops a process at each system call), so nothing here is a timing: only which process makes which call, in which order, with which arguments. Who the kernel woke comes from a second pass without strace, from the scheduler's tracepoints.\n"
    );
    let _ = writeln!(m, "Contents: [Node's cluster, step by step](#node-cluster-round-robin-step-by-step) · [Who the kernel wakes for one connection](#who-the-kernel-wakes-for-one-connection) · [Each twin beside its server](#each-twin-beside-its-server) · [Every target](#every-target)\n");

    node_steps(&mut m, found);
    wakes(&mut m, found);
    twins(&mut m, found);

    let _ = writeln!(m, "## Every target\n");
    let page_dir = absolute(plan.out.parent().unwrap_or(Path::new(".")));
    for f in found {
        let dir = relative(&page_dir, &absolute(&f.dir));
        let body = page::markdown(&f.skeleton, f.herd.as_ref(), None);
        let _ = writeln!(
            m,
            "{}",
            demote(&demote(&body)).replace("](diagram.svg)", &format!("]({dir}/diagram.svg)"))
        );
        let _ = writeln!(m, "Raw traces: [`{dir}/`]({dir}/).\n");
    }
    m
}

/// The life of one connection in Node's primary and the worker that
/// served it, merged in time order, each call quoted and explained.
fn node_steps(m: &mut String, found: &[Found]) {
    let _ = writeln!(m, "## Node cluster, round-robin, step by step\n");
    let Some(f) = by_target(found, "node:rr") else {
        let _ = writeln!(m, "Node's round-robin cluster (node:rr) was not traced.\n");
        return;
    };
    let s = &f.skeleton;
    let _ = writeln!(
        m,
        "The question: when Node's cluster primary accepts a connection and a worker serves it, who calls accept(), how does the descriptor travel, and where is it registered? These are the system calls of the primary and of the worker that served the first connection (client {}), in the order they were made; each line is quoted as strace printed it, with the descriptor numbers strace showed.\n",
        s.connection
    );
    let mut steps: Vec<(&str, &super::skeleton::Call, &[super::skeleton::Call])> = Vec::new();
    for (role, calls) in &s.life {
        for c in calls {
            steps.push((role, c, calls));
        }
    }
    // When each call's effect happened: a wait counts when it returned.
    steps.sort_by_key(|(_, c, _)| c.time_us + c.dur_us);
    let mut n = 0;
    let mut own = 0;
    for (role, c, life) in &steps {
        if !concerns_the_connection(c) {
            own += 1;
            continue;
        }
        n += 1;
        let who = if *role == "master" { "primary" } else { role };
        let _ = writeln!(
            m,
            "{n}. **{who}**: {}\n   ```\n   {}\n   ```",
            page::explain(&s.target, role, c, life),
            c.raw
        );
    }
    let _ = writeln!(
        m,
        "\n{own} other calls of the same processes in between (their own work: files, memory, locks) are left out here; the page of node:rr below lists them all.\n"
    );
    if let Some(h) = &f.herd {
        let woken: Vec<String> = h
            .sequential
            .iter()
            .map(|c| {
                let who = c.woken.join(" and ");
                if who.is_empty() {
                    "nobody".to_string()
                } else {
                    who.replace("master", "the primary")
                }
            })
            .collect();
        let _ = writeln!(
            m,
            "Who the kernel woke when each of the {} connections arrived (scheduler tracepoints, a second pass without strace): {}. The worker is woken later, by the primary's message, not by the connection.\n",
            h.sequential.len(),
            woken.join("; ")
        );
    }
}

/// A call about the connection, the listener, a channel or an epoll
/// instance (not the process's own work).
fn concerns_the_connection(c: &super::skeleton::Call) -> bool {
    diagram::is_mechanism(c)
        || matches!(c.fd.as_deref(), Some("conn" | "listener" | "epoll"))
        || diagram::is_channel(c.fd.as_deref())
}

fn wakes(m: &mut String, found: &[Found]) {
    let _ = writeln!(m, "## Who the kernel wakes for one connection\n");
    let _ = writeln!(m, "From the scheduler's tracepoints (`sched_waking`, `sched_switch`) and the system calls' exits, with no strace attached: for each connection sent alone, how many processes the kernel woke for its arrival, and how many of them found nothing and went back to sleep inside the kernel without a system call returning, which strace cannot show. One woken per arrival is no herd; as many as there are workers is the thundering herd. In the burst, the most processes one arrival woke.\n");
    let _ = writeln!(m, "| target | who accepts | woken per arrival | of them asleep again in the kernel | EAGAIN accepts per conn. (strace) | burst: most woken by one arrival |");
    let _ = writeln!(m, "|---|---|--:|--:|--:|--:|");
    for f in found {
        let s = &f.skeleton;
        let (w, z, b) = f
            .herd
            .as_ref()
            .map_or(("-".into(), "-".into(), "-".into()), |h| {
                (
                    format!("{:.2}", h.woken_per_conn),
                    format!("{:.2}", h.slept_again_per_conn),
                    h.burst_most_woken.to_string(),
                )
            });
        let _ = writeln!(
            m,
            "| {} | {} | {w} | {z} | {:.2} | {b} |",
            s.target,
            s.sequential.who_accepts.join(", "),
            s.sequential.accept_eagain_per_conn
        );
    }
    let _ = writeln!(m);
}

fn twins(m: &mut String, found: &[Found]) {
    let _ = writeln!(m, "## Each twin beside its server\n");
    let _ = writeln!(m, "The same normalised fields of the real server's trace and its lab twin's: the same, a difference the twin documents (with why), or a difference nobody documented. `cargo test -p harness --test trace_twins` makes the same check on fresh traces, so a twin edited away from its server fails CI.\n");
    for (reference, twin) in names::TWINS {
        let (Some(r), Some(t)) = (by_target(found, reference), by_target(found, twin)) else {
            continue;
        };
        let c = twin_check::check(&r.skeleton, &t.skeleton);
        let _ = writeln!(m, "### {twin} beside {reference}\n");
        let _ = writeln!(m, "{}\n", twin_check::render(&c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_its_folder_and_headings_move_down_outside_code() {
        assert_eq!(slug("node:rr"), "node-rr");
        assert_eq!(
            slug("reuseport:worker-owned+migrate"),
            "reuseport-worker-owned-migrate"
        );
        assert_eq!(
            demote("# A\ntext\n```\n# not a heading\n```\n## B\n"),
            "## A\ntext\n```\n# not a heading\n```\n### B\n"
        );
        assert_eq!(
            relative(Path::new("/r/docs"), Path::new("/r/results/x")),
            "../results/x"
        );
        assert_eq!(relative(Path::new("/r"), Path::new("/r/x")), "x");
    }

    #[test]
    fn every_twin_pair_is_traced_reference_first() {
        for (reference, twin) in names::TWINS {
            let r = TARGETS
                .iter()
                .position(|t| t == reference)
                .expect(reference);
            let t = TARGETS.iter().position(|t| t == twin).expect(twin);
            assert!(r < t, "{reference} before {twin}");
        }
        assert_eq!(TARGETS[0], "node:rr");
    }
}
