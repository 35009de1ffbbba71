#!/usr/bin/env bash
# loadgen against the tools people trust, on the same nginx, in one run:
#   keep-alive:  loadgen -t1 -c64          vs  wrk -t1 -c64
#   close:       loadgen --mode close -c32 vs  ab -c32
# Pairs alternate (A B A B ...) and the median of PAIRS pairs is reported.
# nginx (1 worker) is pinned to CPU 0 and the generator to CPU 1 when the
# machine has two CPUs or more.
#
# Usage: scripts/loadgen-vs-peers.sh [PAIRS] [SECONDS]    (defaults: 5 pairs, 5 s)
set -euo pipefail
PAIRS=${1:-5}
SECS=${2:-5}
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v ab >/dev/null || need+=(apache2-utils)
command -v jq >/dev/null || need+=(jq)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p loadgen
LOADGEN=$PWD/target/release/loadgen

work=$(mktemp -d)
nginx_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then SRV_CPU="taskset -c 0"; GEN_CPU="taskset -c 1"; AFF="worker_cpu_affinity 01;"; else SRV_CPU=""; GEN_CPU=""; AFF=""; fi
cat > "$work/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
$AFF
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work;
  proxy_temp_path $work;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { add_header X-Worker \$pid; return 200 "ok"; }
  }
}
CONF
$SRV_CPU nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)

# Each prints "REQ_PER_S CPU_US_PER_REQUEST" (the generator's user+system CPU
# time, from GNU time, over the requests it completed). No warm-up for any.
timed() { /usr/bin/time -o "$work/time" -f "%U %S" "$@"; }
cpu_us_per() { awk -v n="$1" '{printf "%.2f", ($1+$2)*1e6/n}' "$work/time"; }
lg_keepalive() {
  timed $GEN_CPU "$LOADGEN" --target 127.0.0.1:$port -t 1 -c 64 -d ${SECS}s --quiet --json "$work/lg.json"
  echo "$(jq -r .throughput_rps "$work/lg.json") $(cpu_us_per "$(jq -r .ok "$work/lg.json")")"
}
wrk_keepalive() {
  timed $GEN_CPU wrk -t1 -c64 -d${SECS}s "http://127.0.0.1:$port/" > "$work/wrk.out"
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") $(cpu_us_per "$(awk '/requests in/ {print $1}' "$work/wrk.out")")"
}
lg_close() {
  timed $GEN_CPU "$LOADGEN" --target 127.0.0.1:$port --mode close -t 1 -c 32 -d ${SECS}s --quiet --json "$work/lg.json"
  echo "$(jq -r .throughput_rps "$work/lg.json") $(cpu_us_per "$(jq -r .ok "$work/lg.json")")"
}
ab_close() {
  timed $GEN_CPU ab -q -c 32 -t $SECS -n 100000000 "http://127.0.0.1:$port/" > "$work/ab.out" 2>&1
  echo "$(awk '/Requests per second/ {print $4}' "$work/ab.out") $(cpu_us_per "$(awk '/Complete requests/ {print $3}' "$work/ab.out")")"
}
ticks() { echo "$(awk '{print $14+$15}' "/proc/$nginx_worker/stat") $(date +%s%N)"; }
# measure FN: prints FN's output and the nginx worker's busy percent meanwhile.
measure() {
  local t0 t1 out
  t0=$(ticks); out=$($1); t1=$(ticks)
  echo "$out $(echo "$t0 $t1" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($3-$1)/hz/(($4-$2)/1e9)*100}')"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "nginx $(nginx -v 2>&1 | cut -d/ -f2), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), ab $(ab -V | head -1 | awk '{print $5}'), loadgen $(git rev-parse --short HEAD)"
echo "pairs: $PAIRS, $SECS s each, nginx on CPU 0, generator on CPU 1"
: > "$work/ka"; : > "$work/cl"
run_pair() { # $1 $2: the two functions; alternate which goes first
  local first second
  if [ $(($3 % 2)) -eq 1 ]; then first=$(measure "$1"); second=$(measure "$2"); else second=$(measure "$2"); first=$(measure "$1"); fi
  read -r r1 c1 b1 <<<"$first"; read -r r2 c2 b2 <<<"$second"
  echo "$r1 $c1 $r2 $c2 $b1 $b2"
}
for i in $(seq "$PAIRS"); do
  read -r a acpu b bcpu abusy bbusy <<<"$(run_pair lg_keepalive wrk_keepalive "$i")"
  echo "$a $b $acpu $bcpu" >> "$work/ka"
  echo "keep-alive pair $i: loadgen $a req/s ($acpu us CPU/req, nginx ${abusy}% busy)  wrk $b req/s ($bcpu us CPU/req, nginx ${bbusy}% busy)"
  read -r a acpu b bcpu abusy bbusy <<<"$(run_pair lg_close ab_close "$i")"
  echo "$a $b $acpu $bcpu" >> "$work/cl"
  echo "close      pair $i: loadgen $a req/s ($acpu us CPU/req, nginx ${abusy}% busy)  ab $b req/s ($bcpu us CPU/req, nginx ${bbusy}% busy)"
done
col() { cut -d' ' -f"$2" "$1" | median; }
ratio() { awk -v i="$2" -v j="$3" '{printf "%.3f\n", $i/$j}' "$1" | median; }
range() { cut -d' ' -f"$2" "$1" | sort -g | sed -n '1p;$p' | xargs printf '%.0f..%.0f'; }
printf 'keep-alive: loadgen %.0f req/s (%s), wrk %.0f req/s (%s); median pair ratio %.2fx (bar 1.0x, goal 1.1x); CPU per request loadgen %.2f us, wrk %.2f us\n' \
  "$(col "$work/ka" 1)" "$(range "$work/ka" 1)" "$(col "$work/ka" 2)" "$(range "$work/ka" 2)" "$(ratio "$work/ka" 1 2)" "$(col "$work/ka" 3)" "$(col "$work/ka" 4)"
printf 'close:      loadgen %.0f req/s (%s), ab %.0f req/s (%s); median pair ratio %.2fx (bar 1.5x); CPU per request loadgen %.2f us, ab %.2f us\n' \
  "$(col "$work/cl" 1)" "$(range "$work/cl" 1)" "$(col "$work/cl" 2)" "$(range "$work/cl" 2)" "$(ratio "$work/cl" 1 2)" "$(col "$work/cl" 3)" "$(col "$work/cl" 4)"
