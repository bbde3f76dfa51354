"""``python -m critwrap.zoo attack``: attack a trained agent at its detector's top-k critical states.

Replay protocol (:func:`critwrap.attack.evaluate_attack`): for each of ``--episodes`` seeds, a clean
episode, then one replay per method with ``--top-k`` perturbed steps: the detector's top-k, k random
steps, and the victim's own top-k (Q-value spread, policy entropy or value). Prints a table (mean return
with a bootstrap 95% CI, drop from clean, win rate, flipped wins, perturbed steps per episode) and writes
``attack_<timestamp>.json``, ``.csv`` and ``.png`` (a bar chart of returns and drops with their CIs)
into the run directory (or next to ``--model`` when it is a model file outside a run).

``--protocol online`` (:func:`critwrap.attack.evaluate_online_attack`) attacks while each episode runs
instead: a step is attacked when the detector's score of the frames so far (or the victim's importance)
reaches a threshold, at most ``--top-k`` times per episode; random attacks as many steps as the detector
did in the same seed. Thresholds not given (``--threshold``, ``--victim-threshold``) are calibrated on
``--calibration-episodes`` clean episodes of other seeds so that about ``--top-k`` steps of a clean
episode pass (``--rate`` sets that share directly). Nothing is replayed, so the env need not be
deterministic.

``--model`` is a run directory written by ``train`` or a model file (``.zip``); a model file inside a
run directory (``model.zip``, ``best_model.zip``, ``checkpoints/rl_model_*.zip``) uses that run's
config; any other file needs ``--algo`` and ``--env``. The env must be deterministic given its seed
(the replay is checked; ALE games: ``--env-kwarg repeat_action_probability=0``).

Example:
    .. code-block:: console

        python -m critwrap.zoo attack --model runs/default/dqn/Pong/base/seed_0 --detector dsi_pong \\
            --top-k 30 --episodes 500 --perturb action
        python -m critwrap.zoo attack --model runs/default/dqn/Pong/base/seed_0 --detector dsi_pong \\
            --protocol online --top-k 30 --episodes 500
        python -m critwrap.zoo attack --model agent.zip --algo ppo --env MiniGrid-LavaGapS6-v0 \\
            --wrapper minigrid.wrappers:ImgObsWrapper --env-kwarg preprocess=false \\
            --detector det/ --frames minigrid-pov:4 --top-k 2 --episodes 200 --perturb fgsm --epsilon 1
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "VecEnvAsEnv",
    "add_parser",
    "make_attack_env",
    "parse_frames",
    "parse_lead",
    "parse_score_windows",
    "resolve_model",
    "run",
]

NAME = "attack"


def parse_lead(text: str, candidates: str) -> tuple[int, list[int] | None]:
    """``--lead``: an integer (the lead itself) or ``auto`` (then the candidates ``A:B`` of ``--leads``)."""
    if str(text).strip().lower() == "auto":
        try:
            a, b = (int(x) for x in str(candidates).split(":"))
        except ValueError:
            raise ValueError(f"--leads takes A:B (integers, e.g. -4:2), got {candidates!r}") from None
        if b < a:
            raise ValueError(f"--leads A:B needs A <= B, got {candidates!r}")
        return 0, list(range(a, b + 1))
    try:
        return int(text), None
    except ValueError:
        raise ValueError(f"--lead takes an integer number of steps or 'auto', got {text!r}") from None


def parse_score_windows(text: str) -> tuple[int, int | None]:
    """``"W"`` or ``"W:S"`` -> (width, stride or None), with a clear error for anything else."""
    parts = str(text).split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        width = int(parts[0])
        stride = int(parts[1]) if len(parts) == 2 else None
    except ValueError:
        raise ValueError(
            f"--score-windows takes W or W:S (integers, e.g. 20 or 20:10), got {text!r}"
        ) from None
    if width < 1 or (stride is not None and not 1 <= stride <= width):
        raise ValueError(f"--score-windows W:S needs W >= 1 and 1 <= S <= W, got {text!r}")
    return width, stride


class VecEnvAsEnv(gym.Env[Any, Any]):
    """A one-env SB3 ``VecEnv`` (with frame stacking / VecNormalize) seen as a Gymnasium env, so that
    the attack sees exactly the observations the model was trained on. ``reset(seed=s)`` seeds it."""

    def __init__(self, venv: Any) -> None:
        if venv.num_envs != 1:
            raise ValueError(f"VecEnvAsEnv needs a VecEnv with one env, got {venv.num_envs}")
        self.venv = venv
        self.observation_space = venv.observation_space
        self.action_space = venv.action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self.venv.seed(seed)
        obs = self.venv.reset()
        return obs[0], {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, rewards, dones, infos = self.venv.step(np.asarray([action]))
        info = dict(infos[0])
        done = bool(dones[0])
        truncated = done and bool(info.get("TimeLimit.truncated", False))
        ob = info.pop("terminal_observation") if done and "terminal_observation" in info else obs[0]
        return ob, float(rewards[0]), done and not truncated, truncated, info

    def render(self) -> Any:
        return self.venv.render()

    def close(self) -> None:
        self.venv.close()


def resolve_model(
    model: str, algo: str | None, env: str | None, wrappers: list[tuple[str, dict[str, Any]]], device: str
) -> Any:
    """Load ``--model`` (run directory, model file in a run, or a bare model file with algo and env)."""
    from critwrap.zoo.common import load_run

    path = Path(model)
    if path.is_dir():
        if wrappers:
            raise ValueError("--wrapper is for a bare model file; a run's wrappers come from its config.json")
        return load_run(path, algo=algo, env=env, device=device)
    if not path.is_file():
        raise FileNotFoundError(f"--model {model}: no such run directory or model file")
    for run in (path.parent, path.parent.parent):
        if (run / "config.json").is_file() and not wrappers:
            return load_run(run, model_path=path, algo=algo, env=env, device=device)
    if algo is None or env is None:
        raise ValueError(
            f"--model {model} is a model file outside a run directory: give --algo ALGO and --env ENV "
            "(and --wrapper for the wrappers it was trained with)"
        )
    return load_run(None, model_path=path, algo=algo, env=env, wrappers=wrappers, device=device)


def make_attack_env(
    loaded: Any, env_kwargs: dict[str, Any] | None = None, render_mode: str | None = None
) -> Any:
    """The run's evaluation env (``training=False``) as one Gymnasium env; VecEnv-level frame stacking or
    normalisation is kept through :class:`VecEnvAsEnv`."""
    from critwrap.zoo.common import make_env_fn

    cfg = loaded.config
    hp = dict(cfg.get("hyperparams", {}))
    kwargs = dict(hp.get("env_kwargs") or {})
    kwargs.update(env_kwargs or {})
    if hp.get("frame_stack") or hp.get("normalize") or loaded.vecnormalize_path is not None:
        if env_kwargs:
            hp["env_kwargs"] = kwargs
            loaded.config = {**cfg, "hyperparams": hp}
        return VecEnvAsEnv(loaded.make_env(seed=None, n_envs=1, render_mode=render_mode))
    skip = set(cfg.get("eval_skip_wrappers", []))
    wrappers = [(w["name"], w["kwargs"]) for w in cfg.get("wrappers", []) if w["name"] not in skip]
    return make_env_fn(
        cfg["env"],
        wrappers=wrappers,
        training=False,
        env_kwargs=kwargs,
        render_mode=render_mode,
        monitor=False,
        max_episode_steps=cfg.get("eval_max_steps"),
    )()


def _minigrid_pov(tile: int) -> Any:
    def frame(env: Any, obs: Any) -> np.ndarray:
        base = env.unwrapped
        if not hasattr(base, "get_frame"):
            raise ValueError("--frames minigrid-pov needs a MiniGrid env")
        return np.asarray(base.get_frame(highlight=False, tile_size=tile, agent_pov=True))

    return frame


def parse_frames(text: str) -> Any:
    """``observations``, ``render``, ``render:H[xW]`` (rendered frames resized, :class:`RenderedFrames`) or
    ``minigrid-pov[:TILE]`` (the agent's view rendered, DSI's GridWorld frames)."""
    from critwrap.attack.protocols import RenderedFrames

    if text in ("observations", "render"):
        return text
    if text.startswith("render:"):
        return RenderedFrames(text.partition(":")[2])
    if text.startswith("minigrid-pov"):
        _, _, tile = text.partition(":")
        return _minigrid_pov(int(tile or 4))
    raise ValueError(f"--frames must be observations, render[:H[xW]] or minigrid-pov[:TILE], got {text!r}")


def needs_render(frames: Any) -> bool:
    """Whether the frame source renders the env (so the env must be made with ``render_mode="rgb_array"``)."""
    return frames == "render" or bool(getattr(frames, "needs_render", False))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="attack an agent at its detector's top-k critical steps vs random-k and victim-importance-k",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--model", required=True, metavar="RUN_OR_ZIP", help="run directory or model .zip")
    p.add_argument("--algo", default=None, help="algorithm of a bare model file")
    p.add_argument("--env", default=None, help="environment of a bare model file (checked against a run's)")
    p.add_argument(
        "--wrapper",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="wrappers of a bare model file",
    )
    p.add_argument(
        "--env-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra env argument (YAML value)",
    )
    p.add_argument(
        "--detector", default=None, metavar="PATH", help="a saved detector directory (or a registry name)"
    )
    p.add_argument("--top-k", type=int, default=30, help="attacked steps per episode (default 30)")
    p.add_argument(
        "--lead",
        default="0",
        help="attack this many steps before each of the detector's top-k frames (default 0: the action at "
        "the critical frame; 2: the original Pong attack script's alignment; negative: after them), or "
        "'auto': the lead in --leads whose top-k attack costs most on --calibration-episodes other seeds",
    )
    p.add_argument(
        "--leads",
        default="-4:2",
        metavar="A:B",
        help="--lead auto: the candidate leads A..B (default -4:2; write --leads=-3:1 when A is negative)",
    )
    p.add_argument(
        "--protocol",
        default="replay",
        choices=["replay", "online"],
        help="replay: perturb the top-k steps of the clean episode (default); online: attack during the "
        "episode when the score of the frames so far passes a threshold",
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="online: the detector's threshold (default: calibrated)"
    )
    p.add_argument(
        "--victim-threshold",
        type=float,
        default=None,
        help="online: the victim importance's threshold (default: calibrated)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="online: share of clean steps a calibrated threshold lets pass (default: top-k / mean length)",
    )
    p.add_argument(
        "--calibration-episodes",
        type=int,
        default=20,
        help="clean episodes (seeds after the evaluated ones) that online thresholds and --lead auto are "
        "calibrated on (default 20)",
    )
    p.add_argument(
        "--window", type=int, default=None, help="online: the detector scores only the last WINDOW frames"
    )
    p.add_argument(
        "--score-windows",
        default=None,
        metavar="W[:S]",
        help="score episodes with W-frame sliding windows every S steps (default W//2), each frame the mean of "
        "its windows: for a detector trained on W-frame clips (critwrap.detectors.windowed.Windowed)",
    )
    p.add_argument("--episodes", type=int, default=100, help="seeded episodes (default 100)")
    p.add_argument("--seed", type=int, default=0, help="first env seed (episodes use seed, seed+1, ...)")
    p.add_argument("--perturb", default="action", choices=["action", "fgsm", "pgd"], help="perturbation")
    p.add_argument(
        "--epsilon", type=float, default=None, help="L-inf budget of fgsm / pgd (observation units)"
    )
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations (default 10)")
    p.add_argument(
        "--methods",
        default="detector,random,victim",
        help="comma-separated subset of detector,random,victim,block,detector-spaced (block: k consecutive "
        "steps at a random place; detector-spaced: the detector's top-k at least --min-gap steps apart; "
        "both replay protocol only)",
    )
    p.add_argument(
        "--min-gap",
        type=int,
        default=None,
        help="replay: the spacing of detector-spaced's steps (default 5; adds detector-spaced to --methods if "
        "absent); online: a cooldown, no two attacked steps of the detector and victim methods closer than this",
    )
    p.add_argument(
        "--frames",
        default="observations",
        help="what the detector scores: observations, render, render:H[xW] (resized, e.g. render:84 for a "
        "detector fitted on `record agent --record frames --frame-size 84`), minigrid-pov[:TILE]",
    )
    p.add_argument(
        "--win-threshold", type=float, default=0.0, help="a win is a return above this (default 0)"
    )
    p.add_argument("--allow-short", action="store_true", help="attack every step of episodes shorter than k")
    p.add_argument(
        "--sample",
        action="store_true",
        help="the victim samples its actions (keyed by seed and step, so replays reproduce them) instead of "
        "acting greedily; discrete actor-critic policies (PPO, A2C, TRPO)",
    )
    p.add_argument(
        "--out", default=None, help="directory for attack_<timestamp>.json/.csv (default: the run)"
    )
    p.add_argument("--device", default="cpu", help="torch device of the victim (default cpu)")
    p.add_argument(
        "--detector-device",
        default=None,
        help="where a learned detector (DSI) scores: cuda, cuda:N, auto (a GPU if there is one), or 'same' (--device); default: the CPU",
    )
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("-v", "--verbose", action="count", default=0, help="show tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    from critwrap.attack import (
        Victim,
        evaluate_attack,
        evaluate_online_attack,
        format_table,
        make_perturbation,
    )
    from critwrap.attack.wrapper import load_detector_like
    from critwrap.zoo.runs import record_path, write_json
    from critwrap.zoo.specs import normalize_specs

    if args.num_threads is not None:
        import torch

        torch.set_num_threads(int(args.num_threads))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.min_gap is not None:
        if args.min_gap < 2:
            raise ValueError(f"--min-gap must be >= 2 steps, got {args.min_gap}")
        if args.protocol == "replay" and "detector-spaced" not in methods:
            methods.append("detector-spaced")
    uses_detector = [m for m in methods if m in ("detector", "detector-spaced")]
    score_windows = parse_score_windows(args.score_windows) if args.score_windows is not None else None
    if score_windows is not None and args.detector is None:
        raise ValueError("--score-windows needs --detector")
    if uses_detector and args.detector is None:
        raise ValueError(
            f"give --detector PATH (a saved detector directory), or leave {uses_detector[0]!r} out of --methods"
        )
    replay_only = [m for m in methods if m in ("block", "detector-spaced")]
    if args.protocol == "online" and replay_only:
        raise ValueError(f"the {replay_only[0]!r} method applies to --protocol replay only")
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    lead, lead_candidates = parse_lead(args.lead, args.leads)
    online_only = {
        "--threshold": args.threshold is not None,
        "--victim-threshold": args.victim_threshold is not None,
        "--rate": args.rate is not None,
        "--window": args.window is not None,
    }
    if args.protocol == "replay" and any(online_only.values()):
        given = ", ".join(k for k, v in online_only.items() if v)
        raise ValueError(f"{given} apply to --protocol online only")
    if args.protocol == "online" and (lead > 0 or lead_candidates is not None or args.allow_short):
        raise ValueError(
            "--allow-short, --lead auto and a positive --lead apply to --protocol replay only (the online "
            "protocol cannot attack before a frame it has not seen; a negative --lead delays its attack)"
        )
    env_kwargs: dict[str, Any] = {}
    if args.env_kwarg:
        from critwrap.zoo.specs import parse_value

        for item in args.env_kwarg:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--env-kwarg must be KEY=VALUE, got {item!r}")
            env_kwargs[key.strip()] = parse_value(value)
    perturbation = make_perturbation(args.perturb, epsilon=args.epsilon, pgd_steps=args.pgd_steps)
    loaded = resolve_model(
        args.model, args.algo, args.env, normalize_specs(list(args.wrapper), "--wrapper"), args.device
    )
    frames = parse_frames(args.frames)
    detector = load_detector_like(args.detector) if args.detector is not None else None
    if score_windows is not None:
        from critwrap.detectors.base import Detector
        from critwrap.detectors.windowed import Windowed

        if not isinstance(detector, Detector):
            raise TypeError(f"--score-windows needs a critwrap Detector, got {type(detector).__name__}")
        detector = Windowed(detector, *score_windows)
    if args.detector_device is not None:
        if detector is None:
            raise ValueError("--detector-device needs --detector")
        detector = detector.to(args.device if args.detector_device == "same" else args.detector_device)
    victim = Victim(loaded.model, sample=args.sample)
    env = make_attack_env(loaded, env_kwargs, render_mode="rgb_array" if needs_render(frames) else None)

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done == total or done % max(1, total // 20) == 0):
            print(
                f"\r{done}/{total} episodes", end="\n" if done == total else "", file=sys.stderr, flush=True
            )

    common: dict[str, Any] = {
        "k": args.top_k,
        "perturbation": perturbation,
        "episodes": args.episodes,
        "seed": args.seed,
        "methods": methods,
        "frames": frames,
        "win_threshold": args.win_threshold,
        "progress": progress,
    }
    lead_choice = None
    try:
        if args.protocol == "online":
            report = evaluate_online_attack(
                env,
                victim,
                detector,
                threshold=args.threshold,
                victim_threshold=args.victim_threshold,
                rate=args.rate,
                calibration_episodes=args.calibration_episodes,
                window=args.window,
                min_gap=1 if args.min_gap is None else args.min_gap,
                delay=-lead,
                **common,
            )
        else:
            if lead_candidates is not None:
                from critwrap.attack import choose_lead

                if not uses_detector:
                    raise ValueError("--lead auto needs the detector or detector-spaced method")
                lead_choice = choose_lead(
                    env,
                    victim,
                    detector,
                    k=args.top_k,
                    leads=lead_candidates,
                    episodes=args.calibration_episodes,
                    seed=args.seed + args.episodes,
                    perturbation=perturbation,
                    frames=frames,
                )
                lead = lead_choice.lead
                if not args.quiet:
                    drops = ", ".join(f"{x}: {m:.3g}" for x, m in lead_choice.mean_drops().items())
                    print(
                        f"lead chosen on seeds {lead_choice.seeds[0]}..{lead_choice.seeds[-1]}: {lead} "
                        f"(mean drop per lead: {drops})",
                        file=sys.stderr,
                    )
            report = evaluate_attack(
                env,
                victim,
                detector,
                allow_short=args.allow_short,
                detector_lead=lead,
                detector_min_gap=5 if args.min_gap is None else args.min_gap,
                **common,
            )
    finally:
        env.close()
    rows = report.table()
    print(
        f"{loaded.config['algo']} on {loaded.config['env']}, {args.protocol} protocol: {report.perturbation} "
        f"at k={args.top_k} steps, "
        f"{len(report.seeds)} episodes (seeds {report.seeds[0]}..{report.seeds[-1]}), {report.seconds:.0f} s"
    )
    print(format_table(rows))
    if report.settings.get("detector_flat"):
        print(
            f"warning: the detector's scores are nearly constant within the clean episodes (median relative "
            f"range {report.settings['detector_spread_median']:.2g}): its top-k is close to arbitrary"
        )
    if report.settings.get("detector_spaced_unmet"):
        print(
            f"note: {report.settings['detector_spaced_unmet']} episodes were too short to space k={args.top_k} "
            f"steps {report.settings['detector_min_gap']} apart; detector-spaced attacked the next best steps there"
        )
    if args.protocol == "online":
        st = report.settings
        thr = ", ".join(
            f"{name} {st[key]:.4g}" for name, key in (("detector", "threshold"), ("victim", "victim_threshold"))
            if st[key] is not None
        )  # fmt: skip
        how = (
            f"calibrated on seeds {st['calibration_seeds'][0]}..{st['calibration_seeds'][-1]}"
            if st["calibration_seeds"]
            else "given"
        )
        print(f"thresholds ({how}): {thr}; attacked episodes: " + ", ".join(
            f"{r['method']} {r['attacked_episodes']}/{r['episodes']}" for r in rows[1:]
        ))  # fmt: skip
    out_dir = Path(args.out) if args.out else (loaded.run_dir or Path(loaded.model_path).parent)
    result = report.to_dict()
    result.update(
        {
            "model": str(loaded.model_path),
            "algo": loaded.config["algo"],
            "env": loaded.config["env"],
            "detector": args.detector,
            "score_windows": args.score_windows,
            "lead_choice": lead_choice.to_dict() if lead_choice is not None else None,
            "frames": args.frames,
            "command": getattr(args, "command_line", None),
            "timestamp": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
    )
    path = record_path(out_dir, "attack")
    write_json(path, result)
    csv_path = path.with_suffix(".csv")
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    png = plot_attack_table(
        rows, path.with_suffix(".png"), title=f"{loaded.config['algo']} on {loaded.config['env']}"
    )
    print(f"Wrote {path}, {csv_path} and {png}")
    return 0


def plot_attack_table(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """A bar chart of the table: mean return per condition (clean first) with its 95% bootstrap CI, and
    each attack's return drop with its CI; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(r["method"]) for r in rows]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(4.0 + 0.9 * len(rows), 3.4))
    mean = np.array([r["mean_return"] for r in rows], dtype=float)
    lo = np.array([r["return_ci_low"] for r in rows], dtype=float)
    hi = np.array([r["return_ci_high"] for r in rows], dtype=float)
    colors = ["0.5", *[f"C{i}" for i in range(len(rows) - 1)]]
    ax0.bar(names, mean, yerr=[mean - lo, hi - mean], color=colors, capsize=3)
    ax0.set_title("return (95% CI)")
    attacks = rows[1:]
    d = np.array([r["drop"] for r in attacks], dtype=float)
    dlo = np.array([r["drop_ci_low"] for r in attacks], dtype=float)
    dhi = np.array([r["drop_ci_high"] for r in attacks], dtype=float)
    ax1.bar([str(r["method"]) for r in attacks], d, yerr=[d - dlo, dhi - d], color=colors[1:], capsize=3)
    ax1.axhline(0.0, color="k", lw=0.6)
    ax1.set_title(f"return drop at k = {attacks[0]['k'] if attacks else '?'} (95% CI)")
    for ax in (ax0, ax1):
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"{title}: {rows[0]['episodes']} episodes" if title else f"{rows[0]['episodes']} episodes",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
