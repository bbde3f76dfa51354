"""Recall of an adapter's masks on the cart and on the pole separately, per visual condition.

The same 200 random-policy frames per condition as ``benchmarks/attention.py``'s ``mask_quality``
(episodes seeded 20000+, 25 steps each), against MuJoCo's segmentation; a pixel counts as kept when
its mask passes ``--threshold`` (0.3). Prints one line per condition and adapter::

    MUJOCO_GL=egl python benchmarks/attention_mask_parts.py bench_out/attention/adapter \\
        bench_out/attention_ct2/adapter_critwrap
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attention as bench


def part_recall(
    adapters: list[str], task: str = "balance", frames: int = 200, threshold: float = 0.3
) -> dict:
    import mujoco

    from critwrap.attention.adapter import MaskAdapter
    from critwrap.attention.pipeline import RenderSettings, make_pixel_env
    from critwrap.attention.pixels import PixelObservation, mujoco_handles

    s = bench.Settings(out=Path("."), task=task)
    models = {a: MaskAdapter.load(a) for a in adapters}
    render = RenderSettings(size=s.size, action_repeat=s.action_repeat, shadows=False)
    out: dict = {}
    for condition in bench.CONDITIONS:
        env = make_pixel_env(bench.env_id(s), render, channels_first=False, distraction=condition)
        pixels = env
        while not isinstance(pixels, PixelObservation):
            pixels = pixels.env
        model = mujoco_handles(env).model
        body = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, int(b)) or "" for b in model.geom_bodyid]
        parts = {name: [g for g, b in enumerate(body) if name in b] for name in ("cart", "pole")}
        env.action_space.seed(0)
        obs_list, seg_list, episode = [], [], 0
        while len(obs_list) < frames:
            obs, _ = env.reset(seed=20_000 + episode)
            for _ in range(25):
                obs_list.append(obs)
                seg_list.append(pixels.render_segmentation())
                obs, *_ = env.step(env.action_space.sample())
            episode += 1
        env.close()
        seg = np.stack(seg_list[:frames])
        batch = np.stack(obs_list[:frames])
        for name, adapter in models.items():
            kept = adapter.predict(batch) > threshold
            row = {}
            for part, geoms in parts.items():
                truth = np.isin(seg, geoms)
                row[f"{part}_recall"] = float((kept & truth).sum() / max(truth.sum(), 1))
                row[f"{part}_pixels_per_frame"] = float(truth.sum() / frames)
            out.setdefault(name, {})[condition] = row
            print(condition, name, {k: round(v, 2) for k, v in row.items()}, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapters", nargs="+", help="adapter checkpoint folders")
    p.add_argument("--task", default="balance", choices=sorted(bench.ENV_IDS))
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--threshold", type=float, default=0.3)
    args = p.parse_args(argv)
    part_recall(args.adapters, args.task, args.frames, args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
