"""Benchmark: DQN vs plain 5-step vs critical n-step returns on MinAtar Breakout, with a detector whose mask varies.

Why (``docs/benchmarks_nstep.md``, run B): on ALE Seaquest the small DSIs this machine can fit kept a flat
mask, so ``CriticalNStepReplayBuffer`` chose near-uniform horizons and the critical-state mechanism was
never tested. The DSI of the MinAtar Breakout attack (``benchmarks/attack_minatar.py``, run M) does
discriminate (mask spread 0.97 within games): it marks the approach in which the ball is lost. This
script plugs that detector into SB3's DQN on the same game (MinAtar's network, MinAtar's sticky actions
0.1 in training) and compares, at equal steps and seeds:

* ``dqn``: 1-step targets;
* ``nstep5``: SB3's plain 5-step returns (``n_steps=5``);
* ``critical``: ``CriticalNStepReplayBuffer(n_max=5)``, the horizon chosen by the detector's scores
  (frames: the 10x10x4 observations scaled 3x, as the detector was trained).

Each run is evaluated on ``--eval-episodes`` games without sticky actions (epsilon ``--eval-eps``,
capped at 1000 steps); the report gives the IQM with a bootstrap CI per variant, the probability of
improvement, and the critical variant's horizon histogram (its share of n = 1..5).

    nohup python benchmarks/nstep_minatar.py --out bench_out/nstep_minatar \\
        --detector benchmarks/data/attack_minatar_M/dsi --variants dqn,nstep5,critical,randhorizon \\
        --seeds 0 1 2 3 4 5 6 7 8 9 --workers 2 > bench_out/nstep_minatar.log 2>&1 &

``randhorizon`` is the control: the critical variant's mix of horizons (``--horizon-shares``), drawn at
random instead of placed by the detector. Run M's DSI is committed in ``benchmarks/data/attack_minatar_M/dsi``.

``--game seaquest`` (run MS) runs the same comparison on MinAtar Seaquest, with a DSI fitted by
``attack_minatar.py --game seaquest --check-only`` on a PPO agent's games.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("dqn", "nstep5", "critical")
#: variants that run only when asked for (``--variants``): ``randhorizon`` is the control of run B's
#: ten-seed extension (horizons drawn from the critical variant's mix, at states the detector did not choose)
EXTRA_VARIANTS = ("randhorizon",)
#: run B's measured share of horizons n = 1..5 under the critical variant (mean over its five seeds)
RUN_B_SHARES = (0.33, 0.08, 0.07, 0.08, 0.44)


def scale_frames(frames: np.ndarray) -> np.ndarray:
    """(T, 10, 10, C) observations -> (T, 30, 30, C) uint8 frames, as ``attack_minatar.frame`` draws them."""
    cells = np.asarray(frames, dtype=np.uint8) * 255
    return np.repeat(np.repeat(cells, 3, axis=1), 3, axis=2)


def _random_horizon_buffer_class() -> type:
    from critwrap.buffers import CriticalNStepReplayBuffer

    class RandomHorizonReplayBuffer(CriticalNStepReplayBuffer):
        """Control for ``CriticalNStepReplayBuffer``: each sampled transition bootstraps after ``n`` steps
        drawn from ``shares`` (n = 1..n_max), truncated at the episode's end exactly as the detector's
        window is, so the horizons have the critical variant's mix but are not placed by any detector."""

        def __init__(
            self, *args: Any, shares: tuple[float, ...], horizon_seed: int = 0, **kwargs: Any
        ) -> None:
            super().__init__(*args, **kwargs)
            shares_arr = np.asarray(shares, dtype=np.float64)
            if shares_arr.shape != (self.n_max,) or np.any(shares_arr < 0) or shares_arr.sum() <= 0:
                raise ValueError(f"shares must be {self.n_max} non-negative numbers, got {shares}")
            self.shares = shares_arr / shares_arr.sum()
            self._horizon_rng = np.random.default_rng(horizon_seed)

        def _horizons(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
            _, first_stop = self._window(batch_inds, env_indices)
            drawn = self._horizon_rng.choice(
                np.arange(1, self.n_max + 1), size=len(batch_inds), p=self.shares
            )
            return np.minimum(drawn, first_stop + 1).astype(np.int64)

    return RandomHorizonReplayBuffer


def sampled_horizon_shares(buf: Any) -> list[float]:
    """Share of n = 1..n_max that ``buf`` gives its stored transitions (all of them, one draw each)."""
    order = buf._chronological()
    n = buf.horizons(np.repeat(order, buf.n_envs), np.tile(np.arange(buf.n_envs), len(order)))
    counts = np.bincount(n, minlength=buf.n_max + 1)[1 : buf.n_max + 1]
    return (counts / max(len(n), 1)).tolist()


def evaluate(model: Any, episodes: int, eps: float, seed: int, game: str = "breakout") -> list[float]:
    import attack_minatar as am

    env = am.make_env(1000, game=game)
    rng = np.random.default_rng(seed)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            if rng.random() < eps:
                action = int(rng.integers(env.action_space.n))
            else:
                action = int(model.predict(obs, deterministic=True)[0])
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
        returns.append(total)
    return returns


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    import attack_minatar as am
    from stable_baselines3 import DQN
    from stable_baselines3.common.monitor import Monitor

    from critwrap.buffers import CriticalNStepReplayBuffer
    from critwrap.detectors.base import load_detector

    variant, seed, a = job["variant"], int(job["seed"]), job["args"]
    path = Path(a["out"]) / "runs" / f"{variant}_seed{seed}.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    t0, c0 = time.perf_counter(), time.process_time()
    game = a.get("game", "breakout")
    env = Monitor(am.make_env(1000, sticky=0.1, game=game))
    kwargs: dict[str, Any] = {}
    if variant == "nstep5":
        kwargs["n_steps"] = 5
    elif variant == "critical":
        kwargs["replay_buffer_class"] = CriticalNStepReplayBuffer
        kwargs["replay_buffer_kwargs"] = dict(
            detector=load_detector(a["detector"]), n_max=5, frame_layout="as_is", preprocess=scale_frames
        )
    elif variant == "randhorizon":
        kwargs["replay_buffer_class"] = _random_horizon_buffer_class()
        kwargs["replay_buffer_kwargs"] = dict(n_max=5, shares=tuple(a["horizon_shares"]), horizon_seed=seed)
    model = DQN(
        "MlpPolicy", env, buffer_size=a["buffer_size"], learning_rate=2.5e-4, batch_size=32,
        learning_starts=5000, target_update_interval=1000, train_freq=4, gradient_steps=1,
        exploration_fraction=0.1, exploration_final_eps=0.01, policy_kwargs=am.policy_kwargs(), seed=seed,
        device="cpu", verbose=0, **kwargs,
    )  # fmt: skip
    model.learn(a["timesteps"])
    train_cpu = time.process_time() - c0
    returns = evaluate(model, a["eval_episodes"], a["eval_eps"], seed=10_000 + 100 * seed, game=game)
    result: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "timesteps": int(model.num_timesteps),
        "eval_returns": returns,
        "score": float(np.mean(returns)),
        "train_last_returns_mean": float(np.mean([ep["r"] for ep in model.ep_info_buffer]))
        if model.ep_info_buffer
        else float("nan"),
        "train_cpu_s": train_cpu,
        "total_wall_s": time.perf_counter() - t0,
    }
    if variant == "critical":
        buf = model.replay_buffer
        hist = buf.horizon_histogram()
        result.update(
            episodes_scored=int(buf.episodes_scored),
            score_seconds=float(buf.score_seconds),
            scored_fraction_end=float(buf.scored_fraction()),
            horizon_histogram={k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in hist.items()},
        )
    elif variant == "randhorizon":
        result["horizon_histogram"] = {"shares": sampled_horizon_shares(model.replay_buffer)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"{variant} seed {seed}: score {result['score']:.2f} ({train_cpu:.0f} CPU-s training)", flush=True)
    return result


