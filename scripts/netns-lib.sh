# shellcheck shell=bash
# netns-lib.sh — shell helpers shared by scripts/demo and bench/e2e_rps.sh:
# network namespaces for a client, a director and real servers, nginx real
# servers, lbd started inside the director's namespace, and cleanup.
#
# Source it, set RVS_PREFIX (namespace name prefix, unique per run) and
# RVS_TMP (a scratch directory), call rvs_cleanup from an EXIT trap.
#
# Topology (addresses as in tests/e2e.rs):
#
#   client ext0 10.0.0.2 ── ext [director] int ── br0 (switch) ─┬─ rs1 eth0 192.168.10.1
#                     10.0.0.254        192.168.10.254         └─ rs2 eth0 192.168.10.2
#
# The director is lbd (TAP: lbd creates ext0/int0 and the kernel sides are
# moved to the client and the switch; AF_PACKET: veth pairs that lbd binds
# to) or, for reference measurements, the kernel itself (veth pairs with
# addresses, ip_forward and an nftables DNAT).
#
# Rules: every namespace is named "$RVS_PREFIX<role>"; every background
# process started here is recorded in RVS_PIDS and killed by rvs_cleanup,
# which also kills whatever still runs inside the namespaces and deletes
# them. Every wait has a deadline.

RVS_PIDS=()
RVS_NS=()

CIP=10.0.0.2
DIP_EXT=10.0.0.254
DIP_INT=192.168.10.254

rvs_rip() { echo "192.168.10.$1"; }

# rvs_in ROLE CMD...: run CMD inside namespace ROLE.
rvs_in() {
  local role=$1
  shift
  ip netns exec "${RVS_PREFIX}${role}" "$@"
}

