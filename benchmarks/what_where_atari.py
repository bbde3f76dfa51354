"""What/where extractor vs SB3's NatureCNN on an Atari game, PPO at equal environment steps.

One process per (extractor, seed) run (``--jobs`` at once); each run appends one JSON line to
``OUT/runs.jsonl`` (a rerun skips the runs already there) and the summary is printed as Markdown:
per extractor, the final evaluation return (``--eval-episodes`` episodes with sampled actions, env seeds
10000+) and the mean return of the last 100 training episodes, mean ± std over seeds, and the
what/where / NatureCNN ratio of the means (the issue's target: >= 0.95).

    python benchmarks/what_where_atari.py --out bench_out/what_where --game Breakout --steps 100000 --seeds 0 1 --jobs 2

``--merge FILE`` adds rows of earlier runs (same JSON fields; the training statistics may be missing)
to the summary, which also gives a seed-pair bootstrap 95% interval of the ratio.
``--extractors`` runs only some of the two (to spread runs over processes started separately);
the trained models are saved to ``OUT/models/``; ``--attention SEED`` then writes the attention maps of
that seed's what/where model on one evaluation game (``OUT/what_where_<game>_attention.png`` and ``.gif``).

PPO settings are the Atari ones of the attention benchmark (4 envs, n_steps 128, batch 256, 4 epochs,
lr 2.5e-4, clip 0.1, entropy 0.01), the same for both extractors; critwrap.make's Atari preprocessing
(84x84 grey, 4 stacked frames, frame skip 4, episodic life and clipped rewards in training).
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

EXTRACTORS = ("nature-cnn", "what-where")


def _run(job: tuple[Any, ...]) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.monitor import Monitor

    import critwrap
    from critwrap.extractors import WhatWhereExtractor

    name, game, steps, seed, eval_episodes, out = job[:6]
    ww_kwargs: dict[str, Any] = dict(job[6]) if len(job) > 6 else {}
    torch.set_num_threads(1)
    venv = make_vec_env(lambda: Monitor(critwrap.make(game, training=True)), n_envs=4, seed=seed)
    kwargs: dict[str, Any] = {}
    if name == "what-where":
        kwargs["features_extractor_class"] = WhatWhereExtractor
        if ww_kwargs:
            kwargs["features_extractor_kwargs"] = ww_kwargs
    model = PPO(
        "CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, clip_range=0.1,
        ent_coef=0.01, vf_coef=0.5, seed=seed, policy_kwargs=kwargs, verbose=0,
        tensorboard_log=str(Path(out) / "tb"),
    )  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(steps, tb_log_name=f"{name}_seed{seed}")
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    (Path(out) / "models").mkdir(parents=True, exist_ok=True)
    model.save(Path(out) / "models" / f"{name}_{game}_{steps}_seed{seed}.zip")
    train_returns = [float(ep["r"]) for ep in model.ep_info_buffer]  # last 100 (life-loss) episodes
    env = critwrap.make(game)
    returns = []
    for e in range(eval_episodes):
        obs, _ = env.reset(seed=10_000 + e)
        total, done, t = 0.0, False, 0
        while not done and t < 27_000:
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
            t += 1
        returns.append(total)
    env.close()
    venv.close()
    return {
        "extractor": name,
        "game": game,
        "steps": steps,
        "seed": seed,
        "eval_returns": returns,
        "eval_mean": float(np.mean(returns)),
        "train_last100_mean": float(np.mean(train_returns)) if train_returns else float("nan"),
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu,
        "steps_per_cpu_second": steps / max(train_cpu, 1e-9),
        **({"extractor_kwargs": ww_kwargs} if name == "what-where" and ww_kwargs else {}),
    }


def random_returns(game: str, episodes: int, seed: int = 0) -> list[float]:
    """Returns of a uniform random policy on the evaluation games (env seeds 10000+, full games)."""
    import critwrap

    env = critwrap.make(game)
    env.action_space.seed(seed)
    returns = []
    for e in range(episodes):
        env.reset(seed=10_000 + e)
        total, done, t = 0.0, False, 0
        while not done and t < 27_000:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
            t += 1
        returns.append(total)
    env.close()
    return returns


def summary(rows: list[dict[str, Any]], game: str, steps: int, random_mean: float | None = None) -> str:
    rows = [r for r in rows if r["game"] == game and r["steps"] == steps]
    lines = [
        f"**{game}, PPO, {steps} environment steps per run** (eval: sampled actions, full games)",
        "",
        "| extractor | seeds | eval return (mean ± std over seeds) | last 100 training episodes | per seed (eval) | steps / CPU-s |",
        "|---|---|---|---|---|---|",
    ]
    means: dict[str, float] = {}
    for name in EXTRACTORS:
        mine = sorted((r for r in rows if r["extractor"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        ev = np.array([r["eval_mean"] for r in mine])
        # rows merged from earlier reports (--merge) may lack the training statistics
        tr = np.array([r["train_last100_mean"] for r in mine if r.get("train_last100_mean") is not None])
        sps = [r["steps_per_cpu_second"] for r in mine if r.get("steps_per_cpu_second") is not None]
        means[name] = float(ev.mean())
        lines.append(
            f"| {name} | {len(mine)} | {ev.mean():.1f} ± {ev.std():.1f} | "
            + (f"{tr.mean():.2f} ± {tr.std():.2f} (n={len(tr)})" if len(tr) else "-")
            + " | "
            + ", ".join(f"{r['eval_mean']:.1f}" for r in mine)
            + (f" | {np.mean(sps):.0f} (n={len(sps)}) |" if sps else " | - |")
        )
    if random_mean is not None:
        lines += ["", f"uniform random policy on the same evaluation games: {random_mean:.1f}"]
        if "nature-cnn" in means:
            lines.append(f"NatureCNN / random: {means['nature-cnn'] / max(random_mean, 1e-9):.2f}")
    if len(means) == 2 and means["nature-cnn"] > 0:
        lines += ["", f"what-where / NatureCNN (eval means): {means['what-where'] / means['nature-cnn']:.2f}"]
        lo, hi, n = ratio_interval(rows)
        if n >= 2:
            lines.append(f"seed-pair bootstrap 95% interval of that ratio ({n} seeds): [{lo:.2f}, {hi:.2f}]")
        if random_mean is not None and means["nature-cnn"] > random_mean:
            above = (means["what-where"] - random_mean) / (means["nature-cnn"] - random_mean)
            lines.append(f"what-where / NatureCNN above random: {above:.2f}")
    return "\n".join(lines)


def training_curve_table(out: Path, rows: list[dict[str, Any]], at: list[int]) -> str:
    """Training return per life (TensorBoard ``rollout/ep_rew_mean``: the mean of the last 100 clipped
    training episodes) of each run in ``OUT/tb`` at the last logged step at or before each of ``at``, and
    the what-where / NatureCNN ratio of the means over the seeds both extractors have."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[tuple[str, int], list[float | None]] = {}
    for r in sorted(rows, key=lambda r: (r["extractor"], r["seed"])):
        dirs = sorted((out / "tb").glob(f"{r['extractor']}_seed{r['seed']}_*"))
        if not dirs:
            continue
        acc = EventAccumulator(str(dirs[-1]))
        acc.Reload()
        if "rollout/ep_rew_mean" not in acc.Tags()["scalars"]:
            continue
        events = acc.Scalars("rollout/ep_rew_mean")
        values[(r["extractor"], r["seed"])] = [
            next((e.value for e in reversed(events) if e.step <= step), None) for step in at
        ]
    head = " | ".join(f"at {s}" for s in at)
    lines = [
        "training return per life (rollout/ep_rew_mean) at the last log at or before each step",
        "",
        f"| extractor | seed | {head} |",
        "|---|---|" + "---|" * len(at),
    ]
    for (name, seed), vals in values.items():
        lines.append(
            f"| {name} | {seed} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |"
        )
    seeds = sorted({s for n, s in values if n == "what-where"} & {s for n, s in values if n == "nature-cnn"})
    if seeds:
        ratios = []
        for i in range(len(at)):
            ww = [values[("what-where", s)][i] for s in seeds]
            nc = [values[("nature-cnn", s)][i] for s in seeds]
            ok = all(v is not None for v in ww + nc) and np.mean(nc) > 0  # type: ignore[arg-type]
            ratios.append(f"{np.mean(ww) / np.mean(nc):.2f}" if ok else "-")  # type: ignore[arg-type]
        lines += [
            "",
            f"what-where / NatureCNN (seeds {seeds}): "
            + ", ".join(f"at {s}: {q}" for s, q in zip(at, ratios)),
        ]
    return "\n".join(lines)


