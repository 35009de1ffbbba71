//! The catalogue of target names: the lab's strategies, the reference
//! servers, the `+migrate` variants, and which strategy each reference shares
//! its mechanism with. The command line, the plan, the analysis, the report
//! and the tests all take the names from here.

/// Every lab-server strategy, in report order.
pub const STRATEGIES: &[&str] = &[
    "master-pass",
    "master-pass:reroute",
    "master-pass:rotate",
    "master-pass:least-conn",
    "master-pass:pipelined",
    "shared:prefork",
    "shared:blocking-thread",
    "shared:epoll",
    "shared:epoll-exclusive",
    "shared:epoll-exclusive-raw",
    "shared:accept-mutex",
    "reuseport",
    "reuseport:worker-owned",
    "reuseport:cbpf-cpu",
    "reuseport:ebpf-least-loaded",
];

/// Former names still taken on the command line, and the name each stands
/// for now (`shared:blocking` was renamed when classic pre-fork,
/// `shared:prefork`, came in: it is an acceptor thread beside an event loop,
/// not one connection per process). Sessions recorded before keep the old
/// name in their files.
pub const ALIASES: &[(&str, &str)] = &[("shared:blocking", "shared:blocking-thread")];

/// The current name of a target named by the user: an alias is replaced,
/// keeping its `+migrate` suffix and its label (`shared:blocking@b` ->
/// `shared:blocking-thread@b`); any other name is returned as it is.
pub fn canonical(name: &str) -> String {
    let (base, label) = match name.split_once(LABEL_SEP) {
        Some((b, l)) => (b, Some(l)),
        None => (name, None),
    };
    let (stem, suffix) = match base.strip_suffix(MIGRATE_SUFFIX) {
        Some(s) => (s, MIGRATE_SUFFIX),
        None => (base, ""),
    };
    let stem = ALIASES
        .iter()
        .find(|(old, _)| *old == stem)
        .map_or(stem, |(_, new)| new);
    match label {
        Some(l) => format!("{stem}{suffix}{LABEL_SEP}{l}"),
        None => format!("{stem}{suffix}"),
    }
}

/// Reference servers, by the name `--strategies` takes.
pub const REFERENCES: &[&str] = &[
    "nginx:reuseport",
    "nginx:epoll-exclusive",
    "nginx:accept-mutex",
    "apache:prefork",
    "node:rr",
    "node:none",
];

/// Suffix of a target run with `net.ipv4.tcp_migrate_req=1`: when one
/// listener of a SO_REUSEPORT group closes (its worker exits or retires),
/// the kernel moves the connections queued on it to another listener of the
/// group instead of resetting them (Linux 5.14+). Without the suffix a
/// reuseport target runs with the setting at 0.
pub const MIGRATE_SUFFIX: &str = "+migrate";

/// The targets that take [`MIGRATE_SUFFIX`]: those with a SO_REUSEPORT group.
/// (`reuseport` and `nginx:reuseport` never close a listener while they run:
/// their masters keep every worker's socket, so the setting changes nothing
/// for them; the worker-owned ones are where it matters.)
pub const MIGRATE_VARIANTS: &[&str] = &[
    "reuseport+migrate",
    "reuseport:worker-owned+migrate",
    "reuseport:cbpf-cpu+migrate",
    "nginx:reuseport+migrate",
];

/// Separates a target from a label of the user's: `reuseport@b` runs
/// exactly what `reuseport` runs, as a cell of its own (an A/A check runs
/// one target under two labels; a finding between them is a false one).
pub const LABEL_SEP: char = '@';

/// The target name without its label (`reuseport@b` -> `reuseport`).
pub fn unlabelled(target: &str) -> &str {
    target.split_once(LABEL_SEP).map_or(target, |(t, _)| t)
}

/// Whether `target` runs with `net.ipv4.tcp_migrate_req=1`.
pub fn migrate_req(target: &str) -> bool {
    unlabelled(target).ends_with(MIGRATE_SUFFIX)
}

/// The lab strategy each reference shares its mechanism with (for the
/// side-by-side comparison in the report).
pub const TWINS: &[(&str, &str)] = &[
    ("node:rr", "master-pass"),
    ("node:none", "shared:epoll"),
    ("nginx:epoll-exclusive", "shared:epoll-exclusive"),
    ("nginx:accept-mutex", "shared:accept-mutex"),
    ("nginx:reuseport", "reuseport"),
    ("apache:prefork", "shared:prefork"),
];

/// The lab strategy a reference shares its mechanism with; a labelled
/// reference (`node:rr@b`) is compared with the same label's twin if one
/// ran, else with the bare twin (the caller looks both up).
pub fn twin_of(target: &str) -> Option<String> {
    let (base, label) = match target.split_once(LABEL_SEP) {
        Some((b, l)) => (b, Some(l)),
        None => (target, None),
    };
    let ours = TWINS.iter().find(|(t, _)| *t == base)?.1;
    Some(match label {
        Some(l) => format!("{ours}{LABEL_SEP}{l}"),
        None => ours.to_string(),
    })
}

