"""The VAI pipeline end to end: random-policy frames -> keypoints -> masks -> adapter -> checkpoint.

:func:`fit_vai` is what ``python -m critwrap.zoo adapter fit`` runs; :func:`show_adapter` is
``adapter show``. Pixel envs are made by :func:`make_pixel_env` (``critwrap.make`` plus
:class:`~critwrap.attention.pixels.PixelObservation` for MuJoCo-based envs, plus an optional named
distraction from :data:`DISTRACTIONS`), so training and evaluation render frames the same way; the
rendering settings are stored in the adapter checkpoint (``adapter.json``, key ``"render"``).

Example:
    >>> from critwrap.attention.pipeline import fit_vai, RenderSettings
    >>> from critwrap.attention.transporter import TransporterConfig
    >>> from critwrap.attention.adapter import AdapterConfig
    >>> summary = fit_vai("dm_control/cartpole-balance-v0", "adapters/cartpole", frames=500,
    ...                   render=RenderSettings(size=64, action_repeat=8),
    ...                   stage1=TransporterConfig(width=8, iterations=300),
    ...                   stage2=AdapterConfig(iterations=300))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.attention.pixels import mujoco_handles

__all__ = [
    "DISTRACTIONS",
    "RenderSettings",
    "collect_random_frames",
    "fit_vai",
    "make_pixel_env",
    "show_adapter",
]

# name -> wrapper specs (registry names and kwargs) added after the pixel wrapper
DISTRACTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "none": [],
    "color-easy": [("color-randomization", {"level": "easy"})],
    "color-hard": [("color-randomization", {"level": "hard"})],
    "background": [("background-replacement", {"source": "moving"})],
    "background-floor": [("background-replacement", {"source": "moving", "floor": True})],
    "background-noise": [("background-replacement", {"source": "noise"})],
    "overlay": [("overlay", {"objects": 3})],
}


@dataclass
class RenderSettings:
    """How frames are rendered for MuJoCo-based envs (see :class:`~critwrap.attention.pixels.PixelObservation`)."""

    size: int = 84
    camera: int | str = 0
    action_repeat: int = 8
    shadows: bool = True


def make_pixel_env(
    env_id: str,
    render: RenderSettings | None = None,
    *,
    frame_stack: int = 1,
    channels_first: bool = False,
    distraction: str = "none",
    adapter: str | None = None,
    adapter_output: str = "masked",
    adapter_threshold: float | None = None,
    seed: int | None = None,
    wrappers: Sequence[tuple[str, dict[str, Any]]] = (),
) -> gym.Env[Any, Any]:
    """A pixel env: MuJoCo envs are rendered (PixelObservation); others must already give RGB images.

    ``wrappers``: wrapper specs (registry names or import paths, with kwargs) applied to the pixel frames
    before the distraction and the adapter: for envs critwrap does not render, e.g.
    ``[("resize", {"size": 84})]`` for Atari's 210x160 RGB frames.

    ``distraction`` is a key of :data:`DISTRACTIONS`; ``adapter`` a checkpoint folder for
    :class:`~critwrap.wrappers.attention.AttentionAdapter` (applied last, after the distraction), with
    ``adapter_output`` its ``output`` (``"masked"``: frame x mask, VAI's; ``"mask"``: the mask alone)
    and ``adapter_threshold`` its ``threshold`` (None: the soft mask; a number: the mask binarised there).
    """
    import critwrap

    render = render or RenderSettings()
    extra = [(str(name), dict(kw)) for name, kw in wrappers]
    if distraction not in DISTRACTIONS:
        raise ValueError(f"unknown distraction {distraction!r}; choose from {sorted(DISTRACTIONS)}")
    probe = critwrap.make(env_id)
    is_mujoco = mujoco_handles(probe) is not None
    probe.close()
    stack: list[Any] = []
    specs = [(name, dict(kw)) for name, kw in DISTRACTIONS[distraction]]
    if seed is not None:
        for _, kw in specs:
            kw["seed"] = seed
    if is_mujoco:
        color = [s for s in specs if s[0] == "color-randomization"]
        stack += color  # model edits go under the renderer
        stack.append(
            (
                "pixel-observation",
                {
                    "size": render.size,
                    "camera": render.camera,
                    "frame_stack": frame_stack,
                    "action_repeat": render.action_repeat,
                    "channels_first": channels_first,
                    "shadows": render.shadows,
                },
            )
        )
        stack += [(name, dict(kw)) for name, kw in extra]
        stack += [s for s in specs if s[0] != "color-randomization"]
    else:
        stack += [(name, dict(kw)) for name, kw in extra]
        stack += specs
    if adapter is not None:
        kwargs: dict[str, Any] = {"checkpoint": str(adapter), "output": adapter_output}
        if adapter_threshold is not None:
            kwargs["threshold"] = float(adapter_threshold)
        stack.append(("attention-adapter", kwargs))
    return critwrap.make(env_id, wrappers=stack)


def collect_random_frames(
    env_id: str,
    frames: int,
    render: RenderSettings | None = None,
    seed: int = 0,
    episode_frames: int | None = None,
    wrappers: Sequence[tuple[str, dict[str, Any]]] = (),
) -> list[np.ndarray]:
    """Random-policy episodes of RGB frames, each (T, H, W, 3) uint8, ``frames`` frames in total.

    ``episode_frames`` (critwrap's option; VAI runs every episode to its end) cuts each episode after that
    many frames and starts a new one, so that states near the start (an upright pole, for instance,
    which a random policy lets fall within a few steps) are not rare in the data.
    """
    if episode_frames is not None and episode_frames < 2:
        raise ValueError(f"episode_frames must be at least 2 (frame pairs), got {episode_frames}")
    env = make_pixel_env(env_id, render, channels_first=False, wrappers=wrappers)
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3):
        raise ValueError(
            f"{env_id} does not give RGB frames (H, W, 3) (got {space}); VAI needs RGB image observations"
        )
    if space.shape[0] % 4 or space.shape[1] % 4:
        env.close()
        raise ValueError(
            f"{env_id} gives {space.shape[0]}x{space.shape[1]} frames; VAI's networks need sides that are "
            "multiples of 4: resize them with the resize wrapper, wrappers=[('resize', {'size': 84})] (zoo adapter "
            "fit --wrapper resize:size=84), and train the agent behind the same wrapper"
        )
    env.action_space.seed(seed)
    episodes: list[np.ndarray] = []
    total, episode = 0, 0
    while total < frames:
        obs, _ = env.reset(seed=seed + episode)
        buffer = [obs]
        done = False
        while not done and total + len(buffer) < frames and len(buffer) < (episode_frames or frames):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            buffer.append(obs)
            done = terminated or truncated
        episodes.append(np.stack(buffer))
        total += len(buffer)
        episode += 1
    env.close()
    return episodes


def fit_vai(
    env_id: str,
    out: str | os.PathLike[str],
    *,
    frames: int = 5000,
    render: RenderSettings | None = None,
    stage1: Any = None,
    stage2: Any = None,
    threshold: float = 0.35,
    mask_std: float = 0.25,
    seed: int = 0,
    transporter: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
    episode_frames: int | None = None,
    wrappers: Sequence[tuple[str, dict[str, Any]]] = (),
    tensorboard: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Fit VAI's two stages on ``frames`` random-policy frames of ``env_id`` and save them in ``out``.

    Writes ``transporter.{json,safetensors}``, ``adapter.{json,safetensors}``, ``fit.json`` (settings,
    timings, final losses, foreground fraction) and returns the ``fit.json`` dict. ``transporter``: a
    folder with a stage-1 checkpoint to reuse instead of training one (to try other mask thresholds).
    ``wrappers``: see :func:`make_pixel_env`; saved in the checkpoint, so :func:`show_adapter` uses them.
    ``tensorboard``: a folder for TensorBoard event files with every iteration's losses
    (``stage1/reconstruction``, ``stage2/mask``, ``stage2/features``) and the keypoint masks'
    ``targets/foreground_fraction``.
    """
    import torch

    from critwrap.attention.adapter import AdapterConfig, fit_adapter
    from critwrap.attention.transporter import (
        Transporter,
        TransporterConfig,
        fit_transporter,
        foreground_masks,
    )

    render = render or RenderSettings()
    stage1 = stage1 or TransporterConfig(seed=seed)
    stage2 = stage2 or AdapterConfig(seed=seed)
    say = log or (lambda message: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    extra = [(str(name), dict(kw)) for name, kw in wrappers]
    episodes = collect_random_frames(
        env_id, frames, render, seed=seed, episode_frames=episode_frames, wrappers=extra
    )
    timings["collect_s"] = time.perf_counter() - start
    say(
        f"collected {sum(len(e) for e in episodes)} frames in {len(episodes)} episodes ({timings['collect_s']:.0f} s)"
    )

    losses: dict[str, float] = {}
    writer: Any = None
    if tensorboard is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tensorboard))

    def report1(it: int, loss: float) -> None:
        losses["transporter"] = loss
        if writer is not None:
            writer.add_scalar("stage1/reconstruction", loss, it)
        if it % max(1, stage1.iterations // 10) == 0:
            say(f"stage 1 iteration {it}/{stage1.iterations}: reconstruction {loss:.5f}")

    start = time.perf_counter()
    shape = episodes[0].shape[1:]
    if transporter is not None:
        keypoints, trained_on = Transporter.load(transporter)
        if trained_on != (shape[2], shape[0], shape[1]):
            raise ValueError(
                f"the transporter in {transporter} was trained on frames {trained_on}; this env renders "
                f"{(shape[2], shape[0], shape[1])}"
            )
        say(f"stage 1: reusing the transporter in {transporter}")
    else:
        keypoints = fit_transporter(episodes, stage1, progress=report1)
    timings["stage1_s"] = time.perf_counter() - start
    if transporter is None or Path(transporter).resolve() != out.resolve():
        keypoints.save(out, (shape[2], shape[0], shape[1]), stage1)

    all_frames = np.concatenate(episodes)
    start = time.perf_counter()
    targets = foreground_masks(keypoints, all_frames, threshold=threshold, std=mask_std)
    timings["targets_s"] = time.perf_counter() - start
    fraction = float(targets.mean())
    say(f"keypoint masks: {fraction:.1%} of the pixels are foreground")
    if writer is not None:
        writer.add_scalar("targets/foreground_fraction", fraction, 0)
        writer.flush()
    if fraction == 0.0:
        raise ValueError(
            f"the keypoint masks are empty at threshold {threshold}; lower --threshold or train stage 1 longer"
        )

    def report2(it: int, reconstruction: float, matching: float) -> None:
        losses["adapter_mask"], losses["adapter_features"] = reconstruction, matching
        if writer is not None:
            writer.add_scalar("stage2/mask", reconstruction, it)
            writer.add_scalar("stage2/features", matching, it)
        if it % max(1, stage2.iterations // 10) == 0:
            say(
                f"stage 2 iteration {it}/{stage2.iterations}: mask {reconstruction:.5f} features {matching:.5f}"
            )

    start = time.perf_counter()
    with torch.random.fork_rng():
        adapter = fit_adapter(all_frames, targets, stage2, progress=report2)
    timings["stage2_s"] = time.perf_counter() - start
    if writer is not None:
        writer.close()
    adapter.save(
        out,
        stage2,
        render=asdict(render),
        env=env_id,
        wrappers=[[name, kw] for name, kw in extra],
        threshold=threshold,
        mask_std=mask_std,
        foreground_fraction=fraction,
    )
    summary = {
        "env": env_id,
        "frames": len(all_frames),
        "episode_frames": episode_frames,
        "wrappers": [[name, kw] for name, kw in extra],
        "render": asdict(render),
        "stage1": asdict(stage1),
        "transporter_reused_from": None if transporter is None else str(transporter),
        "stage2": asdict(stage2),
        "threshold": threshold,
        "mask_std": mask_std,
        "foreground_fraction": fraction,
        "final_losses": losses,
        "timings": timings,
    }
    (out / "fit.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _gray(mask: np.ndarray) -> np.ndarray:
    return np.repeat(np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def show_adapter(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    env_id: str | None = None,
    distraction: str = "none",
    frames: int = 6,
    seed: int = 0,
    steps_between: int = 5,
    scale: int = 2,
) -> Path:
    """A PNG with three rows: frames of ``env_id`` (with the distraction), the adapter's masks, frames x masks."""
    import imageio.v3 as iio

    from critwrap.attention.adapter import MaskAdapter

    adapter = MaskAdapter.load(str(checkpoint))
    meta: dict[str, Any] = getattr(adapter, "meta", {})
    env_id = env_id or meta.get("env")
    if not env_id:
        raise ValueError("give --env: this adapter checkpoint does not say which env it was fitted on")
    render = (
        RenderSettings(**meta["render"]) if "render" in meta else RenderSettings(size=adapter.image_size[0])
    )
    saved = meta.get("wrappers") or []
    wrappers = [(str(name), dict(kw)) for name, kw in saved] if env_id == meta.get("env") else []
    env = make_pixel_env(env_id, render, distraction=distraction, seed=seed, wrappers=wrappers)
    env.action_space.seed(seed)
    shots = []
    obs, _ = env.reset(seed=seed)
    for _ in range(frames):
        shots.append(obs)
        for _ in range(steps_between):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
    env.close()
    batch = np.stack(shots)
    adapter.check_frames(batch.shape)
    masks = adapter.predict(batch)
    masked = np.round(batch * masks[..., None]).astype(np.uint8)
    grid = np.concatenate(
        [
            np.concatenate(list(batch), 1),
            np.concatenate([_gray(m) for m in masks], 1),
            np.concatenate(list(masked), 1),
        ],
        0,
    )
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, 0), scale, 1)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, grid)
    return path
