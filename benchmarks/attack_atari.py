"""Benchmark: attacking an Atari agent at the Deep State Identifier's top-k steps, k in {5, 10, 30}.

The EDGE / DSI Pong attack on a game a CPU can train a victim for (2 shared cores, no GPU): PPO on
Pong needs millions of steps, PPO on **RoadRunner** reaches about 100x the random policy's score in
60 000-150 000 steps (``docs/benchmarks_attention.md``), and its games last hundreds of agent steps, so
k = 5, 10, 30 are a few percent of an episode, as in the paper (k = 30 of a Pong game of 1000-2000
steps). Stages (each skipped when its output exists, so a killed run resumes):

1. **Victim.** PPO with NatureCNN (``benchmarks/what_where_atari.py``'s settings) for ``--ppo-steps``.
2. **Detector data.** ``--data-episodes`` episodes of the victim with epsilon mixing (a uniformly random
   action with probability ``--data-epsilon``), env seeds 100000+ (disjoint from the evaluation seeds).
   Frames: the newest 84x84 frame of the observation, 2x2-mean-pooled to 42x42, the top ``--score-rows``
   rows (the score) zeroed, as the paper zeroes Seaquest's score. Cut into windows of ``--window`` steps;
   target: the window's summed game score / 1000 (the paper's Seaquest regression setting).
3. **DSI** trained on those windows only.
4. **Attack** (replay protocol, :func:`critwrap.attack.evaluate_attack`) on ``--episodes`` seeded games
   (env seeds ``--seed``+, sticky actions as in ALE v5, which the replay reproduces because the env is
   seeded; the victim samples its actions from its policy with keyed random numbers,
   ``Victim(sample=True)``, so a replay reproduces them too; ``--greedy`` for greedy actions, with which
   this PPO victim scored 0, 0 and 1000 on three games: it gets stuck): the action replaced by a uniformly random different one at
   the detector's top-k steps (its window scores, concatenated), at k random steps, and at the victim's
   own top-k (least entropy of its action distribution). The score is the unclipped game score of a
   full game (all lives), capped at ``--max-steps`` agent steps.

    nohup python benchmarks/attack_atari.py --out bench_out/attack_atari --jobs 2 > bench_out/attack_atari.log 2>&1 &

Results: ``OUT/results.json``, ``OUT/results.md`` and ``OUT/drops.png`` (drop per method and k, with CIs);
with ``--perturb fgsm --epsilon E`` (an L-inf perturbation of the frames, E pixel levels, against the
victim) the same files with the suffix ``_fgsmE``, reusing the victim, data and detector.
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

DATA_SEED = 100_000
METHODS = ["detector", "random", "victim"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_frame_fn(score_rows: int) -> Any:
    def frame(env: Any, obs: Any) -> np.ndarray:
        """Newest frame of the (4, 84, 84) stack -> (42, 42, 1) uint8 with the score rows zeroed."""
        x = np.asarray(obs)[-1].astype(np.float32)
        x = x.reshape(42, 2, 42, 2).mean(axis=(1, 3))
        x[: (score_rows + 1) // 2] = 0.0
        return np.round(x).astype(np.uint8)[..., None]

    return frame


def make_env(game: str, max_steps: int) -> Any:
    import gymnasium as gym

    import critwrap

    return gym.wrappers.TimeLimit(critwrap.make(game), max_episode_steps=max_steps)


def train_victim(args: argparse.Namespace) -> Path:
    path = args.out / "models" / f"nature-cnn_{args.game}_{args.ppo_steps}_seed{args.victim_seed}.zip"
    if path.is_file():
        log(f"victim: reusing {path}")
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from what_where_atari import _run

    log(f"victim: PPO NatureCNN on {args.game}, {args.ppo_steps} steps, seed {args.victim_seed}")
    row = _run(("nature-cnn", args.game, args.ppo_steps, args.victim_seed, 5, str(args.out)))
    (args.out / "victim.json").write_text(json.dumps(row, indent=1))
    log(f"victim: eval returns {row['eval_returns']} ({row['train_seconds']:.0f} s)")
    return path


def record_data(args: argparse.Namespace, victim: Any) -> dict[str, np.ndarray]:
    path = args.out / "data.npz"
    if path.is_file():
        log(f"data: reusing {path}")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    env = make_env(args.game, args.max_steps)
    frame = make_frame_fn(args.score_rows)
    rng = np.random.default_rng(DATA_SEED)
    frames, rewards, episode, returns = [], [], [], []
    t0 = time.perf_counter()
    for e in range(args.data_episodes):
        obs, _ = env.reset(seed=DATA_SEED + e)
        victim.start_episode(DATA_SEED + e)
        done, total, t = False, 0.0, 0
        while not done:
            victim.at_step(t)
            t += 1
            frames.append(frame(env, obs))
            if rng.random() < args.data_epsilon:
                action = int(rng.integers(env.action_space.n))
            else:
                action = int(victim.act(obs))
            obs, r, term, trunc, _ = env.step(action)
            rewards.append(float(r))
            episode.append(e)
            total += float(r)
            done = term or trunc
        returns.append(total)
        if (e + 1) % 20 == 0:
            log(f"data: {e + 1}/{args.data_episodes} episodes, mean return {np.mean(returns):.0f}")
    data = {
        "frames": np.stack(frames),
        "rewards": np.asarray(rewards, np.float32),
        "episode": np.asarray(episode, np.int32),
        "returns": np.asarray(returns, np.float32),
    }
    np.savez_compressed(path, **data)
    log(f"data: {len(frames)} frames, {time.perf_counter() - t0:.0f} s")
    return data


def windows(data: dict[str, np.ndarray], window: int) -> list[Any]:
    """Non-overlapping windows of ``window`` steps (a shorter tail of at least window/4 steps kept)."""
    from critwrap.episodes import Episode

    out = []
    ep = data["episode"]
    for e in np.unique(ep):
        idx = np.flatnonzero(ep == e)
        for start in range(0, len(idx), window):
            part = idx[start : start + window]
            if len(part) < max(2, window // 4):
                continue
            out.append(
                Episode(data["frames"][part], episode_return=float(data["rewards"][part].sum()) / 1000.0)
            )
    return out


def train_dsi(args: argparse.Namespace, data: dict[str, np.ndarray]) -> Any:
    from critwrap.detectors.dsi import DSI

    path = args.out / "dsi"
    if (path / "config.json").is_file():
        log(f"dsi: reusing {path}")
        return DSI.load(path)
    eps = windows(data, args.window)
    targets = np.array([e.episode_return for e in eps])
    log(
        f"dsi: {len(eps)} windows of <= {args.window} steps, targets (score/1000) mean {targets.mean():.3f}, "
        f"std {targets.std():.3f}, share zero {np.mean(targets == 0):.2f}"
    )
    det = DSI(
        task="regression",
        channels=tuple(int(c) for c in args.dsi_channels.split(",")),
        lstm_hidden=args.dsi_lstm,
        lr=args.dsi_lr,
        batch_size=16,
        l1=5e-3,
        reverse=2.0,
        mask_budget=args.mask_budget,
        mask_budget_weight=10.0,
        max_length=args.window,
        frame_layout="HWC",
        num_threads=args.threads,
        seed=args.dsi_seed,
    )
    t0 = time.perf_counter()
    det.fit(eps, epochs=args.dsi_epochs, progress=False, seed=args.dsi_seed)
    det.save(path)
    hist = [{k: v for k, v in h.items() if isinstance(v, int | float)} for h in det.history]
    (args.out / "dsi_fit.json").write_text(
        json.dumps({"seconds": time.perf_counter() - t0, "windows": len(eps), "history": hist}, indent=1)
    )
    log(f"dsi: fitted in {time.perf_counter() - t0:.0f} s; last epoch {hist[-1] if hist else {}}")
    return det


def check_detector(
    data: dict[str, np.ndarray], det: Any, window: int, episodes: int = 40, k: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Does the detector single out any steps? Its scores on the last ``episodes`` data episodes (which it
    was trained on), window by window as in the attack: the spread within an episode, the mean score at
    the 5 steps ending in a reward against elsewhere, where its top-``k`` steps lie (near a reward, in the
    last 20 % of the episode, position inside their window) against ``k`` random steps."""
    rng = np.random.default_rng(seed)
    scorer = WindowedScorer(det, window)
    ep = data["episode"]
    near_s, far_s, stds, ranges = [], [], [], []
    top_near, rnd_near, top_late, rnd_late, pos = [], [], [], [], []
    for e in np.unique(ep)[-episodes:]:
        idx = np.flatnonzero(ep == e)
        s = scorer.score(data["frames"][idx])
        r = data["rewards"][idx]
        n = len(s)
        near = np.zeros(n, bool)
        for t in np.flatnonzero(r > 0):
            near[max(0, t - 4) : t + 1] = True
        near_s.append(s[near])
        far_s.append(s[~near])
        stds.append(float(s.std()))
        ranges.append(float(s.max() - s.min()))
        kk = min(k, n)
        top = np.argsort(-s, kind="stable")[:kk]
        rnd = rng.choice(n, kk, replace=False)
        top_near.append(near[top].mean())
        rnd_near.append(near[rnd].mean())
        top_late.append((top >= 0.8 * n).mean())
        rnd_late.append((rnd >= 0.8 * n).mean())
        pos.extend(((top % window) / window).tolist())
    hist = np.histogram(pos, bins=5, range=(0.0, 1.0))[0]
    return {
        "episodes": int(min(episodes, len(np.unique(ep)))),
        "k": k,
        "score_std_within_episode": float(np.mean(stds)),
        "score_range_within_episode": float(np.mean(ranges)),
        "mean_score_near_reward": float(np.concatenate(near_s).mean()),
        "mean_score_elsewhere": float(np.concatenate(far_s).mean()),
        "share_steps_near_reward": float(
            sum(len(x) for x in near_s) / sum(len(x) + len(y) for x, y in zip(near_s, far_s))
        ),
        "topk_near_reward": float(np.mean(top_near)),
        "randomk_near_reward": float(np.mean(rnd_near)),
        "topk_in_last_fifth": float(np.mean(top_late)),
        "randomk_in_last_fifth": float(np.mean(rnd_late)),
        "topk_position_in_window_fifths": (hist / max(1, hist.sum())).round(3).tolist(),
    }


