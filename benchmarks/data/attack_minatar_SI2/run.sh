#!/bin/bash
# queue: NAME:SRC:GAME ...
cd /work/main
for spec in "$@"; do
  IFS=: read name src game <<< "$spec"
  for arm in pp ctl; do
    out=bench_out/attack_minatar_SI2/${name}_$arm
    mkdir -p $out
    for f in victim.zip victim.json data.json data_eps0.1.npz data_eps0.25.npz dsi_fit.json; do cp -n bench_out/$src/$f $out/; done
    cp -rn bench_out/$src/dsi $out/
    extra=""; [ $arm = pp ] && extra="--position-profile" || extra="--methods detector,random"
    .venv/bin/python benchmarks/attack_minatar.py --game $game --out $out --windows 20 $extra --calibrate-leads -4 -3 -2 -1 0 1 2 --seed 50000 --jobs 1 > $out.log 2>&1
    echo "$name $arm rc $?" >> bench_out/attack_minatar_SI2/done.txt
  done
done
