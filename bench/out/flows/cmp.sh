#!/bin/sh
# usage: cmp.sh ROUNDS VARIANT...   alternating runs of /tmp/fwd_profile.VARIANT nat {1000,1000000} 30000
R=$1; shift
for i in $(seq $R); do for v in "$@"; do for f in 1000 1000000; do
  nice /tmp/fwd_profile.$v nat $f 30000 2>&1 | sed "s/^/$v /"
done; done; done
