"""``python -m critwrap.zoo demo``: a short end-to-end tour on built-in data (a few minutes on 2 CPU cores).

1. **Record** GridWorld episodes (MiniGrid KeyCorridor, the Deep State Identifier's dataset) into
   episode stores ``OUT/gridworld/{train,val,test}``, with the ground-truth critical steps.
2. **Fit** a Deep State Identifier on the training episodes (frames and success labels only) and save it
   to ``OUT/dsi``; a smaller network and fewer episodes than the paper so that it runs in minutes.
3. **Evaluate** F1@T on the test episodes with the threshold chosen on the validation split, beside the
   trivial all-frames detector, and **show** a test episode's critical frames
   (``OUT/critical_frames.png`` and ``OUT/critical_frames.gif``).
4. **Train** PPO on CartPole-v1 through the zoo (``OUT/runs/...``: config, TensorBoard logs,
   evaluations, checkpoints), with ``record-episodes`` recording its evaluation-free training episodes,
   then evaluate the saved run.

The numbers it prints are measured on your machine in that run; a demo-sized DSI is far from the
benchmark's (see docs/benchmarks.md).

Example:
    .. code-block:: console

        python -m critwrap.zoo demo --out demo_runs
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "run_demo"]

NAME = "demo"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_demo(
    out: str | Path = "demo_runs",
    n_train: int = 300,
    n_val: int = 60,
    n_test: int = 60,
    epochs: int = 8,
    ppo_timesteps: int = 10_000,
    seed: int = 0,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Run the demo; returns the figures it printed (F1 report, PPO evaluation, paths)."""
    import numpy as np
    import torch

    from critwrap.detectors.dsi import DSI
    from critwrap.gridworld import generate_gridworld_splits
    from critwrap.zoo.detect import evaluate_detector, format_report, render_gif, render_strip
    from critwrap.zoo.train import train

    out = Path(out)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    summary: dict[str, Any] = {"out": str(out)}

    t0 = time.time()
    _say(
        f"1/4 recording GridWorld episodes: {n_train} train, {n_val} val, {n_test} test -> {out / 'gridworld'}"
    )
    # length-matched negatives: in the paper's data episode length alone predicts success (see critwrap.gridworld)
    splits = generate_gridworld_splits(
        out / "gridworld", n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, negative_length="matched"
    )
    train_eps, val_eps, test_eps = (list(splits[k]) for k in ("train", "val", "test"))
    _say(
        f"    {sum(len(e) for e in train_eps)} training frames of shape {train_eps[0].frames.shape[1:]} "
        f"({time.time() - t0:.0f} s)"
    )

    t1 = time.time()
    _say(f"2/4 fitting a Deep State Identifier ({epochs} epochs, demo-sized network) -> {out / 'dsi'}")
    det = DSI(channels=(16, 32, 32, 64, 64), lstm_hidden=32, batch_size=32, lr=1e-3, max_length=84, seed=seed)
    det.fit(train_eps, epochs=epochs, progress=True, seed=seed, tensorboard_log=str(out / "dsi_tb"))
    det.save(out / "dsi")
    from critwrap.detectors.base import write_fit_info

    write_fit_info(
        out / "dsi", out / "gridworld" / "train", sequences=len(train_eps), epochs=epochs, seed=seed
    )
    _say(f"    trained in {time.time() - t1:.0f} s")

    _say("3/4 evaluating on the test split (threshold chosen on the validation split)")
    report = evaluate_detector(det, test_eps, val_episodes=val_eps)
    print(format_report(report, name="DSI (demo)"), flush=True)
    summary["f1"] = {int(T): row["test_f1"] for T, row in report["per_T"].items()}
    summary["all_frames_f1"] = {int(T): row["all_frames_f1"] for T, row in report["per_T"].items()}
    summary["top_m_precision"] = report["top_m_precision"]
    positives = [e for e in test_eps if e.label == 1]
    ep = positives[0] if positives else test_eps[0]
    scores = det.score(ep.frames)
    m = max(1, len(ep.metadata.get("critical_steps", [])))
    crit = det.critical_steps(scores=scores, k=m).tolist()
    png = render_strip(
        ep.frames,
        scores,
        out / "critical_frames.png",
        critical=crit,
        truth=ep.metadata.get("critical_steps"),
        title="DSI scores of a successful test episode",
    )
    gif = render_gif(ep.frames, scores, out / "critical_frames.gif", critical=crit)
    _say(f"    wrote {png} and {gif}")
    summary["png"], summary["gif"] = str(png), str(gif)

    t3 = time.time()
    _say(f"4/4 training PPO on CartPole-v1 for {ppo_timesteps} steps through the zoo -> {out / 'runs'}")
    result = train(
        "ppo",
        "CartPole-v1",
        timesteps=ppo_timesteps,
        seed=seed,
        log_dir=str(out / "runs"),
        experiment="demo",
        wrappers=[f"record-episodes:store={out / 'ppo_episodes'},max_episodes=50"],
        eval_skip_wrappers=["record-episodes"],
        eval_episodes=5,
        num_threads=1,
        overwrite=True,
    )
    fe = result.final_eval
    _say(
        f"    run: {result.run_dir}  final evaluation: mean return {fe.get('mean_return', float('nan')):.1f} "
        f"+- {fe.get('std_return', float('nan')):.1f} over {fe.get('n_episodes', '?')} episodes "
        f"({time.time() - t3:.0f} s)"
    )
    from critwrap.episodes import EpisodeStore

    n_rec = len(EpisodeStore(out / "ppo_episodes", create=False))
    _say(f"    record-episodes stored {n_rec} training episodes in {out / 'ppo_episodes'}")
    summary["ppo_mean_return"] = float(fe.get("mean_return", np.nan))
    summary["ppo_run"] = str(result.run_dir)
    _say(
        f"done in {time.time() - t0:.0f} s. Next: `python -m critwrap.zoo evaluate --run {result.run_dir}`, "
        f"`tensorboard --logdir {out}`"
    )
    return summary


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME, help="short end-to-end demo on built-in data", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", default="demo_runs", help="output directory (replaced; default demo_runs)")
    p.add_argument("--train", type=int, default=300, help="GridWorld training episodes (default 300)")
    p.add_argument("--epochs", type=int, default=8, help="DSI epochs (default 8)")
    p.add_argument("--ppo-timesteps", type=int, default=10_000, help="PPO timesteps (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    run_demo(
        out=args.out, n_train=args.train, epochs=args.epochs, ppo_timesteps=args.ppo_timesteps, seed=args.seed
    )
    return 0