/// The targets of the default bench: one per mechanism and the variants
/// real servers use (master-pass as Node's round-robin, the four ways of
/// sharing one listener: classic pre-fork as Apache, epoll as Node's
/// SCHED_NONE, EPOLLEXCLUSIVE and the accept mutex as nginx; reuseport with
/// master-owned listeners as nginx and with worker-owned ones as Go), and
/// the references with a twin among them
/// (`reuseport:worker-owned+migrate` runs the fault scenarios only). The
/// rest (master-pass's other schedulers, `shared:blocking-thread`, the raw
/// EPOLLEXCLUSIVE, the cBPF reuseport, `reuseport+migrate`, node:none,
/// nginx's accept mutex) runs with `--full`. Fewer cells with longer,
/// steadier windows and enough rounds for an interval: see
/// `harness/BENCH.md` for the time budget.
pub const DEFAULT_TARGETS: &[&str] = &[
    "master-pass",
    "shared:prefork",
    "shared:epoll",
    "shared:epoll-exclusive",
    "shared:accept-mutex",
    "reuseport",
    "reuseport:worker-owned",
    "reuseport:worker-owned+migrate",
    "nginx:reuseport",
    "nginx:epoll-exclusive",
    "apache:prefork",
    "node:rr",
];

/// The targets a default bench runs the fault scenarios on: one of each
/// mechanism (the variants that only change master-pass's scheduling or
/// reuseport's steering, plain epoll and the accept mutex, which wake the
/// takers of the same shared queue differently, behave like their base under
/// these faults; EPOLLEXCLUSIVE is nginx's default), reuseport both ways
/// (master-owned listeners, which outlive a worker, and worker-owned ones,
/// which die with it, with `tcp_migrate_req` off and on), and nginx's
/// reuseport mode beside ours. Any target named with `--strategies` runs
/// them too. (The list is what fits the default bench in 10 minutes on 2
/// cores.)
pub const FAULT_TARGETS: &[&str] = &[
    "master-pass",
    "shared:prefork",
    "shared:epoll-exclusive",
    "reuseport",
    "reuseport:worker-owned",
    "reuseport:worker-owned+migrate",
    "nginx:reuseport",
];

/// The strategy family of a target name (`master-pass:rotate` -> `master-pass`,
/// `nginx:reuseport` -> `nginx`).
pub fn family(target: &str) -> String {
    let t = unlabelled(target);
    t.split(':').next().unwrap_or(t).to_string()
}

/// Every target name `--strategies` takes: the strategies, the references,
/// then the `+migrate` variants.
pub fn all_targets() -> impl Iterator<Item = &'static str> {
    STRATEGIES
        .iter()
        .chain(REFERENCES)
        .chain(MIGRATE_VARIANTS)
        .copied()
}

/// Whether `target` names a reference server (nginx, Apache, Node.js), with or
/// without its `+migrate` suffix, rather than a lab strategy; `false` for a
/// name that is not in the catalogue.
pub fn is_reference(target: &str) -> bool {
    let target = unlabelled(target);
    let base = match target.strip_suffix(MIGRATE_SUFFIX) {
        Some(base) if MIGRATE_VARIANTS.contains(&target) => base,
        Some(_) => return false,
        None => target,
    };
    REFERENCES.contains(&base)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_former_name_stands_for_the_current_one_with_its_suffix_and_label() {
        use super::canonical;
        assert_eq!(canonical("shared:blocking"), "shared:blocking-thread");
        assert_eq!(canonical("shared:blocking@b"), "shared:blocking-thread@b");
        assert_eq!(
            canonical("shared:blocking+migrate"),
            "shared:blocking-thread+migrate"
        );
        assert_eq!(canonical("shared:prefork"), "shared:prefork");
        assert_eq!(canonical("reuseport+migrate@x"), "reuseport+migrate@x");
        for (old, new) in super::ALIASES {
            assert!(
                !super::STRATEGIES.contains(old),
                "{old} is no longer a name"
            );
            assert!(super::STRATEGIES.contains(new), "{new} is a strategy");
        }
    }

    use super::*;

    #[test]
    fn families() {
        assert_eq!(family("master-pass:rotate"), "master-pass");
        assert_eq!(family("reuseport"), "reuseport");
    }

    #[test]
    fn references_are_told_from_strategies() {
        assert!(is_reference("nginx:reuseport"));
        assert!(is_reference("nginx:reuseport+migrate"));
        assert!(is_reference("node:rr"));
        assert!(!is_reference("reuseport+migrate"));
        assert!(!is_reference("master-pass"));
        assert!(!is_reference("node:rr+migrate"));
        assert!(!is_reference("nginx"));
        assert_eq!(
            all_targets().count(),
            STRATEGIES.len() + REFERENCES.len() + MIGRATE_VARIANTS.len()
        );
        assert!(MIGRATE_VARIANTS.iter().all(|m| {
            let base = m.strip_suffix(MIGRATE_SUFFIX).unwrap();
            STRATEGIES.contains(&base) || REFERENCES.contains(&base)
        }));
        assert!(FAULT_TARGETS.iter().all(|t| DEFAULT_TARGETS.contains(t)));
        assert_eq!(twin_of("nginx:reuseport").as_deref(), Some("reuseport"));
        assert!(is_reference("node:rr@b"));
        assert!(migrate_req("reuseport+migrate@b"));
        assert_eq!(family("shared:epoll@2"), "shared");
        assert_eq!(twin_of("node:rr@b").as_deref(), Some("master-pass@b"));
        assert_eq!(twin_of("node:rr").as_deref(), Some("master-pass"));
        assert!(DEFAULT_TARGETS
            .iter()
            .all(|t| all_targets().any(|a| a == *t)));
    }
}
