#!/usr/bin/env bash
# The SSH test rig: three network namespaces acting as hosts (pl-srv, pl-lg1,
# pl-lg2), bridged to the root namespace on 10.77.0.0/24, each running its own
# OpenSSH sshd. See scripts/NETNS.md.
#
#   scripts/netns.sh up       create (or complete) the rig; prints the ssh_config path on stdout
#   scripts/netns.sh down     remove it (no error if it is not there)
#   scripts/netns.sh status   exit 0 if fully up, 1 otherwise
#
# Environment: PL_NETNS_DIR (rig directory, default /run/prefork-lab-netns),
# NETEM_DELAY (e.g. 1ms: netem delay on each namespace's interface; `up`
# without it removes a delay an earlier `up` added).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

DIR="${PL_NETNS_DIR:-/run/prefork-lab-netns}"
LOCK="${DIR%/}.lock"
BRIDGE=pl-br0
BRIDGE_ADDR=10.77.0.254
SUBNET=10.77.0.0/24
NSES=(pl-srv pl-lg1 pl-lg2)
declare -A ADDR=([pl-srv]=10.77.0.1 [pl-lg1]=10.77.0.2 [pl-lg2]=10.77.0.3)
IFACE=eth0 # the interface inside each namespace
SSHD=/usr/sbin/sshd
INSTALL="apt-get install -y openssh-server openssh-client iproute2"

say() { echo "netns: $*" >&2; }
die() {
  echo "netns: error: $*" >&2
  exit 1
}
# The root-namespace end of a namespace's veth pair: pl-srv -> pl-srv-br.
host_veth() { echo "$1-br"; }
have_ns() { [ -e "/run/netns/$1" ]; }
have_link() { ip link show dev "$1" >/dev/null 2>&1; }

# The pid in NS's pid file when that process is an sshd inside NS; else nothing.
sshd_pid() {
  local ns=$1 pid
  pid=$(cat "$DIR/sshd.$ns.pid" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] || return 0
  [ "$(ip netns identify "$pid" 2>/dev/null)" = "$ns" ] || return 0
  echo "$pid"
}

# Reads the SSH banner of ADDR:22 from inside namespace FROM (or the root
# namespace when FROM is empty): TCP reachability plus "an sshd answers".
tcp_ssh_ok() {
  local from=$1 addr=$2
  local probe="exec 3<>/dev/tcp/$addr/22 && head -c 4 <&3"
  if [ -n "$from" ]; then
    [ "$(timeout 3 ip netns exec "$from" bash -c "$probe" 2>/dev/null)" = SSH- ]
  else
    [ "$(timeout 3 bash -c "$probe" 2>/dev/null)" = SSH- ]
  fi
}

ssh_ok() { timeout 10 ssh -F "$DIR/ssh_config" "$1" true </dev/null >/dev/null 2>&1; }

lock() {
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  flock -w 120 9 || die "another scripts/netns.sh holds $LOCK for over 120 s"
}

check_tools() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, sshd on port 22)"
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(ip)
  command -v tc >/dev/null 2>&1 || missing+=(tc)
  [ -x "$SSHD" ] || missing+=("$SSHD")
  command -v ssh >/dev/null 2>&1 || missing+=(ssh)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(ssh-keygen)
  command -v flock >/dev/null 2>&1 || die "flock missing: apt-get install -y util-linux"
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: $INSTALL"
  ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here (needs CAP_SYS_ADMIN and a kernel with network namespaces)"
}

# ---------------------------------------------------------------- network

