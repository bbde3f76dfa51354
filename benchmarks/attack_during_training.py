"""Run T: the replay-protocol attack tracked while a victim trains, with critwrap's ``attack-eval`` callback.

A fresh PPO victim learns MinAtar Breakout (the recipe of ``attack_minatar.py``); three
:class:`critwrap.callbacks.attack.AttackEvalCallback` instances (k = 5, 10, 30) attack the policy being
trained every ``--eval-every`` steps on the same seeded games, with a fixed detector (by default run M4's
windowed DSI, fitted on another victim's games) against random-k. Exploratory (``docs/benchmarks_attack.md``,
run T): no target, it shows how the detector's advantage changes as the victim learns.

    python benchmarks/attack_during_training.py --out bench_out/attack_T

The detector folder must exist: ``bench_out/attack_minatar_M4/dsi`` is written by run M4's command
(``docs/benchmarks_attack.md``). Outputs: ``OUT/results.json`` (every evaluation's table per k, the
victim's final sampled check, times), ``OUT/attack_during_training.png`` and ``OUT/k<K>/attack_eval.jsonl``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_minatar import TRAIN_STEPS, frame, load_scorer, make_env, victim_ppo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--dsi", type=Path, default=Path("bench_out/attack_minatar_M4/dsi"), help="fitted DSI folder"
    )
    p.add_argument("--windows", type=int, default=20, help="score with W-frame windows (0: whole games)")
    p.add_argument("--lead", type=int, default=1, help="the detector's lead (run M4's calibrated +1)")
    p.add_argument("--steps", type=int, default=1_500_000, help="PPO steps of the victim")
    p.add_argument("--eval-every", type=int, default=150_000, help="steps between attack evaluations")
    p.add_argument("--episodes", type=int, default=30, help="seeded games per evaluation")
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10, 30])
    p.add_argument("--victim-seed", type=int, default=21)
    p.add_argument("--seed", type=int, default=50000, help="first env seed of the attacked games")
    p.add_argument("--max-steps", type=int, default=1000, help="cap of an attacked game")
    p.add_argument(
        "--train-random-actions",
        type=float,
        default=0.0,
        help="during training only, replace each action by a uniformly random different one with this "
        "probability (run T3; default 0)",
    )
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def random_action_noise(env: Any, prob: float, seed: int) -> Any:
    """``env`` whose actions are replaced, with probability ``prob``, by a uniformly random different one."""
    import gymnasium as gym

    class RandomWrongActions(gym.ActionWrapper):  # type: ignore[type-arg]
        def __init__(self, inner: Any) -> None:
            super().__init__(inner)
            self.rng = np.random.default_rng(seed)

        def action(self, action: Any) -> Any:
            if prob > 0 and self.rng.random() < prob:
                n = int(self.action_space.n)
                other = int(self.rng.integers(n - 1))
                return other + int(other >= int(action))
            return action

    return RandomWrongActions(env)


def plot(histories: dict[int, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(4.2 * len(histories), 3.4), squeeze=False)
    for ax, (k, hist) in zip(axes[0], sorted(histories.items())):
        steps = np.array([h["timesteps"] for h in hist]) / 1e6
        rows = [{r["method"]: r for r in h["table"]} for h in hist]
        ax.plot(steps, [r["clean"]["mean_return"] for r in rows], "k--", label="clean return")
        for m, color in (("detector", "tab:red"), ("random", "tab:blue")):
            mean = np.array([r[m]["drop"] for r in rows])
            lo = np.array([r[m]["drop_ci_low"] for r in rows])
            hi = np.array([r[m]["drop_ci_high"] for r in rows])
            ax.plot(steps, mean, "o-", color=color, label=f"{m}-k drop")
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15)
        ax.set_title(f"k = {k}")
        ax.set_xlabel("victim PPO steps (M)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("return / return drop")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("MinAtar Breakout: the attack during training (attack-eval; 95% bootstrap CIs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    from critwrap.callbacks.attack import AttackEvalCallback

    torch.set_num_threads(args.threads)
    if not (args.dsi / "config.json").is_file():
        raise SystemExit(
            f"no fitted DSI at {args.dsi}: run run M4's command first (docs/benchmarks_attack.md)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    n_envs = 8
    if not 0.0 <= args.train_random_actions < 1.0:
        raise SystemExit(f"--train-random-actions must be in [0, 1), got {args.train_random_actions}")
    counter = iter(range(10**6))

    def train_env() -> Any:
        env = make_env(TRAIN_STEPS["breakout"], sticky=0.1, game="breakout")
        if args.train_random_actions > 0:
            env = random_action_noise(
                env, args.train_random_actions, seed=args.victim_seed * 1000 + next(counter)
            )
        return env

    venv = make_vec_env(train_env, n_envs=n_envs, seed=args.victim_seed)
    model = victim_ppo(venv, args.victim_seed)
    detector = load_scorer(args.dsi, args.windows)
    callbacks = {
        k: AttackEvalCallback(
            detector,
            env=make_env(args.max_steps, sticky=0.0, game="breakout"),
            k=k,
            eval_freq=max(1, args.eval_every // n_envs),
            episodes=args.episodes,
            methods=["detector", "random"],
            seed=args.seed,
            frames=frame,
            detector_lead=args.lead,
            sample=True,
            log_path=args.out / f"k{k}",
            verbose=1,
        )
        for k in args.ks
    }
    for k in args.ks:  # a rerun starts its logs afresh
        (args.out / f"k{k}" / "attack_eval.jsonl").unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(args.steps, callback=list(callbacks.values()))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    attack_seconds = sum(h["seconds"] for cb in callbacks.values() for h in cb.history)
    histories = {k: cb.history for k, cb in callbacks.items()}
    summary = {
        k: [
            {
                "timesteps": h["timesteps"],
                "clean": next(r["mean_return"] for r in h["table"] if r["method"] == "clean"),
                "detector_drop": next(r["drop"] for r in h["table"] if r["method"] == "detector"),
                "random_drop": next(r["drop"] for r in h["table"] if r["method"] == "random"),
                "ratio": h["detector_to_random"],
            }
            for h in hist
        ]
        for k, hist in histories.items()
    }
    result = {
        "settings": {key: str(v) if isinstance(v, Path) else v for key, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
        },
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "attack_seconds": round(attack_seconds, 1),
        "summary": summary,
        "histories": histories,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    plot(histories, args.out / "attack_during_training.png")
    for k, rows in summary.items():
        print(f"k = {k}")
        for r in rows:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            print(
                f"  {r['timesteps']:>8}: clean {r['clean']:6.2f}  detector drop {r['detector_drop']:6.2f}  "
                f"random drop {r['random_drop']:6.2f}  ratio {ratio}"
            )
    print(f"{seconds:.0f} s wall ({cpu:.0f} s CPU), of which attack evaluations {attack_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
