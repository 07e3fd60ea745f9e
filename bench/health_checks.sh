#!/bin/sh
# How many TCP health checks one lbd health thread sustains: 10,000 checkers
# with delay_loop 1 s against local listeners (and a saturated run), release
# build. Output: bench/out/health_checks.txt. No root needed.
set -eu
cd "$(dirname "$0")/.."
mkdir -p bench/out
cargo test --release --test health_bench -- --ignored --nocapture 2>&1 \
    | grep -E '^(paced|saturated):' | tee bench/out/health_checks.txt
