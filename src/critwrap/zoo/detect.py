"""``python -m critwrap.zoo detect``: fit, evaluate and look at critical-state detectors.

* ``detect fit --detector dsi --data DIR --out CKPT [--epochs N --seed S --val DIR --set KEY=VALUE]
  [--restarts N --probe-epochs P] [--select-epoch top-m|f1]``
  trains a detector (any registered one: ``dsi``, ``saliency``, ``rtg-gap``, ``random``, plugins) on an
  episode store or a folder of videos and saves it to ``CKPT``.
* ``detect eval --detector CKPT --data DIR [--val DIR]`` prints F1@T for T = 1, 2, 3 with the threshold
  chosen on the validation split, the same for the trivial detector that marks every frame, the
  optimistic F1 of the best threshold on the evaluated data itself (what the original code reports),
  and top-m precision. Ground truth: ``metadata["critical_steps"]`` of every episode.
* ``detect subgoals --detector CKPT --data DIR --val DIR [--k 3 --thresholds 0.99,0.95 --encoder pixel]``
  prints, per matching threshold (with and without ``exclude_failed``), how selective the subgoals
  ``SubgoalReward`` would extract from ``--data`` are on the held-out ``--val`` episodes
  (:func:`critwrap.wrappers.subgoal.subgoal_coverage`): choose the threshold before training.
* ``detect show --detector CKPT --data DIR --episode I --out PNG`` draws a strip of the episode's frames
  above its score curve with the critical frames marked, and writes an animated GIF (``--gif``) with
  the score drawn as a bar under each frame.

Example:
    .. code-block:: console

        python -c "from critwrap.gridworld import generate_gridworld_splits as g; g('gw', 2000, 200, 400)"
        python -m critwrap.zoo detect fit --detector dsi --data gw/train --val gw/val --out dsi_gw --epochs 10
        python -m critwrap.zoo detect eval --detector dsi_gw --data gw/test --val gw/val
        python -m critwrap.zoo detect show --detector dsi_gw --data gw/test --episode 3 --out ep3.png
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "add_parser",
    "evaluate_detector",
    "format_report",
    "load_episodes",
    "open_detector",
    "render_gif",
    "render_strip",
    "run",
]

NAME = "detect"
TRUTH_KEY = "critical_steps"


# --------------------------------------------------------------------------------------------------
# helpers usable from Python
# --------------------------------------------------------------------------------------------------


def load_episodes(path: str | Path, max_episodes: int | None = None) -> list[Any]:
    """Episodes of an :class:`~critwrap.episodes.EpisodeStore` (a folder with ``store.json``) or of a
    folder of videos / ``.npy`` files (:func:`critwrap.episodes.read_video_folder`)."""
    from critwrap.episodes import EpisodeStore, read_video_folder

    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root}: no such directory")
    if (root / "store.json").is_file():
        store = EpisodeStore(root, create=False)
        n = len(store) if max_episodes is None else min(len(store), max_episodes)
        episodes = [store[i] for i in range(n)]
    else:
        episodes = list(read_video_folder(root, max_episodes=max_episodes))
    if not episodes:
        raise FileNotFoundError(f"{root} holds no episodes (neither an episode store nor a folder of videos)")
    return episodes


def open_detector(ref: str, seed: int | None = None) -> Any:
    """A saved detector directory (``detector.save(DIR)``), or a registry name of one that needs no fitting."""
    from critwrap import registry
    from critwrap.detectors.base import load_detector

    path = Path(ref).expanduser()
    if path.is_dir():
        return load_detector(path)
    if ref in registry.names("detectors") or registry.normalize_name(ref) in registry.names("detectors"):
        cls = registry.load("detectors", ref)
        params = inspect.signature(cls).parameters
        return cls(seed=seed) if "seed" in params else cls()
    raise FileNotFoundError(
        f"--detector {ref!r} is neither a saved detector directory nor a registered detector "
        f"({', '.join(registry.names('detectors'))})"
    )


def _truth(episodes: Sequence[Any], key: str, where: str) -> list[list[int]]:
    out = []
    for i, ep in enumerate(episodes):
        if key not in ep.metadata:
            raise ValueError(
                f"{where} episode {i} has no metadata[{key!r}] (ground-truth critical steps); evaluation "
                "needs them (critwrap.gridworld episodes have them)"
            )
        out.append([int(t) for t in ep.metadata[key]])
    return out


def evaluate_detector(
    detector: Any,
    episodes: Sequence[Any],
    val_episodes: Sequence[Any] | None = None,
    tolerances: Sequence[int] = (1, 2, 3),
    truth_key: str = TRUTH_KEY,
    grid: str = "paper",
    lookaheads: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Scores a detector on ``episodes`` against ``metadata[truth_key]``.

    Returns :func:`critwrap.detectors.metrics.f1_report`'s dict (per T: validation threshold, F1 at it,
    all-frames F1, optimistic best-threshold F1; top-m precision) plus ``threshold_from`` (``"val"``,
    or ``"test"`` when no validation episodes are given: the threshold is then chosen on the evaluated
    episodes themselves, which is optimistic) and the top-m precision a random detector has on average.

    ``grid`` is the set of thresholds tried: ``"paper"`` (0, 0.1, ..., 1, as the original evaluation)
    or ``"fine"`` (steps of 0.01 plus the percentiles of the validation scores, for detectors whose
    scores are not spread over [0, 1]).

    ``lookaheads``: score lookaheads tried (:func:`critwrap.detectors.metrics.lookahead`); per T the one
    with the best F1@T on the validation episodes is used, with its threshold (default ``(0,)``: none).
    """
    from critwrap.detectors.metrics import DEFAULT_THRESHOLDS, f1_report, lookahead, top_m_precision

    truth = _truth(episodes, truth_key, "evaluation")
    scores = detector.score_batch([ep.frames for ep in episodes])
    if val_episodes is not None:
        val_truth = _truth(val_episodes, truth_key, "validation")
        val_scores = detector.score_batch([ep.frames for ep in val_episodes])
        source = "val"
    else:
        val_truth, val_scores, source = truth, scores, "test"
    if grid == "paper":
        thresholds = np.array(DEFAULT_THRESHOLDS)
    elif grid == "fine":
        pooled = np.concatenate(
            [
                np.asarray(v, dtype=np.float64)
                for a in sorted(set(lookaheads))
                for v in lookahead(val_scores, a)
            ]
        )
        thresholds = np.unique(
            np.concatenate([np.linspace(0, 1, 101), np.percentile(pooled, np.arange(1, 100))])
        )
    else:
        raise ValueError(f"grid must be 'paper' or 'fine', got {grid!r}")
    report = f1_report(
        val_scores, val_truth, scores, truth, tolerances=tolerances, grid=thresholds, lookaheads=lookaheads
    )
    report["grid"] = grid
    rng = np.random.default_rng(0)
    report["random_top_m_precision"] = float(
        np.mean([top_m_precision([rng.random(len(s)) for s in scores], truth) for _ in range(20)])
    )
    report["threshold_from"] = source
    report["n_episodes"] = len(episodes)
    report["n_frames"] = int(sum(len(s) for s in scores))
    return report


