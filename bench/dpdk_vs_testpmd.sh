#!/usr/bin/env bash
# lbd on DPDK next to dpdk-testpmd's io forwarding (the I/O limit with no
# processing) and its 5tswap forwarding (swaps the MAC, IP and L4 port
# pairs: touches the same headers NAT rewrites, without a table), same
# virtual devices, same forwarding core, one invocation, runs alternating
# (DESIGN.md §8: results are ratios taken in the same run).
#
#   bench/dpdk_vs_testpmd.sh [RUNS]     # RUNS per side, default 5
#
#   PROFILE=callgrind bench/dpdk_vs_testpmd.sh   # instructions per packet
#
# PROFILE=callgrind: no rates; one lbd run under valgrind's callgrind on
# the same devices and configuration, instrumented only from the end of
# the warm-up (WARMUP, default 2 s here 20 s) for SECS (here default 30)
# seconds; prints the instructions per forwarded packet (Ir of the window
# / net_null0's transmitted packets in it) and the costliest functions
# per packet (self, then inclusive), and keeps the profile as $OUT (default
# /tmp/rvs-dpdk-callgrind.out); then the same for dpdk-testpmd in each of
# TESTPMD_MODES (default "5tswap io", TESTPMD_WARMUP s warm-up, default 5)
# next to it, as $OUT-testpmd-MODE (PROFILE_LBD=0: testpmd only). Needs
# valgrind.
#
# BASE_LBD=/path/to/lbd (with BASE_LBCTL, default lbctl beside it): also
# run that build of lbd in every round, so a change is compared with its
# baseline in the same run (copy the baseline's release binaries aside
# first: this script rebuilds target/release).
#
# Input: a capture of established NAT flows, FLOWS flows (default 128) of
# PER_FLOW 60-byte frames (64 on the wire with the FCS): a SYN, then ACKs;
# net_pcap replays it forever (infinite_rx=1), so every pass repeats each
# flow's SYN, which finds the existing connection.
#
#   testpmd: net_pcap0 (rx_pcap=FILE,infinite_rx=1) → io forward → net_null0 (no-rx=1)
#   lbd:     net_pcap0 (same)  → worker: NAT 10.0.0.10:80 rr over 2 servers → net_null0
#
# Both: --no-huge --no-pci, one forwarding core CORE (default 1), 16384
# mbufs with a 256 per-core cache, 1024 RX/TX descriptors, bursts of 32.
# testpmd: -l MAIN_CORE,CORE (main lcore MAIN_CORE, default 0, prints its
# stats there), forwarding lcore CORE; rate = its Tx-pps of port 1 (net_null0)
# per 1 s stats period. lbd (release build, --features dpdk): one worker,
# busy polling; the EAL's main lcore is CORE (-l CORE) and workers.cores
# [CORE] (lbd's threads inherit the main lcore's CPU mask, so the EAL's -l
# decides where the worker can run: the script prints the worker thread's
# allowed CPUs); rate = net_null0's transmitted packets (`lbctl
# --port-stats -o json`) sampled every second. Each run: WARMUP s (default
# 2) discarded, then SECS (default 5) one-second rates; the run's figure is
# their median. The table gives, per side, the median of the runs and their
# min–max, and the ratio lbd/testpmd (of the medians, and the min–max of
# the per-pair ratios).
#
# Environment: CORE, MAIN_CORE, SECS, WARMUP, FLOWS, PER_FLOW, BASE_LBD,
# BASE_LBCTL, LBD and LBCTL (run these binaries instead of building).
# Needs dpdk-testpmd (Debian: dpdk), python3, and a DPDK build of rvs
# (libdpdk-dev, libclang-dev, pkg-config). Honours CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUNS=${1:-5}
CORE=${CORE:-1}
MAIN_CORE=${MAIN_CORE:-0}
PROFILE=${PROFILE:-}
if [ "$PROFILE" = callgrind ]; then
  SECS=${SECS:-30}
  WARMUP=${WARMUP:-20}
  OUT=${OUT:-/tmp/rvs-dpdk-callgrind.out}
  command -v valgrind >/dev/null 2>&1 || {
    echo "missing valgrind (apt-get install valgrind)" >&2
    exit 1
  }
