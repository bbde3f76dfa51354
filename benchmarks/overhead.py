"""Overhead of SubgoalReward: environment steps per second, bare vs wrapped, measured in one run.

For each environment (ALE Pong and Seaquest through ``critwrap.make`` short names: 84x84 grayscale,
frame skip 4, 4 stacked frames; MiniGrid DoorKey-8x8: 56x56 RGB partial view) and each path:

* ``per-env``: one env, bare vs ``SubgoalReward(env, ...)`` (one encoder call per step);
* ``vec``: an SB3 ``DummyVecEnv`` of ``--n-envs`` envs, bare vs
  :class:`critwrap.vec.SubgoalRewardVecEnv` (one encoder call per step for all envs);

the scorer is a DSI-sized network: :class:`critwrap.detectors.dsi.DSI` with the paper's channels
32-64-128-128-256 on the env's own frames (weights random: the cost does not depend on them), 16
random subgoal embeddings. Bare and wrapped runs alternate for ``--rounds`` rounds of ``--steps``
env steps each (the same random actions); the table gives the median steps per CPU-second of this
process (``time.process_time``: robust to other processes sharing the cores) and the overhead
``bare / wrapped - 1`` (the extra time per step, relative to the bare step). Wall-clock rates are in
the JSON. torch runs on ``--threads`` thread(s).

Usage:
    python benchmarks/overhead.py --out bench_out/overhead.json --markdown bench_out/overhead.md
    python benchmarks/overhead.py --envs MiniGrid-Empty-5x5-v0 --steps 200 --rounds 1   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHANNELS = (32, 64, 128, 128, 256)


def dsi_for(
    shape: tuple[int, ...], channels: tuple[int, ...] = CHANNELS, bf16: bool = False, device: str = "cpu"
) -> Any:
    """An untrained DSI with the given channels built for frames of ``shape`` (its networks exist)."""
    from critwrap.detectors.dsi import DSI

    if len(shape) == 3 and shape[0] <= 16 and shape[-1] > 16:
        layout, c, hw = "CHW", shape[0], (shape[1], shape[2])
    else:
        layout, c, hw = "HWC", shape[-1], (shape[0], shape[1])
    return DSI(
        channels=channels,
        frame_layout=layout,
        in_channels=c,
        frame_size=hw,
        max_length=16,
        classes=[0.0, 1.0],
        num_threads=None,
        bf16=bf16,
        device=device,
    )


def _time(fn: Any) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def measure_env(
    env_id: str,
    n_envs: int,
    steps: int,
    rounds: int,
    channels: tuple[int, ...],
    bf16: bool = False,
    paths: tuple[str, ...] = ("per-env", "vec"),
    device: str = "cpu",
    scorer: str = "dsi",
) -> list[dict[str, Any]]:
    from stable_baselines3.common.vec_env import DummyVecEnv

    import critwrap
    from critwrap.vec import SubgoalRewardVecEnv
    from critwrap.wrappers.subgoal import SubgoalReward

    probe = critwrap.make(env_id)
    shape = tuple(probe.observation_space.shape)
    n_actions = int(probe.action_space.n)
    probe.close()
    rng = np.random.default_rng(0)
    if scorer == "none":  # a constant 8-dim encoder: what the wrapper itself costs, without a network

        class _Constant:
            def embed(self, frames: np.ndarray) -> np.ndarray:
                return np.ones((len(frames), 8), np.float32)

        det: Any = _Constant()
        subgoals = rng.normal(size=(16, 8)).astype(np.float32)
        kwargs = {"encoder": det.embed, "subgoals": subgoals, "threshold": 0.99}
    else:
        det = dsi_for(shape, channels, bf16, device)
        subgoals = rng.normal(size=(16, channels[-1])).astype(np.float32)
        kwargs = {"detector": det, "subgoals": subgoals, "threshold": 0.99}

    def per_env(wrapped: bool) -> Any:
        env = critwrap.make(env_id)
        if wrapped:
            env = SubgoalReward(env, **kwargs)
        env.reset(seed=0)
        actions = np.random.default_rng(1).integers(0, n_actions, steps)

        def run() -> None:
            for a in actions:
                _, _, terminated, truncated, _ = env.step(int(a))
                if terminated or truncated:
                    env.reset()

        return run

    def vec(wrapped: bool) -> Any:
        venv: Any = DummyVecEnv([lambda: critwrap.make(env_id)] * n_envs)
        if wrapped:
            venv = SubgoalRewardVecEnv(venv, **kwargs)
        venv.seed(0)
        venv.reset()
        actions = np.random.default_rng(1).integers(0, n_actions, (max(steps // n_envs, 1), n_envs))

        def run() -> None:
            for a in actions:
                venv.step(a)

        return run

    rows = []
    todo = [("per-env", per_env, steps), (f"vec x{n_envs}", vec, max(steps // n_envs, 1) * n_envs)]
    for path, factory, env_steps in todo:
        if path.split(" ")[0] not in paths:
            continue
        runners = {False: factory(False), True: factory(True)}
        runners[False]()  # warm up both (first calls allocate)
        runners[True]()
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):
            for wrapped in (False, True):
                times[wrapped].append(_time(runners[wrapped]))
        med = {
            w: (float(np.median([t[0] for t in ts])), float(np.median([t[1] for t in ts])))
            for w, ts in times.items()
        }
        rows.append(
            {
                "env": env_id,
                "scorer": "none (constant encoder)"
                if scorer == "none"
                else f"DSI {'-'.join(map(str, channels))}{' bf16' if bf16 else ''}"
                + (f" on {device}" if device != "cpu" else ""),
                "obs_shape": list(shape),
                "path": path,
                "env_steps": env_steps,
                "bare_steps_per_cpu_s": env_steps / med[False][1],
                "wrapped_steps_per_cpu_s": env_steps / med[True][1],
                "overhead_cpu": med[True][1] / med[False][1] - 1.0,
                "bare_steps_per_wall_s": env_steps / med[False][0],
                "wrapped_steps_per_wall_s": env_steps / med[True][0],
                "overhead_wall": med[True][0] / med[False][0] - 1.0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    # the scorer alone, frames per CPU-second, batch of n_envs
    frames = np.zeros((n_envs, *shape), np.uint8)
    det.embed(frames)
    reps = max(3, steps // (4 * n_envs))
    _, cpu = _time(lambda: [det.embed(frames) for _ in range(reps)])
    for row in rows:
        row["scorer_frames_per_cpu_s"] = reps * n_envs / cpu
    return rows


def _write(
    args: argparse.Namespace, rows: list[dict[str, Any]], load0: tuple[float, ...], final: bool
) -> str:
    gpu = (
        f", GPU {torch.cuda.get_device_name(torch.device(args.device))}"
        if args.device.startswith("cuda")
        else ", no GPU"
    )
    meta = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores{gpu}",
        "torch_threads": args.threads,
        "load_before": load0,
        "load_after": os.getloadavg(),
        "channels": list(args.channels),
        "bf16": args.bf16,
        "device": args.device,
        "torch": torch.__version__,
        "complete": final,
    }
    lines = [
        "| env | obs | scorer | path | bare steps/CPU-s | wrapped steps/CPU-s | overhead (CPU) | overhead (wall) "
        "| scorer frames/CPU-s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {'x'.join(map(str, r['obs_shape']))} | {r['scorer']} | {r['path']} "
            f"| {r['bare_steps_per_cpu_s']:.0f} "
            f"| {r['wrapped_steps_per_cpu_s']:.0f} | {100 * r['overhead_cpu']:.0f}% | {100 * r['overhead_wall']:.0f}% "
            f"| {r['scorer_frames_per_cpu_s']:.0f} |"
        )
    table = "\n".join(lines)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["Pong", "Seaquest", "DoorKey-8x8"])
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=800, help="env steps per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels", type=int, nargs=5, default=list(CHANNELS))
    p.add_argument("--bf16", action="store_true", help="the DSI's bfloat16 autocast (CPUs with avx512_bf16)")
    p.add_argument("--device", default="cpu", help="where the scorer runs: cpu, cuda, cuda:N")
    p.add_argument(
        "--scorer",
        choices=["dsi", "none"],
        default="dsi",
        help="none: a constant encoder, to measure what the wrapper itself costs per step",
    )
    p.add_argument("--paths", nargs="+", default=["per-env", "vec"], choices=["per-env", "vec"])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for env_id in args.envs:
        rows += measure_env(
            env_id,
            args.n_envs,
            args.steps,
            args.rounds,
            tuple(args.channels),
            args.bf16,
            tuple(args.paths),
            args.device,
            args.scorer,
        )
        # written after every env, so that a run cut by a time limit keeps the rows it finished
        table = _write(args, rows, load0, final=env_id == args.envs[-1])
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