def summarize(results: list[dict[str, Any]], seeds: list[int]) -> tuple[str, dict[str, Any]]:
    from critwrap.evaluation.aggregate import aggregate_estimates, probability_of_improvement

    variants = [v for v in VARIANTS + EXTRA_VARIANTS if any(r["variant"] == v for r in results)]
    raw = {
        v: np.array([[r["score"]] for s in seeds for r in results if r["variant"] == v and r["seed"] == s])
        for v in variants
    }
    est = aggregate_estimates(raw, reps=2000, seed=0, gamma=None)
    pairs = [(x, "dqn") for x in variants if x != "dqn" and "dqn" in variants]
    if "critical" in variants and "nstep5" in variants:
        pairs.append(("critical", "nstep5"))
    if "critical" in variants and "randhorizon" in variants:
        pairs.append(("critical", "randhorizon"))
    poi = probability_of_improvement(raw, pairs, reps=2000, seed=0) if pairs else {}
    lines = [
        "| variant | IQM score [95% CI] | mean | per-seed scores | training CPU-s per run |",
        "|---|---|---|---|---|",
    ]
    for v in variants:
        rs = sorted((r for r in results if r["variant"] == v), key=lambda r: r["seed"])
        e = est[v]["IQM"]
        lines.append(
            f"| {v} | {e.point:.2f} [{e.low:.2f}, {e.high:.2f}] | {np.mean([r['score'] for r in rs]):.2f} | "
            + ", ".join(f"{r['score']:.2f}" for r in rs)
            + f" | {np.mean([r['train_cpu_s'] for r in rs]):.0f} |"
        )
    for (x, y), p in poi.items():
        lines.append(f"\nP({x} > {y}) = {p.point:.2f} [{p.low:.2f}, {p.high:.2f}]")
    for v in ("critical", "randhorizon"):
        runs = [r for r in results if r["variant"] == v]
        if runs:
            shares = np.mean([r["horizon_histogram"]["shares"] for r in runs], axis=0)
            lines.append(
                f"\n{v} variant, share of sampled horizons n = 1..5 (mean over seeds): "
                + ", ".join(f"{s:.2f}" for s in shares)
            )
    estimates = {v: {m: list(vars(e).values()) for m, e in est[v].items()} for v in est}
    return "\n".join(lines), {
        "estimates": estimates,
        "poi": {f"{x}>{y}": list(vars(p).values()) for (x, y), p in poi.items()},
    }