class WindowedScorer:
    """Scores an episode as the DSI was trained: window by window, concatenated."""

    def __init__(self, det: Any, window: int) -> None:
        self.det, self.window = det, window

    def score(self, frames: np.ndarray) -> np.ndarray:
        parts = [self.det.score(frames[i : i + self.window]) for i in range(0, len(frames), self.window)]
        return np.concatenate(parts)


def _worker(job: tuple[dict[str, Any], list[int]]) -> list[dict[str, Any]]:
    """Clean game and every (k, method) replay for each seed; one dict per (seed, k)."""
    import torch
    from stable_baselines3 import PPO

    from critwrap.attack import Victim, evaluate_attack, run_episode
    from critwrap.detectors.dsi import DSI

    a, seeds = job
    torch.set_num_threads(1)
    env = make_env(a["game"], a["max_steps"])
    victim = Victim(PPO.load(a["victim"], device="cpu"), sample=a["sample"])
    scorer = WindowedScorer(DSI.load(a["dsi"]), a["window"])
    frame = make_frame_fn(a["score_rows"])
    rows = []
    for s in seeds:
        clean = run_episode(env, victim, seed=s, frames=frame, keep_frames=True)
        for k in a["ks"]:
            rep = evaluate_attack(
                env, victim, scorer, k=k, clean_runs=[clean], frames=frame, detector_lead=a["lead"], n_boot=10,
                perturbation=a["perturb"], epsilon=a["epsilon"],
            )  # fmt: skip
            rows.append(report_row(rep, s, k, clean.length))
    return rows


