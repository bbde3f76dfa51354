"""``python -m critwrap.zoo record SOURCE ...``: write episode datasets as :class:`~critwrap.episodes.EpisodeStore`.

Sources are sub-subcommands, each a :class:`RecordSource` (a parser builder and a runner) in
:data:`RECORD_SOURCES`; add one with :func:`register_source` (``record agent`` for offline data from
SB3 agents plugs in this way). Built in:

* ``record gridworld``: the Deep State Identifier's GridWorld (:mod:`critwrap.gridworld`), written to
  ``OUT/train``, ``OUT/val`` and ``OUT/test`` on disjoint seed ranges.

Example::

    python -m critwrap.zoo record gridworld --episodes 2000 --val 200 --test 400 --out data/gridworld

The same from Python:

    >>> import tempfile
    >>> from critwrap.zoo.record import main
    >>> main(["gridworld", "--episodes", "2", "--val", "0", "--test", "0", "--out", tempfile.mkdtemp(),
    ...       "--no-progress", "--quiet"])
    0
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RECORD_SOURCES", "RecordSource", "add_parser", "main", "register_source", "run"]


@dataclass(frozen=True)
class RecordSource:
    """One ``record`` sub-subcommand: ``configure(parser)`` adds its arguments, ``run(args)`` returns an exit code."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


RECORD_SOURCES: dict[str, RecordSource] = {}


def register_source(name: str, source: RecordSource) -> None:
    """Add a ``record NAME`` sub-subcommand (an error if the name is taken)."""
    if name in RECORD_SOURCES:
        raise ValueError(f"a record source named {name!r} already exists")
    RECORD_SOURCES[name] = source


