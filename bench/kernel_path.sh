#!/usr/bin/env bash
# The kernel path (issue 11), side by side in one run, release build, as
# root: VIP requests/s through lbd (NAT, wrk, AF_PACKET) alone and with a
# concurrent UDP flood to the DIP, for two directors built side by side --
# one with kernel_if_steer (the default: the DIP's TCP/UDP never reaches a
# worker) and one without (the workers hand it up) -- alternating rounds
# (KERNEL_PATH_BENCH_ROUNDS, default 3; medians and their ratios), then
# each one's exception-path TCP throughput (iperf3 client in the client
# namespace -> iperf3 server bound to the DIP on the kernel interface).
# Needs what .ci/run installs (wrk, iperf3, nginx, nft).
set -euo pipefail
cd "$(dirname "$0")/.."
# lbd's own cost per DIP frame, isolated (one worker, mem driver, criterion
# groups + a side-by-side summary; bench/RESULTS.md "Kernel path").
nice cargo bench --bench kernel_path 2>&1 | tee bench/out/kernel_path_bench.txt |
  grep -E '^(kernel_path|case|alone|drained|ring_full|pps_limited|dip_only)|time:|thrpt:'
nice cargo test --release --test kernel_path -- --ignored --nocapture \
  bench_kernel_path 2>&1 | tee bench/out/kernel_path.txt |
  grep -E '^(round|VIP|exception)'
# The same with the ports' kernel_if_pps at 2000: the flood's excess is
# dropped in the worker before any copy.
KERNEL_PATH_BENCH_PPS=2000 nice cargo test --release --test kernel_path -- \
  --ignored --nocapture bench_kernel_path 2>&1 |
  tee bench/out/kernel_path_pps2000.txt | grep -E '^(round|VIP|exception)'
