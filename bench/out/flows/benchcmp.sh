#!/bin/sh
cd /work/wt-flows
for i in ${ROUNDS:-1 2 3}; do for v in before after; do
  echo "=== $v run $i $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  RVS_BENCH_MAX_FLOWS=1000000 nice /tmp/bench.$v --bench "forward_established/nat/1000$|forward_established/nat/1000000|new_connection/nat" 2>&1 | grep -E "^(forward|new_conn)|time:|thrpt:|bytes per conn"
done; done
