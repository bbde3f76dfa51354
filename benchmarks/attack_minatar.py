"""Benchmark: attacking a MinAtar Breakout agent at the Deep State Identifier's top-k steps, k in {5, 10, 30}.

Why MinAtar Breakout (``docs/benchmarks_attack.md``, run M): the paper's attack is on Pong, where a
point is lost in a few steps when the paddle is not under the ball, and most other steps forgive a
wrong action. PPO on ALE Pong needs a GPU-sized budget; MinAtar (Young & Tian 2019; ``pip install
minatar``, pure numpy, nothing downloaded) is a 10x10 version of Atari games that PPO learns in a few
CPU-minutes. Its Breakout has Pong's structure: the episode ends when the ball passes the paddle, so
the steps before the ball reaches the bottom row are critical and the others are not. Rewards are
bricks broken (one per brick); an attack that loses the ball early costs the rest of the game.

``--game freeway`` (run F) runs the same pipeline on MinAtar's Freeway, which has the other half of
Pong's structure: its games last 2500 steps whatever happens, and a collision costs the chicken its
progress across the road but not the game, so critical steps occur all through a game.

``--game space_invaders`` (run SI) and ``--game asterix``: one-life games like Breakout, but where a
wrong action is fatal only when a shot or an enemy is next to the player, so k random actions cost
less of the score and the k = 30 ratio is not capped near 1.3x as on Breakout (runs M3-M5).

Stages (each skipped when its output exists, so a killed run resumes):

1. **Victim.** PPO with MinAtar's own network (one 3x3 convolution with 16 channels, a 128-unit layer),
   8 envs, ``--ppo-steps`` steps on ``MinAtar/Breakout-v1`` (3 actions) with MinAtar's default sticky
   actions (0.1) and 500-step training episodes; its sampled policy is checked on ``--check-episodes``
   games.
2. **Detector data.** ``--data-episodes`` games of the victim (keyed samples of its policy) with epsilon
   mixing, env seeds 100000+; frames are the 10x10x4 observation (paddle, ball, trail, bricks) scaled 3x
   to 30x30x4 uint8; label 1 when the game's return is at least the median return of the data set (the
   median is stored; above it when the median is the lowest return), else 0.
3. **DSI** (classification, the LunarLander run's settings) on those games only, with a mask budget.
4. **Attack** (replay protocol, :func:`critwrap.attack.evaluate_attack`) on ``--episodes`` seeded games
   (env seeds ``--seed``+, **no sticky actions** so that a replay is exact; the victim samples with keyed
   random numbers, ``Victim(sample=True)``, so a replay reproduces it), games capped at ``--max-steps``:
   the action replaced by a uniformly random different one at the detector's top-k steps (``--lead``
   steps before its top frames), at k random steps, at the victim's own top-k (least entropy), and the
   clustering controls of run L2 / L3 (``block``: k steps in a row at a random place;
   ``detector-spaced``: the detector's top-k at least ``--gap`` steps apart).

    nohup python benchmarks/attack_minatar.py --out bench_out/attack_minatar --jobs 2 > bench_out/attack_minatar.log 2>&1 &

``--windows 20`` (run M2) fits the DSI instead on 20-frame windows, as the paper's Pong detector learns
from the outcome of one point: per game its last window ("ball lost") and one earlier window ("ball
kept", :func:`cut_windows`), and scores a game with sliding windows (critwrap's :class:`~critwrap.detectors.windowed.Windowed`).

Results: ``OUT/results.json``, ``OUT/results.md``, ``OUT/drops.png`` (the summary of ``attack_atari.py``),
``OUT/where_check.json`` (where the detector's and the victim's top-10 steps lie in 40 clean games).
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
from attack_lunar import check_detector, data_epsilons, train_dsi

GAMES = {
    "breakout": "MinAtar/Breakout-v1",
    "freeway": "MinAtar/Freeway-v1",
    "seaquest": "MinAtar/Seaquest-v1",
    "space_invaders": "MinAtar/SpaceInvaders-v1",
    "asterix": "MinAtar/Asterix-v1",
}
#: training-episode cap per game (Breakout: 500 steps; Freeway ends by itself after 2500; the others 1000)
TRAIN_STEPS: dict[str, int | None] = {
    "breakout": 500,
    "freeway": None,
    "seaquest": 1000,
    "space_invaders": 1000,
    "asterix": 1000,
}
DATA_SEED = 100_000
CHECK_SEED = 30_000
SCALE = 3
ALL_METHODS = ("detector", "random", "victim", "block", "detector-spaced")


def _register() -> None:
    import gymnasium as gym

    if GAMES["breakout"] not in gym.envs.registry:
        try:
            from minatar.gym import register_envs
        except ImportError:
            raise SystemExit("this benchmark needs MinAtar: pip install minatar") from None
        register_envs()


def make_env(max_steps: int | None, sticky: float = 0.0, game: str = "breakout") -> Any:
    import gymnasium as gym

    _register()
    kwargs: dict[str, Any] = {} if max_steps is None else {"max_episode_steps": max_steps}
    return gym.make(GAMES[game], sticky_action_prob=sticky, **kwargs)


def frame(env: Any, obs: Any) -> np.ndarray:
    """The (10, 10, 4) boolean observation -> (30, 30, 4) uint8 (each cell a 3x3 block of 0 / 255)."""
    del env
    cells = np.asarray(obs, dtype=np.uint8) * 255
    return np.repeat(np.repeat(cells, SCALE, axis=0), SCALE, axis=1)


def policy_kwargs() -> dict[str, Any]:
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class MinAtarCNN(BaseFeaturesExtractor):
        """MinAtar's network: conv 3x3 (16) on the (H, W, C) grid, then a 128-unit layer."""

        def __init__(self, space: Any, features_dim: int = 128) -> None:
            super().__init__(space, features_dim)
            h, w, c = space.shape
            self.conv = nn.Sequential(nn.Conv2d(c, 16, 3, 1), nn.ReLU(), nn.Flatten())
            self.fc = nn.Sequential(nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x.permute(0, 3, 1, 2).float()))

    return {"features_extractor_class": MinAtarCNN, "net_arch": []}