def report_row(rep: Any, seed: int, k: int, length: int) -> dict[str, Any]:
    """One game's results (a one-seed AttackReport) as a flat JSON row."""
    return {
        "seed": seed,
        "k": k,
        "length": length,
        **{
            f"{f}.{m}": float(getattr(rep, f)[m][0])
            for f in ("returns", "lengths", "n_planned", "n_perturbed", "n_action_changed")
            for m in ["clean", *rep.methods]
        },
    }


def run_chunks(args: argparse.Namespace, path: Path, a: dict[str, Any], worker: Any) -> list[dict[str, Any]]:
    """Run ``worker((a, seeds))`` over the seeds not yet in ``path`` (JSON lines, appended as chunks finish)
    in ``args.jobs`` processes; returns the rows of the wanted seeds and ks (resumes a killed run)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    have = {(r["seed"], r["k"]) for r in rows}
    done = {r["seed"] for r in rows if all((r["seed"], k) in have for k in args.ks)}
    todo = [args.seed + i for i in range(args.episodes) if args.seed + i not in done]
    log(f"attack: {len(done)} seeds already done, {len(todo)} to go")
    chunks = [todo[i : i + args.chunk] for i in range(0, len(todo), args.chunk)]
    t0 = time.perf_counter()
    if chunks:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.jobs) as pool, path.open("a") as fh:
            for n, got in enumerate(pool.imap_unordered(worker, [(a, c) for c in chunks]), 1):
                for r in got:
                    fh.write(json.dumps(r) + "\n")
                fh.flush()
                rows += got
                log(f"attack: chunk {n}/{len(chunks)} done, {time.perf_counter() - t0:.0f} s")
    wanted = {args.seed + i for i in range(args.episodes)}
    return [r for r in rows if r["seed"] in wanted and r["k"] in args.ks]


def attack(args: argparse.Namespace, victim_path: Path) -> list[dict[str, Any]]:
    a = {
        "game": args.game,
        "max_steps": args.max_steps,
        "victim": str(victim_path),
        "dsi": str(args.out / "dsi"),
        "window": args.window,
        "score_rows": args.score_rows,
        "ks": list(args.ks),
        "lead": args.lead,
        "sample": not args.greedy,
        "perturb": args.perturb,
        "epsilon": args.epsilon,
    }
    return run_chunks(args, args.out / f"episodes{args.suffix}.jsonl", a, _worker)


def paired_ratio(
    clean: np.ndarray, ret_a: np.ndarray, ret_b: np.ndarray, idx: np.ndarray
) -> dict[str, float]:
    """Drop of a over drop of b (drop = clean - return), with a paired bootstrap 95% CI (``idx``: resamples)."""
    d_a, d_b = clean - ret_a, clean - ret_b
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = d_a[idx].mean(axis=1) / d_b[idx].mean(axis=1)
    point = float(d_a.mean() / d_b.mean()) if d_b.mean() != 0 else float("inf")
    lo, hi = np.nanquantile(boot, [0.025, 0.975])
    # a ratio over a drop that is not above 0 (the attack did not lower the score) has no meaning
    return {"ratio": point, "ci_low": float(lo), "ci_high": float(hi), "defined": bool(d_b.mean() > 0)}


def format_ratio(v: dict[str, Any], digits: int = 2) -> str:
    """``1.23 [0.90, 1.80]``, or ``n/a`` when the denominator's mean drop is not above 0."""
    if not v.get("defined", True):
        return "n/a (its drop is not above 0)"
    return f"{v['ratio']:.{digits}f} [{v['ci_low']:.{digits}f}, {v['ci_high']:.{digits}f}]"