net_up() {
  # The subnet is the rig's: refuse to shadow someone else's route.
  local other
  other=$(ip -4 route show "$SUBNET" | grep -v "dev $BRIDGE " || true)
  [ -z "$other" ] || die "$SUBNET is already routed elsewhere ($other); the rig needs it"

  if ! have_link "$BRIDGE"; then
    ip link add "$BRIDGE" type bridge stp_state 0 forward_delay 0
  fi
  ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  local ns hv
  for ns in "${NSES[@]}"; do
    hv=$(host_veth "$ns")
    have_ns "$ns" || ip netns add "$ns"
    if ! have_link "$hv"; then
      # A half-made pair from an interrupted run: drop the namespace end.
      ip -n "$ns" link del "$IFACE" 2>/dev/null || true
      ip link add "$hv" type veth peer name "$IFACE" netns "$ns"
    fi
    ip link set "$hv" master "$BRIDGE"
    ip link set "$hv" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "${ADDR[$ns]}/24" dev "$IFACE"
    ip -n "$ns" link set "$IFACE" up
    if [ -n "${NETEM_DELAY:-}" ]; then
      if command -v modprobe >/dev/null 2>&1; then modprobe -q sch_netem 2>/dev/null || true; fi
      # limit: netem's default queue (1000 packets) would drop under load.
      ip netns exec "$ns" tc qdisc replace dev "$IFACE" root netem delay "$NETEM_DELAY" limit 100000 ||
        die "tc netem delay $NETEM_DELAY failed in $ns: a bad NETEM_DELAY (e.g. 1ms), or a kernel without sch_netem (CONFIG_NET_SCH_NETEM; install the kernel's modules, or run without NETEM_DELAY)"
    elif ip netns exec "$ns" tc qdisc show dev "$IFACE" | grep -q netem; then
      ip netns exec "$ns" tc qdisc del dev "$IFACE" root
    fi
  done

  # With br_netfilter loaded and net.bridge.bridge-nf-call-iptables=1, bridged
  # packets go through iptables' FORWARD chain, whose policy may be DROP
  # (Docker sets it so). Accept the rig's bridge explicitly when iptables is here.
  if command -v iptables >/dev/null 2>&1; then
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
      iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
      say "warning: could not add an iptables FORWARD rule for $BRIDGE"
  fi
}

forward_hint() {
  local hint="bridged traffic on $BRIDGE is dropped"
  if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" = 1 ]; then
    hint+=": br_netfilter sends it through the FORWARD chain (net.bridge.bridge-nf-call-iptables=1);"
    hint+=" allow it (iptables -I FORWARD -i $BRIDGE -o $BRIDGE -j ACCEPT, or the nftables equivalent)"
    hint+=" or sysctl -w net.bridge.bridge-nf-call-iptables=0"
  else
    hint+=" (check nftables/ebtables rules)"
  fi
  echo "$hint"
}

# ---------------------------------------------------------------- ssh files

keys_up() {
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  if [ ! -s "$DIR/id_ed25519" ] || [ ! -s "$DIR/id_ed25519.pub" ]; then
    rm -f "$DIR/id_ed25519" "$DIR/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C prefork-lab-netns -f "$DIR/id_ed25519"
  fi
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  chmod 644 "$DIR/authorized_keys"

  local ns key known="" tmp
  for ns in "${NSES[@]}"; do
    key="$DIR/ssh_host_ed25519_key.$ns"
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ]; then
      rm -f "$key" "$key.pub"
      ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$key"
    fi
    known+="$ns,${ADDR[$ns]} $(cut -d' ' -f1,2 "$key.pub")"$'\n'
  done
  tmp=$(mktemp "$DIR/.known_hosts.XXXXXX")
  printf '%s' "$known" >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$DIR/known_hosts"

  tmp=$(mktemp "$DIR/.ssh_config.XXXXXX")
  {
    echo "# prefork-lab netns rig (scripts/netns.sh): ssh -F $DIR/ssh_config pl-srv|pl-lg1|pl-lg2"
    for ns in "${NSES[@]}"; do
      cat <<EOF
Host $ns
    HostName ${ADDR[$ns]}
    Port 22
    User root
    IdentityFile $DIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $DIR/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
EOF
    done
  } >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$DIR/ssh_config"
}

sshd_config() {
  local ns=$1
  cat <<EOF
# prefork-lab netns rig (scripts/netns.sh): the sshd of $ns
ListenAddress ${ADDR[$ns]}:22
HostKey $DIR/ssh_host_ed25519_key.$ns
PidFile $DIR/sshd.$ns.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
AllowTcpForwarding yes
MaxSessions 64
MaxStartups 128:30:256
LoginGraceTime 30
ClientAliveInterval 0
Subsystem sftp internal-sftp
EOF
}