# rvs_ns_add ROLE: a namespace with lo up, IPv6 and rp_filter off.
rvs_ns_add() {
  local name="${RVS_PREFIX}$1"
  ip netns add "$name"
  RVS_NS+=("$name")
  ip -n "$name" link set lo up
  rvs_in "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  rvs_in "$1" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# rvs_cleanup: stop every process and delete every namespace (idempotent).
rvs_cleanup() {
  local pid ns
  for pid in "${RVS_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${RVS_PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  RVS_PIDS=()
  for ns in "${RVS_NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  RVS_NS=()
}

# rvs_switch_and_servers N [OFFLOAD_OFF]: the switch namespace "sw" with
# bridge br0 and N real servers rs1..rsN on it (default route via the
# director). OFFLOAD_OFF=1 turns segmentation offloads off on the veths
# (needed when lbd reads them through AF_PACKET).
rvs_switch_and_servers() {
  local n=$1 offload_off=${2:-0} i
  rvs_ns_add sw
  ip -n "${RVS_PREFIX}sw" link add br0 type bridge
  ip -n "${RVS_PREFIX}sw" link set br0 up
  for i in $(seq "$n"); do
    rvs_ns_add "rs$i"
    ip -n "${RVS_PREFIX}sw" link add "rs${i}p" type veth peer name eth0 netns "${RVS_PREFIX}rs$i"
    ip -n "${RVS_PREFIX}sw" link set "rs${i}p" master br0
    ip -n "${RVS_PREFIX}sw" link set "rs${i}p" up
    ip -n "${RVS_PREFIX}rs$i" addr add "$(rvs_rip "$i")/24" dev eth0
    ip -n "${RVS_PREFIX}rs$i" link set eth0 up
    ip -n "${RVS_PREFIX}rs$i" route add default via "$DIP_INT"
    if [ "$offload_off" = 1 ]; then
      rvs_in "rs$i" ethtool -K eth0 tso off gso off gro off >/dev/null
    fi
  done
}

# rvs_client_addr [OFFLOAD_OFF]: the client's address on its ext0.
rvs_client_addr() {
  ip -n "${RVS_PREFIX}cli" addr add "$CIP/24" dev ext0
  ip -n "${RVS_PREFIX}cli" link set ext0 up
  if [ "${1:-0}" = 1 ]; then
    rvs_in cli ethtool -K ext0 tso off gso off gro off >/dev/null
  fi
}

# rvs_veth_director: veth pairs dir:ext0–cli:ext0 and dir:int0–sw:dir0
# (bridge port), director ends up with offloads off and no address.
rvs_veth_director() {
  ip -n "${RVS_PREFIX}dir" link add ext0 type veth peer name ext0 netns "${RVS_PREFIX}cli"
  ip -n "${RVS_PREFIX}dir" link add int0 type veth peer name dir0 netns "${RVS_PREFIX}sw"
  ip -n "${RVS_PREFIX}sw" link set dir0 master br0
  ip -n "${RVS_PREFIX}sw" link set dir0 up
  local dev
  for dev in ext0 int0; do
    ip -n "${RVS_PREFIX}dir" link set "$dev" up
    rvs_in dir ethtool -K "$dev" tso off gso off gro off >/dev/null
  done
}

# rvs_adopt_taps EXT INT: lbd created TAP devices EXT and INT in "dir";
# move their kernel sides to the client (renamed ext0) and the switch.
rvs_adopt_taps() {
  ip -n "${RVS_PREFIX}dir" link set "$1" netns "${RVS_PREFIX}cli"
  [ "$1" = ext0 ] || ip -n "${RVS_PREFIX}cli" link set "$1" name ext0
  ip -n "${RVS_PREFIX}dir" link set "$2" netns "${RVS_PREFIX}sw"
  ip -n "${RVS_PREFIX}sw" link set "$2" master br0
  ip -n "${RVS_PREFIX}sw" link set "$2" up
}

# rvs_start_lbd LBD LBCTL CONFIG: lbd inside "dir" with a socket in
# RVS_TMP; waits until it answers. Sets LBCTL_SOCKET for rvs_lbctl.
rvs_start_lbd() {
  local lbd=$1 lbctl=$2 config=$3
  export LBCTL_SOCKET="$RVS_TMP/lbd.sock"
  ip netns exec "${RVS_PREFIX}dir" "$lbd" -c "$config" --socket "$LBCTL_SOCKET" \
    >"$RVS_TMP/lbd.log" 2>&1 &
  RVS_PIDS+=($!)
  local lbd_pid=$!
  for _ in $(seq 200); do
    if [ -S "$LBCTL_SOCKET" ] && "$lbctl" -Ln >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$lbd_pid" 2>/dev/null; then
      echo "lbd exited:" >&2
      cat "$RVS_TMP/lbd.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "lbd did not answer on $LBCTL_SOCKET:" >&2
  cat "$RVS_TMP/lbd.log" >&2
  return 1
}

# rvs_start_nginx I PAGE: nginx on rs I (port 80, all addresses), its own
# configuration in RVS_TMP, serving PAGE at /.
rvs_start_nginx() {
  local i=$1 page=$2 dir="$RVS_TMP/rs$1"
  mkdir -p "$dir/www" "$dir/tmp"
  printf '%s\n' "$page" >"$dir/www/index.html"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/tmp;
    keepalive_requests 100000;
    server {
        listen 80 backlog=4096;
        root $dir/www;
    }
}
EOF
  ip netns exec "${RVS_PREFIX}rs$i" nginx -e "$dir/error.log" -c "$dir/nginx.conf" \
    >"$dir/nginx.out" 2>&1 &
  RVS_PIDS+=($!)
  local rip
  rip=$(rvs_rip "$i")
  for _ in $(seq 100); do
    if rvs_in "rs$i" curl -s --max-time 1 -o /dev/null "http://$rip/"; then
      return 0
    fi
    sleep 0.1
  done
  echo "nginx on rs$i did not start:" >&2
  cat "$dir/error.log" "$dir/nginx.out" >&2
  return 1
}