def format_report(report: dict[str, Any], name: str = "detector") -> str:
    """The evaluation as a plain-text table (one row per tolerance for the detector and the trivial one)."""
    src = report.get("threshold_from", "val")
    head = "threshold (val)" if src == "val" else "threshold (test!)"
    lines = [
        f"{report.get('n_episodes', '?')} episodes, {report.get('n_frames', '?')} frames; "
        f"thresholds tried: {report.get('grid', 'paper')} grid",
        f"{'detector':<16} {'T':>2} {head:>17} {'F1@T':>7} {'best-threshold F1@T':>20}",
    ]
    for T, row in sorted(report["per_T"].items()):
        lines.append(
            f"{name:<16} {T:>2} {row['threshold']:>17.4g} {100 * row['test_f1']:>7.2f} "
            f"{100 * row['best_test_f1_oracle_threshold']:>20.2f}"
            + (f"   lookahead {row['lookahead']} (val)" if row.get("lookahead") else "")
        )
    for T, row in sorted(report["per_T"].items()):
        lines.append(f"{'all frames':<16} {T:>2} {0.0:>17.4g} {100 * row['all_frames_f1']:>7.2f} {'':>20}")
    lines.append(
        f"top-m precision (m = true critical steps per episode, +-1 step): {name} "
        f"{100 * report['top_m_precision']:.2f}, random {100 * report['random_top_m_precision']:.2f}"
    )
    if src != "val":
        lines.append(
            "note: no --val given, so the threshold was chosen on the evaluated episodes (optimistic)"
        )
    lines.append(
        "best-threshold F1@T: the threshold picked on the evaluated episodes, as the original code does"
    )
    return "\n".join(lines)


