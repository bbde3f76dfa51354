"""Seaquest: DQN vs DQN + critical n-step (CriticalNStepReplayBuffer) vs DQN with plain n-step 5.

The Deep State Identifier's "policy improvement" experiment (METHODS.md, section 1), at the budget a
2-core CPU affords. Three steps, everything measured in the same run:

1. **Detector.** Record ``--detector-steps`` steps of a uniformly random policy in the training env
   (``critwrap.make("Seaquest", training=True)``: 84x84 grey, 4 stacked frames, episodes end at a lost
   life, clipped rewards) or, with ``--recorder-steps N``, of a DQN trained for N steps first (the same
   settings as the agents, seed 999; the paper recorded DQN checkpoints), acting epsilon-greedily with
   epsilon cycling through 0, 0.1 and 0.3 per life-episode so that the windows' outcomes vary; zero the score rows at the top of every frame, cut the episodes into windows
   of ``--window`` steps and fit a DSI on them as a **regression** of the window's summed reward (the
   paper's Seaquest task; its targets were raw game points / 1000, here clipped rewards, so
   ``return_scale=1``). Reported: fit time, and whether the detector's scores are higher near rewarded
   steps than elsewhere on held-out windows (a sanity check, not a critical-state ground truth).
2. **Agents.** For each seed and variant, SB3 ``DQN`` (rl-zoo3's Atari settings except the buffer size,
   ``learning_starts`` and the budget): ``dqn`` (1-step), ``nstep5`` (SB3's ``n_steps=5``) and
   ``critical`` (``CriticalNStepReplayBuffer(detector, n_max=5)``, the same score rows zeroed,
   episodes scored in windows of ``--window`` steps). Runs go ``--workers`` at a time, one torch thread each.
3. **Evaluation.** ``--eval-episodes`` full games (``training=False``: all lives, game score) with an
   epsilon-greedy policy (``--eval-eps``), each cut at ``--eval-max-steps`` steps; a run's score is its
   mean return. Aggregates: rliable IQM / mean with 95% stratified-bootstrap CIs over seeds, on raw and
   human-normalised scores (critwrap.evaluation), and the probability of improvement.

    nice -n 5 python benchmarks/nstep.py --out bench_out/nstep --timesteps 10000 --seeds 0 1 2 \
        --markdown docs/benchmarks_nstep.md

A smoke run: ``--timesteps 600 --seeds 0 --detector-steps 1500 --detector-epochs 1 --eval-episodes 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("dqn", "nstep5", "critical")
SCORE_ROWS = 9  # rows 0..8 of the 84x84 frame hold Seaquest's score digits


def zero_score_rows(frames: np.ndarray) -> np.ndarray:
    """(T, 4, 84, 84) stacked frames with the score rows (top ``SCORE_ROWS``) set to 0."""
    out = np.array(frames, copy=True)
    out[:, :, :SCORE_ROWS, :] = 0
    return out


def _make_env(training: bool) -> Any:
    import critwrap

    return critwrap.make("Seaquest", training=training)


# --------------------------------------------------------------------------------------------------
# 1. detector
# --------------------------------------------------------------------------------------------------


def _record(steps: int, seed: int, model: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Episodes (observations (T, 4, 84, 84) uint8, rewards (T,)) of a uniformly random policy, or of a
    trained DQN ``model`` acting epsilon-greedily with epsilon 0, 0.1, 0.3 in turn per life-episode."""
    env = _make_env(training=True)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    eps_cycle = (0.0, 0.1, 0.3)
    obs, _ = env.reset(seed=seed)
    episodes: list[tuple[np.ndarray, np.ndarray]] = []
    frames: list[np.ndarray] = []
    rewards: list[float] = []
    for _ in range(steps):
        frames.append(obs)
        if model is None:
            action = env.action_space.sample()
        elif rng.random() < eps_cycle[len(episodes) % len(eps_cycle)]:
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(model.predict(obs, deterministic=True)[0])
        obs, r, term, trunc, _ = env.step(action)
        rewards.append(float(r))
        if term or trunc:
            episodes.append((np.stack(frames), np.asarray(rewards, dtype=np.float32)))
            frames, rewards = [], []
            obs, _ = env.reset()
    env.close()
    return episodes