def play(env: Any, victim: Any, seed: int, rng: np.random.Generator | None = None, eps: float = 0.0,
         keep_frames: bool = False) -> dict[str, Any]:  # fmt: skip
    obs, _ = env.reset(seed=seed)
    victim.start_episode(seed)
    frames, total, done, n = [], 0.0, False, 0
    while not done:
        if keep_frames:
            frames.append(frame(env, obs))
        victim.at_step(n)
        if rng is not None and rng.random() < eps:
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(victim.act(obs))
        obs, r, term, trunc, _ = env.step(action)
        total += float(r)
        n += 1
        done = term or trunc
    return {"return": total, "length": n, "frames": frames, "truncated": bool(trunc)}


def victim_ppo(venv: Any, seed: int) -> Any:
    """The victim's PPO (MinAtar's network, the hyperparameters of runs M-M5), untrained."""
    from stable_baselines3 import PPO

    return PPO(
        "MlpPolicy", venv, n_steps=128, batch_size=256, n_epochs=4, learning_rate=5e-4, ent_coef=0.01,
        gamma=0.99, gae_lambda=0.95, clip_range=0.2, policy_kwargs=policy_kwargs(), seed=seed,
        device="cpu", verbose=0,
    )  # fmt: skip


def train_victim(args: argparse.Namespace) -> Path:
    path = args.out / "victim.zip"
    if path.is_file():
        log(f"victim: reusing {path}")
        return path
    from stable_baselines3.common.env_util import make_vec_env

    t0, c0 = time.perf_counter(), time.process_time()
    venv = make_vec_env(
        lambda: make_env(TRAIN_STEPS[args.minatar_game], sticky=0.1, game=args.minatar_game),
        n_envs=8,
        seed=args.victim_seed,
    )
    model = victim_ppo(venv, args.victim_seed)
    model.learn(args.ppo_steps)
    model.save(str(path))
    check_victim(args, path, time.perf_counter() - t0, time.process_time() - c0)
    return path