elif [ -n "$PROFILE" ]; then
  echo "PROFILE=$PROFILE: only callgrind is known" >&2
  exit 1
fi
SECS=${SECS:-5}
WARMUP=${WARMUP:-2}
FLOWS=${FLOWS:-128}
PER_FLOW=${PER_FLOW:-32}

for tool in dpdk-testpmd python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "missing $tool (apt-get install dpdk python3)" >&2
    exit 1
  }
done

if [ -n "${LBD:-}" ]; then
  LBCTL=${LBCTL:-$(dirname "$LBD")/lbctl}
else
  cargo build --release --features dpdk --bin lbd --bin lbctl --quiet
  TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
  LBD="$TARGET/release/lbd"
  LBCTL="$TARGET/release/lbctl"
fi
BASE_LBD=${BASE_LBD:-}
BASE_LBCTL=${BASE_LBCTL:-${BASE_LBD:+$(dirname "$BASE_LBD")/lbctl}}
if [ -n "$BASE_LBD" ] && [ ! -x "$BASE_LBD" -o ! -x "$BASE_LBCTL" ]; then
  echo "BASE_LBD=$BASE_LBD / BASE_LBCTL=$BASE_LBCTL: not executable" >&2
  exit 1
fi

TMP=$(mktemp -d /tmp/rvs-dpdk-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CAPTURE="$TMP/flows.pcap"
# The capture: per pass, every flow's SYN first, then its ACKs round robin.
python3 - "$CAPTURE" "$FLOWS" "$PER_FLOW" <<'EOF'
import struct, sys
path, flows, per_flow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def frame(flow, syn, seq):
    src = bytes([198, 18, flow >> 8, flow & 0xFF])
    dst = bytes([10, 0, 0, 10])
    eth = bytes([2, 0, 0, 0, 0, 1, 2, 0xAA, 0, 0, 0, 1, 8, 0])
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, flow, 0x4000, 64, 6, 0, src, dst))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    flags, ack = (0x02, 0) if syn else (0x10, 1)
    tcp = bytearray(struct.pack("!HHIIBBHHH", 10000 + flow, 80, seq, ack, 5 << 4, flags, 65535, 0, 0))
    tcp[16:18] = struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, 20) + bytes(tcp)))
    f = eth + bytes(ip) + bytes(tcp)
    return f + b"\0" * (60 - len(f))
with open(path, "wb") as out:
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for k in range(per_flow):
        for flow in range(flows):
            f = frame(flow, k == 0, 1000 + k)
            out.write(struct.pack("<IIII", 0, k, len(f), len(f)) + f)
EOF

VDEVS=("--vdev=net_pcap0,rx_pcap=$CAPTURE,infinite_rx=1" "--vdev=net_null0,no-rx=1")
EAL_COMMON=(--no-huge --no-pci --no-shconf --no-telemetry -m 512 --log-level=lib.eal:warning)

# The median of the numbers on stdin, one per line.
median() {
  sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'
}

