"""``python -m critwrap.zoo offline ...``: oracle feedback, and DT / FDT / BC trained and evaluated offline.

Three actions, on a dataset written by ``python -m critwrap.zoo record agent`` (an EpisodeStore folder;
``minari:ID`` or a Minari folder also work):

* ``offline feedback --data DIR --oracle RUN_DIR --budget 2500 [--out FILE]``: pick the important
  states with RTGGap (FDT's best-minus-worst return-to-go gap) and label the logged actions there with
  the oracle's greedy action (:class:`critwrap.feedback.oracle.FeedbackOracle`); the labels go to
  ``DIR/feedback.npz`` unless ``--out`` says otherwise.
* ``offline train fdt|dt|bc --data DIR [--feedback FILE] --seed S --out RUN``: train
  (:func:`critwrap.feedback.dt.train`); TensorBoard events in ``RUN/tb``.
* ``offline evaluate --run RUN [--run RUN ...] --target-return R --episodes N``: roll out in the
  environment the data was recorded in; with several runs, the IQM and its 95% CI per algorithm and
  the probability of improvement between algorithms (rliable).

Example:
    .. code-block:: console

        python -m critwrap.zoo record agent --model runs/default/ppo/LavaGapS6/base/seed_0 --episodes 200 \\
            --epsilon 0.1 --out data/lava
        python -m critwrap.zoo offline feedback --data data/lava --oracle runs/default/ppo/LavaGapS6/base/seed_0 \\
            --budget 2000 --pool 1
        python -m critwrap.zoo offline train fdt --data data/lava --feedback data/lava/feedback.npz --seed 0 \\
            --out runs/offline/fdt/seed_0
        python -m critwrap.zoo offline evaluate --run runs/offline/fdt/seed_0 --target-return 0.9 --episodes 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

NAME = "offline"


def _add_train_options(p: argparse.ArgumentParser) -> None:
    # defaults left as None fall back to critwrap.feedback.dt.DTArgs (the official FDT settings); torch is
    # not imported while the parser is built
    p.add_argument("algo", choices=["fdt", "dt", "bc"], help="fdt (needs --feedback), dt, or bc")
    p.add_argument("--data", required=True, help="dataset: EpisodeStore folder, minari:ID or a Minari folder")
    p.add_argument(
        "--feedback", default=None, metavar="FILE", help="feedback labels (fdt), from `offline feedback`"
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    p.add_argument(
        "--lambda", dest="feedback_lambda", type=float, help="weight of the feedback term (default 0.01)"
    )
    p.add_argument(
        "--feedback-mode",
        choices=["best-action", "positive-only", "fallback"],
        help="fdt: what negative feedback does (default best-action: -log pi(best-return-to-go action), "
        "else -log(1 - pi(logged)); positive-only: the official code's ignore_negative_feedback_"
        "regularization, negatives stay in the cross-entropy and only positives are regularized; "
        "fallback: always -log(1 - pi(logged)))",
    )
    p.add_argument("--epochs", type=int, help="epochs (default 5)")
    p.add_argument("--max-steps", type=int, help="stop after this many updates (default: the epochs decide)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--context-length", type=int, help="context length K in steps (default 30)")
    p.add_argument("--lr", type=float, help="learning rate (default 6e-4)")
    p.add_argument(
        "--no-lr-decay", action="store_true", help="constant learning rate (default: warm-up, cosine)"
    )
    p.add_argument("--n-layer", type=int, help="transformer layers (default 6)")
    p.add_argument("--n-head", type=int, help="attention heads (default 8)")
    p.add_argument("--n-embd", type=int, help="embedding size (default 128)")
    p.add_argument("--dropout", type=float, help="dropout (default 0.1)")
    p.add_argument(
        "--encoder",
        choices=["auto", "nature", "small", "mlp"],
        help="state encoder (default auto: nature for >= 36x36 images, small for smaller ones, mlp for vectors)",
    )
    p.add_argument(
        "--rtg-scale", type=float, help="divide returns-to-go by this (default: the largest |return|)"
    )
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard events")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace a trained run in --out")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``offline`` (with ``feedback``, ``train``, ``evaluate``) to the zoo's subcommands."""
    parser = subparsers.add_parser(
        NAME,
        help="offline RL from recorded episodes: oracle feedback, DT / FDT / BC training and evaluation",
        description="Offline RL from recorded episodes (see `record agent`): oracle feedback at important "
        "states, Decision Transformer / Feedback Decision Transformer / BC training and evaluation.",
    )
    actions = parser.add_subparsers(dest="offline_action", metavar="ACTION", required=True)

    fb = actions.add_parser("feedback", help="label important states with an oracle's feedback")
    fb.add_argument(
        "--data", required=True, help="dataset: EpisodeStore folder, minari:ID or a Minari folder"
    )
    fb.add_argument(
        "--oracle", required=True, metavar="RUN_DIR_OR_ZIP", help="the oracle agent (zoo run or model .zip)"
    )
    fb.add_argument("--algo", default=None, help="algorithm of an --oracle .zip outside a run directory")
    fb.add_argument("--env", default=None, help="environment of an --oracle .zip outside a run directory")
    fb.add_argument("--budget", type=int, default=2500, help="labelled steps (default 2500)")
    fb.add_argument(
        "--selector", default="rtg-gap", help="detector ranking the states (registry name, default rtg-gap)"
    )
    fb.add_argument(
        "--detector-path", default=None, help="a saved, fitted detector to use instead of fitting one"
    )
    fb.add_argument("--gamma", type=float, default=0.9, help="RTGGap discount (default 0.9)")
    fb.add_argument(
        "--pool", type=int, default=7, help="RTGGap max-pool of image states before hashing (default 7)"
    )
    fb.add_argument(
        "--round-decimals",
        type=int,
        default=2,
        help="RTGGap: decimals kept when hashing vector states (default 2)",
    )
    fb.add_argument(
        "--min-samples", type=int, default=1, help="RTGGap: min return samples per (state, action)"
    )
    fb.add_argument("--occurrences", default="best-worst", metavar="best-worst|all|N",
                    help="RTGGap: label the first best- and worst-action steps of each state, all its steps, or "
                    "those two and more, N in all (default best-worst)")  # fmt: skip
    fb.add_argument("--out", default=None, metavar="FILE", help="feedback file (default DATA/feedback.npz)")
    fb.add_argument("--quiet", action="store_true", help="print nothing on success")

    tr = actions.add_parser("train", help="train fdt, dt or bc on a dataset")
    _add_train_options(tr)

    ev = actions.add_parser("evaluate", help="roll trained runs out in the environment")
    ev.add_argument("--run", action="append", required=True, metavar="RUN", help="a trained run; repeatable")
    ev.add_argument("--target-return", type=float, default=None, help="return to condition DT / FDT on")
    ev.add_argument("--episodes", type=int, default=10, help="episodes per run (default 10)")
    ev.add_argument(
        "--seed", type=int, default=0, help="env i is seeded seed + i (default 0), the same for all runs"
    )
    ev.add_argument("--env", default=None, help="environment, for datasets not recorded by `record agent`")
    ev.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the argmax")
    ev.add_argument(
        "--json", default=None, metavar="FILE", help="also write the results (and aggregates) here"
    )
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def _feedback(args: argparse.Namespace) -> int:
    from critwrap import registry
    from critwrap.feedback.oracle import FeedbackOracle, default_feedback_path

    if args.detector_path:
        from critwrap.detectors.base import load_detector

        selector = load_detector(args.detector_path)
    else:
        cls = registry.resolve("detectors", args.selector)
        if args.selector in ("rtg-gap", "critwrap.detectors.rtg_gap:RTGGap"):
            selector = cls(
                gamma=args.gamma,
                pool=args.pool,
                min_samples=args.min_samples,
                round_decimals=args.round_decimals,
            )
        else:
            raise ValueError(
                f"the {args.selector!r} detector must be fitted first: save it and pass --detector-path"
            )
    oracle: Any = args.oracle
    if args.algo or args.env:
        from critwrap.feedback.data import resolve_agent
        from critwrap.zoo.common import load_run

        spec = resolve_agent(args.oracle, algo=args.algo, env=args.env)
        oracle = load_run(spec.run_dir, model_path=spec.model_path, algo=spec.algo, env=spec.env).model
    import warnings

    with warnings.catch_warnings():  # a shortfall is printed below as a note, with the summary
        warnings.filterwarnings("ignore", message="only .* could be labelled")
        labels = FeedbackOracle(
            oracle, selector=selector, budget=args.budget, occurrences=args.occurrences
        ).label(args.data)
    out = Path(args.out) if args.out else default_feedback_path(args.data)
    path = labels.save(out)
    if not args.quiet:
        print(
            f"{len(labels)} labelled steps ({labels.n_positive} positive, {len(labels) - labels.n_positive} "
            f"negative) written to {path}"
        )
    if labels.metadata.get("shortfall"):
        print(f"note: {labels.metadata['shortfall']}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from critwrap.feedback.dt import DTArgs, train

    fields = {f.name for f in dataclasses.fields(DTArgs)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    values.update(
        lr_decay=not args.no_lr_decay, tensorboard=not args.no_tensorboard, progress=not args.no_progress
    )
    run_dir = train(DTArgs(**values))
    cfg = json.loads((run_dir / "config.json").read_text())
    print(f"{args.algo} trained in {cfg['train']['seconds']} s ({cfg['train']['steps']} steps): {run_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from critwrap.feedback.evaluate import evaluate_runs
    from critwrap.zoo.runs import write_json

    result = evaluate_runs(
        args.run,
        target_return=args.target_return,
        episodes=args.episodes,
        seed=args.seed,
        env=args.env,
        deterministic=not args.stochastic,
        progress=not args.no_progress,
    )
    if args.json:
        write_json(args.json, result)
    if not args.quiet:
        for r in result["runs"]:
            print(
                f"{r['algo']:>4} {r['run']}: mean return {r['mean_return']:.4g} +- {r['std_return']:.3g} ({r['n_episodes']} episodes)"
            )
        agg = result.get("aggregate")
        if agg:
            print("IQM across runs (95% stratified bootstrap CI):")
            for name, g in agg["groups"].items():
                print(
                    f"  {name:>4}: {g['iqm']:.4g} [{g['ci_low']:.4g}, {g['ci_high']:.4g}] over {g['runs']} runs"
                )
            for pair, p in agg["probability_of_improvement"].items():
                print(f"  P({pair.replace('>', ' > ')}) = {p:.3f}")
    return 0


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "offline_action", None)
    if action == "feedback":
        return _feedback(args)
    if action == "train":
        return _train(args)
    if action == "evaluate":
        return _evaluate(args)
    print("error: offline: choose feedback, train or evaluate", file=sys.stderr)
    return 1