def _critical(scores: np.ndarray, k: int | None, threshold: float | None) -> np.ndarray:
    idx = np.arange(len(scores))
    if threshold is not None:
        idx = idx[scores[idx] >= threshold]
    if k is not None:
        idx = idx[np.argsort(-scores[idx], kind="stable")[:k]]
    return np.sort(idx)


def _rgb(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) / (T, C, H, W) / (T, H, W) frames -> uint8 (T, H, W, 3)."""
    x = np.asarray(frames)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"can only draw image frames, got shape {x.shape}")
    if x.shape[3] > x.shape[1]:  # (T, C, H, W)
        x = x.transpose(0, 2, 3, 1)
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    elif x.shape[3] == 4:
        x = x[..., :3]
    elif x.shape[3] != 3:
        x = np.repeat(x[..., -1:], 3, axis=3)  # stacked grayscale frames: draw the newest
    if np.issubdtype(x.dtype, np.floating):
        x = np.clip(x * 255.0 if float(np.nanmax(x)) <= 1.0 else x, 0, 255)
    return x.astype(np.uint8)


def render_strip(
    frames: np.ndarray,
    scores: np.ndarray,
    out: str | Path,
    critical: Sequence[int] = (),
    truth: Sequence[int] | None = None,
    title: str = "",
    max_frames: int = 48,
) -> Path:
    """PNG: the frames side by side (every ``ceil(T / max_frames)``-th) above the score curve.

    Predicted critical frames get a red border in the strip and a red dot on the curve; ground-truth
    critical steps are green marks on the curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = _rgb(frames)
    T = len(rgb)
    step = max(1, int(np.ceil(T / max_frames)))
    shown = list(range(0, T, step))
    crit = {int(c) for c in critical}
    h, w = rgb.shape[1:3]
    pad = max(1, h // 14)
    tiles = []
    for t in shown:
        tile = np.full((h + 2 * pad, w + 2 * pad, 3), 255, dtype=np.uint8)
        if t in crit or any(c in crit for c in range(t, min(t + step, T))):
            tile[:] = (220, 30, 30)
        tile[pad : pad + h, pad : pad + w] = rgb[t]
        tiles.append(tile)
    strip = np.concatenate(tiles, axis=1)
    fig_w = max(6.0, min(24.0, 0.35 * len(shown) + 2))
    fig, (ax_img, ax_plot) = plt.subplots(
        2, 1, figsize=(fig_w, 4.2), gridspec_kw={"height_ratios": [1, 1.4]}, constrained_layout=True
    )
    ax_img.imshow(strip, interpolation="nearest")
    ax_img.set_axis_off()
    ax_img.set_title(title or f"{T} frames" + (f" (every {step}th shown)" if step > 1 else ""), fontsize=9)
    s = np.asarray(scores, dtype=np.float64)
    ax_plot.plot(np.arange(T), s, color="tab:blue", lw=1.5, label="score")
    if crit:
        c = np.array(sorted(crit))
        ax_plot.scatter(c, s[c], color="tab:red", zorder=3, s=25, label="predicted critical")
    if truth:
        for i, t in enumerate(sorted({int(x) for x in truth})):
            ax_plot.axvline(t, color="tab:green", alpha=0.5, lw=2, label="true critical" if i == 0 else None)
    ax_plot.set_xlim(-0.5, T - 0.5)
    lo, hi = float(s.min()), float(s.max())
    if s.size and hi - lo < 0.2 and 0 <= lo and hi <= 1:
        # a mask that sits near one level (e.g. saturated at ~0.95) would draw as a flat line on 0..1:
        # zoom to the scores so their ranking, which picks the critical frames, stays visible
        margin = max(0.1 * (hi - lo), 1e-3)
        ax_plot.set_ylim(lo - margin, hi + margin)
        ax_plot.set_ylabel("score (zoomed)")
    else:
        ax_plot.set_ylim(-0.02, 1.02 if hi <= 1 else hi * 1.05)
        ax_plot.set_ylabel("score")
    ax_plot.set_xlabel("step")
    ax_plot.legend(fontsize=7, loc="upper right")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def render_gif(
    frames: np.ndarray,
    scores: np.ndarray,
    out: str | Path,
    critical: Sequence[int] = (),
    scale: int | None = None,
    fps: float = 4.0,
) -> Path:
    """Animated GIF: each frame (upscaled) above a bar as long as its score (red for critical frames)
    and a thin time cursor."""
    import imageio.v3 as iio

    rgb = _rgb(frames)
    T, h, w = rgb.shape[:3]
    if scale is None:
        scale = max(1, 160 // max(h, w))
    big = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
    H, W = big.shape[1:3]
    bar_h = max(6, H // 8)
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    crit = {int(c) for c in critical}
    out_frames = np.full((T, H + bar_h + 6, W, 3), 255, dtype=np.uint8)
    for t in range(T):
        out_frames[t, :H] = big[t]
        colour = (220, 30, 30) if t in crit else (40, 110, 200)
        out_frames[t, H + 2 : H + 2 + bar_h, : max(1, round(float(s[t]) * W))] = colour
        out_frames[t, H + 2 : H + 2 + bar_h, -1] = 0  # the bar's full length
        # a time cursor along the bottom (it also keeps GIF writers from merging equal frames)
        out_frames[t, -2:, : max(1, round((t + 1) * W / T))] = 120
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, out_frames, duration=1000.0 / fps, loop=0)
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    from critwrap.zoo.specs import parse_value

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``detect`` (with ``fit``, ``eval``, ``subgoals``, ``show``) to the zoo's subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="critical-state detectors: fit one on episodes, evaluate it (F1@T), draw its scores",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="detect_action", metavar="ACTION", required=True)

    fit = actions.add_parser("fit", help="train a detector on episodes and save it")
    fit.add_argument("--detector", default="dsi", help="registry name of the detector (default dsi)")
    fit.add_argument("--data", required=True, help="training episodes: an EpisodeStore or a folder of videos")
    fit.add_argument("--out", required=True, metavar="CKPT", help="directory to save the fitted detector to")
    fit.add_argument(
        "--val", default=None, metavar="DIR", help="validation episodes (losses logged per epoch)"
    )
    fit.add_argument("--epochs", type=int, default=None, help="epochs (default: the detector's own default)")
    fit.add_argument("--batch-size", type=int, default=None, help="episodes per batch (DSI default 64)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the weights and batch order (default 0)")
    fit.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's setting)")
    fit.add_argument("--tensorboard", default=None, metavar="DIR", help="write TensorBoard logs here")
    fit.add_argument("--max-episodes", type=int, default=None, help="use only the first N episodes of --data")
    fit.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="detector setting (constructor argument), e.g. --set l1=0.005 --set bf16=true; repeatable",
    )
    fit.add_argument(
        "--restarts",
        type=int,
        default=1,
        metavar="N",
        help="critwrap's addition: probe seeds --seed .. --seed+N-1 for --probe-epochs each, continue the "
        "one with the best top-m precision on --val (needs metadata['critical_steps'] there) to --epochs "
        "(default 1: one seed)",
    )
    fit.add_argument(
        "--probe-epochs", type=int, default=10, help="epochs per candidate with --restarts (default 10)"
    )
    fit.add_argument(
        "--select-epoch",
        choices=["top-m", "f1"],
        default=None,
        help="critwrap's addition: keep the weights of the epoch with the best top-m precision (or F1@2 at "
        "its best threshold) on --val (needs metadata['critical_steps'] there); with --restarts, among the "
        "epochs after the probe (default: the last epoch)",
    )
    fit.add_argument(
        "--windows",
        type=int,
        default=None,
        metavar="W",
        help="critwrap's addition: fit on disjoint W-frame clips of the episodes (each with its episode's "
        "label, or its own return) and save a Windowed detector that scores whole episodes with W-frame "
        "windows every W//2 steps (critwrap.detectors.windowed)",
    )
    fit.add_argument(
        "--success-above",
        type=float,
        default=None,
        metavar="R",
        help="label each episode without a label 1 if its return is above R, else 0 (e.g. an agent's games "
        "from `record agent`, which carry returns but no labels); also the --val episodes",
    )
    fit.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = actions.add_parser("eval", help="F1@T (T = 1, 2, 3), all-frames baseline and top-m precision")
    ev.add_argument(
        "--detector", required=True, help="saved detector directory (or a registry name like random)"
    )
    ev.add_argument("--data", required=True, help="episodes to evaluate (with metadata['critical_steps'])")
    ev.add_argument(
        "--val", default=None, metavar="DIR", help="validation episodes to choose the threshold on"
    )
    ev.add_argument(
        "--truth-key", default=TRUTH_KEY, help=f"metadata key of the true steps (default {TRUTH_KEY})"
    )
    ev.add_argument("--tolerances", default="1,2,3", help="comma-separated tolerances T (default 1,2,3)")
    ev.add_argument(
        "--grid",
        choices=["paper", "fine"],
        default="paper",
        help="thresholds tried: paper (0, 0.1, ..., 1; default) or fine (0.01 steps + validation percentiles)",
    )
    ev.add_argument(
        "--lookahead",
        type=int,
        nargs="+",
        default=[0],
        metavar="N",
        help="score lookaheads to try (a frame counts when it or one of the next N frames scores high); per "
        "T the best on --val is used (default 0: none)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of an unfitted detector such as random")
    ev.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")

    sg = actions.add_parser(
        "subgoals",
        help="how selective SubgoalReward's subgoals would be, per matching threshold (choose one before training)",
    )
    sg.add_argument("--detector", required=True, help="saved detector directory (or a registry name)")
    sg.add_argument(
        "--data", required=True, help="episodes the subgoals are extracted from (successes and failures)"
    )
    sg.add_argument(
        "--val",
        default=None,
        metavar="DIR",
        help="held-out episodes to measure the matching on (default: --data)",
    )
    sg.add_argument(
        "--k", type=int, default=3, help="critical steps per successful episode (SubgoalReward's k)"
    )
    sg.add_argument(
        "--thresholds",
        default="0.99,0.97,0.95,0.9",
        help="cosine thresholds to try (default 0.99,0.97,0.95,0.9)",
    )
    sg.add_argument(
        "--encoder",
        default=None,
        help="embed frames with 'pixel' (raw pixels) or an import path 'module:function' (default: the detector's)",
    )
    sg.add_argument(
        "--success-above",
        type=float,
        default=0.0,
        help="an episode without a label succeeds above this return",
    )
    sg.add_argument("--seed", type=int, default=0, help="seed of an unfitted detector such as random")
    sg.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    sg.add_argument(
        "--png",
        default=None,
        metavar="FILE",
        help="draw the subgoals of every setting (a row each) into FILE",
    )

    show = actions.add_parser(
        "show", help="PNG strip of an episode with its score curve, and an animated GIF"
    )
    show.add_argument("--detector", required=True, help="saved detector directory (or a registry name)")
    show.add_argument("--data", required=True, help="episodes (an EpisodeStore or a folder of videos)")
    show.add_argument("--episode", type=int, default=0, help="index of the episode (default 0)")
    show.add_argument("--out", required=True, metavar="PNG", help="the PNG to write")
    show.add_argument(
        "--gif", default=None, help="the GIF to write (default: --out with .gif); 'none' for no GIF"
    )
    show.add_argument(
        "--k", type=int, default=None, help="mark the top-k frames (default: as many as true steps, or 3)"
    )
    show.add_argument("--threshold", type=float, default=None, help="mark frames scoring at least this")
    show.add_argument(
        "--truth-key", default=TRUTH_KEY, help=f"metadata key of the true steps (default {TRUTH_KEY})"
    )
    show.add_argument("--seed", type=int, default=0, help="seed of an unfitted detector such as random")
    return parser


def _fit(args: argparse.Namespace) -> int:
    from critwrap import registry

    out = Path(args.out).expanduser()
    if (out / "config.json").exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a detector; pass --overwrite to replace it")
    cls = registry.load("detectors", args.detector)
    settings = _parse_sets(args.set)
    if args.threads is not None:
        settings.setdefault("num_threads", args.threads)
    ctor = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ctor.values())
    if not accepts_any:
        unknown = sorted(set(settings) - set(ctor))
        if "num_threads" in unknown and args.threads is not None:
            settings.pop("num_threads")
            unknown.remove("num_threads")
        if unknown:
            raise ValueError(f"{cls.__name__} has no setting(s) {unknown}; it takes {sorted(ctor)}")
    if "seed" in ctor and "seed" not in settings:
        settings["seed"] = args.seed
    if args.restarts < 1:
        raise ValueError(f"--restarts must be >= 1, got {args.restarts}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1 (an untrained detector is not saved), got {args.epochs}")
    if args.restarts > 1 and not args.val:
        raise ValueError("--restarts chooses among seeds on validation episodes: give --val DIR")
    if args.select_epoch and not args.val:
        raise ValueError("--select-epoch chooses the epoch on validation episodes: give --val DIR")
    detector = cls(**settings)
    if args.select_epoch:
        if "callback" not in inspect.signature(detector.fit).parameters:
            raise ValueError(
                f"--select-epoch needs a detector trained by epochs (such as dsi); {cls.__name__} is not"
            )
        total = (
            args.epochs
            if args.epochs is not None
            else getattr(getattr(detector, "config", None), "epochs", None)
        )
        if args.restarts > 1 and total is not None and args.probe_epochs >= total:
            raise ValueError(
                f"--select-epoch with --restarts chooses among the epochs after the probe: --probe-epochs "
                f"({args.probe_epochs}) must be < --epochs ({total})"
            )
    episodes = load_episodes(args.data, args.max_episodes)
    val = load_episodes(args.val) if args.val else None
    if args.success_above is not None:
        for group in (episodes, val or []):
            _label_by_return(group, float(args.success_above))
        labels = [int(ep.label) for ep in episodes if getattr(ep, "label", None) is not None]
        print(f"labelled by return > {args.success_above:g}: {sum(labels)} of {len(labels)} episodes are 1")
    if args.windows is not None:
        from critwrap.detectors.windowed import cut_windows

        if args.windows < 1:
            raise ValueError(f"--windows must be >= 1 frames, got {args.windows}")
        if args.select_epoch or args.restarts > 1:
            raise ValueError(
                "--windows cannot be combined with --select-epoch or --restarts (they score whole validation "
                "episodes with the unwindowed detector)"
            )
        n_games = len(episodes)
        episodes = cut_windows(episodes, args.windows)
        val = cut_windows(val, args.windows) if val is not None else None
        print(f"cut {n_games} episodes into {len(episodes)} clips of at most {args.windows} frames")
    best = None
    if args.select_epoch:
        from critwrap.detectors.selection import BestEpoch

        best = BestEpoch(val, by=args.select_epoch)
    wanted: dict[str, Any] = {
        "epochs": args.epochs,
        "val_episodes": val,
        "tensorboard_log": args.tensorboard,
        "progress": not args.no_progress,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    fit_params = inspect.signature(detector.fit).parameters
    fit_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in fit_params.values())
    kwargs = {k: v for k, v in wanted.items() if v is not None and (k in fit_params or fit_any)}
    if best is not None:
        kwargs["callback"] = best
    ignored = [
        k for k, v in wanted.items() if v is not None and k not in kwargs and k not in ("progress", "seed")
    ]
    if ignored:
        print(f"note: {cls.__name__}.fit takes no {', '.join(ignored)}; ignored", file=sys.stderr)
    n_frames = sum(len(ep) for ep in episodes)
    print(f"fitting {args.detector} on {len(episodes)} episodes ({n_frames} frames) from {args.data}")
    if args.restarts > 1:
        from critwrap.detectors.restarts import fit_with_restarts

        if not {"epochs", "seed", "callback"} <= set(fit_params):
            raise ValueError(
                f"--restarts needs a detector trained by epochs (such as dsi); {cls.__name__} is not"
            )
        seeds = list(range(args.seed, args.seed + args.restarts))
        print(f"probing seeds {seeds} for {args.probe_epochs} epochs each (top-m precision on {args.val})")
        detector, report = fit_with_restarts(
            lambda s: cls(**{**settings, "seed": s}),
            episodes,
            val,
            seeds,
            probe_epochs=args.probe_epochs,
            **{k: v for k, v in kwargs.items() if k not in ("seed", "val_episodes")},
        )
        print(
            f"probe top-m per seed (mean of the last 3 probe epochs): {json.dumps(report['probe_score'])}; "
            f"continuing seed {report['chosen_seed']}"
        )
    else:
        detector.fit(episodes, **kwargs)
    if best is not None:
        best.restore(detector)
        print(
            f"kept epoch {best.best_epoch} (validation {args.select_epoch} {best.best_score:.4f}); "
            f"per epoch: {best.curve}"
        )
    stats = getattr(detector, "fit_stats", None)
    if stats:
        print(
            f"trained {int(stats.get('epochs', 0))} epochs in {stats['seconds']:.1f} s "
            f"({stats['frames_per_s']:.0f} frames/s, {int(stats.get('threads', 0))} threads)"
        )
    history = getattr(detector, "history", None)
    if history:
        last = history[-1]
        shown = {k: round(v, 4) for k, v in last.items() if k.startswith(("val_", "acc_", "loss_predictor"))}
        print(f"last epoch: {json.dumps(shown)}")
    if args.windows is not None:
        from critwrap.detectors.windowed import Windowed

        detector = Windowed(detector, args.windows, fit_on_windows=True)
        print(f"scoring whole episodes with {args.windows}-frame windows every {detector.stride} steps")
    if args.overwrite and out.exists():
        for name in ("config.json", "weights.safetensors", "fit.json"):
            (out / name).unlink(missing_ok=True)
    detector.save(out)
    from critwrap.detectors.base import write_fit_info

    write_fit_info(
        out,
        args.data,
        sequences=len(episodes),  # episodes, or clips with --windows
        max_episodes=args.max_episodes,
        windows=args.windows,
        val=args.val,
        seed=args.seed,
        epochs=args.epochs,
        command=getattr(args, "command_line", None),
    )
    print(f"saved {out}")
    return 0


