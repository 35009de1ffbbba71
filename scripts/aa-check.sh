#!/usr/bin/env bash
# The A/A check: the false-finding rate of the harness's findings. Each
# session runs ONE target under two labels (TARGET and TARGET@b: the same
# server, measured as two cells, interleaved in shuffled rounds) through
# the default bench's steady workloads. Any significant comparison between
# them (a winner that beats the other label, a throughput, p99, CPU or
# context-switch finding that is not "no significant difference", a
# reference-style interval that is significant) is a false finding. The
# check passes when at least 9 sessions of 10 have none.
#
# Usage: scripts/aa-check.sh [SESSIONS] [TARGET]   (defaults: 10, shared:epoll)
# shared:epoll is the hardest case: its keep-alive spread is decided by
# whichever worker wins the first burst, so it differs wildly between rounds.
# Results: results/aa/<session>/ and a line per session on stdout.
set -euo pipefail
SESSIONS=${1:-10}
TARGET=${2:-shared:epoll}
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "aa-check: run as root (the harness changes sysctls and pins CPUs)" >&2; exit 1; }
command -v jq >/dev/null || scripts/apt-install jq
cargo build --release -q --workspace
out=results/aa
mkdir -p "$out"
clean=0
for i in $(seq "$SESSIONS"); do
  target/release/harness bench --strategies "$TARGET,$TARGET@b" \
    --workloads keepalive,recycled,close,open-50 --seed "$i" --results "$out" \
    >/dev/null 2>"$out/stderr-$i.txt"
  s="$out/latest/summary.json"
  # Significant comparisons between the two labels: findings with an
  # interval that are not "no significant difference", and winners that
  # stand alone (tied with nobody).
  findings=$(jq '[.findings[] | select(test("x \\[") and (test("no significant") | not))] | length' "$s")
  winners=$(jq '[.winners[] | (.throughput, .p99, .fairest, .cheapest) | select(. != null) | select((.tied | length) == 1)] | length' "$s")
  steady=$(jq '[.cells[] | .steady_rounds] | add' "$s")
  rounds=$(jq '[.cells[] | .rounds] | add' "$s")
  false_findings=$((findings + winners))
  [ "$false_findings" -eq 0 ] && clean=$((clean + 1))
  echo "session $i: $(readlink -f "$out/latest"): false findings $false_findings (findings $findings, winners $winners); steady rounds $steady of $rounds"
  jq -r '.findings[] | select(test("x \\[") and (test("no significant") | not)) | "    " + .' "$s"
done
echo "A/A: $clean of $SESSIONS sessions without a false finding ($TARGET vs $TARGET@b)"
[ $((clean * 10)) -ge $((SESSIONS * 9)) ]
