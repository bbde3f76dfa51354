"""Benchmark: attacking a LunarLander agent at the Deep State Identifier's top-k steps, k in {5, 10, 30}.

Why LunarLander (``docs/benchmarks_attack.md``, run L): the issue's k in {5, 10, 30} needs episodes of
hundreds of steps and a victim that wins reliably within a CPU budget. MiniGrid's tasks are too short
for k = 30, Pong needs a GPU-sized budget, and the RoadRunner victim of ``attack_atari.py`` forgave
every perturbation (random-k did not lower its score at all). PPO learns LunarLander-v3 from its 8-d
state in a few CPU-minutes, its episodes last a few hundred steps, the env is deterministic given its
reset seed (the replay protocol applies with a greedy victim), and a landing can be lost to a few wrong
engine firings at the right moment, while most single steps of a flight are forgiving: the setting in
which *where* an attack lands should matter. The detector never sees the state: it is trained on
rendered frames (grayscale, 40x60), as the Deep State Identifier learns from videos.

Stages (each skipped when its output exists, so a killed run resumes):

1. **Victim.** PPO (rl-zoo3's LunarLander hyperparameters) for ``--ppo-steps``; its greedy policy is
   checked on ``--check-episodes`` games with other seeds (mean return, share of landings).
2. **Detector data.** ``--data-episodes`` episodes of the victim with epsilon mixing (a uniformly random
   action with probability ``--data-epsilon``), env seeds 100000+; label 1 when the episode does not end
   in a crash (the last reward is not -100), else 0.
3. **DSI** (classification, 2 classes, the GridWorld setting) trained on those episodes only, with a
   mask budget (``--mask-budget``); the mask's spread within episodes is reported
   (``OUT/detector_check.json``) before any attack.
4. **Attack** (replay protocol, :func:`critwrap.attack.evaluate_attack`) on ``--episodes`` seeded games
   (env seeds ``--seed``+): the victim's action replaced by a uniformly random different one at the
   detector's top-k steps (``--lead`` steps before its top frames), at k random steps, and at the
   victim's own top-k (least entropy of its action distribution).

    nohup python benchmarks/attack_lunar.py --out bench_out/attack_lunar --jobs 2 > bench_out/attack_lunar.log 2>&1 &

Results: ``OUT/results.json``, ``OUT/results.md``, ``OUT/drops.png`` (the same summary as
``attack_atari.py``: drops with CIs, drop ratio vs random with a paired bootstrap CI).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_atari import add_common_args, log, plot, report_row, run_chunks, run_meta, summarize

ENV_ID = "LunarLander-v3"
DATA_SEED = 100_000
CHECK_SEED = 30_000
FRAME_HW = (40, 60)
CRASH = -100.0


def make_env() -> Any:
    import gymnasium as gym

    return gym.make(ENV_ID, render_mode="rgb_array")


def frame(env: Any, obs: Any) -> np.ndarray:
    """The rendered 400x600 frame -> (40, 60, 1) uint8 grayscale (area-averaged)."""
    import cv2

    rgb = env.render()
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (FRAME_HW[1], FRAME_HW[0]), interpolation=cv2.INTER_AREA)
    return small[..., None]


def play(env: Any, policy: Any, seed: int, rng: np.random.Generator | None = None, eps: float = 0.0,
         keep_frames: bool = False) -> dict[str, Any]:  # fmt: skip
    obs, _ = env.reset(seed=seed)
    frames, total, last, done, n = [], 0.0, 0.0, False, 0
    while not done:
        if keep_frames:
            frames.append(frame(env, obs))
        if rng is not None and rng.random() < eps:
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(policy.predict(obs, deterministic=True)[0])
        obs, r, term, trunc, _ = env.step(action)
        total += float(r)
        last = float(r)
        n += 1
        done = term or trunc
    return {"return": total, "crash": last <= CRASH, "length": n, "frames": frames}


def train_victim(args: argparse.Namespace) -> Path:
    path = args.out / "victim.zip"
    if path.is_file():
        log(f"victim: reusing {path}")
        return path
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    t0, c0 = time.perf_counter(), time.process_time()
    venv = make_vec_env(ENV_ID, n_envs=16, seed=args.victim_seed)
    # rl-zoo3's hyperparameters for LunarLander-v2/v3 (PPO)
    model = PPO(
        "MlpPolicy", venv, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
        ent_coef=0.01, seed=args.victim_seed, device="cpu", verbose=0,
    )  # fmt: skip
    model.learn(args.ppo_steps)
    model.save(str(path))
    env = make_env()
    games = [play(env, model, CHECK_SEED + i) for i in range(args.check_episodes)]
    info = {
        "ppo_steps": args.ppo_steps,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "check_returns": [round(g["return"], 1) for g in games],
        "check_mean": float(np.mean([g["return"] for g in games])),
        "check_crash_share": float(np.mean([g["crash"] for g in games])),
        "check_mean_length": float(np.mean([g["length"] for g in games])),
    }
    (args.out / "victim.json").write_text(json.dumps(info, indent=1))
    log(
        f"victim: {args.ppo_steps} steps in {info['seconds']:.0f} s; greedy check mean {info['check_mean']:.1f}, "
        f"crashes {info['check_crash_share']:.2f}, length {info['check_mean_length']:.0f}"
    )
    return path


def data_epsilons(spec: str) -> list[float]:
    """``--data-epsilon``: one epsilon, or several separated by commas (one data set each, concatenated)."""
    try:
        eps = [float(e) for e in spec.split(",") if e.strip()]
    except ValueError:
        raise SystemExit(f"--data-epsilon: expected numbers separated by commas, got {spec!r}") from None
    if not eps or any(not 0.0 <= e <= 1.0 for e in eps) or len(set(eps)) != len(eps):
        raise SystemExit(f"--data-epsilon: expected distinct numbers in [0, 1], got {spec!r}")
    return eps


def record_data(args: argparse.Namespace, victim_path: Path) -> list[Any]:
    """The detector's episodes: one set of ``--data-episodes`` per epsilon (env seeds 100000+ each), in order.

    With one epsilon the set is ``OUT/data.npz``; with several, ``OUT/data_eps{EPS}.npz`` each (run L's
    detector was trained on the union of the 0.25 and 0.5 sets: ``--data-epsilon 0.25,0.5``).
    """
    from stable_baselines3 import PPO

    from critwrap.episodes import Episode

    eps_list = data_epsilons(args.data_epsilon)
    out = []
    for eps in eps_list:
        path = args.out / ("data.npz" if len(eps_list) == 1 else f"data_eps{eps:g}.npz")
        if not path.is_file():
            model = PPO.load(victim_path, device="cpu")
            env = make_env()
            rng = np.random.default_rng(DATA_SEED)
            frames, lengths, returns, crashes = [], [], [], []
            t0 = time.perf_counter()
            for e in range(args.data_episodes):
                g = play(env, model, DATA_SEED + e, rng=rng, eps=eps, keep_frames=True)
                frames += g["frames"]
                lengths.append(g["length"])
                returns.append(g["return"])
                crashes.append(g["crash"])
                if (e + 1) % 25 == 0:
                    log(
                        f"data (epsilon {eps:g}): {e + 1}/{args.data_episodes}, crash share {np.mean(crashes):.2f}"
                    )
            np.savez_compressed(
                path, frames=np.stack(frames), lengths=np.asarray(lengths), returns=np.asarray(returns),
                crashes=np.asarray(crashes),
            )  # fmt: skip
            log(f"data (epsilon {eps:g}): {len(frames)} frames in {time.perf_counter() - t0:.0f} s")
        with np.load(path) as z:
            frames, lengths, crashes = z["frames"], z["lengths"], z["crashes"]
        log(f"data (epsilon {eps:g}): {len(lengths)} episodes, crash share {crashes.mean():.2f}")
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out += [
            Episode(frames[s : s + n], label=int(not c))
            for s, n, c in zip(starts, lengths, crashes, strict=True)
        ]
    return out


def train_dsi(args: argparse.Namespace, episodes: list[Any], max_length: int = 1000) -> Any:
    """The DSI (classification, mask budget) on the episodes; reused from ``OUT/dsi`` when it exists.
    Also used by ``attack_minatar.py``."""
    from critwrap.detectors.dsi import DSI

    path = args.out / "dsi"
    if (path / "config.json").is_file():
        log(f"dsi: reusing {path}")
        return DSI.load(path)
    labels = np.array([e.label for e in episodes])
    log(f"dsi: {len(episodes)} episodes, share labelled 1 (lunar: not crashed) {labels.mean():.2f}")
    det = DSI(
        task="classification", channels=tuple(int(c) for c in args.dsi_channels.split(",")),
        lstm_hidden=args.dsi_lstm, lr=args.dsi_lr, batch_size=16, l1=5e-3, reverse=2.0,
        mask_budget=args.mask_budget, mask_budget_weight=10.0, max_length=max_length, frame_layout="HWC",
        num_threads=args.threads, seed=args.dsi_seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    det.fit(episodes, epochs=args.dsi_epochs, progress=False, seed=args.dsi_seed)
    det.save(path)
    hist = [{k: v for k, v in h.items() if isinstance(v, int | float)} for h in det.history]
    (args.out / "dsi_fit.json").write_text(
        json.dumps(
            {"seconds": time.perf_counter() - t0, "episodes": len(episodes), "history": hist}, indent=1
        )
    )
    log(f"dsi: fitted in {time.perf_counter() - t0:.0f} s; last epoch {hist[-1] if hist else {}}")
    return det


def check_detector(det: Any, episodes: list[Any], k: int = 10, n: int = 40) -> dict[str, Any]:
    """How much the mask varies within an episode, and where its top-k lie (steps before the end)."""
    stds, top_end, rnd_end = [], [], []
    rng = np.random.default_rng(0)
    for e in episodes[-n:]:
        s = np.asarray(det.score(e.frames), dtype=np.float64)
        stds.append(float(s.std()))
        kk = min(k, len(s))
        top = np.argsort(-s, kind="stable")[:kk]
        top_end.append(float(np.median(len(s) - 1 - top)))
        rnd_end.append(float(np.median(len(s) - 1 - rng.choice(len(s), kk, replace=False))))
    return {
        "episodes": min(n, len(episodes)),
        "mask_std_within_episode": float(np.mean(stds)),
        "topk_median_steps_before_end": float(np.median(top_end)),
        "randomk_median_steps_before_end": float(np.median(rnd_end)),
    }


def _worker(job: tuple[dict[str, Any], list[int]]) -> list[dict[str, Any]]:
    import torch
    from stable_baselines3 import PPO

    from critwrap.attack import Victim, evaluate_attack, run_episode
    from critwrap.detectors.dsi import DSI

    a, seeds = job
    torch.set_num_threads(1)
    env = make_env()
    victim = Victim(PPO.load(a["victim"], device="cpu"))
    det = DSI.load(a["dsi"])
    methods = [m for m in a["methods"] if m != "other-game"]
    rows = []
    for s in seeds:
        clean = run_episode(env, victim, seed=s, frames=frame, keep_frames=True)
        rankers = {}
        if "other-game" in a["methods"]:
            # the control for a timing prior: the detector's top-k positions of game s - 1 (its scores
            # shifted by the lead, as the detector's own method attacks) applied to game s
            donor = run_episode(env, victim, seed=s - 1, frames=frame, keep_frames=True)
            led = np.asarray(det.score(donor.frames_array()), dtype=np.float64)[a["lead"] :]

            def other(ep: Any, led: np.ndarray = led) -> np.ndarray:
                v = np.full(ep.length, -np.inf)
                n = min(ep.length, len(led))
                v[:n] = led[:n]
                return v

            rankers["other-game"] = other
        for k in a["ks"]:
            rep = evaluate_attack(
                env, victim, det, k=k, clean_runs=[clean], frames=frame, detector_lead=a["lead"], n_boot=10,
                allow_short=True, methods=methods, rankers=rankers, detector_min_gap=a["gap"],
            )  # fmt: skip
            row = report_row(rep, s, k, clean.length)
            row["detector_spread"] = rep.settings.get("detector_spread_median")
            rows.append(row)
    return rows


def attack(args: argparse.Namespace, victim_path: Path) -> list[dict[str, Any]]:
    a = {
        "victim": str(victim_path),
        "dsi": str(args.out / "dsi"),
        "ks": list(args.ks),
        "lead": args.lead,
        "methods": list(args.methods),
        "gap": args.gap,
    }
    return run_chunks(args, args.out / args.episodes_file, a, _worker)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/attack_lunar"))
    p.add_argument("--ppo-steps", type=int, default=1_000_000)
    p.add_argument("--victim-seed", type=int, default=0)
    p.add_argument("--check-episodes", type=int, default=20)
    p.add_argument("--data-episodes", type=int, default=200)
    p.add_argument(
        "--data-epsilon",
        default="0.25",
        help="probability of a random action in the detector's data; several separated by commas record one "
        "set each and train on their union (run L: 0.25,0.5)",
    )
    p.add_argument("--dsi-epochs", type=int, default=10)
    add_common_args(p)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--chunk", type=int, default=10, help="seeds per worker task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--gap", type=int, default=5, help="detector-spaced: attacked steps at least this many steps apart"
    )
    p.add_argument("--check-only", action="store_true", help="stop after the detector check (no attack)")
    p.add_argument(
        "--methods",
        default="detector,random,victim",
        help="comma-separated: detector, random, victim, block (k in a row at a random place), other-game "
        "(the detector's top-k positions of game s - 1 attacked in game s), detector-spaced (the detector's "
        "top-k at least --gap steps apart)",
    )
    p.add_argument(
        "--tag", default="", help="suffix of the attack's output files (episodes_TAG.jsonl, results_TAG.*)"
    )
    args = p.parse_args(argv)
    data_epsilons(args.data_epsilon)  # fail before any training on a bad value
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [
        m
        for m in args.methods
        if m not in ("detector", "random", "victim", "block", "other-game", "detector-spaced")
    ]
    if bad or not args.methods:
        p.error(f"unknown --methods {bad}")
    for m in ("other-game", "detector-spaced"):
        if m in args.methods and "detector" not in args.methods:
            p.error(f"--methods {m} is a control of the detector: add detector")
    if args.gap < 2:
        p.error(f"--gap must be >= 2, got {args.gap}")
    sfx = f"_{args.tag}" if args.tag else ""
    args.episodes_file = f"episodes{sfx}.jsonl"
    args.perturb, args.epsilon, args.game = "action", None, "LunarLander"

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    victim_path = train_victim(args)
    episodes = record_data(args, victim_path)
    det = train_dsi(args, episodes)
    check = check_detector(det, episodes)
    (args.out / "detector_check.json").write_text(json.dumps(check, indent=1))
    log(f"detector check: {check}")
    if args.check_only:
        return 0
    rows = attack(args, victim_path)
    text, out = summarize(args, rows)
    out.update(run_meta(args))
    out["seconds"] = time.perf_counter() - t_start
    out["detector_check"] = check
    spreads = [r["detector_spread"] for r in rows if r.get("detector_spread") is not None]
    if spreads:  # detector_spread of the attacked games' clean episodes (critwrap's flat check: < 0.01)
        out["detector_spread_games"] = {
            "median": float(np.median(spreads)),
            "min": float(np.min(spreads)),
            "games": len(spreads),
        }
        log(f"detector spread on the attacked games: {out['detector_spread_games']}")
    (args.out / f"results{sfx}.json").write_text(json.dumps(out, indent=1))
    (args.out / f"results{sfx}.md").write_text(text + "\n")
    if out["reports"]:
        plot(out, args.out / f"drops{sfx}.png", "LunarLander", "action")
    print(text)
    log(f"done in {time.perf_counter() - t_start:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
