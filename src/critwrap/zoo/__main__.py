"""``python -m critwrap.zoo SUBCOMMAND ...``: the experiment CLI (train, enjoy, evaluate, ...).

Each subcommand is a module with two functions, listed once in :data:`SUBCOMMANDS`:

* ``add_parser(subparsers)``: add its ``argparse`` sub-parser (``subparsers.add_parser(NAME, ...)``);
* ``run(args) -> int``: do the work; the return value is the exit status.

To add a subcommand, write ``src/critwrap/zoo/<name>.py`` with those two functions and append
``"critwrap.zoo.<name>"`` to :data:`SUBCOMMANDS`. Modules are imported when the parser is built, so
keep heavy imports (torch, SB3) inside ``run``. A module that fails to import does not break the
others: its subcommand is still listed and reports the import error when used.

Errors that come from what the user asked (an unknown algorithm, env, wrapper or hyperparameter, a
malformed ``--wrapper`` string, an existing run...) are printed as ``error: ...`` with exit status 1;
``-v`` (or ``CRITWRAP_TRACEBACK=1``) shows the traceback.

Example:
    .. code-block:: console

        python -m critwrap.zoo train ppo CartPole-v1 --timesteps 20000
        python -m critwrap.zoo evaluate --run runs/default/ppo/CartPole-v1/base/seed_0 --episodes 10
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS: list[str] = [
    "critwrap.zoo.train",
    "critwrap.zoo.enjoy",
    "critwrap.zoo.evaluate",
    "critwrap.zoo.record",
    "critwrap.zoo.offline",
    "critwrap.zoo.report",
    "critwrap.zoo.sweep",
    "critwrap.zoo.rlsp",
    "critwrap.zoo.adapter",
    "critwrap.zoo.detect",
    "critwrap.zoo.demo",
    "critwrap.zoo.attack",
]

# exceptions that mean "the request is wrong", printed without a traceback (SB3 checks its
# hyperparameters with assert statements, hence AssertionError)
_USER_ERRORS: tuple[type[BaseException], ...] = (
    AssertionError,
    ValueError,
    TypeError,
    KeyError,
    ImportError,
    FileNotFoundError,
    FileExistsError,
)


def _broken_subcommand(subparsers: Any, module_name: str, exc: BaseException) -> None:
    name = module_name.rsplit(".", 1)[-1]
    message = f"the {name!r} subcommand ({module_name}) failed to import: {type(exc).__name__}: {exc}"
    # no option prefix: every argument (even "--x") is taken as-is, so the error below is what the user sees
    p = subparsers.add_parser(
        name, help=f"(unavailable: {type(exc).__name__})", add_help=False, prefix_chars="\x00"
    )
    p.add_argument("rest", nargs="*")

    def _run(args: argparse.Namespace) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 1

    p.set_defaults(_run=_run)


def build_parser(subcommands: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m critwrap.zoo",
        description="critwrap's experiment CLI: train, evaluate and inspect agents (see each subcommand's --help).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    subparsers.required = True
    for module_name in subcommands:
        try:
            module = importlib.import_module(module_name)
            sub = module.add_parser(subparsers)
        except Exception as exc:  # one broken subcommand must not break the CLI
            _broken_subcommand(subparsers, module_name, exc)
            continue
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # no subcommand: the help, which lists them
        parser.print_help()
        return 0
    if len(argv) == 1:  # a subcommand with actions (detect, offline, record, adapter) but none given
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) and argv[0] in action.choices:
                sub = action.choices[argv[0]]
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    sub.print_help()
                    return 0
    args = parser.parse_args(argv)
    args.command_line = [os.path.basename(sys.executable), "-m", "critwrap.zoo", *argv]
    show_tb = bool(getattr(args, "verbose", 0)) or os.environ.get("CRITWRAP_TRACEBACK") == "1"
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as exc:
        if show_tb:
            raise
        text = str(exc)
        if isinstance(exc, KeyError) and type(exc) is KeyError:
            text = f"missing key {text}"
        print(f"error: {text or type(exc).__name__}", file=sys.stderr)
        if getattr(args, "command", None) == "train":
            print(
                "(the run's status.json holds the traceback when the run had started; -v shows it here)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