def _label_by_return(episodes: list[Any], above: float) -> None:
    """Give every episode without a label the label ``return > above`` (1) or not (0)."""
    for i, ep in enumerate(episodes):
        if getattr(ep, "label", None) is not None:
            continue
        ret = getattr(ep, "episode_return", None)
        if ret is None:
            raise ValueError(f"--success-above: episode {i} has neither a label nor a return")
        ep.label = int(float(ret) > above)


def _eval(args: argparse.Namespace) -> int:
    tolerances = [int(t) for t in str(args.tolerances).split(",") if t.strip()]
    detector = open_detector(args.detector, seed=args.seed)
    episodes = load_episodes(args.data)
    val = load_episodes(args.val) if args.val else None
    report = evaluate_detector(
        detector,
        episodes,
        val,
        tolerances=tolerances,
        truth_key=args.truth_key,
        grid=args.grid,
        lookaheads=args.lookahead,
    )
    if any(args.lookahead) and val is None:
        print("note: --lookahead without --val chooses the lookahead on the evaluated episodes (optimistic)")
    name = getattr(detector, "registry_name", "") or type(detector).__name__
    print(format_report(report, name=name))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {path}")
    return 0


def _show(args: argparse.Namespace) -> int:
    detector = open_detector(args.detector, seed=args.seed)
    episodes = load_episodes(args.data, max_episodes=args.episode + 1)
    if not 0 <= args.episode < len(episodes):
        raise ValueError(
            f"--episode {args.episode} is out of range: {args.data} holds {len(episodes)} episodes"
        )
    ep = episodes[args.episode]
    scores = np.asarray(detector.score(ep.frames), dtype=np.float64)
    truth = [int(t) for t in ep.metadata.get(args.truth_key, [])]
    k = args.k
    if k is None and args.threshold is None:
        k = len(truth) if truth else 3
    critical = _critical(scores, k, args.threshold)
    label = "" if ep.label is None else f", label {ep.label}"
    title = f"episode {args.episode}: {len(scores)} frames{label}; red = predicted critical, green = true"
    png = render_strip(ep.frames, scores, args.out, critical=critical.tolist(), truth=truth, title=title)
    print(f"wrote {png}")
    if args.gif is None or args.gif.lower() != "none":
        gif = Path(args.gif) if args.gif else Path(args.out).with_suffix(".gif")
        render_gif(ep.frames, scores, gif, critical=critical.tolist())
        print(f"wrote {gif}")
    print(f"critical steps: {critical.tolist()}" + (f" (true: {truth})" if truth else ""))
    return 0


