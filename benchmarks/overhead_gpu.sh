#!/usr/bin/env bash
# The SubgoalReward overhead benchmark with the DSI-sized scorer on a CUDA GPU (issue 4's ALE target),
# sized for one call of at most ~8 minutes on a lent GPU machine (Python 3.12 with torch preinstalled;
# the packages critwrap needs beside torch come as wheels in .whl/, critwrap's own wheel among them:
# see docs/benchmarks_subgoal.md). Writes into ${OUT:-bench_out/gpu}.
#
#   OUT=bench_out/gpu bash benchmarks/overhead_gpu.sh
#
# The wheels, built here before the call (the GPU machine has Python 3.12 and no network), as in the
# 2026-12-04 run:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl gymnasium==1.4.0 ale-py==0.12.1 \
#     stable-baselines3==2.9.2 sb3-contrib==2.9.2 minigrid==3.2.0 farama-notifications==0.0.6 pygame-ce==2.5.8
#   .venv/bin/python -m pip wheel -q --no-deps -w .whl .      # critwrap itself
# and the call carries .whl (16 MB).
#
# The first 2026-12-04 H200 numbers in docs/benchmarks_subgoal.md came from the first version of this
# script (8 and 32 envs, 5 rounds, Pong / Seaquest / DoorKey-8x8) and a 3-round repeat at 32 envs; the
# second set (after the channels-first shortcut) from the previous version of this one (32 envs 7 rounds,
# 64 envs both games in one command, which its time limit cut after Pong) plus separate calls; this
# version splits the 64-env runs so that the whole call stays under about 9.5 minutes.
set -uo pipefail
OUT="${OUT:-bench_out/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [[ -d .whl ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
nvidia-smi -L
python3 -c 'import torch, critwrap; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "critwrap", critwrap.__file__)'
# the CUDA tests (skipped on machines without a GPU)
timeout 100 python3 -m pytest -q tests/test_dsi.py tests/test_subgoal.py -k "cuda or device" 2>&1 | tail -n 3
# the fixed cost of one embed call, channels-first shortcut vs general path, on the GPU
timeout 60 python3 benchmarks/embed_call.py --device cuda --out "$OUT/embed_call_gpu.json"
common=(--envs Pong Seaquest --device cuda --paths vec)
timeout 160 python3 benchmarks/overhead.py "${common[@]}" --n-envs 32 --steps 4000 --rounds 5 \
    --out "$OUT/overhead_gpu_x32.json" --markdown "$OUT/overhead_gpu_x32.md"
# 64 envs, one env per command: both in one command did not finish in 200 s (2026-12-04, second GPU run)
for env in Pong Seaquest; do
    timeout 120 python3 benchmarks/overhead.py --envs "$env" --device cuda --paths vec --n-envs 64 --steps 6400 \
        --rounds 3 --out "$OUT/overhead_gpu_x64_$env.json" --markdown "$OUT/overhead_gpu_x64_$env.md"
done
cat "$OUT"/overhead_gpu_x*.md