def check_victim(
    args: argparse.Namespace, path: Path, seconds: float = 0.0, cpu: float = 0.0
) -> dict[str, Any]:
    from stable_baselines3 import PPO

    from critwrap.attack import Victim

    victim = Victim(PPO.load(path, device="cpu"), sample=True)
    env = make_env(args.max_steps, game=args.minatar_game)
    games = [play(env, victim, CHECK_SEED + i) for i in range(args.check_episodes)]
    info = {
        "ppo_steps": args.ppo_steps,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "check_returns": [g["return"] for g in games],
        "check_lengths": [g["length"] for g in games],
        "check_mean": float(np.mean([g["return"] for g in games])),
        "check_mean_length": float(np.mean([g["length"] for g in games])),
        "check_truncated_share": float(np.mean([g["truncated"] for g in games])),
    }
    (args.out / "victim.json").write_text(json.dumps(info, indent=1))
    log(
        f"victim: sampled check mean return {info['check_mean']:.1f}, length {info['check_mean_length']:.0f}, "
        f"share reaching the {args.max_steps}-step cap {info['check_truncated_share']:.2f}"
    )
    return info


def record_data(args: argparse.Namespace, victim_path: Path) -> list[Any]:
    """One set of ``--data-episodes`` games per epsilon (env seeds 100000+), labelled by the median return."""
    from stable_baselines3 import PPO

    from critwrap.attack import Victim
    from critwrap.episodes import Episode

    eps_list = data_epsilons(args.data_epsilon)
    frames_all, lengths_all, returns_all = [], [], []
    for eps in eps_list:
        path = args.out / f"data_eps{eps:g}.npz"
        if not path.is_file():
            victim = Victim(PPO.load(victim_path, device="cpu"), sample=True, sample_seed=1)
            env = make_env(args.max_steps, game=args.minatar_game)
            rng = np.random.default_rng(DATA_SEED)
            frames, lengths, returns = [], [], []
            t0 = time.perf_counter()
            for e in range(args.data_episodes):
                g = play(env, victim, DATA_SEED + e, rng=rng, eps=eps, keep_frames=True)
                frames += g["frames"]
                lengths.append(g["length"])
                returns.append(g["return"])
            np.savez_compressed(
                path, frames=np.stack(frames), lengths=np.asarray(lengths), returns=np.asarray(returns)
            )
            log(f"data (epsilon {eps:g}): {len(frames)} frames in {time.perf_counter() - t0:.0f} s")
        with np.load(path) as z:
            frames_all.append(z["frames"])
            lengths_all.append(z["lengths"])
            returns_all.append(z["returns"])
    frames = np.concatenate(frames_all)
    lengths = np.concatenate(lengths_all)
    returns = np.concatenate(returns_all)
    median = float(np.median(returns))
    labels = (returns >= median).astype(int)
    if labels.all():  # the median is the lowest return (e.g. a toy run's all-zero games): above it instead
        labels = (returns > median).astype(int)
    log(
        f"data: {len(lengths)} games, return mean {returns.mean():.1f} median {median:g}, "
        f"length mean {lengths.mean():.0f}, label-1 share {labels.mean():.2f}"
    )
    (args.out / "data.json").write_text(
        json.dumps({"median_return": median, "games": len(lengths), "label1_share": float(labels.mean())})
    )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return [Episode(frames[s : s + n], label=int(y)) for s, n, y in zip(starts, lengths, labels, strict=True)]


