#!/usr/bin/env python3
"""scripts/twins-equivalence.py SESSION_DIR: does each twin split connections
among its workers as its reference server does, within the session's noise?

Reads SESSION_DIR/summary.json (written by `harness bench`) and, for every
(workload, workers) cell where a reference and its lab twin both ran, prints
Jain's index of connections of each (median over rounds and range) and the
twin/reference ratio paired round by round over the rounds steady in both.

A pair is called EQUIVALENT when every paired ratio lies within 0.8-1.25:
the 25% minimum effect the harness uses for Jain's index, which its A/A
check set (the same target under two names differed by less in 10 of 10
sessions; harness/BENCH.md). Otherwise it is "not shown equivalent", which
is not "shown different": with 3-5 rounds a burst spread decided by a race
can swing a round either way. Fewer than 3 steady pairs: "too few rounds".

The twin pairs are the harness's (harness/src/model/names.rs, TWINS); a
reference without its twin in the session is left out.
"""
import json
import statistics
import sys

TWINS = {
    "node:rr": "master-pass",
    "node:none": "shared:epoll",
    "nginx:epoll-exclusive": "shared:epoll-exclusive",
    "nginx:accept-mutex": "shared:accept-mutex",
    "nginx:reuseport": "reuseport",
    "apache:prefork": "shared:prefork",
}
LOW, HIGH = 0.8, 1.25
MIN_PAIRS = 3


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    path = f"{sys.argv[1]}/summary.json"
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        print(f"twins-equivalence: cannot read {path}: {e}", file=sys.stderr)
        return 1
    cells = {(c["workload"], c["workers"], c["target"]): c for c in summary["cells"]}
    keys = sorted({(w, n) for (w, n, _) in cells})
    found = 0
    for workload, workers in keys:
        for theirs, ours in TWINS.items():
            a = cells.get((workload, workers, ours))
            b = cells.get((workload, workers, theirs))
            if a is None or b is None:
                continue
            found += 1
            print(line(workload, workers, ours, theirs, a, b))
    if found == 0:
        print("twins-equivalence: no twin ran beside its reference in this session", file=sys.stderr)
        return 1
    return 0


def jain(cell):
    xs = [r["jain_connections"] for r in cell["per_round"]]
    return statistics.median(xs), min(xs), max(xs)


def line(workload, workers, ours, theirs, a, b):
    ra = {r["round"]: r for r in a["per_round"] if r["steady"]}
    rb = {r["round"]: r for r in b["per_round"] if r["steady"]}
    ratios = [
        ra[k]["jain_connections"] / rb[k]["jain_connections"]
        for k in sorted(ra.keys() & rb.keys())
        if rb[k]["jain_connections"] > 0
    ]
    ja, jb = jain(a), jain(b)
    head = (
        f"{workload:<9} {workers} {ours:<22} vs {theirs:<22} "
        f"jain {ja[0]:.3f} [{ja[1]:.2f}-{ja[2]:.2f}] vs {jb[0]:.3f} [{jb[1]:.2f}-{jb[2]:.2f}]"
    )
    if a.get("starved_connections", 0) or b.get("starved_connections", 0):
        head += f"  (connections starved: ours {a.get('starved_connections', 0)}, theirs {b.get('starved_connections', 0)})"
    if len(ratios) < MIN_PAIRS:
        return f"{head}  n={len(ratios)} too few rounds steady in both"
    verdict = (
        f"EQUIVALENT (within {LOW}-{HIGH})"
        if all(LOW <= r <= HIGH for r in ratios)
        else "not shown equivalent"
    )
    return (
        f"{head}  ratio {statistics.median(ratios):.2f} "
        f"[{min(ratios):.2f}-{max(ratios):.2f}] n={len(ratios)} {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
