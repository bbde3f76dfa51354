#!/usr/bin/env bash
# The SubgoalReward overhead benchmark with the DSI-sized scorer on a CUDA GPU (issue 4's ALE target),
# as run on a lent H200 machine (Python 3.12 with torch preinstalled; the packages critwrap needs beside
# torch come as wheels in .whl/, critwrap's own wheel among them). Writes into ${OUT:-bench_out/gpu}.
#
#   OUT=bench_out/gpu bash benchmarks/overhead_gpu.sh
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
# the DSI's device tests (the CUDA one is skipped on machines without a GPU)
timeout 120 python3 -m pytest -q tests/test_dsi.py -k "device or cuda" 2>&1 | tail -3
common=(--envs Pong Seaquest DoorKey-8x8 --steps 4000 --rounds 5 --device cuda)
timeout 300 python3 benchmarks/overhead.py "${common[@]}" --n-envs 8 \
    --out "$OUT/overhead_gpu_x8.json" --markdown "$OUT/overhead_gpu_x8.md"
timeout 200 python3 benchmarks/overhead.py "${common[@]}" --n-envs 32 --paths vec \
    --out "$OUT/overhead_gpu_x32.json" --markdown "$OUT/overhead_gpu_x32.md"