def cut_windows(episodes: list[Any], width: int, cap: int, seed: int = 0) -> list[Any]:
    """Run M2's detector data (the paper's Pong DSI learns from the outcome of one point): per game its
    last ``width`` frames (the whole game when shorter), labelled 0 ("ball lost") when the game ended
    before the ``cap`` and 1 when it reached it; and, when the game has at least ``2 * width`` frames, one
    earlier window that does not overlap the last (start uniform in ``0 .. len - 2 * width``), labelled 1
    ("ball kept"). One generator (``seed``) draws the starts, games in order."""
    from critwrap.episodes import Episode

    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    rng = np.random.default_rng(seed)
    out = []
    for e in episodes:
        f = e.frames
        n = len(f)
        out.append(Episode(f[max(0, n - width) :], label=int(n >= cap)))
        if n >= 2 * width:
            s = int(rng.integers(0, n - 2 * width + 1))
            out.append(Episode(f[s : s + width], label=1))
    return out


def load_scorer(path: Path, windows: int, profile: list[float] | None = None) -> Any:
    """The fitted DSI at ``path``, behind critwrap's :class:`~critwrap.detectors.windowed.Windowed` (stride
    ``windows // 2``, ``position_profile=profile``) when ``windows``."""
    from critwrap.detectors.dsi import DSI
    from critwrap.detectors.windowed import Windowed

    det = DSI.load(path)
    return Windowed(det, windows, max(1, windows // 2), position_profile=profile) if windows else det


def where_check(args: argparse.Namespace, victim_path: Path, games: int = 40, k: int = 10) -> dict[str, Any]:
    """Where the detector's and the victim's top-k steps lie in clean attacked games (seeds ``--seed``+):
    medians over games of the median steps before the end and of the earliest top-k step."""
    from stable_baselines3 import PPO

    from critwrap.attack import Victim, run_episode

    env = make_env(args.max_steps, game=args.minatar_game)
    victim = Victim(PPO.load(victim_path, device="cpu"), sample=True)
    det = load_scorer(args.out / "dsi", args.windows, getattr(args, "profile", None))
    lengths, det_end, vic_end, det_first, vic_first = [], [], [], [], []
    for s in range(args.seed, args.seed + games):
        ep = run_episode(env, victim, seed=s, frames=frame, keep_frames=True)
        n = ep.length
        for scores, end, first in (
            (np.asarray(det.score(ep.frames_array()), dtype=np.float64), det_end, det_first),
            (
                np.asarray(victim.importance(np.asarray(ep.observations)), dtype=np.float64),
                vic_end,
                vic_first,
            ),
        ):
            top = np.argsort(-scores, kind="stable")[: min(k, n)]
            end.append(float(np.median(n - 1 - top)))
            first.append(int(top.min()))
        lengths.append(n)
    out = {
        "games": games,
        "k": k,
        "length_median": float(np.median(lengths)),
        "detector_topk_median_steps_before_end": float(np.median(det_end)),
        "victim_topk_median_steps_before_end": float(np.median(vic_end)),
        "detector_topk_earliest_step_median": float(np.median(det_first)),
        "victim_topk_earliest_step_median": float(np.median(vic_first)),
    }
    (args.out / "where_check.json").write_text(json.dumps(out, indent=1))
    log(f"where the top-{k} steps lie: {out}")
    return out


def mask_by_ball_row(
    victim_path: Path, scorers: dict[str, Any], seed: int, games: int = 40, max_steps: int = 1000
) -> dict[str, Any]:
    """Breakout only: where in the ball's flight each scorer's scores are high, on clean games (seeds
    ``seed``+). Per scorer: the mean within-game z-score of the frames with the ball in each row (0 top,
    9 the paddle's row), the victim's importance (minus its policy entropy) there, and the correlation of
    the score with the step number."""
    from stable_baselines3 import PPO

    from critwrap.attack import Victim, run_episode

    env = make_env(max_steps)
    victim = Victim(PPO.load(victim_path, device="cpu"), sample=True)
    clean = [
        run_episode(env, victim, seed=s, frames=frame, keep_frames=True) for s in range(seed, seed + games)
    ]
    out: dict[str, Any] = {"games": games}
    for name, det in scorers.items():
        rows = []
        for ep in clean:
            f = ep.frames_array()
            sc = np.asarray(det.score(f), dtype=np.float64)
            z = (sc - sc.mean()) / (sc.std() + 1e-9)
            imp = np.asarray(victim.importance(np.asarray(ep.observations)), dtype=np.float64)
            cells = f[:, ::SCALE, ::SCALE, :] > 0  # back to the 10x10 grid: channel 1 is the ball
            for t in range(len(f)):
                ball = np.argwhere(cells[t, :, :, 1])
                if len(ball):
                    rows.append((ball[0][0], z[t], imp[t], sc[t], t))
        r = np.asarray(rows, dtype=np.float64)
        by_row = {
            int(b): {
                "frames": int((r[:, 0] == b).sum()),
                "score_z": float(r[r[:, 0] == b, 1].mean()),
                "victim_importance": float(r[r[:, 0] == b, 2].mean()),
            }
            for b in np.unique(r[:, 0])
        }
        out[name] = {"by_ball_row": by_row, "corr_score_step": float(np.corrcoef(r[:, 3], r[:, 4])[0, 1])}
    return out


def _setup(a: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A worker's env, victim (keyed samples) and detector, on one torch thread."""
    import torch
    from stable_baselines3 import PPO

    from critwrap.attack import Victim

    torch.set_num_threads(1)
    env = make_env(a["max_steps"], game=a["game"])
    victim = Victim(PPO.load(a["victim"], device="cpu"), sample=True)
    return env, victim, load_scorer(Path(a["dsi"]), a.get("windows", 0), a.get("position_profile"))


def _scorers(a: dict[str, Any], det: Any) -> dict[str, Any]:
    """Run SI3: the DSI's two scorings by name ("plain": windows averaged as they are, "profile": the
    position profile subtracted first), both on the same member; otherwise ``{"": det}``."""
    if "scorings" not in a:
        return {"": det}
    from critwrap.detectors.windowed import Windowed

    return {
        "plain": Windowed(det.member, det.width, det.stride),
        "profile": Windowed(det.member, det.width, det.stride, position_profile=a["scorings"]),
    }


def _worker(job: tuple[dict[str, Any], list[int]]) -> list[dict[str, Any]]:
    """The attack rows of ``seeds`` per k; with ``a["leads"]`` (run M3's calibration) instead the detector's
    drop at every candidate lead (:func:`critwrap.attack.choose_lead`)."""
    from critwrap.attack import choose_lead, evaluate_attack, run_episode

    a, seeds = job
    env, victim, det = _setup(a)
    rows = []
    for s in seeds:
        clean = run_episode(env, victim, seed=s, frames=frame, keep_frames=True)
        for k in a["ks"]:
            if "leads" in a:
                drops = {}
                for name, scorer in _scorers(a, det).items():
                    got = choose_lead(
                        env, victim, scorer, k=k, leads=a["leads"], clean_runs=[clean], frames=frame
                    )
                    pre = f"{name}:" if name else ""
                    drops.update({f"{pre}{x}": float(d[0]) for x, d in got.drops.items()})
                rows.append({"seed": s, "k": k, "drops": drops})
                continue
            lead = a["lead"][str(k)] if isinstance(a["lead"], dict) else a["lead"]
            scorer = det
            if isinstance(lead, str):  # run SI3: "scoring:lead", chosen per k by the calibration
                name, lead = lead.split(":")
                scorer, lead = _scorers(a, det)[name], int(lead)
            rep = evaluate_attack(
                env, victim, scorer, k=k, clean_runs=[clean], frames=frame, detector_lead=lead, n_boot=10,
                allow_short=True, methods=a["methods"], detector_min_gap=a["gap"],
            )  # fmt: skip
            row = report_row(rep, s, k, clean.length)
            row["detector_spread"] = rep.settings.get("detector_spread_median")
            rows.append(row)
    return rows


def calibrate_leads(args: argparse.Namespace, a: dict[str, Any]) -> dict[str, Any]:
    """Run M3: for each k, the lead (of ``--calibrate-leads``) with the largest mean drop of the detector's
    top-k attack on ``--calibration-episodes`` games from ``--calibration-seed`` (ties: the first listed);
    written to ``OUT/calibration.json``."""
    cal = argparse.Namespace(**vars(args))
    cal.seed, cal.episodes = args.calibration_seed, args.calibration_episodes
    overlap = set(range(cal.seed, cal.seed + cal.episodes)) & set(range(args.seed, args.seed + args.episodes))
    if overlap:
        raise SystemExit(
            f"the calibration seeds overlap the evaluation seeds ({min(overlap)}..{max(overlap)})"
        )
    b = dict(a, leads=list(args.calibrate_leads))
    if getattr(args, "calibrate_scoring", False):
        b["scorings"] = a["position_profile"]
        b["position_profile"] = None
    name = "calibration_scoring.jsonl" if "scorings" in b else "calibration.jsonl"  # rows of another kind
    rows = run_chunks(cal, args.out / name, b, _worker)
    table: dict[str, dict[str, float]] = {}
    chosen: dict[str, Any] = {}
    cands: list[Any] = list(b["leads"])
    if "scorings" in b:  # run SI3: every (scoring, lead) pair, plain first (ties: the first listed)
        cands = [f"{name}:{x}" for name in ("plain", "profile") for x in b["leads"]]
    for k in args.ks:
        means = {str(x): float(np.mean([r["drops"][str(x)] for r in rows if r["k"] == k])) for x in cands}
        table[str(k)] = means
        chosen[str(k)] = max(cands, key=lambda x: (means[str(x)], -cands.index(x)))
        log(f"calibration k={k}: mean drop per candidate {means}; chosen {chosen[str(k)]}")
    out = {
        "seeds": [cal.seed, cal.seed + cal.episodes - 1],
        "games": len({r["seed"] for r in rows}),
        "leads": b["leads"],
        "mean_drop": table,
        "chosen": chosen,
    }
    (args.out / "calibration.json").write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/attack_minatar"))
    p.add_argument("--game", dest="minatar_game", choices=sorted(GAMES), default="breakout")
    p.add_argument("--ppo-steps", type=int, default=3_000_000)
    p.add_argument("--victim-seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=1000, help="agent steps per game at most")
    p.add_argument("--check-episodes", type=int, default=20)
    p.add_argument("--data-episodes", type=int, default=200)
    p.add_argument("--data-epsilon", default="0.1,0.25", help="one or several (comma-separated) epsilons")
    p.add_argument("--dsi-epochs", type=int, default=10)
    add_common_args(p)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--chunk", type=int, default=10, help="seeds per worker task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--gap", type=int, default=5, help="detector-spaced: attacked steps at least this far apart"
    )
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated, of {ALL_METHODS}")
    p.add_argument(
        "--windows",
        type=int,
        default=0,
        help="run M2: fit the DSI on windows of this many frames (cut_windows) and score games with "
        "sliding windows (critwrap.detectors.windowed.Windowed, stride windows // 2); 0 (default, run M): whole games",
    )
    p.add_argument(
        "--position-profile",
        action="store_true",
        help="run SI2 (with --windows): subtract the DSI's mean score per window position, measured on the "
        "detector data games (Windowed.fit_position_profile), before averaging the windows",
    )
    p.add_argument(
        "--calibrate-scoring",
        action="store_true",
        help="run SI3 (with --windows and --calibrate-leads): the calibration also chooses, per k, between "
        "the plain sliding-window scores and the position-profile ones (the profile measured as for "
        "--position-profile)",
    )
    p.add_argument(
        "--calibrate-leads",
        type=int,
        nargs="+",
        default=None,
        metavar="LEAD",
        help="run M3: choose the detector's lead per k among these on held-out games (choose_lead) "
        "instead of --lead",
    )
    p.add_argument("--calibration-seed", type=int, default=30_000, help="first calibration game's env seed")
    p.add_argument("--calibration-episodes", type=int, default=50, help="calibration games")
    p.add_argument("--check-only", action="store_true", help="stop after the detector check (no attack)")
    p.add_argument(
        "--tag", default="", help="suffix of the attack's outputs (episodes_TAG.jsonl, results_TAG.*)"
    )
    args = p.parse_args(argv)
    data_epsilons(args.data_epsilon)
    if args.position_profile and not args.windows:
        p.error("--position-profile needs --windows (it corrects the sliding-window scores)")
    if args.calibrate_scoring and not (args.windows and args.calibrate_leads):
        p.error("--calibrate-scoring needs --windows and --calibrate-leads")
    if args.calibrate_scoring:
        args.position_profile = True  # the profile is measured; the calibration decides whether to use it
    if args.windows < 0:
        p.error(f"--windows: expected 0 (whole games) or a window length >= 1, got {args.windows}")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or any(m not in ALL_METHODS for m in args.methods):
        p.error(f"--methods: expected some of {ALL_METHODS}, got {args.methods}")
    sfx = f"_{args.tag}" if args.tag else ""
    args.episodes_file = f"episodes{sfx}.jsonl"
    title = f"MinAtar {args.minatar_game.replace('_', ' ').title()}"
    args.perturb, args.epsilon, args.game = "action", None, title.replace(" ", "-")

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    victim_path = train_victim(args)
    if not (args.out / "victim.json").is_file():
        check_victim(args, victim_path)
    episodes = record_data(args, victim_path)
    if args.windows:
        games = episodes
        episodes = cut_windows(games, args.windows, args.max_steps)
        labels = np.array([e.label for e in episodes])
        log(
            f"windows of {args.windows} frames: {len(episodes)}, label-1 (ball kept) share {labels.mean():.2f}"
        )
        train_dsi(args, episodes, max_length=args.windows)
        det = load_scorer(args.out / "dsi", args.windows)
        if args.position_profile:
            # run SI2: the DSI's mean score per window position over the detector data games' windows
            det.fit_position_profile(games)
            args.profile = det.position_profile.tolist()
            (args.out / "position_profile.json").write_text(json.dumps(args.profile, indent=1))
            log(f"position profile: {np.round(det.position_profile, 3).tolist()}")
        check = check_detector(det, games)
    else:
        det = train_dsi(args, episodes, max_length=args.max_steps)
        check = check_detector(det, episodes)
    (args.out / "detector_check.json").write_text(json.dumps(check, indent=1))
    log(f"detector check: {check}")
    if args.check_only:
        return 0
    a = {
        "victim": str(victim_path),
        "dsi": str(args.out / "dsi"),
        "ks": list(args.ks),
        "lead": args.lead,
        "methods": list(args.methods),
        "gap": args.gap,
        "max_steps": args.max_steps,
        "game": args.minatar_game,
        "windows": args.windows,
        "position_profile": getattr(args, "profile", None),
    }
    if args.calibrate_leads:
        calibration = calibrate_leads(args, a)
        a["lead"] = calibration["chosen"]
        if args.calibrate_scoring:
            a["scorings"] = a["position_profile"]
    rows = run_chunks(args, args.out / args.episodes_file, a, _worker)
    where = where_check(args, victim_path)
    if args.minatar_game == "breakout":
        rows_check = mask_by_ball_row(victim_path, {"detector": det}, args.seed, max_steps=args.max_steps)
        (args.out / "mask_by_ball_row.json").write_text(json.dumps(rows_check, indent=1))
    text, out = summarize(args, rows)
    out.update(run_meta(args))
    out["seconds"] = time.perf_counter() - t_start
    out["detector_check"] = check
    out["where_check"] = where
    if args.calibrate_leads:
        out["calibration"] = calibration
    spreads = [r["detector_spread"] for r in rows if r.get("detector_spread") is not None]
    if spreads:
        out["detector_spread_games"] = {"median": float(np.median(spreads)), "min": float(np.min(spreads))}
    (args.out / f"results{sfx}.json").write_text(json.dumps(out, indent=1))
    (args.out / f"results{sfx}.md").write_text(text + "\n")
    if out["reports"]:
        plot(out, args.out / f"drops{sfx}.png", title, "action")
    print(text)
    log(f"done in {time.perf_counter() - t_start:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