# ---- record gridworld ------------------------------------------------------------------------------
def _configure_gridworld(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=2000, help="training episodes (default 2000)")
    p.add_argument("--val", type=int, default=200, help="validation episodes (default 200; 0 skips)")
    p.add_argument("--test", type=int, default=400, help="test episodes (default 400; 0 skips)")
    p.add_argument(
        "--out", required=True, type=Path, help="output folder; splits go to OUT/train, OUT/val, OUT/test"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="dataset seed (default 0); the same seed gives the same data"
    )
    p.add_argument(
        "--positive-fraction", type=float, default=0.5, help="share of positive episodes (default 0.5)"
    )
    p.add_argument("--tile-size", type=int, default=4, help="pixels per grid cell (default 4: 28x28 views)")
    p.add_argument(
        "--negative-length",
        choices=["paper", "matched"],
        default="paper",
        help="negatives: the paper's move counts (default) or as long as the positive of the same layout "
        "(length then says nothing about success; recommended for training DSI)",
    )
    p.add_argument(
        "--style",
        choices=["minigrid", "original"],
        default="minigrid",
        help="minigrid (default): every step a MiniGrid action, critical steps = interactions with key, "
        "doors, ball; original: the original generator's moves (no actions stored), critical frames = "
        "the agent on a door cell",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")


def _run_gridworld(args: argparse.Namespace) -> int:
    from critwrap.gridworld import generate_gridworld_splits

    for name in ("episodes", "val", "test"):
        if getattr(args, name) < 0:
            raise ValueError(f"record gridworld: --{name} must be >= 0")
    for name in ("train", "val", "test"):
        split_dir = args.out / name
        if (split_dir / "manifest.jsonl").is_file() and (split_dir / "manifest.jsonl").stat().st_size > 0:
            raise FileExistsError(
                f"record gridworld: {split_dir} already holds episodes; choose a new --out folder"
            )
    start = time.perf_counter()
    stores = generate_gridworld_splits(
        args.out,
        n_train=args.episodes,
        n_val=args.val,
        n_test=args.test,
        seed=args.seed,
        positive_fraction=args.positive_fraction,
        tile_size=args.tile_size,
        progress=not args.no_progress,
        negative_length=args.negative_length,
        style=args.style,
    )
    seconds = time.perf_counter() - start
    if not args.quiet:
        summary = {name: {"path": str(args.out / name), "episodes": len(s)} for name, s in stores.items()}
        total = sum(len(s) for s in stores.values())
        print(json.dumps(summary, indent=2))
        print(f"{total} episodes in {seconds:.1f} s ({total / max(seconds, 1e-9):.1f} episodes/s)")
    return 0


register_source(
    "gridworld",
    RecordSource(
        help="the Deep State Identifier's GridWorld (KeyCorridor, scripted policies, known critical steps)",
        configure=_configure_gridworld,
        run=_run_gridworld,
    ),
)


# ---- record agent (offline data from SB3 agents, critwrap.feedback.data) --------------------------
def _configure_agent(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="RUN_DIR_OR_ZIP",
        help="a saved agent: a `zoo train` run directory or a model .zip (a checkpoint inside a run "
        "directory finds its run); repeatable, each agent plays --episodes episodes",
    )
    p.add_argument("--env", default=None, help="environment (required for a .zip outside a run directory)")
    p.add_argument("--algo", default=None, help="algorithm of a .zip outside a run directory")
    p.add_argument("--episodes", type=int, required=True, help="episodes per agent")
    p.add_argument(
        "--epsilon",
        type=float,
        action="append",
        default=None,
        help="probability of a uniformly random action instead of the agent's (default 0.1); one value, "
        "or one per --model in the same order",
    )
    p.add_argument("--out", required=True, type=Path, help="the EpisodeStore folder to write")
    p.add_argument("--append", action="store_true", help="add to an existing store")
    p.add_argument("--seed", type=int, default=0, help="seed of the envs and the epsilon draws (default 0)")
    p.add_argument("--n-envs", type=int, default=8, help="parallel envs per agent (default 8)")
    p.add_argument("--stochastic", action="store_true", help="agents sample their actions (default greedy)")
    p.add_argument(
        "--info-key",
        action="append",
        default=None,
        help="info value to record per step (default: lives, if any)",
    )
    p.add_argument("--device", default="cpu", help="torch device of the agents (default cpu)")
    p.add_argument(
        "--record",
        choices=["observations", "frames"],
        default="observations",
        help="observations (offline RL data, default) or frames: each state's rendered RGB frame, for a "
        "critical-state detector of a victim whose observations are vectors (zoo attack --frames render)",
    )
    p.add_argument(
        "--frame-size",
        default=None,
        metavar="H[xW]",
        help="with --record frames: resize each frame (e.g. 84; attack with --frames render:84)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")


def _run_agent(args: argparse.Namespace) -> int:
    from critwrap.feedback.data import record_agents

    start = time.perf_counter()
    store = record_agents(
        args.model,
        args.out,
        episodes=args.episodes,
        epsilon=args.epsilon if args.epsilon else 0.1,
        env=args.env,
        algo=args.algo,
        seed=args.seed,
        n_envs=args.n_envs,
        deterministic=not args.stochastic,
        info_keys=args.info_key,
        progress=not args.no_progress,
        append=args.append,
        device=args.device,
        record=args.record,
        frame_size=args.frame_size,
    )
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(f"{store.summary()} in {seconds:.1f} s: {store.root}")
    return 0


register_source(
    "agent",
    RecordSource(
        help="offline data: roll out saved SB3 agents with epsilon mixing (DQN-replay style)",
        configure=_configure_agent,
        run=_run_agent,
    ),
)


# ---- the subcommand ------------------------------------------------------------------------------
def _build(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sources = parser.add_subparsers(dest="record_source", metavar="SOURCE", required=True)
    for name, source in RECORD_SOURCES.items():
        sub = sources.add_parser(name, help=source.help, description=source.help)
        source.configure(sub)
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``record`` to the zoo's subcommands (``subparsers`` from ``parser.add_subparsers()``)."""
    parser = subparsers.add_parser(
        "record",
        help="write episode datasets (EpisodeStores)",
        description="Write episode datasets as EpisodeStores. Sources: " + ", ".join(RECORD_SOURCES),
    )
    return _build(parser)


def run(args: argparse.Namespace) -> int:
    """Run the ``record`` source named by ``args.record_source``."""
    source = RECORD_SOURCES.get(getattr(args, "record_source", None) or "")
    if source is None:
        raise ValueError(f"record: choose a source: {', '.join(RECORD_SOURCES)}")
    return source.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``record`` on its own: ``main(["gridworld", "--out", DIR])``."""
    parser = _build(argparse.ArgumentParser(prog="critwrap.zoo record"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