def _dqn(env: Any, seed: int, buffer_size: int, learning_starts: int, **extra: Any) -> Any:
    """SB3 DQN with rl-zoo3's Atari settings (the budget-related ones given)."""
    from stable_baselines3 import DQN

    kwargs: dict[str, Any] = dict(
        buffer_size=buffer_size,
        learning_rate=1e-4,
        batch_size=32,
        learning_starts=learning_starts,
        target_update_interval=1000,
        train_freq=4,
        gradient_steps=1,
        exploration_fraction=0.1,
        exploration_final_eps=0.01,
        optimize_memory_usage=False,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    kwargs.update(extra)
    return DQN("CnnPolicy", env, **kwargs)


def train_recorder(args: argparse.Namespace, out: Path) -> tuple[Any, dict[str, Any]]:
    """The DQN whose episodes the detector is fitted on (``--recorder-steps``), reused if saved."""
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    path = out / "recorder.zip"
    info_path = out / "recorder.json"
    if path.is_file() and info_path.is_file() and not args.overwrite:
        return DQN.load(path, device="cpu"), json.loads(info_path.read_text())
    t0, c0 = time.perf_counter(), time.process_time()
    env = DummyVecEnv([lambda: Monitor(_make_env(training=True))])
    env.seed(999)
    model = _dqn(env, 999, args.buffer_size, args.learning_starts)
    model.learn(args.recorder_steps)
    model.save(path)
    returns = _evaluate(model, 3, 0.05, args.eval_max_steps, seed=20_000)
    info = {
        "steps": int(model.num_timesteps),
        "eval_returns": returns,
        "score": float(np.mean(returns)),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }
    env.close()
    info_path.write_text(json.dumps(info, indent=2))
    print(f"recorder: {json.dumps(info)}", flush=True)
    return model, info


def _windows(episodes: list[tuple[np.ndarray, np.ndarray]], window: int, min_len: int) -> list[Any]:
    from critwrap.episodes import Episode

    out = []
    for frames, rewards in episodes:
        for start in range(0, len(frames), window):
            f, r = frames[start : start + window], rewards[start : start + window]
            if len(f) >= min_len:
                out.append(Episode(zero_score_rows(f), rewards=r, label=int(float(np.sum(r)) > 0)))
    return out


def fit_detector(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import torch

    from critwrap.detectors.dsi import DSI

    torch.set_num_threads(1)
    recorder: dict[str, Any] | None = None
    model: Any = None
    if args.recorder_steps > 0:
        model, recorder = train_recorder(args, out)
    t0, c0 = time.perf_counter(), time.process_time()
    episodes = _record(args.detector_steps, seed=12345, model=model)
    del model  # the recorder's replay buffer (GBs at Atari sizes) is not needed any more
    record_s = time.perf_counter() - t0
    wins = _windows(episodes, args.window, min_len=max(8, args.window // 4))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(wins))
    n_val = max(1, len(wins) // 5)
    val, train = [wins[i] for i in order[:n_val]], [wins[i] for i in order[n_val:]]
    channels = tuple(int(c) for c in args.channels.split(","))
    det = DSI(
        task=args.detector_task,
        return_scale=1.0,
        channels=channels,
        lstm_hidden=args.lstm_hidden,
        batch_size=16,
        max_length=args.window,
        num_threads=1,
        mask_budget=args.mask_budget,
        mask_budget_weight=args.mask_budget_weight,
    )
    det.fit(train, epochs=args.detector_epochs, val_episodes=val, progress=False, seed=0)
    det.save(out / "detector")
    # sanity check on held-out windows: scores at rewarded steps (and the 4 before them) vs the rest
    near, far = [], []
    for ep in val:
        s = det.score(ep.frames)
        assert ep.rewards is not None
        rewarded = np.flatnonzero(ep.rewards > 0)
        mask = np.zeros(len(s), dtype=bool)
        for t in rewarded:
            mask[max(0, t - 4) : t + 1] = True
        near.extend(s[mask].tolist())
        far.extend(s[~mask].tolist())
    info = {
        "random_policy_steps": int(args.detector_steps),
        "recorder": recorder,
        "mask_budget": args.mask_budget,
        "mask_budget_weight": args.mask_budget_weight,
        "task": args.detector_task,
        "episode_return_mean": float(np.mean([float(np.sum(r)) for _, r in episodes])) if episodes else 0.0,
        "episodes": len(episodes),
        "mean_episode_length": float(np.mean([len(f) for f, _ in episodes])) if episodes else 0.0,
        "windows_train": len(train),
        "windows_val": len(val),
        "windows_with_reward": int(sum(float(np.sum(w.rewards)) > 0 for w in wins)),
        "channels": list(channels),
        "lstm_hidden": int(args.lstm_hidden),
        "epochs": int(args.detector_epochs),
        "fit_seconds": float(det.fit_stats.get("seconds", float("nan"))),
        "record_seconds": record_s,
        "cpu_seconds": time.process_time() - c0,
        "history_last": det.history[-1] if det.history else {},
        "score_near_reward": float(np.mean(near)) if near else float("nan"),
        "score_elsewhere": float(np.mean(far)) if far else float("nan"),
        "n_near": len(near),
        "mean_score": float(np.mean(near + far)) if near or far else float("nan"),
    }
    return info


# --------------------------------------------------------------------------------------------------
# 2. agents
# --------------------------------------------------------------------------------------------------


def _evaluate(model: Any, episodes: int, eps: float, max_steps: int, seed: int) -> list[float]:
    env = _make_env(training=False)
    rng = np.random.default_rng(seed)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, steps, done = 0.0, 0, False
        while not done and steps < max_steps:
            if rng.random() < eps:
                action = int(rng.integers(env.action_space.n))
            else:
                action = int(model.predict(obs, deterministic=True)[0])
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            steps += 1
            done = term or trunc
        returns.append(total)
    env.close()
    return returns


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.buffers import CriticalNStepReplayBuffer
    from critwrap.detectors.base import load_detector

    variant, seed, a = job["variant"], int(job["seed"]), job["args"]
    path = Path(a["out"]) / "runs" / f"{variant}_seed{seed}.json"
    if path.is_file() and not a["overwrite"]:
        return dict(json.loads(path.read_text()))
    t0, c0 = time.perf_counter(), time.process_time()
    env = DummyVecEnv([lambda: Monitor(_make_env(training=True))])
    env.seed(seed)
    kwargs: dict[str, Any] = {}
    if variant == "nstep5":
        kwargs["n_steps"] = 5
    elif variant == "critical":
        kwargs["replay_buffer_class"] = CriticalNStepReplayBuffer
        kwargs["replay_buffer_kwargs"] = dict(
            detector=load_detector(Path(a["out"]) / "detector"),
            n_max=5,
            preprocess=zero_score_rows,
            score_window=a["window"],
        )
    model = _dqn(env, seed, a["buffer_size"], a["learning_starts"], **kwargs)
    horizons: list[int] = []
    if variant == "critical":
        buf = model.replay_buffer
        original = buf._get_samples

        def _recording(batch_inds: np.ndarray, env: Any = None) -> Any:
            samples = original(batch_inds, env)
            horizons.extend(buf.last_n_steps.tolist())
            return samples

        buf._get_samples = _recording  # type: ignore[method-assign]
    model.learn(a["timesteps"])
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    train_returns = [float(ep["r"]) for ep in model.ep_info_buffer]
    returns = _evaluate(model, a["eval_episodes"], a["eval_eps"], a["eval_max_steps"], seed=10_000 + seed)
    result: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "timesteps": int(model.num_timesteps),
        "frames": int(model.num_timesteps) * 4,
        "eval_returns": returns,
        "score": float(np.mean(returns)),
        "train_last_returns_mean": float(np.mean(train_returns)) if train_returns else float("nan"),
        "train_wall_s": train_wall,
        "train_cpu_s": train_cpu,
        "total_wall_s": time.perf_counter() - t0,
        "total_cpu_s": time.process_time() - c0,
    }
    if variant == "critical":
        buf = model.replay_buffer
        h = np.asarray(horizons, dtype=np.int64)
        result.update(
            episodes_scored=int(buf.episodes_scored),
            score_seconds=float(buf.score_seconds),
            scored_fraction_end=float(buf.scored_fraction()),
            horizon_hist={str(k): int((h == k).sum()) for k in range(1, 6)},
            horizon_mean=float(h.mean()) if len(h) else float("nan"),
        )
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(
        f"{variant} seed {seed}: score {result['score']:.1f} ({result['train_cpu_s']:.0f} CPU-s training)",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------------------------------
# 3. report
# --------------------------------------------------------------------------------------------------


def aggregate(results: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    from critwrap.evaluation.aggregate import aggregate_estimates, probability_of_improvement
    from critwrap.evaluation.normalization import atari_scores

    lo, hi = atari_scores()["Seaquest"]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    raw = {
        v: np.array([[r["score"]] for s in seeds for r in results if r["variant"] == v and r["seed"] == s])
        for v in variants
    }
    hns = {v: (m - lo) / (hi - lo) for v, m in raw.items()}
    est_raw = aggregate_estimates(raw, reps=2000, seed=0, gamma=None)
    est_hns = aggregate_estimates(hns, reps=2000, seed=0, gamma=None)
    pairs = [(x, "dqn") for x in variants if x != "dqn" and "dqn" in variants]
    if "critical" in variants and "nstep5" in variants:
        pairs.append(("critical", "nstep5"))
    poi = probability_of_improvement(raw, pairs, reps=2000, seed=0) if pairs else {}
    return {"raw": est_raw, "hns": est_hns, "poi": poi, "variants": variants, "human_random": (lo, hi)}


def markdown(
    args: argparse.Namespace, det: dict[str, Any], results: list[dict[str, Any]], agg: dict[str, Any]
) -> str:
    lines = [
        "## Seaquest: critical n-step replay (DSI policy improvement)",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`  ",
        f"Machine: {platform.processor() or platform.machine()}, 2 shared CPU cores, no GPU; other "
        f"engineers' jobs ran at the same time (load average at start {args.load_start}, at end "
        f"{os.getloadavg()[0]:.2f}). {args.workers} runs at a time, one torch thread each.  ",
        f"Budget: {args.timesteps} agent steps = {4 * args.timesteps} frames per run (frame skip 4), "
        f"{len(args.seeds)} seeds x {len(agg['variants'])} variants. DQN: rl-zoo3 Atari settings "
        f"(lr 1e-4, batch 32, train_freq 4, target update 1000, exploration 10% to 0.01) with "
        f"buffer_size={args.buffer_size}, learning_starts={args.learning_starts}. SB3's DQN is not the "
        "double DQN of the paper.  ",
        f"Evaluation: {args.eval_episodes} full games per run (all lives, game score), epsilon "
        f"{args.eval_eps}, cut at {args.eval_max_steps} steps.",
        "",
        "| variant | IQM score [95% CI] | mean score [95% CI] | IQM human-normalised [95% CI] | per-seed scores |",
        "|---|---|---|---|---|",
    ]
    for v in agg["variants"]:
        r, h = agg["raw"][v], agg["hns"][v]
        per_seed = ", ".join(
            f"{x['score']:.0f}" for x in sorted(results, key=lambda x: x["seed"]) if x["variant"] == v
        )
        lines.append(f"| {v} | {r['IQM']} | {r['Mean']} | {h['IQM']} | {per_seed} |")
    lines += ["", "Probability of improvement (raw scores, 95% CI):", ""]
    for (x, y), e in agg["poi"].items():
        lines.append(f"- P({x} > {y}) = {e}")
    crit = [r for r in results if r["variant"] == "critical"]
    if crit:
        hist: dict[str, int] = {}
        for r in crit:
            for k, n in r.get("horizon_hist", {}).items():
                hist[k] = hist.get(k, 0) + n
        total = max(1, sum(hist.values()))
        share = ", ".join(f"n={k}: {100 * n / total:.0f}%" for k, n in sorted(hist.items()))
        lines += [
            "",
            f"Critical n-step horizons sampled (all seeds): {share}; mean n "
            f"{np.mean([r['horizon_mean'] for r in crit]):.2f}. Scoring finished episodes cost "
            f"{np.mean([r['score_seconds'] for r in crit]):.1f} s per run "
            f"({np.mean([r['episodes_scored'] for r in crit]):.0f} episodes).",
        ]
    cpu = {v: np.mean([r["train_cpu_s"] for r in results if r["variant"] == v]) for v in agg["variants"]}
    rec = det.get("recorder")
    source = (
        f"a DQN trained for {rec['steps']} steps (evaluation score {rec['score']:.0f}), epsilon 0 / 0.1 / 0.3 "
        f"by turns per life (mean clipped return per life {det['episode_return_mean']:.1f})"
        if rec
        else "a uniformly random policy"
    )
    budget = (
        f"mask budget {det['mask_budget']} (weight {det.get('mask_budget_weight', 1.0):g}), "
        if det.get("mask_budget") is not None
        else ""
    )
    lines += [
        "",
        "Training CPU seconds per run: " + ", ".join(f"{v} {c:.0f}" for v, c in cpu.items()) + ".",
        "",
        f"Detector: DSI (regression of the summed clipped reward of {args.window}-step windows; channels "
        f"{det['channels']}, LSTM {det['lstm_hidden']}) fitted for {det['epochs']} epochs on "
        f"{det['windows_train']} windows ({det['windows_with_reward']} of all windows hold a reward) cut from "
        f"{det['random_policy_steps']} steps of {source} ({det['episodes']} life-episodes), {budget}"
        f"score rows zeroed; fit {det['fit_seconds']:.0f} s. Mean score on held-out windows: "
        f"{det['score_near_reward']:.3f} at rewarded steps and the 4 before them ({det['n_near']} steps) vs "
        f"{det['score_elsewhere']:.3f} elsewhere.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out/nstep")
    p.add_argument("--timesteps", type=int, default=10_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--buffer-size", type=int, default=10_000)
    p.add_argument("--learning-starts", type=int, default=1_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--detector-steps", type=int, default=20_000)
    p.add_argument("--detector-epochs", type=int, default=3)
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--channels", default="16,32,32,32,64")
    p.add_argument("--lstm-hidden", type=int, default=32)
    p.add_argument(
        "--recorder-steps",
        type=int,
        default=0,
        help="fit the detector on episodes of a DQN trained for this many steps (default 0: a random policy)",
    )
    p.add_argument(
        "--mask-budget",
        type=float,
        default=None,
        help="the DSI's mask budget (default: none, the paper's loss)",
    )
    p.add_argument(
        "--mask-budget-weight",
        type=float,
        default=1.0,
        help="weight of the mask budget's hinge (the DSI's default 1; 10 held the mask down on GridWorld)",
    )
    p.add_argument(
        "--detector-task",
        default="regression",
        choices=["regression", "classification"],
        help="regression of the window's summed clipped reward (the paper's), or classification of whether "
        "the window holds any reward",
    )
    p.add_argument("--detector-only", action="store_true", help="stop after fitting the detector")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--eval-eps", type=float, default=0.05)
    p.add_argument("--eval-max-steps", type=int, default=3000)
    p.add_argument("--overwrite", action="store_true", help="rerun runs whose result file exists")
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)
    args.load_start = f"{os.getloadavg()[0]:.2f}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    det_path = out / "detector.json"
    if "critical" in args.variants and (args.overwrite or not det_path.is_file()):
        det = fit_detector(args, out)
        det_path.write_text(json.dumps(det, indent=2))
        print(f"detector: {json.dumps(det)}", flush=True)
    det = json.loads(det_path.read_text()) if det_path.is_file() else {}
    if args.detector_only:
        return 0
    job_args = {
        k: getattr(args, k)
        for k in (
            "out",
            "timesteps",
            "buffer_size",
            "learning_starts",
            "window",
            "eval_episodes",
            "eval_eps",
            "eval_max_steps",
            "overwrite",
        )
    }
    jobs = [{"variant": v, "seed": s, "args": job_args} for s in args.seeds for v in args.variants]
    if args.workers > 1:
        # one fresh process per run: a worker reused across runs kept the earlier runs' replay buffers
        # (run N3: 14 GB resident in one worker with 50 000-step buffers)
        with ProcessPoolExecutor(max_workers=args.workers, max_tasks_per_child=1) as pool:
            results = list(pool.map(run_one, jobs))
    else:
        results = [run_one(j) for j in jobs]
    agg = aggregate(results, args.seeds)
    summary = {
        "detector": det,
        "results": results,
        "aggregate": {
            kind: {v: {m: [e.point, e.low, e.high] for m, e in est.items()} for v, est in agg[kind].items()}
            for kind in ("raw", "hns")
        },
        "poi": {f"{x}>{y}": [e.point, e.low, e.high] for (x, y), e in agg["poi"].items()},
        "wall_s": time.perf_counter() - t0,
        "command": sys.argv,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    text = markdown(args, det, results, agg) if det else ""
    print(text)
    if args.markdown and text:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