def _subgoals(args: argparse.Namespace) -> int:
    from critwrap.wrappers.subgoal import format_coverage, pixel_encoder, subgoal_coverage

    thresholds = [float(t) for t in str(args.thresholds).split(",") if t.strip()]
    if not thresholds:
        raise ValueError("--thresholds needs at least one cosine similarity, e.g. 0.99,0.95")
    detector = open_detector(args.detector, seed=args.seed)
    episodes = load_episodes(args.data)
    held = load_episodes(args.val) if args.val else None
    encoder: Any = pixel_encoder if args.encoder == "pixel" else args.encoder
    rows = subgoal_coverage(
        detector,
        episodes,
        held,
        encoder=encoder,
        thresholds=thresholds,
        k=args.k,
        success_above=args.success_above,
        keep_frames=args.png is not None,
    )
    where = args.val or f"{args.data} (in-sample: pass --val held-out episodes for honest numbers)"
    print(f"subgoals from {args.data} (k={args.k}), matched on {where}:")
    print(format_coverage(rows))
    print(
        "good settings: high succ reach, low fail reach, first hit well after 0 (a first hit near 0 means "
        "the subgoals are start views)"
    )
    if args.png:
        print(f"wrote {render_subgoals(rows, args.png)}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([{k: v for k, v in r.items() if k != "frames"} for r in rows], indent=2))
        print(f"wrote {path}")
    return 0


def render_subgoals(rows: Sequence[dict[str, Any]], out: str | Path, max_per_row: int = 12) -> Path:
    """One row of subgoal observations per setting of :func:`subgoal_coverage` (rows made with
    ``keep_frames=True``), each titled with the share of held-out successes / failures that reach it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if "frames" in r]
    if not shown:
        raise ValueError("no setting left any subgoal to draw (see the table's errors)")
    cols = min(max_per_row, max(len(r["frames"]) for r in shown))
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.35 * cols + 1.6, 1.6 * len(shown)), squeeze=False)
    for i, r in enumerate(shown):
        frames = _rgb(r["frames"])
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(frames):
                ax.axis("off")
                continue
            ax.imshow(frames[j], interpolation="nearest")
            succ = r["per_subgoal_success"][j] if r["per_subgoal_success"] else float("nan")
            fail = r["per_subgoal_failed"][j] if r["per_subgoal_failed"] else float("nan")
            ax.set_title(f"s {succ:.2f} / f {fail:.2f}", fontsize=7)
        axes[i][0].set_ylabel(
            f"{r['threshold']:g}" + (" excl" if r["exclude_failed"] else ""),
            fontsize=8,
            rotation=0,
            labelpad=24,
        )
    fig.suptitle(
        "subgoals per threshold (row) - share of held-out successes (s) / failures (f) reaching each"
    )
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    action = args.detect_action
    if action == "subgoals":
        return _subgoals(args)
    if action == "fit":
        return _fit(args)
    if action == "eval":
        return _eval(args)
    if action == "show":
        return _show(args)
    raise ValueError(f"unknown detect action {action!r}")  # pragma: no cover
