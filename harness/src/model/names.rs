//! The catalogue of target names: the lab's strategies, the reference
//! servers, the `+migrate` variants, and which strategy each reference shares
//! its mechanism with. The command line, the plan, the analysis, the report
//! and the tests all take the names from here.

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

/// Reference servers, by the name `--strategies` takes.
pub const REFERENCES: &[&str] = &[
    "nginx:reuseport",
    "nginx:epoll-exclusive",
    "nginx:accept-mutex",
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
pub const MIGRATE_VARIANTS: &[&str] = &[
    "reuseport+migrate",
    "reuseport:cbpf-cpu+migrate",
    "nginx:reuseport+migrate",
];

/// Whether `target` runs with `net.ipv4.tcp_migrate_req=1`.
pub fn migrate_req(target: &str) -> bool {
    target.ends_with(MIGRATE_SUFFIX)
}

/// The lab strategy each reference shares its mechanism with (for the
/// side-by-side comparison in the report).
pub const TWINS: &[(&str, &str)] = &[
    ("node:rr", "master-pass"),
    ("node:none", "shared:epoll"),
    ("nginx:epoll-exclusive", "shared:epoll-exclusive"),
    ("nginx:accept-mutex", "shared:accept-mutex"),
    ("nginx:reuseport", "reuseport"),
];

/// The targets a default bench runs the fault scenarios on: one of each
/// mechanism (the variants that only change master-pass's scheduling or
/// reuseport's steering, plain epoll and the accept mutex, which wake the
/// takers of the same shared queue differently, behave like their base under
/// these faults; EPOLLEXCLUSIVE is nginx's default), the reuseport
/// group with `tcp_migrate_req` on, and nginx's reuseport mode beside ours.
/// Any target named with `--strategies` runs them too. (The list is what
/// fits the default bench in 10 minutes on 2 cores.)
pub const FAULT_TARGETS: &[&str] = &[
    "master-pass",
    "shared:blocking",
    "shared:epoll-exclusive",
    "reuseport",
    "reuseport+migrate",
    "nginx:reuseport",
];

/// The strategy family of a target name (`master-pass:rotate` -> `master-pass`,
/// `nginx:reuseport` -> `nginx`).
pub fn family(target: &str) -> String {
    target.split(':').next().unwrap_or(target).to_string()
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

/// Whether `target` names a reference server (nginx, Node.js), with or
/// without its `+migrate` suffix, rather than a lab strategy; `false` for a
/// name that is not in the catalogue.
pub fn is_reference(target: &str) -> bool {
    let base = match target.strip_suffix(MIGRATE_SUFFIX) {
        Some(base) if MIGRATE_VARIANTS.contains(&target) => base,
        Some(_) => return false,
        None => target,
    };
    REFERENCES.contains(&base)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(all_targets().count(), 9 + 5 + 3);
    }
}
