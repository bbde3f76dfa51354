"""``python -m critwrap.zoo adapter fit|show``: train and inspect VAI foreground adapters.

* ``adapter fit --env ENV --out DIR``: random-policy frames, stage 1 (Transporter keypoints), keypoint
  masks, stage 2 (the mask adapter with VAI's augmentation); writes ``DIR/adapter.*`` (what
  ``attention-adapter`` loads), ``DIR/transporter.*``, ``DIR/fit.json`` and ``DIR/preview.png``.
* ``adapter show --checkpoint DIR [--distraction color-hard] --out PNG``: frames, masks and masked
  frames, on the clean env or a distracted one, to check the adapter before training an agent.

Example::

    python -m critwrap.zoo adapter fit --env dm_control/cartpole-balance-v0 --out adapters/cartpole \\
        --size 84 --frames 5000
    python -m critwrap.zoo adapter show --checkpoint adapters/cartpole --distraction color-hard --out show.png
    python -m critwrap.zoo train sac dm_control/cartpole-balance-v0 \\
        --wrapper pixel-observation:size=84,frame_stack=3,action_repeat=8 \\
        --wrapper attention-adapter:checkpoint=adapters/cartpole
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def _configure_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--env",
        required=True,
        help="environment (dm_control/..., a gymnasium MuJoCo id, or an RGB pixel env)",
    )
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    p.add_argument("--frames", type=int, default=5000, help="random-policy frames (default 5000, VAI's)")
    p.add_argument(
        "--episode-frames",
        type=int,
        default=None,
        help="cut each random episode after this many frames (critwrap's option; default: run to the end, VAI's)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="rendered frame side of a MuJoCo env, a multiple of 4 (default 84); other envs: --wrapper",
    )
    p.add_argument(
        "--wrapper",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="a wrapper on the frames (registry name or import path), saved with the adapter, e.g. "
        "resize:size=84 for Atari's 210x160 RGB frames (train the agent "
        "with the same wrapper); repeatable",
    )
    p.add_argument("--camera", default="0", help="camera id or name (default 0)")
    p.add_argument("--action-repeat", type=int, default=8, help="action repeat while collecting (default 8)")
    p.add_argument("--no-shadows", action="store_true", help="render without shadows (much faster on CPU)")
    p.add_argument("--keypoints", type=int, default=12, help="Transporter keypoints k (default 12, cartpole)")
    p.add_argument(
        "--stage1-iterations", type=int, default=3000, help="Transporter iterations (default 3000)"
    )
    p.add_argument("--stage1-width", type=int, default=32, help="Transporter channel width (default 32)")
    p.add_argument("--stage1-batch", type=int, default=32, help="Transporter batch size (default 32)")
    p.add_argument(
        "--transporter",
        type=Path,
        default=None,
        help="reuse the stage-1 checkpoint in this folder (e.g. a previous --out) instead of training one",
    )
    p.add_argument("--stage2-iterations", type=int, default=3000, help="adapter iterations (default 3000)")
    p.add_argument("--stage2-width", type=int, default=16, help="adapter channel width (default 16)")
    p.add_argument("--stage2-batch", type=int, default=64, help="adapter batch size (default 64)")
    p.add_argument("--threshold", type=float, default=0.35, help="keypoint-mask threshold (default 0.35)")
    p.add_argument(
        "--pos-weight", type=float, default=15.0, help="foreground weight of the mask loss (default 15)"
    )
    p.add_argument(
        "--recolor-prob",
        type=float,
        default=0.0,
        help="share of stage-2 frames whose foreground gets a random colour (critwrap's addition; default 0, VAI's)",
    )
    p.add_argument(
        "--recolor-mode",
        choices=["hsv", "rgb"],
        default="hsv",
        help="recolouring: hsv (uniform hue, shading kept) or rgb (uniform RGB colour x shading); default hsv",
    )
    p.add_argument(
        "--color-transform-prob",
        type=float,
        default=0.0,
        help="share of stage-2 inputs whose colours are remapped (channel permutation, inversion; "
        "critwrap's addition; default 0, VAI's)",
    )
    p.add_argument(
        "--region-recolor-prob",
        type=float,
        default=0.0,
        help="share of stage-2 original backgrounds given a new colour per colour region (sky, floor...; "
        "critwrap's addition; default 0, VAI's)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="write no TensorBoard logs (default: the losses of both stages under OUT/tb)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, help="adapter checkpoint folder")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--env", default=None, help="environment (default: the one the adapter was fitted on)")
    p.add_argument(
        "--distraction",
        default="none",
        help="none, color-easy, color-hard, background, background-floor, background-noise or overlay",
    )
    p.add_argument("--frames", type=int, default=6, help="frames to show (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the env and the random policy (default 0)")


def _camera(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _run_fit(args: argparse.Namespace) -> int:
    import torch

    from critwrap.attention.adapter import AdapterConfig
    from critwrap.attention.pipeline import RenderSettings, fit_vai, show_adapter
    from critwrap.attention.transporter import TransporterConfig

    if (args.out / "adapter.json").exists() and not args.force:
        raise FileExistsError(f"{args.out} already holds an adapter; pass --force to overwrite it")
    import critwrap
    from critwrap.attention.pixels import mujoco_handles
    from critwrap.zoo.specs import normalize_specs

    size = 84 if args.size is None else args.size
    if size % 4:
        raise ValueError(f"--size must be a multiple of 4 (the networks downsample twice by 2), got {size}")
    wrappers = normalize_specs(list(args.wrapper), "--wrapper")
    if args.size is not None:
        probe = critwrap.make(args.env)
        rendered = mujoco_handles(probe) is not None
        shape = tuple(probe.observation_space.shape or ())
        probe.close()
        rgb = len(shape) == 3 and shape[-1] == 3  # otherwise the pipeline reports that VAI needs RGB frames
        if not rendered and rgb:
            raise ValueError(
                f"--size sets the side of the frames critwrap renders for MuJoCo envs; {args.env} gives its own "
                f"{shape[0]}x{shape[1]} frames: resize them with --wrapper resize:size={size}"
            )
    if args.frames < 2:
        raise ValueError("--frames must be at least 2")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    render = RenderSettings(
        size=size,
        camera=_camera(args.camera),
        action_repeat=args.action_repeat,
        shadows=not args.no_shadows,
    )
    stage1 = TransporterConfig(
        keypoints=args.keypoints,
        width=args.stage1_width,
        iterations=args.stage1_iterations,
        batch_size=args.stage1_batch,
        seed=args.seed,
    )
    stage2 = AdapterConfig(
        width=args.stage2_width,
        iterations=args.stage2_iterations,
        batch_size=args.stage2_batch,
        pos_weight=args.pos_weight,
        recolor_prob=args.recolor_prob,
        recolor_mode=args.recolor_mode,
        color_transform_prob=args.color_transform_prob,
        region_recolor_prob=args.region_recolor_prob,
        seed=args.seed,
    )
    log = None if args.quiet else (lambda message: print(message, flush=True))
    summary = fit_vai(
        args.env,
        args.out,
        frames=args.frames,
        render=render,
        stage1=stage1,
        stage2=stage2,
        threshold=args.threshold,
        seed=args.seed,
        transporter=args.transporter,
        log=log,
        episode_frames=args.episode_frames,
        wrappers=wrappers,
        tensorboard=None if args.no_tensorboard else args.out / "tb",
    )
    summary["command_line"] = getattr(args, "command_line", sys.argv)
    (args.out / "fit.json").write_text(json.dumps(summary, indent=2, default=str))
    preview = show_adapter(args.out, args.out / "preview.png", seed=args.seed)
    if not args.quiet:
        print(f"adapter written to {args.out} (preview: {preview})")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from critwrap.attention.pipeline import show_adapter

    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    path = show_adapter(
        args.checkpoint,
        args.out,
        env_id=args.env,
        distraction=args.distraction,
        frames=args.frames,
        seed=args.seed,
    )
    print(f"wrote {path} (rows: frames, masks, masked frames)")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``adapter`` (with ``fit`` and ``show``) to the zoo's subcommands."""
    parser = subparsers.add_parser(
        "adapter",
        help="VAI attention adapters: fit one on an env, show its masks",
        description="Fit and inspect VAI foreground adapters (used by the attention-adapter wrapper).",
    )
    actions = parser.add_subparsers(dest="adapter_action", metavar="ACTION", required=True)
    fit = actions.add_parser(
        "fit", help="fit stage 1 (keypoints) and stage 2 (mask adapter) on random frames"
    )
    _configure_fit(fit)
    fit.set_defaults(_adapter_run=_run_fit)
    show = actions.add_parser("show", help="PNG of frames, masks and masked frames")
    _configure_show(show)
    show.set_defaults(_adapter_run=_run_show)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="show tracebacks of errors")
    return parser


def run(args: argparse.Namespace) -> int:
    return int(args._adapter_run(args))