def paired_diff(ret_b: np.ndarray, ret_a: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Drop of a minus drop of b (= return of b - return of a), with a paired bootstrap 95% CI."""
    diff = ret_b - ret_a
    lo, hi = np.quantile(diff[idx].mean(axis=1), [0.025, 0.975])
    return {"diff": float(diff.mean()), "diff_ci_low": float(lo), "diff_ci_high": float(hi)}


def summarize(args: argparse.Namespace, rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    from critwrap.attack.evaluate import AttackReport, format_table

    methods = list(getattr(args, "methods", None) or METHODS)
    md, out = [], {"reports": []}
    for k in args.ks:
        mine = sorted((r for r in rows if r["k"] == k), key=lambda r: r["seed"])
        if not mine:
            continue

        def col(f: str, m: str, mine: list[dict[str, Any]] = mine) -> np.ndarray:
            return np.array([r[f"{f}.{m}"] for r in mine])

        rep = AttackReport(
            seeds=[r["seed"] for r in mine],
            k=k,
            perturbation="random different action"
            if args.perturb == "action"
            else f"{args.perturb} eps {args.epsilon}",
            methods=methods,
            returns={m: col("returns", m) for m in ["clean", *methods]},
            lengths={m: col("lengths", m).astype(int) for m in ["clean", *methods]},
            n_planned={m: col("n_planned", m).astype(int) for m in ["clean", *methods]},
            n_perturbed={m: col("n_perturbed", m).astype(int) for m in ["clean", *methods]},
            n_action_changed={m: col("n_action_changed", m).astype(int) for m in ["clean", *methods]},
            win_threshold=float(np.median(col("returns", "clean"))),
        )
        table = rep.table()
        # paired bootstrap of the drop ratio detector / random (and victim / random)
        rng = np.random.default_rng(0)
        clean = rep.returns["clean"]
        idx = rng.integers(0, len(clean), size=(2000, len(clean)))

        ratios = (
            {
                m: paired_ratio(clean, rep.returns[m], rep.returns["random"], idx)
                for m in methods
                if m != "random"
            }
            if "random" in methods
            else {}
        )
        # the detector against the controls for where and how densely it attacks
        controls = (
            {
                b: {
                    **paired_ratio(clean, rep.returns["detector"], rep.returns[b], idx),
                    **paired_diff(rep.returns[b], rep.returns["detector"], idx),
                }
                for b in methods
                if b not in ("detector", "random", "victim")
            }
            if "detector" in methods
            else {}
        )
        md += [
            f"**k = {k}** ({len(mine)} games; 'win' = above the clean median {rep.win_threshold:.0f})",
            "",
            format_table(table),
            "",
            "drop ratio vs random-k (paired bootstrap 95% CI): "
            + ", ".join(f"{m} {format_ratio(v)}" for m, v in ratios.items()),
            "",
        ]
        if controls:
            md += [
                "detector's drop minus each control's (paired bootstrap 95% CI): "
                + ", ".join(
                    f"{b} {v['diff']:.1f} [{v['diff_ci_low']:.1f}, {v['diff_ci_high']:.1f}] (ratio {v['ratio']:.2f})"
                    if v["defined"]
                    else f"{b} {v['diff']:.1f} [{v['diff_ci_low']:.1f}, {v['diff_ci_high']:.1f}] (ratio n/a)"
                    for b, v in controls.items()
                ),
                "",
            ]
        out["reports"].append(
            {"k": k, "table": table, "drop_ratio_vs_random": ratios, "detector_ratio_vs_controls": controls}
        )
    lengths = np.array([r["length"] for r in rows if r["k"] == args.ks[0]])
    if len(lengths):
        md.insert(
            0,
            f"clean game length: mean {lengths.mean():.0f} steps (min {lengths.min()}, max {lengths.max()})\n",
        )
    return "\n".join(md), out


def plot(out: dict[str, Any], path: Path, game: str, perturb: str = "action") -> None:
    """Return drop per method and k with its 95% bootstrap CI (the results.json tables) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "detector": "DSI top-k",
        "random": "random k",
        "victim": "victim importance top-k",
        "block": "k in a row, random place",
        "other-game": "DSI top-k of another game",
        "detector-spaced": "DSI top-k, spaced",
    }
    present = [x["method"] for x in out["reports"][0]["table"][1:]] if out["reports"] else []
    methods = [(m, labels.get(m, m)) for m in present]
    ks = [r["k"] for r in out["reports"]]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / max(1, len(methods))
    for j, (m, label) in enumerate(methods):
        rows = [next(x for x in r["table"] if x["method"] == m) for r in out["reports"]]
        mid = np.array([x["drop"] for x in rows])
        err = np.array(
            [[x["drop"] - x["drop_ci_low"] for x in rows], [x["drop_ci_high"] - x["drop"] for x in rows]]
        )
        ax.bar(
            np.arange(len(ks)) + (j - (len(methods) - 1) / 2) * width,
            mid,
            width,
            yerr=err,
            capsize=3,
            label=label,
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(ks)), [f"k = {k}" for k in ks])
    ax.set_ylabel("score drop (clean - attacked)")
    n = out["reports"][0]["table"][0]["episodes"] if out["reports"] else 0
    what = "random-action" if perturb == "action" else perturb.upper()
    ax.set_title(f"{game}: {what} attack, {n} paired games, 95% bootstrap CIs", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_meta(args: argparse.Namespace) -> dict[str, Any]:
    """The settings and the machine of a run, for its results.json."""
    import torch

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["perturbation"] = args.perturb if args.epsilon is None else f"{args.perturb} eps {args.epsilon}"
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    return {"settings": settings, "machine": machine}


def add_common_args(p: argparse.ArgumentParser) -> None:
    """The detector, evaluation and attack options shared with ``attack_lunar.py``."""
    p.add_argument("--dsi-channels", default="16,32,32,64,64")
    p.add_argument("--dsi-lstm", type=int, default=32)
    p.add_argument("--dsi-lr", type=float, default=1e-3)
    p.add_argument("--dsi-seed", type=int, default=0)
    p.add_argument("--mask-budget", type=float, default=0.5)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=20_000, help="first evaluation seed")
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10, 30])
    p.add_argument(
        "--lead", type=int, default=2, help="the detector attacks this many steps before its top frames"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/attack_atari"))
    p.add_argument("--game", default="RoadRunner")
    p.add_argument("--ppo-steps", type=int, default=100_000)
    p.add_argument("--victim-seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=2000, help="agent steps per game at most")
    p.add_argument("--data-episodes", type=int, default=200)
    p.add_argument("--data-epsilon", type=float, default=0.25)
    p.add_argument(
        "--score-rows", type=int, default=12, help="top rows of the 84x84 frame zeroed (the score)"
    )
    p.add_argument("--window", type=int, default=200, help="DSI window length (agent steps)")
    p.add_argument("--dsi-epochs", type=int, default=8)
    add_common_args(p)
    p.add_argument(
        "--greedy",
        action="store_true",
        help="greedy victim (default: keyed samples from its policy, Victim(sample=True); greedy PPO gets stuck)",
    )
    p.add_argument(
        "--perturb",
        default="action",
        choices=["action", "fgsm", "pgd"],
        help="action: a random different action; fgsm / pgd: L-inf frame perturbation against the victim",
    )
    p.add_argument("--epsilon", type=float, default=None, help="fgsm / pgd budget in pixel levels (0-255)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--chunk", type=int, default=10, help="seeds per worker task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--check-detector",
        action="store_true",
        help="only check whether the detector singles out steps (OUT/detector_check.json); no attack",
    )
    args = p.parse_args(argv)
    if (args.perturb == "action") != (args.epsilon is None):
        p.error("--epsilon goes with --perturb fgsm / pgd (and only with them)")
    args.suffix = "" if args.perturb == "action" else f"_{args.perturb}{args.epsilon:g}"

    import torch

    from critwrap.attack import Victim

    torch.set_num_threads(args.threads)
    t_start, cpu0 = time.perf_counter(), time.process_time()
    args.out.mkdir(parents=True, exist_ok=True)
    victim_path = train_victim(args)
    from stable_baselines3 import PPO

    victim = Victim(PPO.load(victim_path, device="cpu"), sample=not args.greedy)
    data = record_data(args, victim)
    det = train_dsi(args, data)
    if args.check_detector:
        check = check_detector(data, det, args.window)
        (args.out / "detector_check.json").write_text(json.dumps(check, indent=1))
        print(json.dumps(check, indent=1))
        return 0
    rows = attack(args, victim_path)
    text, out = summarize(args, rows)
    out.update(run_meta(args))
    out["seconds"] = time.perf_counter() - t_start
    out["data_returns"] = {"mean": float(np.mean(data["returns"])), "n": len(data["returns"])}
    (args.out / f"results{args.suffix}.json").write_text(json.dumps(out, indent=1))
    (args.out / f"results{args.suffix}.md").write_text(text + "\n")
    if out["reports"]:
        plot(out, args.out / f"drops{args.suffix}.png", args.game, args.perturb)
    print(text)
    log(
        f"done in {time.perf_counter() - t_start:.0f} s wall, {time.process_time() - cpu0:.0f} s CPU (main process)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
