#!/usr/bin/env bash
# loadgen against the tools people trust, on the same nginx, in one run:
#   keep-alive:  loadgen -t1 -c64          vs  wrk -t1 -c64
#   close:       loadgen --mode close -c32 vs  ab -c32
# each in two set-ups:
#   pinned:    nginx with 1 worker on CPU 0, the generator on CPU 1
#   unpinned:  nginx with 2 reuseport workers, nothing pinned (as people run it)
# (on a 1-CPU machine only the unpinned one, with 1 worker). Pairs alternate
# which tool goes first, and the median of PAIRS per-pair ratios is reported.
# Then a short separate run of each tool under `strace -c -f` counts its
# syscalls per request.
#
# Usage: scripts/loadgen-vs-peers.sh [PAIRS] [SECONDS]    (defaults: 5 pairs, 5 s)
#        LOADGEN=path/to/loadgen scripts/loadgen-vs-peers.sh ...  (another build)
set -euo pipefail
PAIRS=${1:-5}
SECS=${2:-5}
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v ab >/dev/null || need+=(apache2-utils)
command -v jq >/dev/null || need+=(jq)
command -v strace >/dev/null || need+=(strace)
[ -x /usr/bin/time ] || need+=(time)
[ ${#need[@]} -eq 0 ] || scripts/apt-install "${need[@]}"
# LOADGEN=/path/to/loadgen measures that build instead of this tree's.
if [ -z "${LOADGEN:-}" ]; then
  cargo build --release -q -p loadgen
  LOADGEN=$PWD/target/release/loadgen
fi

work=$(mktemp -d)
nginx_pids=()
cleanup() {
  for p in "${nginx_pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ncpu=$(nproc)

# start_nginx NAME WORKERS PIN(yes/no): starts nginx, sets PORT_<NAME> and
# WORKERS_<NAME> (the worker pids).
start_nginx() {
  local name=$1 workers=$2 pin=$3 port dir aff="" reuse="" pre=()
  port=$(free_port)
  dir=$work/$name
  mkdir -p "$dir"
  if [ "$pin" = yes ]; then aff="worker_cpu_affinity 01;"; pre=(taskset -c 0); fi
  [ "$workers" -gt 1 ] && reuse=reuseport
  cat > "$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $workers;
$aff
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir;
  proxy_temp_path $dir;
  server {
    listen 127.0.0.1:$port $reuse backlog=4096;
    location / { add_header X-Worker \$pid; return 200 "ok"; }
  }
}
CONF
  "${pre[@]}" nginx -c "$dir/nginx.conf" -p "$dir" &
  nginx_pids+=($!)
  local master=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
  for _ in $(seq 50); do [ "$(pgrep -P "$master" | wc -l)" -ge "$workers" ] && break; sleep 0.1; done
  printf -v "PORT_$name" '%s' "$port"
  printf -v "WORKERS_$name" '%s' "$(pgrep -P "$master" | xargs)"
}

if [ "$ncpu" -ge 2 ]; then
  SETUPS=(pinned unpinned)
  start_nginx pinned 1 yes
  start_nginx unpinned 2 no
else
  SETUPS=(unpinned)
  start_nginx unpinned 1 no
fi

# Each prints "REQ_PER_S CPU_US_PER_REQUEST" (the generator's user+system CPU
# time, from GNU time, over the requests it completed). No warm-up for any.
# $PORT and $GEN (the generator's pinning, or nothing) come from the set-up.
timed() { /usr/bin/time -o "$work/time" -f "%U %S" "$@"; }
cpu_us_per() { awk -v n="$1" '{printf "%.2f", ($1+$2)*1e6/n}' "$work/time"; }
lg_keepalive() {
  timed $GEN "$LOADGEN" --target 127.0.0.1:$PORT -t 1 -c 64 -d ${SECS}s --quiet --json "$work/lg.json"
  echo "$(jq -r .throughput_rps "$work/lg.json") $(cpu_us_per "$(jq -r .ok "$work/lg.json")")"
}
wrk_keepalive() {
  timed $GEN wrk -t1 -c64 -d${SECS}s "http://127.0.0.1:$PORT/" > "$work/wrk.out"
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") $(cpu_us_per "$(awk '/requests in/ {print $1}' "$work/wrk.out")")"
}
lg_close() {
  timed $GEN "$LOADGEN" --target 127.0.0.1:$PORT --mode close -t 1 -c 32 -d ${SECS}s --quiet --json "$work/lg.json"
  echo "$(jq -r .throughput_rps "$work/lg.json") $(cpu_us_per "$(jq -r .ok "$work/lg.json")")"
}
ab_close() {
  timed $GEN ab -q -c 32 -t $SECS -n 100000000 "http://127.0.0.1:$PORT/" > "$work/ab.out" 2>&1
  echo "$(awk '/Requests per second/ {print $4}' "$work/ab.out") $(cpu_us_per "$(awk '/Complete requests/ {print $3}' "$work/ab.out")")"
}
# The nginx workers' CPU ticks (all of them) and the time.
ticks() {
  local t=0 w
  for w in $WORKERS; do t=$((t + $(awk '{print $14+$15}' "/proc/$w/stat"))); done
  echo "$t $(date +%s%N)"
}
# measure FN: prints FN's output and the nginx workers' busy percent (of one
# CPU) meanwhile.
measure() {
  local t0 t1 out
  t0=$(ticks); out=$($1); t1=$(ticks)
  echo "$out $(echo "$t0 $t1" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($3-$1)/hz/(($4-$2)/1e9)*100}')"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $ncpu CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "nginx $(nginx -v 2>&1 | cut -d/ -f2), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), ab $(ab -V | head -1 | awk '{print $5}'), loadgen $LOADGEN (tree at $(git rev-parse --short HEAD))"
echo "pairs: $PAIRS, $SECS s each; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
run_pair() { # $1 $2: the two functions; $3: pair number, to alternate which goes first
  local first second
  if [ $(($3 % 2)) -eq 1 ]; then first=$(measure "$1"); second=$(measure "$2"); else second=$(measure "$2"); first=$(measure "$1"); fi
  read -r r1 c1 b1 <<<"$first"; read -r r2 c2 b2 <<<"$second"
  echo "$r1 $c1 $r2 $c2 $b1 $b2"
}
use_setup() {
  local p="PORT_$1" w="WORKERS_$1"
  PORT=${!p}; WORKERS=${!w}
  if [ "$1" = pinned ]; then GEN="taskset -c 1"; else GEN=""; fi
}
for s in "${SETUPS[@]}"; do : > "$work/ka-$s"; : > "$work/cl-$s"; done
for i in $(seq "$PAIRS"); do
  for s in "${SETUPS[@]}"; do
    use_setup "$s"
    read -r a acpu b bcpu abusy bbusy <<<"$(run_pair lg_keepalive wrk_keepalive "$i")"
    echo "$a $b $acpu $bcpu" >> "$work/ka-$s"
    printf '%-8s keep-alive pair %d: loadgen %s req/s (%s us CPU/req, nginx %s%% busy)  wrk %s req/s (%s us CPU/req, nginx %s%% busy)\n' \
      "$s" "$i" "$a" "$acpu" "$abusy" "$b" "$bcpu" "$bbusy"
    read -r a acpu b bcpu abusy bbusy <<<"$(run_pair lg_close ab_close "$i")"
    echo "$a $b $acpu $bcpu" >> "$work/cl-$s"
    printf '%-8s close      pair %d: loadgen %s req/s (%s us CPU/req, nginx %s%% busy)  ab %s req/s (%s us CPU/req, nginx %s%% busy)\n' \
      "$s" "$i" "$a" "$acpu" "$abusy" "$b" "$bcpu" "$bbusy"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
col() { cut -d' ' -f"$2" "$1" | median; }
ratio() { awk -v i="$2" -v j="$3" '{printf "%.3f\n", $i/$j}' "$1" | median; }
range() { cut -d' ' -f"$2" "$1" | sort -g | sed -n '1p;$p' | xargs printf '%.0f..%.0f'; }
ratios() { awk -v i="$2" -v j="$3" '{printf "%.2f\n", $i/$j}' "$1" | sort -g | sed -n '1p;$p' | xargs printf '%s..%s'; }
for s in "${SETUPS[@]}"; do
  printf '%-8s keep-alive: loadgen %.0f req/s (%s), wrk %.0f req/s (%s); median pair ratio %.2fx (pairs %s; goal 1.1x); CPU per request loadgen %.2f us, wrk %.2f us\n' \
    "$s" "$(col "$work/ka-$s" 1)" "$(range "$work/ka-$s" 1)" "$(col "$work/ka-$s" 2)" "$(range "$work/ka-$s" 2)" "$(ratio "$work/ka-$s" 1 2)" "$(ratios "$work/ka-$s" 1 2)" "$(col "$work/ka-$s" 3)" "$(col "$work/ka-$s" 4)"
  printf '%-8s close:      loadgen %.0f req/s (%s), ab %.0f req/s (%s); median pair ratio %.2fx (pairs %s; goal 1.1x); CPU per request loadgen %.2f us, ab %.2f us\n' \
    "$s" "$(col "$work/cl-$s" 1)" "$(range "$work/cl-$s" 1)" "$(col "$work/cl-$s" 2)" "$(range "$work/cl-$s" 2)" "$(ratio "$work/cl-$s" 1 2)" "$(ratios "$work/cl-$s" 1 2)" "$(col "$work/cl-$s" 3)" "$(col "$work/cl-$s" 4)"
done

# Syscalls per request: one short run of each tool under `strace -c -f`
# (strace slows every tool down; only the counts mean something), on the
# unpinned nginx. Prints the calls made at least 0.01 times per request;
# `other` is the rest, mostly start-up and the result written at the end.
use_setup unpinned
ST=2
per_request() { # $1: strace -c output, $2: requests
  awk -v n="$2" '
    $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { calls = $4; name = $NF; total += calls
      if (calls / n >= 0.01) { line = line sprintf(" %s %.2f", name, calls / n); shown += calls } }
    END { printf "%.2f per request:%s, other %.2f\n", total / n, line, (total - shown) / n }' "$1"
}
strace -c -f -o "$work/st" "$LOADGEN" --target 127.0.0.1:$PORT -t 1 -c 64 -d ${ST}s --quiet --json "$work/lg.json"
echo "syscalls, keep-alive, loadgen: $(per_request "$work/st" "$(jq -r '.ok + .warmup.ok' "$work/lg.json")")"
strace -c -f -o "$work/st" wrk -t1 -c64 -d${ST}s "http://127.0.0.1:$PORT/" > "$work/wrk.out"
echo "syscalls, keep-alive, wrk:     $(per_request "$work/st" "$(awk '/requests in/ {print $1}' "$work/wrk.out")")"
strace -c -f -o "$work/st" "$LOADGEN" --target 127.0.0.1:$PORT --mode close -t 1 -c 32 -d ${ST}s --quiet --json "$work/lg.json"
echo "syscalls, close, loadgen:      $(per_request "$work/st" "$(jq -r '.ok + .warmup.ok' "$work/lg.json")")"
strace -c -f -o "$work/st" ab -q -c 32 -t $ST -n 100000000 "http://127.0.0.1:$PORT/" > "$work/ab.out" 2>&1
echo "syscalls, close, ab:           $(per_request "$work/st" "$(awk '/Complete requests/ {print $3}' "$work/ab.out")")"
echo "(loadgen's \`write\` is its JSON result, written after the run)"