# One testpmd run in forward mode MODE (io, 5tswap); prints its median
# Tx-pps of net_null0.
testpmd_run() {
  local mode=$1 run=$2 out="$TMP/testpmd-$1-$2.out"
  timeout -s INT $((WARMUP + SECS + 2)) dpdk-testpmd "${EAL_COMMON[@]}" \
    --file-prefix="rvs_bench_tpm_$$_${mode}_$run" -l "$MAIN_CORE,$CORE" --main-lcore="$MAIN_CORE" \
    "${VDEVS[@]}" -- --forward-mode="$mode" --nb-cores=1 --total-num-mbufs=16384 --mbcache=256 \
    --rxd=1024 --txd=1024 --burst=32 --stats-period=1 >"$out" 2>&1 </dev/null || true
  # Tx-pps of port 1, one line per stats period.
  local rates
  rates=$(awk '/NIC statistics for port 1/ {p=1} /NIC statistics for port 0/ {p=0}
               p && /Tx-pps:/ {print $2}' "$out" | tail -n +$((WARMUP + 1)) | head -n "$SECS")
  if [ -z "$rates" ]; then
    echo "testpmd $mode run $run gave no rate; its output:" >&2
    cat "$out" >&2
    exit 1
  fi
  echo "$rates" | median
}

# lbd's transmitted packets on net_null0 (port "int") and the time, "T N".
lbd_sample() {
  "$2" --socket "$1" --port-stats -o json | python3 -c '
import json, sys, time
t = time.monotonic()
ports = json.load(sys.stdin)["ports"]
print(t, next(p["tx_packets"] for p in ports if p["name"] == "int"))'
}

# One lbd run (TAG: which build, LBD_BIN/LBCTL_BIN: its binaries); prints
# its median packets/s into net_null0.
lbd_run() {
  local tag=$1 lbd_bin=$2 lbctl_bin=$3 run=$4
  local sock="$TMP/lbd-$tag-$run.sock" conf="$TMP/lbd-$tag-$run.yaml" log="$TMP/lbd-$tag-$run.log"
  local eal=("${EAL_COMMON[@]}" --file-prefix="rvs_bench_lbd_$$_${tag}_$run" -l "$CORE" "${VDEVS[@]}")
  local eal_yaml
  eal_yaml=$(printf '%s\n' "${eal[@]}" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split("\n")[:-1]))')
  cat >"$conf" <<EOF
socket: $sock
workers: {count: 1, cores: [$CORE], idle: busy}
ports:
  - {name: ext, driver: dpdk, device: net_pcap0, mac: "02:00:00:00:00:01", addrs: ["10.0.0.254/24"]}
  - {name: int, driver: dpdk, device: net_null0, mac: "02:00:00:00:01:01", addrs: ["192.168.10.254/24"]}
dpdk:
  eal_args: $eal_yaml
neighbours:
  - {addr: 192.168.10.1, mac: "02:b1:00:00:00:01", port: int}
  - {addr: 192.168.10.2, mac: "02:b2:00:00:00:02", port: int}
services:
  - proto: tcp
    vip: 10.0.0.10
    port: 80
    scheduler: rr
    dests:
      - {addr: 192.168.10.1, fwd: masq}
      - {addr: 192.168.10.2, fwd: masq}
EOF
  local wrap=() start_wait=300
  if [ "$tag" = callgrind ]; then
    wrap=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT")
    start_wait=1200
  fi
  "${wrap[@]}" "$lbd_bin" -c "$conf" >"$log" 2>&1 </dev/null &
  local pid=$!
  PIDS+=("$pid")
  local waited=0
  until "$lbctl_bin" --socket "$sock" --port-stats >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ $waited -ge $start_wait ]; then
      echo "lbd run $run did not start; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  local worker_cpus=""
  for task in /proc/"$pid"/task/*; do
    if [ "$(cat "$task/comm" 2>/dev/null)" = "rvs-worker-0" ]; then
      worker_cpus=$(awk '/Cpus_allowed_list/ {print $2}' "$task/status")
    fi
  done
  echo "$worker_cpus" >"$TMP/lbd-$tag-$run.cpus"
  if [ "$tag" = callgrind ]; then
    callgrind_run "$pid" "$sock" "$lbctl_bin" "$log"
    return
  fi
  sleep "$WARMUP"
  local samples=()
  for _ in $(seq 0 "$SECS"); do
    samples+=("$(lbd_sample "$sock" "$lbctl_bin")")
    sleep 1
  done
  if [ "$run" = 1 ] && [ "$tag" = new ]; then
    "$lbctl_bin" --socket "$sock" -Ln --stats >"$TMP/lbd-stats.txt" 2>&1 || true
    "$lbctl_bin" --socket "$sock" --port-stats >>"$TMP/lbd-stats.txt" 2>&1 || true
  fi
  kill -TERM "$pid"
  wait "$pid" || {
    echo "lbd run $run did not stop cleanly; its log:" >&2
    cat "$log" >&2
    exit 1
  }
  printf '%s\n' "${samples[@]}" | awk 'NR>1 {print ($2-n)/($1-t)} {t=$1; n=$2}' | median
}

# Instructions per packet of callgrind profile $1, and the functions that
# cost most per packet. The packets are the calls of the worker's
# classify (once per received packet, counted exactly by callgrind; lbd's
# own counters cannot be read at the instant the window opens and closes
# under valgrind, so they are only printed as a cross-check).
callgrind_report() {
  local pkts
  pkts=$(python3 -c '
import re, sys
names, calls, cur = {}, 0, None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        if m.group(1):
            cur = names.get(m.group(2), "")
        continue
    m = re.match(r"calls=(\d+)", line)
    if m and cur and cur.endswith("worker::classify::classify"):
        calls += int(m.group(1))
print(calls)
' "$1")
  callgrind_annotate --inclusive=no --auto=no --threshold=100 "$1" 2>/dev/null | python3 -c '
import collections, re, sys
pkts = int(sys.argv[1])
total = None
cost = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\))?\s*(PROGRAM TOTALS|\S.*)$", line)
    if not m:
        continue
    ir = int(m.group(1).replace(",", ""))
    what = m.group(2)
    if what == "PROGRAM TOTALS":
        total = ir
        continue
    # "file:function [object]": group by function (inlined code is
    # reported under the file it came from).
    what = re.sub(r" \[[^]]*\]$", "", what)
    fm = re.match(r"^(.*?[^:]):(?=[^:])(.*)$", what)
    fn = fm.group(2) if fm else what
    obj = re.search(r"\[([^]]*)\]$", m.group(2))
    if fn.startswith("0x") and obj:
        fn = obj.group(1).rsplit("/", 1)[-1] + " " + fn
    cost[fn] += ir
print(f"instructions per packet: {total / pkts:.1f} (Ir {total} / {pkts} packets classified)")
print("  Ir/pkt  function (self cost, inlined code included)")
for fn, ir in cost.most_common(30):
    print(f"{ir / pkts:>8.1f}  {fn[:150]}")
' "$pkts"
  # Inclusive costs, from the profile itself: a function's own cost plus
  # the inclusive cost of every call it makes (calls to itself excluded).
  python3 -c '
import collections, re, sys
pkts = int(sys.argv[2])
names, own, calls = {}, collections.Counter(), collections.Counter()
cur = callee = None
in_call = False
def name(m):
    if m.group(2):
        names[m.group(1)] = m.group(2).strip()
    return names.get(m.group(1), m.group(1))
for line in open(sys.argv[1], errors="replace"):
    if line.startswith(("fn=", "cfn=")):
        m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
        if line.startswith("fn="):
            cur = name(m)
        else:
            callee = name(m)
        continue
    if line.startswith("calls="):
        in_call = True
        continue
    if line[:1] in "0123456789+-*":
        parts = line.split()
        ir = int(parts[1]) if len(parts) > 1 else 0
        if in_call:
            if callee != cur:
                calls[cur] += ir
            in_call = False
        else:
            own[cur] += ir
incl = own + calls
print()
print("  Ir/pkt  function (inclusive: with its callees; inlined code counts in its caller)")
for fn, ir in incl.most_common(40):
    print(f"{ir / pkts:>8.1f}  {fn[:150]}")
' "$1" "$pkts"
}

# The rest of a callgrind run of lbd (pid $1, socket $2, lbctl $3, log
# $4): instrument, warm up, zero, count for SECS s, dump, stop, report.
callgrind_run() {
  local pid=$1 sock=$2 lbctl_bin=$3 log=$4
  callgrind_control -i on "$pid" >/dev/null 2>&1
  sleep "$WARMUP"
  callgrind_control -z "$pid" >/dev/null 2>&1
  local first last
  first=$(lbd_sample "$sock" "$lbctl_bin")
  sleep "$SECS"
  last=$(lbd_sample "$sock" "$lbctl_bin")
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" || {
    echo "lbd under callgrind did not stop cleanly; its log:" >&2
    cat "$log" >&2
    exit 1
  }
  # The dump of the window is the file with the highest part number.
  local dump
  dump=$(ls -v "$OUT".* 2>/dev/null | head -n 1)
  [ -n "$dump" ] || dump="$OUT"
  local pkts=$(( ${last#* } - ${first#* } ))
  echo "net_null0 transmitted about $pkts packets in the window (lbctl; late by valgrind's scheduling); profile: $dump"
  callgrind_report "$dump"
}


# testpmd in forward mode $1 under callgrind, the same devices and window
# length as lbd's: instructions per packet = Ir of the window (all
# threads) / packets, the packets counted exactly as the calls net_null's
# transmit makes to its per-packet free (one per packet; in lbd's profile
# that count equals the calls of classify). testpmd's own statistics
# cannot be used: valgrind runs one thread at a time, so the stats
# thread's prints lag the forwarding thread by an unknown time.
testpmd_callgrind() {
  local mode=$1 out="$TMP/testpmd-cg-$1.out" cg="$OUT-testpmd-$1"
  rm -f "$cg" "$cg".*
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cg" \
    dpdk-testpmd "${EAL_COMMON[@]}" --file-prefix="rvs_bench_tpmcg_$$_$mode" -l "$MAIN_CORE,$CORE" \
    --main-lcore="$MAIN_CORE" "${VDEVS[@]}" -- --forward-mode="$mode" --nb-cores=1 \
    --total-num-mbufs=16384 --mbcache=256 --rxd=1024 --txd=1024 --burst=32 --stats-period=1 \
    >"$out" 2>&1 </dev/null &
  local pid=$! waited=0
  PIDS+=("$pid")
  until grep -q "NIC statistics for port 1" "$out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ $waited -ge 1200 ]; then
      echo "testpmd $mode under callgrind did not start; its output:" >&2
      cat "$out" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  callgrind_control -i on "$pid" >/dev/null 2>&1
  sleep "$TESTPMD_WARMUP"
  callgrind_control -z "$pid" >/dev/null 2>&1
  sleep "$SECS"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"
  wait "$pid" || true
  local dump
  dump=$(ls -v "$cg".* 2>/dev/null | head -n 1)
  [ -n "$dump" ] || dump="$cg"
  python3 - "$mode" "$dump" <<'PY'
import collections, re, sys
mode, path = sys.argv[1], sys.argv[2]
objs, fns = {}, {}
ob = fn = cob = cfn = None
total = 0
edges = collections.Counter()
def name(table, ident, text):
    if text:
        table[ident] = text.strip()
    return table.get(ident, "")
for line in open(path, errors="replace"):
    m = re.match(r"(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line)
    if m:
        table = objs if m.group(2) == "ob" else fns
        v = name(table, m.group(3), m.group(4))
        if m.group(1) == "c":
            if m.group(2) == "ob":
                cob = v
            else:
                cfn = v
        elif m.group(2) == "ob":
            ob = v
        else:
            fn, cob = v, None
        continue
    m = re.match(r"calls=(\d+)", line)
    if m:
        callee_ob = cob or ob
        if "net_null" in ob and "net_null" in callee_ob and cfn != fn:
            edges[(fn, cfn)] += int(m.group(1))
        cob = None
        continue
    m = re.match(r"(summary|totals): (\d+)", line)
    if m:
        total = max(total, int(m.group(2)))
pkts = max(edges.values()) if edges else 0
print(f"testpmd {mode}: instructions per packet: {total / pkts if pkts else float('nan'):.1f} "
      f"(Ir {total} / {pkts} packets freed by net_null0; profile {path})")
PY
}

if [ "$PROFILE" = callgrind ]; then
  TESTPMD_WARMUP=${TESTPMD_WARMUP:-5}
  echo "lbd NAT under callgrind: ${WARMUP}s warm-up, ${SECS}s counted; $FLOWS flows x $PER_FLOW frames, net_pcap0 infinite_rx -> net_null0"
  if [ "${PROFILE_LBD:-1}" = 1 ]; then
    rm -f "$OUT" "$OUT".*
    lbd_run callgrind "$LBD" "$LBCTL" 1
  fi
  echo
  echo "the same devices under dpdk-testpmd (${TESTPMD_WARMUP}s warm-up, ${SECS}s counted):"
  for mode in ${TESTPMD_MODES:-5tswap io}; do
    testpmd_callgrind "$mode"
  done
  exit 0
fi

echo "dpdk-testpmd io and 5tswap vs lbd NAT${BASE_LBD:+ (and the baseline $BASE_LBD)}, $RUNS runs each, alternating; ${SECS}s measured after ${WARMUP}s warm-up per run"
echo "input: $FLOWS flows x $PER_FLOW frames (SYN + ACKs, 60 B + FCS), net_pcap0 infinite_rx -> net_null0; forwarding core $CORE"
TPM=()
SWAP=()
LBDR=()
BASER=()
for run in $(seq 1 "$RUNS"); do
  t=$(testpmd_run io "$run")
  s=$(testpmd_run 5tswap "$run")
  l=$(lbd_run new "$LBD" "$LBCTL" "$run")
  TPM+=("$t")
  SWAP+=("$s")
  LBDR+=("$l")
  b=""
  if [ -n "$BASE_LBD" ]; then
    b=$(lbd_run base "$BASE_LBD" "$BASE_LBCTL" "$run")
    BASER+=("$b")
  fi
  awk -v r="$run" -v t="$t" -v s="$s" -v l="$l" -v b="$b" -v c="$(cat "$TMP/lbd-new-$run.cpus")" \
    'BEGIN {printf "run %d: testpmd io %.2f Mpps, 5tswap %.2f Mpps, lbd %.2f Mpps", r, t / 1e6, s / 1e6, l / 1e6;
            if (b != "") printf ", baseline lbd %.2f Mpps", b / 1e6;
            printf " (lbd worker allowed on CPUs %s)\n", c}'
done

echo
echo "lbd counters after run 1:"
cat "$TMP/lbd-stats.txt"
echo

python3 - "${TPM[*]}" "${SWAP[*]}" "${LBDR[*]}" "${BASER[*]:-}" "$(dpkg-query -W -f='${Version}' dpdk 2>/dev/null || pkg-config --modversion libdpdk 2>/dev/null || echo '?')" "$(uname -r)" "$(nproc)" <<'EOF'
import statistics, sys
tpm = [float(x) / 1e6 for x in sys.argv[1].split()]
swap = [float(x) / 1e6 for x in sys.argv[2].split()]
lbd = [float(x) / 1e6 for x in sys.argv[3].split()]
base = [float(x) / 1e6 for x in sys.argv[4].split()]
print(f"DPDK {sys.argv[5]}, kernel {sys.argv[6]}, {sys.argv[7]} CPUs (shared machine: expect noise)")
print(f"{'':28}{'median':>10}{'min':>9}{'max':>9}   runs")
def row(name, xs, unit):
    runs = " ".join(f"{x:.2f}" for x in xs)
    print(f"{name:28}{statistics.median(xs):>10.2f}{min(xs):>9.2f}{max(xs):>9.2f}   {runs}  {unit}")
def ratio(name, num, den):
    pairs = [n / d for n, d in zip(num, den)]
    med = statistics.median(num) / statistics.median(den)
    print(f"{name:28}{med:>10.3f}{min(pairs):>9.3f}{max(pairs):>9.3f}   (of the medians; min-max of per-run pairs)")
row("dpdk-testpmd io forward", tpm, "Mpps")
row("dpdk-testpmd 5tswap", swap, "Mpps")
row("lbd NAT, 1 worker", lbd, "Mpps")
if base:
    row("baseline lbd NAT, 1 worker", base, "Mpps")
ratio("ratio lbd / 5tswap", lbd, swap)
ratio("ratio lbd / io", lbd, tpm)
if base:
    ratio("baseline lbd / 5tswap", base, swap)
    ratio("baseline lbd / io", base, tpm)
    ratio("lbd / baseline lbd", lbd, base)
EOF