sshd_up() {
  local ns=$1 cfg pid
  cfg="$DIR/sshd_config.$ns"
  pid=$(sshd_pid "$ns")
  if [ -n "$pid" ]; then
    return 0
  fi
  # An sshd of this rig not matching its pid file (e.g. the file was
  # removed): whatever runs inside the rig's own namespace is the rig's.
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  rm -f "$DIR/sshd.$ns.pid"
  sshd_config "$ns" >"$cfg"
  mkdir -p /run/sshd
  chmod 755 /run/sshd
  "$SSHD" -t -f "$cfg" || die "sshd rejects $cfg (see above)"
  # sshd daemonizes (closing stdio), so it outlives this script and does not
  # hold a caller's pipe open. Sessions inherit these limits.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  ip netns exec "$ns" "$SSHD" -f "$cfg" -E "$DIR/sshd.$ns.log" ||
    die "sshd did not start in $ns (see $DIR/sshd.$ns.log)"
  for _ in $(seq 50); do
    pid=$(sshd_pid "$ns")
    [ -n "$pid" ] && tcp_ssh_ok "$ns" "${ADDR[$ns]}" && return 0
    sleep 0.1
  done
  die "sshd in $ns is not answering on ${ADDR[$ns]}:22 after 5 s (see $DIR/sshd.$ns.log)"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  check_tools
  lock
  net_up
  keys_up
  local ns
  for ns in "${NSES[@]}"; do
    sshd_up "$ns"
  done

  # Verify: every host's sshd from the root namespace, and namespace to namespace
  # across the bridge.
  local from to
  for from in "${NSES[@]}"; do
    for to in "${NSES[@]}"; do
      [ "$from" = "$to" ] && continue
      tcp_ssh_ok "$from" "${ADDR[$to]}" || die "$from cannot reach $to (${ADDR[$to]}:22): $(forward_hint)"
    done
  done
  for ns in "${NSES[@]}"; do
    tcp_ssh_ok "" "${ADDR[$ns]}" || die "the root namespace cannot reach $ns (${ADDR[$ns]}:22) over $BRIDGE"
    ssh_ok "$ns" || die "ssh -F $DIR/ssh_config $ns true fails (try it with -v; sshd log: $DIR/sshd.$ns.log)"
  done
  local delay=""
  [ -z "${NETEM_DELAY:-}" ] || delay="; netem delay $NETEM_DELAY on $IFACE in each namespace"
  say "up: pl-srv ${ADDR[pl-srv]}, pl-lg1 ${ADDR[pl-lg1]}, pl-lg2 ${ADDR[pl-lg2]}; root namespace $BRIDGE_ADDR on $BRIDGE$delay"
  say "use: ssh -F $DIR/ssh_config pl-lg1 true"
  echo "$DIR/ssh_config"
}

cmd_down() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  command -v ip >/dev/null 2>&1 || die "ip missing: $INSTALL"
  lock
  local ns pid pids
  for ns in "${NSES[@]}"; do
    pid=$(sshd_pid "$ns")
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  done
  # Whatever still runs inside the namespaces (sessions, a stray lab-server):
  # a namespace deleted with processes in it lives on, with its veth.
  for ns in "${NSES[@]}"; do
    have_ns "$ns" || continue
    for _ in $(seq 50); do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -z "$pids" ] && break
      echo "$pids" | xargs -r kill -9 2>/dev/null || true
      sleep 0.1
    done
    [ -z "$pids" ] || say "warning: processes still in $ns: $pids"
  done
  for ns in "${NSES[@]}"; do
    if have_link "$(host_veth "$ns")"; then ip link del "$(host_veth "$ns")"; fi
    if have_ns "$ns"; then ip netns del "$ns"; fi
  done
  if have_link "$BRIDGE"; then ip link del "$BRIDGE"; fi
  if command -v iptables >/dev/null 2>&1; then
    while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
  fi
  # Runtime files; the keys, known_hosts and ssh_config stay (rewritten by `up`).
  rm -f "$DIR"/sshd.*.pid "$DIR"/sshd.*.log "$DIR"/sshd_config.* "$DIR"/.known_hosts.* "$DIR"/.ssh_config.*
  say "down"
}

cmd_status() {
  local ok=0 ns pid line
  if have_link "$BRIDGE"; then
    say "bridge $BRIDGE: up ($BRIDGE_ADDR)"
  else
    say "bridge $BRIDGE: missing"
    ok=1
  fi
  for ns in "${NSES[@]}"; do
    line="$ns ${ADDR[$ns]}:"
    if ! have_ns "$ns"; then
      say "$line no namespace"
      ok=1
      continue
    fi
    pid=$(sshd_pid "$ns")
    if [ -z "$pid" ]; then
      say "$line namespace, no sshd"
      ok=1
    elif ! [ -r "$DIR/ssh_config" ] || ! ssh_ok "$ns"; then
      say "$line sshd $pid, ssh -F $DIR/ssh_config $ns fails"
      ok=1
    else
      say "$line sshd $pid, ssh ok"
    fi
  done
  if [ $ok -eq 0 ]; then
    say "rig up; ssh_config: $DIR/ssh_config"
  else
    say "rig not (fully) up: scripts/netns.sh up"
  fi
  return $ok
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
  echo "usage: $0 up|down|status (see scripts/NETNS.md)" >&2
  exit 2
  ;;
esac