def ratio_interval(
    rows: list[dict[str, Any]], resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, int]:
    """Percentile 95% bootstrap interval of mean(what-where) / mean(NatureCNN), resampling seed pairs.

    Only seeds run with both extractors count; returns ``(low, high, number of seeds)``.
    """
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        by_seed.setdefault(int(r["seed"]), {})[r["extractor"]] = float(r["eval_mean"])
    pairs = np.array([[v["what-where"], v["nature-cnn"]] for v in by_seed.values() if len(v) == 2])
    if len(pairs) < 2:
        return float("nan"), float("nan"), len(pairs)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    ww, nc = pairs[idx, 0].mean(axis=1), pairs[idx, 1].mean(axis=1)
    ratios = ww[nc > 0] / nc[nc > 0]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi), len(pairs)


def attention_pictures(out: Path, game: str, steps: int, seed: int, pictures: Path) -> list[Path]:
    """Attention maps of a saved what/where run on one evaluation game: a PNG of 6 frames and a GIF."""
    from stable_baselines3 import PPO

    import critwrap
    from critwrap.extractors import find_what_where, save_attention

    path = out / "models" / f"what-where_{game}_{steps}_seed{seed}.zip"
    if not path.is_file():
        raise FileNotFoundError(f"no saved what-where model {path}; run the benchmark for seed {seed} first")
    model = PPO.load(path, device="cpu")
    env = critwrap.make(game)
    obs, _ = env.reset(seed=10_000)
    frames, maps = [], []
    for t in range(240):
        action, _ = model.predict(obs, deterministic=False)
        if t % 4 == 0:
            frames.append(obs)
            maps.append(find_what_where(model).attention_map(obs)[0])
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            break
    env.close()
    pictures.mkdir(parents=True, exist_ok=True)
    png, gif = pictures / f"what_where_{game}_attention.png", pictures / f"what_where_{game}_attention.gif"
    picked = np.linspace(0, len(frames) - 1, 6).astype(int)
    save_attention([frames[i] for i in picked], np.stack([maps[i] for i in picked]), png, scale=2)
    save_attention(frames, np.stack(maps), gif, scale=2, fps=10)
    return [png, gif]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/what_where"))
    p.add_argument("--game", default="Breakout")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--extractors", nargs="+", choices=EXTRACTORS, default=list(EXTRACTORS))
    p.add_argument("--summary-only", action="store_true")
    p.add_argument(
        "--ww-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
        help="WhatWhereExtractor keyword arguments (e.g. features_dim=512); recorded in each row; use a "
        "separate --out per variant",
    )  # fmt: skip
    p.add_argument(
        "--merge", type=Path, nargs="+", default=[], metavar="JSONL",
        help="runs.jsonl-style files of earlier runs to include in the summary (not rerun)",
    )  # fmt: skip
    p.add_argument(
        "--tb-at", type=int, nargs="+", default=[], metavar="STEPS",
        help="also print each run's training return (TensorBoard, OUT/tb) at these steps",
    )  # fmt: skip
    p.add_argument(
        "--attention", type=int, metavar="SEED", default=None,
        help="after the runs, write attention maps (PNG, GIF) of this seed's saved what-where model to OUT",
    )  # fmt: skip
    args = p.parse_args(argv)
    from critwrap.zoo.specs import parse_value

    ww_kwargs: dict[str, Any] = {}
    for item in args.ww_kwargs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--ww-kwargs expects KEY=VALUE, got {item!r}")
        ww_kwargs[key] = parse_value(value)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "runs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    done = {(r["extractor"], r["game"], r["steps"], r["seed"]) for r in rows}
    jobs = [
        (name, args.game, args.steps, seed, args.eval_episodes, str(args.out), tuple(ww_kwargs.items()))
        for seed in args.seeds
        for name in args.extractors
        if (name, args.game, args.steps, seed) not in done
    ]
    if jobs and not args.summary_only:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(
            max(1, min(args.jobs, len(jobs))), mp_context=mp.get_context("spawn")
        ) as pool:
            futures = [pool.submit(_run, job) for job in jobs]
            for fut in as_completed(futures):
                row = fut.result()
                row["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
                with path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                rows.append(row)
                print(json.dumps(row), flush=True)
    rnd_path = args.out / "random.jsonl"
    rnd = [json.loads(line) for line in rnd_path.read_text().splitlines()] if rnd_path.is_file() else []
    mine = [r for r in rnd if r["game"] == args.game and r["episodes"] == args.eval_episodes]
    if not mine and not args.summary_only:
        row = {
            "game": args.game,
            "episodes": args.eval_episodes,
            "returns": random_returns(args.game, args.eval_episodes),
        }
        with rnd_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        mine = [row]
    random_mean = float(np.mean(mine[0]["returns"])) if mine else None
    merged = [json.loads(line) for f in args.merge for line in f.read_text().splitlines() if line.strip()]
    clash = {(r["extractor"], r["seed"]) for r in merged} & {(r["extractor"], r["seed"]) for r in rows}
    if clash:
        raise SystemExit(f"--merge rows repeat runs already in {path}: {sorted(clash)}")
    print(summary(rows + merged, args.game, args.steps, random_mean))
    if args.tb_at:
        mine_rows = [r for r in rows if r["game"] == args.game and r["steps"] == args.steps]
        print()
        print(training_curve_table(args.out, mine_rows, args.tb_at))
    if args.attention is not None:
        for path in attention_pictures(args.out, args.game, args.steps, args.attention, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
