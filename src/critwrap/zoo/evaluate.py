"""``python -m critwrap.zoo evaluate --run RUN_DIR``: evaluate a trained agent and record the result.

The environment is rebuilt from the run's ``config.json`` with ``training=False`` (the same wrappers,
frame stacking and VecNormalize statistics as in training). The result is printed and written to
``<run>/eval_<timestamp>.json`` (or next to ``--model`` when no run is given). ``--seed`` makes it
repeatable; the default is the run's evaluation seed (``seed + 10000``).

Example:
    .. code-block:: console

        python -m critwrap.zoo evaluate --run runs/default/ppo/CartPole-v1/base/seed_0 --episodes 10
        python -m critwrap.zoo evaluate --model model.zip --algo ppo --env CartPole-v1 --episodes 5 --seed 3
"""

from __future__ import annotations

import argparse
import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_load_options", "add_parser", "evaluate_run", "load_from_args", "run"]

NAME = "evaluate"


def add_load_options(p: argparse.ArgumentParser) -> None:
    """``--run`` / ``--model --algo --env`` / ``--wrapper`` / ``--device``: which agent to load."""
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="a run directory written by `train`")
    p.add_argument(
        "--model", default=None, metavar="PATH.zip", help="a model file (default: the run's model.zip)"
    )
    p.add_argument("--algo", default=None, help="algorithm of --model (when no --run is given)")
    p.add_argument("--env", default=None, help="environment of --model (when no --run is given)")
    p.add_argument(
        "--wrapper",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="wrappers for --model without --run (a run uses those in its config.json); repeatable",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument(
        "--num-threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="end each episode after N steps (default: the run's eval_max_steps, else the env's own limit)",
    )


def load_from_args(args: argparse.Namespace) -> Any:
    from critwrap.zoo.common import load_run
    from critwrap.zoo.specs import normalize_specs

    if getattr(args, "num_threads", None) is not None:
        import torch

        torch.set_num_threads(int(args.num_threads))
    if args.run is None and args.model is None:
        raise ValueError("give --run RUN_DIR, or --model PATH.zip with --algo ALGO and --env ENV")
    if args.run is not None and args.wrapper:
        raise ValueError("--wrapper is for --model without --run; a run's wrappers come from its config.json")
    max_steps = getattr(args, "max_steps", None)
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    loaded = load_run(
        args.run,
        model_path=args.model,
        algo=args.algo,
        env=args.env,
        wrappers=normalize_specs(list(args.wrapper), "--wrapper"),
        device=args.device,
    )
    if max_steps is not None:
        loaded.config["eval_max_steps"] = int(max_steps)
    return loaded


def default_seed(config: dict[str, Any]) -> int:
    from critwrap.zoo.common import EVAL_SEED_OFFSET

    return int(config.get("seed", 0)) + EVAL_SEED_OFFSET


def evaluate_run(
    loaded: Any,
    *,
    episodes: int,
    seed: int | None = None,
    deterministic: bool = True,
    render: bool = False,
    verbose: bool = True,
    render_mode: str | None = None,
    wrap_env: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of a loaded run (see :func:`critwrap.zoo.common.load_run`); returns the summary.

    ``render_mode`` overrides the env's (``"human"`` with ``render``); ``wrap_env`` is applied to the
    evaluation VecEnv (``enjoy --record`` grabs frames this way).
    """
    from critwrap.zoo.common import evaluate, summarize

    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    seed = default_seed(loaded.config) if seed is None else int(seed)
    loaded.model.set_random_seed(seed)
    venv = loaded.make_env(seed=seed, render_mode=render_mode or ("human" if render else None))
    if wrap_env is not None:
        venv = wrap_env(venv)

    def show(i: int, ret: float, length: int) -> None:
        if verbose:
            print(f"episode {i + 1}: return {ret:.2f}, length {length}")

    try:
        returns, lengths = evaluate(
            loaded.model, venv, episodes, deterministic=deterministic, render=render, on_episode=show
        )
    finally:
        venv.close()
    out = summarize(returns, lengths)
    out.update(
        {
            "seed": seed,
            "deterministic": deterministic,
            "model": str(loaded.model_path),
            "algo": loaded.config["algo"],
            "env": loaded.config["env"],
            "max_steps": loaded.config.get("eval_max_steps"),
            "num_timesteps": int(loaded.model.num_timesteps),
        }
    )
    return out


def print_summary(result: dict[str, Any]) -> None:
    print(
        f"{result['algo']} on {result['env']} ({result['n_episodes']} episodes, seed {result['seed']}, "
        f"{'deterministic' if result['deterministic'] else 'stochastic'}): "
        f"return {result['mean_return']:.2f} +- {result['std_return']:.2f}, "
        f"length {result['mean_length']:.1f} +- {result['std_length']:.1f}"
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="evaluate a trained agent; writes eval_<timestamp>.json into the run",
        description=__doc__.split("\n\n")[0],
    )
    add_load_options(p)
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument(
        "--seed", type=int, default=None, help="env and policy seed (default: the run's seed + 10000)"
    )
    p.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deterministic actions (default; --no-deterministic samples)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print each episode")
    return p


def run(args: argparse.Namespace) -> int:
    from critwrap.zoo.runs import record_path, write_json

    loaded = load_from_args(args)
    result = evaluate_run(
        loaded,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=args.deterministic,
        verbose=not args.quiet,
    )
    print_summary(result)
    out_dir = loaded.run_dir if loaded.run_dir is not None else Path(loaded.model_path).parent
    path = record_path(out_dir, "eval")
    result["timestamp"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    write_json(path, result)
    print(f"Wrote {path}")
    return 0
