"""Evaluate pixel policies saved by ``benchmarks/attention.py`` behind another adapter than their own.

For example, the policies trained behind perfect masks (``--segmentation``) evaluated behind a learned
adapter tell whether a policy that works with perfect masks tolerates the learned masks' errors::

    MUJOCO_GL=egl python benchmarks/attention_cross_eval.py \\
        --policies bench_out/attention_seg_tint/cartpole/segmentation_seed{3,4,5}.pt \\
        --adapter bench_out/attention_ct2/adapter_critwrap

Prints the mean return per policy and condition (clean, color-hard, moving background) on the
benchmark's evaluation seeds (5 episodes, env seeds 10000-10004).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attention as bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", nargs="+", required=True, help="policy weights (.pt) saved by attention.py")
    p.add_argument("--adapter", required=True, help="adapter checkpoint folder, or 'segmentation'")
    p.add_argument("--output", default="masked", choices=["masked", "mask"])
    p.add_argument("--task", default="balance", choices=sorted(bench.ENV_IDS))
    p.add_argument("--policy-width", type=int, default=16)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    s = bench.Settings(out=Path("."), task=args.task, policy_width=args.policy_width)
    for path in args.policies:
        policy = bench.PixelPolicy(3 * s.frame_stack, s.size, width=s.policy_width)
        policy.load_state_dict(torch.load(path))
        policy.eval()
        row = {
            c: float(np.mean(bench.evaluate(s, policy, c, args.adapter, args.output)))
            for c in bench.CONDITIONS
        }
        print(path, args.adapter, {c: round(v, 1) for c, v in row.items()}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
