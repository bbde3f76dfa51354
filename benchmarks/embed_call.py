"""Fixed cost of one ``DSI.embed`` call on stacked Atari frames: the channels-first shortcut vs the
general (HWC round trip) path, measured alternately in one run.

``SubgoalRewardVecEnv`` calls ``embed`` once per env step on a batch of (n_envs, 4, 84, 84) uint8
frames; when the scorer runs on a GPU, the CPU-side work of each call (copies, layout changes) is part
of the per-step overhead. A tiny network (channels 1-1-1-1-1) isolates that fixed cost; the DSI-sized
one shows how much of a CPU call it is.

Usage:
    python benchmarks/embed_call.py --out bench_out/embed_call.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import dsi_for


def measure(channels: tuple[int, ...], batch: int, calls: int, rounds: int, device: str) -> dict[str, Any]:
    det = dsi_for((4, 84, 84), channels, device=device)
    frames = np.random.default_rng(0).integers(0, 256, (batch, 4, 84, 84), dtype=np.uint8)
    general = type(det)._uint8_nchw

    def use(shortcut: bool) -> None:
        det._uint8_nchw = general.__get__(det) if shortcut else (lambda f: None)  # type: ignore[method-assign]

    def run(shortcut: bool) -> float:
        use(shortcut)
        det.embed(frames)
        t = time.perf_counter()
        for _ in range(calls):
            det.embed(frames)
        return (time.perf_counter() - t) / calls * 1000.0

    use(True)
    feats_shortcut = det.embed(frames)
    use(False)
    same = bool(np.allclose(feats_shortcut, det.embed(frames), rtol=1e-5, atol=1e-6))
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for shortcut in (False, True):
            times[shortcut].append(run(shortcut))
    fast, slow = float(np.median(times[True])), float(np.median(times[False]))
    return {
        "channels": list(channels),
        "batch": batch,
        "device": device,
        "ms_per_call_general": slow,
        "ms_per_call_shortcut": fast,
        "saved_ms": slow - fast,
        "ratio": fast / slow,
        "same_features": same,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [
        measure((1, 1, 1, 1, 1), args.batch, args.calls, args.rounds, args.device),
        measure((32, 64, 128, 128, 256), args.batch, max(3, args.calls // 30), args.rounds, args.device),
    ]
    for r in rows:
        print(json.dumps(r))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": " ".join(["python", *sys.argv]),
            "machine": platform.machine(),
            "torch": torch.__version__,
        }
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
