#!/bin/sh
# usage: cg.sh BIN TAG  — callgrind with this machine's L1d (48 KiB 12-way) and L3 (32 MiB 16-way) as LL
BIN=$1; TAG=$2; OUT=/work/wt-flows/bench/out/flows
for f in 1000 1000000; do
  nice valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 --LL=33554432,16,64 \
    --toggle-collect='*forward_bursts*' \
    --callgrind-out-file=$OUT/cg.$TAG.$f.out $BIN nat $f 2000 > $OUT/cg.$TAG.$f.log 2>&1
done