def plot_scores(
    results: list[dict[str, Any]], estimates: dict[str, Any], path: Path, title: str | None = None
) -> Path:
    """Each run's score (dots; seeds 0-4 filled, later seeds open) and each variant's IQM with its 95 % CI."""
    from critwrap.evaluation.plots import _plt, _save, method_colors

    plt = _plt()
    variants = [v for v in VARIANTS + EXTRA_VARIANTS if v in estimates]
    colors = method_colors(variants)
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(variants), 3.4))
    for i, v in enumerate(variants):
        runs = sorted((r for r in results if r["variant"] == v), key=lambda r: r["seed"])
        point, low, high = estimates[v]["IQM"][:3]
        ax.errorbar(
            i + 0.22, point, yerr=[[point - low], [high - point]], fmt="s", color=colors[v], capsize=4
        )
        for r in runs:
            x = i - 0.2 + 0.02 * (r["seed"] % 10)
            face = colors[v] if r["seed"] < 5 else "white"
            ax.scatter(x, r["score"], s=22, facecolors=[face], edgecolors=[colors[v]], zorder=3)
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels(variants)
    ax.set_xlim(-0.6, len(variants) - 0.4)
    ax.set_ylabel("score (20 games, eps 0.01)")
    ax.set_title(
        title or "MinAtar Breakout, DQN 500k steps: runs (filled: seeds 0-4) and IQM [95% CI]",
        fontsize="small",
    )
    ax.grid(True, axis="y", alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/nstep_minatar"))
    p.add_argument(
        "--detector",
        type=Path,
        default=None,
        help="a saved detector (e.g. run M's DSI); needed by 'critical'",
    )
    p.add_argument("--game", choices=("breakout", "seaquest"), default="breakout", help="the MinAtar game")
    p.add_argument("--timesteps", type=int, default=500_000)
    p.add_argument("--buffer-size", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS + EXTRA_VARIANTS}"
    )
    p.add_argument(
        "--horizon-shares", type=float, nargs=5, default=list(RUN_B_SHARES),
        help="randhorizon: probabilities of n = 1..5 (default: run B's measured critical mix)",
    )  # fmt: skip
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--eval-eps", type=float, default=0.01)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS + EXTRA_VARIANTS for v in variants):
        p.error(f"--variants: expected some of {VARIANTS + EXTRA_VARIANTS}, got {variants}")
    if any(x < 0 for x in args.horizon_shares) or sum(args.horizon_shares) <= 0:
        p.error(
            f"--horizon-shares: expected 5 non-negative numbers with a positive sum, got {args.horizon_shares}"
        )
    if "critical" in variants and args.detector is None:
        p.error("the 'critical' variant needs --detector (a saved detector fitted on this game's frames)")
    if args.detector is not None and not args.detector.exists():
        p.error(f"--detector {args.detector} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    a = {
        "out": str(args.out),
        "detector": str(args.detector),
        "timesteps": args.timesteps,
        "buffer_size": args.buffer_size,
        "eval_episodes": args.eval_episodes,
        "eval_eps": args.eval_eps,
        "horizon_shares": list(args.horizon_shares),
        "game": args.game,
    }
    jobs = [{"variant": v, "seed": s, "args": a} for s in args.seeds for v in variants]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers, max_tasks_per_child=1) as pool:
        results = list(pool.map(run_one, jobs))
    text, out = summarize(results, args.seeds)
    out.update(
        {"settings": vars(args) | {"out": str(args.out), "detector": str(args.detector)}, "runs": results}
    )
    out["wall_s"] = time.perf_counter() - t0
    (args.out / "summary.json").write_text(json.dumps(out, indent=1, default=str))
    (args.out / "summary.md").write_text(text + "\n")
    k = args.timesteps // 1000
    title = f"MinAtar {args.game.title()}, DQN {k}k steps: runs (filled: seeds 0-4) and IQM [95% CI]"
    plot_scores(results, out["estimates"], args.out / "scores.png", title)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
