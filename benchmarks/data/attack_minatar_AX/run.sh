#!/usr/bin/env bash
# Run AX (thirty-first session): the run-M4 recipe on MinAtar Asterix, two fresh victims side by side.
set -euo pipefail
for v in 0 1; do
  OMP_NUM_THREADS=1 python benchmarks/attack_minatar.py --game asterix --out bench_out/attack_minatar_AX_v$v \
    --victim-seed $v --dsi-seed $v --windows 20 --calibrate-leads -4 -3 -2 -1 0 1 2 --seed 40000 --jobs 1 \
    > bench_out/attack_minatar_AX_v$v.log 2>&1 &
done
wait
