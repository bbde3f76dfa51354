"""Benchmark of critwrap's attention parts: VAI adapter under distractions, what/where vs NatureCNN.

Part 1 (VAI): pixel-based dm_control cartpole balance (``--task swingup``: swingup, with an
energy-pumping expert; ``--pilot`` checks on the clean env alone that DAgger learns the task). A pixel policy is trained on the clean env,
with and without the VAI adapter in front of it, and evaluated on the clean env, on colour
randomisation (``color-hard``) and on a replaced background (``background``: a moving procedural
texture keyed into the sky). Reported: mean returns and the retained fraction (distracted return /
clean return) per seed, then mean and spread over seeds.

Part 2 (IFE): PPO with the what/where extractor vs SB3's NatureCNN on an Atari game at equal steps,
with attention maps of the what/where agent written as PNG and GIF.

Scaled to a CPU-only machine (2 shared cores); what this script does differs from the papers:

* frames 64x64 (VAI: 84x84), rendered without shadows, camera 0, action repeat 8, 3 stacked frames;
* the adapter is fitted by ``python -m critwrap.zoo adapter fit`` on 2000 random-policy frames with
  a narrow Transporter (width 8, 1500 iterations of batch 16; VAI: width 32, 3000 iterations) and
  1000 adapter iterations of batch 32 (VAI: 3000 x 64 triples), mask threshold 0.3; the exact
  command is in ``OUT/adapter/fit.json``;
* the pixel policy is not trained by SAC (measured here: 0.25 s per SAC update from 9x64x64
  frames on one core, so 3 seeds x 2 variants of a useful SAC run do not fit the budget) but by
  DAgger from a state-based expert: an LQR controller computed from MuJoCo's linearisation of the
  cartpole at the upright pose, which scores ~1000 on balance. Each round rolls out the learner
  (mixed with the expert, beta = 0.5^round), labels every visited frame with the expert's action and
  regresses a small CNN policy on all frames so far. Both variants get the same rounds and steps;
  the adapter variant sees masked frames in training and evaluation (VAI's protocol);
* the Atari part is a single seed of PPO for ``--atari-steps`` steps per extractor;
* ``--recolor-prob P`` (> 0) adds critwrap's variants: a second adapter (stage 1 reused) whose
  stage 2 gives a share P of the frames a random foreground colour, used as VAI does (frame x mask,
  ``recolor``) and with the mask alone as the observation (``recolor-mask``);
* ``--color-transform-prob P`` (> 0) adds the ``critwrap`` variant instead: stage 2 (stage 1 reused)
  with a share P of its inputs colour-remapped (channel permutation and inversion) plus the
  ``--recolor-prob`` / ``--recolor-mode`` foreground recolouring and the ``--region-recolor-prob``
  background recolouring; with ``--oracle`` also the same
  stage 2 on segmentation targets (``oracle-critwrap``); ``critwrap-mask`` hands the policy that
  adapter's mask instead of frame x mask. ``--variants plain,critwrap`` trains only those;
* ``--segmentation`` adds the perfect-mask reference: agents behind MuJoCo's own segmentation of the
  moving bodies (frame x mask and the mask alone), i.e. what a perfect adapter would give;
* ``--oracle`` adds an ablation: the same stage 2 trained on MuJoCo's segmentation of the cart and
  pole instead of the keypoint masks, to tell stage-1 failures from stage-2 failures.

Results and the exact commands of the reported run: ``docs/benchmarks.md`` (attention section).

Run (writes OUT/results.json, OUT/report.md and pictures; parts already done are reused)::

    MUJOCO_GL=egl python benchmarks/attention.py --out bench_out/attention
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
from torch import nn

ENV_IDS = {"balance": "dm_control/cartpole-balance-v0", "swingup": "dm_control/cartpole-swingup-v0"}
CONDITIONS = ("none", "color-hard", "background")


@dataclass
class Settings:
    out: Path
    task: str = "balance"  # or "swingup"
    adapter_dir: str = ""  # reuse this fitted adapter instead of fitting one (e.g. balance's for swingup)
    transporter: str = ""  # fit only stage 2, reusing this adapter folder's stage-1 Transporter
    seeds: int = 3
    first_seed: int = 0  # agents use seeds first_seed .. first_seed + seeds - 1
    size: int = 64
    frame_stack: int = 3
    action_repeat: int = 8
    adapter_frames: int = 2000
    episode_frames: int = 0  # > 0: the adapters' random episodes are cut after this many frames
    stage1_width: int = 8
    stage1_iterations: int = 1500
    stage1_batch: int = 16
    stage2_iterations: int = 1000
    stage2_batch: int = 32
    threshold: float = 0.3
    recolor_prob: float = 0.0  # > 0: also an adapter fitted with critwrap's foreground recolouring
    recolor_iterations: int = 2000
    recolor_mode: str = "hsv"  # "rgb": recolour with a uniform RGB colour (color-hard's law) x shading
    color_transform_prob: float = 0.0  # > 0: the "critwrap" adapter (stage 2 with colour remapping)
    region_recolor_prob: float = (
        0.0  # the critwrap adapter: share of original backgrounds recoloured per region
    )
    variants: str = ""  # comma-separated agent variants to train (default: every adapter fitted)
    dagger_rounds: int = 4
    episodes_per_round: int = 3
    train_steps: int = 300
    policy_width: int = 16  # conv channels of the pixel policy
    augment_shift: int = 0  # > 0: DAgger regression on randomly shifted frames (pad by N, crop; DrQ-style)
    augment_color: float = 0.0  # > 0: that share of the DAgger batch gets one random colour x luminance
    augment_color_regions: int = 1  # > 1: that many colour regions per sample, each with its own colour
    adapter_binarize: float = -1.0  # >= 0: the agents see frame x (mask > this) instead of the soft mask
    # > 0: DAgger keeps the raw frames and that share of each batch gets critwrap's colour remapping or
    # region recolouring (half each, one draw per sample for all its stacked frames) *before* the
    # adapter masks them, so the policy trains on the adapter's own output for recoloured frames
    augment_input: float = 0.0
    batch_size: int = 64
    eval_episodes: int = 5
    swing_gain: float = 5.0  # swingup expert: energy-pumping gain, cart centring, LQR switch angle (rad)
    swing_center: float = 1.0
    swing_switch: float = 0.8
    swing_smooth: float = 0.0  # > 0: tanh(thetadot cos theta / swing_smooth) instead of its sign
    atari_game: str = "Breakout"
    atari_steps: int = 20000
    threads: int = 1


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the expert: LQR on the true state --------------------------------------------------------------


def lqr_gain(env: Any, action_repeat: int) -> np.ndarray:
    """Discrete LQR gain K (u = -K x, x = [qpos, qvel]) for the cartpole held upright, per agent step."""
    import mujoco
    import scipy.linalg

    from critwrap.attention.pixels import mujoco_handles

    handles = mujoco_handles(env)
    assert handles is not None
    model = handles.model
    data = mujoco.MjData(model)
    nv, nu = model.nv, model.nu

    def step(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        data.qpos[:], data.qvel[:], data.ctrl[:], data.time = x[:nv], x[nv:], u, 0.0
        mujoco.mj_step(model, data)
        return np.concatenate([data.qpos, data.qvel])

    eps, x0, u0 = 1e-5, np.zeros(2 * nv), np.zeros(nu)
    a = np.stack([(step(x0 + e, u0) - step(x0 - e, u0)) / (2 * eps) for e in np.eye(2 * nv) * eps], 1)
    b = np.stack([(step(x0, u0 + e) - step(x0, u0 - e)) / (2 * eps) for e in np.eye(nu) * eps], 1)
    a_k = np.linalg.matrix_power(a, action_repeat)
    b_k = sum(np.linalg.matrix_power(a, i) for i in range(action_repeat)) @ b
    q, r = np.diag([1.0, 10.0, 0.1, 0.1]), np.eye(nu) * 0.1
    p = scipy.linalg.solve_discrete_are(a_k, b_k, q, r)
    return np.linalg.solve(r + b_k.T @ p @ b_k, b_k.T @ p @ a_k)


def env_id(s: Settings) -> str:
    if s.task not in ENV_IDS:
        raise ValueError(f"--task must be one of {sorted(ENV_IDS)}, got {s.task!r}")
    return ENV_IDS[s.task]


def expert_action(env: Any, gain: np.ndarray, s: Settings | None = None) -> np.ndarray:
    """The state-based expert's action. Balance: LQR. Swingup (``s.task == "swingup"``): energy pumping
    (push the cart by ``swing_gain * E * sign(thetadot cos theta)``, E the pole's energy relative to resting
    upright, minus ``swing_center * (x + xdot)`` to keep the cart near the middle) until the pole is within
    ``swing_switch`` rad of upright, then the same LQR. The swingup parameters were chosen by a small grid
    on the state env (about 865 on the evaluation seeds; the benchmark prints its reference return)."""
    from critwrap.attention.pixels import mujoco_handles

    handles = mujoco_handles(env)
    assert handles is not None
    x = np.concatenate([handles.data.qpos, handles.data.qvel])
    x[1] = (x[1] + np.pi) % (2 * np.pi) - np.pi
    if s is not None and s.task == "swingup" and np.cos(x[1]) <= np.cos(s.swing_switch):
        # pole: 0.1 kg, 1 m (dm_control's cartpole.xml); energy 0 when at rest upright
        energy = 0.5 * (0.1 / 3) * x[3] ** 2 + 0.1 * 9.81 * 0.5 * (np.cos(x[1]) - 1.0)
        phase = x[3] * np.cos(x[1])
        direction = np.tanh(phase / s.swing_smooth) if s.swing_smooth > 0 else np.sign(phase + 1e-9)
        push = s.swing_gain * energy * direction - s.swing_center * (x[0] + x[2])
        return np.clip(np.array([push]), -1.0, 1.0).astype(np.float32)
    return np.clip(-gain @ x, -1.0, 1.0).astype(np.float32)


# ---- the pixel policy -----------------------------------------------------------------------------


class PixelPolicy(nn.Module):
    """Small CNN: (3k, H, W) uint8 -> action in [-1, 1]."""

    def __init__(self, channels: int, size: int, actions: int = 1, width: int = 16) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.conv(torch.zeros(1, channels, size, size)).shape[1]
        self.head = nn.Sequential(
            nn.Linear(n, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, actions), nn.Tanh()
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(obs.float() / 255.0))

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(obs[None]))[0].numpy()


def rollout(
    s: Settings,
    env: Any,
    seed: int,
    policy: Any,  # anything with act(obs): a PixelPolicy, or one behind an InputMasker
    gain: np.ndarray,
    beta: float,
    noise: float,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    obs, _ = env.reset(seed=seed)
    observations, labels, total = [], [], 0.0
    done = False
    while not done:
        label = expert_action(env, gain, s)
        observations.append(obs)
        labels.append(label)
        if policy is None or rng.random() < beta:
            action = np.clip(label + rng.normal(0, noise, size=label.shape), -1, 1).astype(np.float32)
        else:
            action = policy.act(obs).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return observations, labels, total


SEGMENTATION = "segmentation"  # the "adapter" of the perfect-mask reference: MuJoCo's segmentation


class SegmentationMask:
    """A reference, not a method: every frame x MuJoCo's segmentation of the moving bodies (``masked``)
    or that segmentation alone as a grey silhouette (``mask``): the masks a perfect adapter would give,
    with the distraction applied before masking as for the adapters."""

    def __init__(self, env: Any, output: str) -> None:
        from collections import deque

        from critwrap.attention.pixels import PixelObservation, mujoco_handles

        self.env, self.output = env, output
        pixels = env
        while not isinstance(pixels, PixelObservation):
            pixels = pixels.env
        self.pixels = pixels
        self.moving = np.flatnonzero(mujoco_handles(env).model.geom_bodyid != 0)
        self.masks: Any = deque(maxlen=pixels.frame_stack)
        self.action_space, self.observation_space = env.action_space, env.observation_space

    def _mask(self, obs: np.ndarray) -> np.ndarray:
        masks = np.repeat(np.stack(list(self.masks)), 3, axis=0)  # (3k, H, W), oldest first like the stack
        if self.output == "mask":
            return (masks * 255).astype(np.uint8)
        return (obs * masks).astype(np.uint8)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        current = np.isin(self.pixels.render_segmentation(), self.moving)
        for _ in range(self.pixels.frame_stack):
            self.masks.append(current)
        return self._mask(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.masks.append(np.isin(self.pixels.render_segmentation(), self.moving))
        return self._mask(obs), reward, terminated, truncated, info

    @property
    def unwrapped(self) -> Any:
        return self.env.unwrapped

    def close(self) -> None:
        self.env.close()


def agent_env(s: Settings, distraction: str | None, adapter: str | None, output: str) -> Any:
    """The pixel env the agents see: stacked, channels-first frames, optionally distracted and masked
    (``adapter == SEGMENTATION``: by MuJoCo's segmentation, the perfect-mask reference)."""
    from critwrap.attention.pipeline import RenderSettings, make_pixel_env

    render = RenderSettings(size=s.size, action_repeat=s.action_repeat, shadows=False)
    env = make_pixel_env(
        env_id(s),
        render,
        frame_stack=s.frame_stack,
        channels_first=True,
        distraction=distraction or "none",
        adapter=None if adapter == SEGMENTATION else adapter,
        adapter_output=output,
        adapter_threshold=s.adapter_binarize if s.adapter_binarize >= 0 else None,
    )
    return SegmentationMask(env, output) if adapter == SEGMENTATION else env


def random_shift(batch: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """DrQ's augmentation: replicate-pad each (C, H, W) frame stack by ``pad`` pixels, crop back at a random
    offset (one offset per sample, the same for its stacked frames)."""
    n, _, h, w = batch.shape
    padded = nn.functional.pad(batch.float(), (pad, pad, pad, pad), mode="replicate")
    dx, dy = rng.integers(0, 2 * pad + 1, size=(2, n))
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def random_tint(batch: torch.Tensor, prob: float, rng: np.random.Generator) -> torch.Tensor:
    """Colour augmentation of the policy's training frames: a share ``prob`` of the (N, 3k, H, W) samples
    is redrawn as one colour uniform in [0, 1]^3 times each pixel's luminance (over the sample's
    brightest pixel), the same colour for every frame of the stack. On frame x mask observations this
    draws the body colours ``color_hard`` draws, with the black background kept black."""
    if prob <= 0:
        return batch
    x = batch.float()
    n, c, h, w = x.shape
    frames = x.view(n, c // 3, 3, h, w)
    gray = 0.299 * frames[:, :, 0] + 0.587 * frames[:, :, 1] + 0.114 * frames[:, :, 2]  # (N, k, H, W)
    peak = gray.flatten(1).amax(1).clamp_min(1.0).view(n, 1, 1, 1)
    color = torch.from_numpy(rng.uniform(0.0, 1.0, size=(n, 1, 3, 1, 1))).float()
    tinted = (color * (gray / peak).unsqueeze(2) * 255.0).view(n, c, h, w)
    chosen = torch.from_numpy(rng.uniform(size=n) < prob).view(n, 1, 1, 1)
    return torch.where(chosen, tinted, x)


def random_region_tint(
    batch: torch.Tensor, prob: float, rng: np.random.Generator, regions: int = 4, steps: int = 4
) -> torch.Tensor:
    """:func:`random_tint` per colour region: the pixels of each chosen (3k, H, W) sample (all its stacked
    frames together) are grouped into ``regions`` colour clusters (batched k-means, started at the darkest
    pixel and then the farthest ones), and each cluster gets its own colour uniform in [0, 1]^3 times each
    pixel's luminance over its cluster's mean (capped at 2). Black stays black. On frame x mask
    observations this draws what ``color_hard`` does to the body *and* to any background the mask keeps."""
    if prob <= 0:
        return batch
    out = batch.float().clone()
    chosen = torch.from_numpy(np.flatnonzero(rng.uniform(size=len(batch)) < prob))
    if len(chosen) == 0:
        return out
    x = out[chosen]
    n, c, h, w = x.shape
    k = c // 3
    points = x.view(n, k, 3, h * w).permute(0, 1, 3, 2).reshape(n, k * h * w, 3)  # (N, P, 3)
    gray = points @ torch.tensor([0.299, 0.587, 0.114])  # (N, P)
    # the clusters are found on 1024 sampled pixels per sample (plus the darkest and the farthest), then
    # every pixel joins its nearest centre
    sample = torch.from_numpy(rng.integers(0, points.shape[1], size=(n, 1024)))
    sub = points.gather(1, sample.unsqueeze(2).expand(-1, -1, 3))
    centers = points[torch.arange(n), gray.argmin(1)].unsqueeze(1)  # (N, 1, 3)
    while centers.shape[1] < regions:
        far = torch.cdist(points, centers).min(2).values.argmax(1)
        centers = torch.cat([centers, points[torch.arange(n), far].unsqueeze(1)], 1)
    for _ in range(steps):
        onehot = nn.functional.one_hot(torch.cdist(sub, centers).argmin(2), regions).float()
        counts = onehot.sum(1).unsqueeze(2)
        centers = torch.where(counts > 0, onehot.transpose(1, 2) @ sub / counts.clamp_min(1.0), centers)
    labels = torch.cdist(points, centers).argmin(2)
    onehot = nn.functional.one_hot(labels, regions).float()
    mean_gray = (onehot * gray.unsqueeze(2)).sum(1) / onehot.sum(1).clamp_min(1.0)  # (N, K)
    shading = (gray / mean_gray.gather(1, labels).clamp_min(1e-3)).clamp(max=2.0)
    colors = torch.from_numpy(rng.uniform(0.0, 1.0, size=(n, regions, 3))).float()
    new = colors.gather(1, labels.unsqueeze(2).expand(-1, -1, 3)) * (shading * 255.0 * (gray > 0)).unsqueeze(
        2
    )
    out[chosen] = new.clamp(0, 255).view(n, k, h * w, 3).permute(0, 1, 3, 2).reshape(n, c, h, w)
    return out


def augment_raw_frames(batch: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """``--augment-input``: recolour a share ``prob`` of the raw (B, 3k, H, W) uint8 samples, half with
    :func:`~critwrap.attention.adapter.transform_colors`, half with
    :func:`~critwrap.attention.adapter.recolor_regions`; a sample's k frames are laid side by side first,
    so all of them get the same draw (the same new colour per region)."""
    from critwrap.attention.adapter import recolor_regions, transform_colors

    if prob <= 0:
        return batch
    b, c, h, w = batch.shape
    k = c // 3
    wide = batch.view(b, k, 3, h, w).permute(0, 2, 3, 1, 4).reshape(b, 3, h, k * w).float() / 255.0
    wide = transform_colors(wide, prob / 2, generator)
    wide = recolor_regions(wide, prob / 2, generator)
    out = (wide * 255.0).round().clamp(0, 255).to(torch.uint8)
    return out.view(b, 3, h, k, w).permute(0, 3, 1, 2, 4).reshape(b, c, h, w)


class InputMasker:
    """The frozen adapter of an :class:`~critwrap.wrappers.attention.AttentionAdapter` as a function of raw
    observations: ``observation`` for one (what the agent acts on), ``batch`` for a (B, 3k, H, W) uint8
    batch (the same arithmetic, in one forward pass)."""

    def __init__(self, env: Any, checkpoint: str, output: str, threshold: float | None) -> None:
        from critwrap.wrappers.attention import AttentionAdapter

        self.wrapper = AttentionAdapter(env, checkpoint=checkpoint, output=output, threshold=threshold)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return self.wrapper.observation(obs)

    @torch.inference_mode()
    def batch(self, batch: torch.Tensor) -> torch.Tensor:
        w = self.wrapper
        b, c, h, width = batch.shape
        frames = batch.reshape(b * (c // 3), 3, h, width).float()
        mask = w.adapter(frames / 255.0)[:, 0]
        if w.threshold is not None:
            mask = (mask > w.threshold).float()
        if w.output == "mask":
            out = torch.round(255.0 * mask).unsqueeze(1).expand(-1, 3, -1, -1)
        else:
            out = torch.round(frames * mask.unsqueeze(1))
        return out.to(torch.uint8).reshape(b, c, h, width)


class _MaskedActor:
    def __init__(self, policy: PixelPolicy, masker: InputMasker) -> None:
        self.policy, self.masker = policy, masker

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.act(self.masker.observation(obs))


def train_dagger(
    s: Settings, seed: int, adapter: str | None, output: str = "masked"
) -> tuple[PixelPolicy, list[dict[str, Any]]]:
    raw_input = s.augment_input > 0
    if raw_input and adapter == SEGMENTATION:
        raise SystemExit(
            "--augment-input works with learned adapters and the plain policy, not --segmentation"
        )
    env = agent_env(s, None, None if raw_input else adapter, output)
    gain = lqr_gain(env, s.action_repeat)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    policy = PixelPolicy(3 * s.frame_stack, s.size, width=s.policy_width)
    masker = None
    if raw_input and adapter is not None:
        threshold = s.adapter_binarize if s.adapter_binarize >= 0 else None
        masker = InputMasker(env, adapter, output, threshold)
    actor: Any = policy if masker is None else _MaskedActor(policy, masker)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    data_obs: list[np.ndarray] = []
    data_act: list[np.ndarray] = []
    history = []
    for round_ in range(s.dagger_rounds + 1):
        beta = 0.5**round_
        returns = []
        for e in range(s.episodes_per_round):
            obs, labels, total = rollout(
                s, env, 1000 * seed + 100 * round_ + e, None if round_ == 0 else actor, gain, beta, 0.3, rng
            )
            data_obs += obs
            data_act += labels
            returns.append(total)
        x = torch.from_numpy(np.stack(data_obs))
        y = torch.from_numpy(np.stack(data_act))
        losses = []
        policy.train()
        for _ in range(s.train_steps):
            idx = torch.from_numpy(rng.integers(0, len(x), size=s.batch_size))
            batch = x[idx]
            if raw_input:  # raw frames: recolour, then mask with the frozen adapter
                batch = augment_raw_frames(batch, s.augment_input, generator)
                if masker is not None:
                    batch = masker.batch(batch)
            if s.augment_shift > 0:
                batch = random_shift(batch, s.augment_shift, rng)
            if s.augment_color > 0 and s.augment_color_regions > 1:
                batch = random_region_tint(batch, s.augment_color, rng, s.augment_color_regions)
            elif s.augment_color > 0:
                batch = random_tint(batch, s.augment_color, rng)
            loss = nn.functional.mse_loss(policy(batch), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        policy.eval()
        history.append(
            {
                "round": round_,
                "beta": beta,
                "rollout_return": float(np.mean(returns)),
                "samples": len(x),
                "loss": float(np.mean(losses[-20:])),
            }
        )
        log(f"  seed {seed} {adapter or 'plain'} round {round_}: {history[-1]}")
    env.close()
    return policy, history


def evaluate(
    s: Settings, policy: PixelPolicy, condition: str, adapter: str | None, output: str = "masked"
) -> list[float]:
    env = agent_env(s, condition, adapter, output)
    returns = []
    for e in range(s.eval_episodes):
        obs, _ = env.reset(seed=10_000 + e)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs).astype(np.float32))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


# ---- stages --------------------------------------------------------------------------------------


def stage_adapter(s: Settings, recolor: bool = False, critwrap: bool = False) -> Path:
    """The VAI adapter; ``recolor``: the same with critwrap's foreground recolouring (stage 1 reused);
    ``critwrap``: stage 2 with critwrap's colour remapping (and recolouring, if set; stage 1 reused)."""
    if s.adapter_dir and not (recolor or critwrap):
        folder = Path(s.adapter_dir)
        if not (folder / "adapter.json").is_file():
            raise FileNotFoundError(
                f"--adapter-dir {folder}: no adapter.json there (fit one with `zoo adapter fit`)"
            )
        log(f"adapter: reusing {folder} (--adapter-dir)")
        return folder
    folder = s.out / ("adapter_critwrap" if critwrap else "adapter_recolor" if recolor else "adapter")
    if (folder / "adapter.json").is_file():
        log(
            f"adapter: reusing {folder} (fitted by: {json.loads((folder / 'fit.json').read_text()).get('command_line')})"
        )
        return folder
    from critwrap.zoo.__main__ import main as zoo

    argv = [
        "adapter", "fit", "--env", env_id(s), "--out", str(folder), "--size", str(s.size), "--no-shadows",
        "--action-repeat", str(s.action_repeat), "--frames", str(s.adapter_frames), "--keypoints", "12",
        "--stage1-width", str(s.stage1_width), "--stage1-iterations", str(s.stage1_iterations),
        "--stage1-batch", str(s.stage1_batch), "--stage2-width", "16", "--stage2-iterations",
        str(s.stage2_iterations), "--stage2-batch", str(s.stage2_batch), "--threshold", str(s.threshold),
        "--threads", str(s.threads), "--seed", "0",
    ]  # fmt: skip
    if s.episode_frames > 0:
        argv += ["--episode-frames", str(s.episode_frames)]
    stage1 = s.transporter or s.adapter_dir or str(s.out / "adapter")
    if critwrap:
        argv += [
            "--recolor-prob", str(s.recolor_prob), "--recolor-mode", s.recolor_mode,
            "--color-transform-prob", str(s.color_transform_prob), "--transporter", stage1,
            "--region-recolor-prob", str(s.region_recolor_prob),
        ]  # fmt: skip
    elif recolor:
        argv[argv.index("--stage2-iterations") + 1] = str(s.recolor_iterations)
        argv += ["--recolor-prob", str(s.recolor_prob), "--transporter", str(s.out / "adapter")]
    elif s.transporter:
        argv += ["--transporter", s.transporter]
    log("adapter: python -m critwrap.zoo " + " ".join(argv))
    if zoo(argv) != 0:
        raise RuntimeError("adapter fit failed")
    return folder


def stage_oracle_adapter(s: Settings, critwrap: bool = False) -> Path:
    """An ablation: the same stage 2, trained on MuJoCo's segmentation of the cart and pole instead of the
    keypoint masks, to tell stage-1 failures (wrong targets) from stage-2 failures (no invariance).
    ``critwrap``: with the critwrap variant's colour remapping and recolouring."""
    folder = s.out / ("adapter_oracle_critwrap" if critwrap else "adapter_oracle")
    if (folder / "adapter.json").is_file():
        return folder
    from critwrap.attention.adapter import AdapterConfig, fit_adapter
    from critwrap.attention.pipeline import RenderSettings, make_pixel_env
    from critwrap.attention.pixels import PixelObservation, mujoco_handles

    render = RenderSettings(size=s.size, action_repeat=s.action_repeat, shadows=False)
    env = make_pixel_env(env_id(s), render, channels_first=False)
    pixels = env
    while not isinstance(pixels, PixelObservation):
        pixels = pixels.env
    model = mujoco_handles(env).model
    moving = np.flatnonzero(model.geom_bodyid != 0)
    frames, masks = [], []
    env.action_space.seed(0)
    episode = 0
    while len(frames) < s.adapter_frames:
        obs, _ = env.reset(seed=episode)
        done = False
        while not done and len(frames) < s.adapter_frames:
            frames.append(obs)
            masks.append(np.isin(pixels.render_segmentation(), moving))
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        episode += 1
    env.close()
    targets = np.stack(masks)
    log(f"oracle adapter: {len(frames)} frames, {targets.mean():.1%} foreground")
    extra: dict[str, Any] = {}
    if critwrap:
        extra = {
            "recolor_prob": s.recolor_prob,
            "recolor_mode": s.recolor_mode,
            "color_transform_prob": s.color_transform_prob,
            "region_recolor_prob": s.region_recolor_prob,
        }
    config = AdapterConfig(
        width=16, iterations=s.stage2_iterations, batch_size=s.stage2_batch, seed=0, **extra
    )
    start = time.perf_counter()
    adapter = fit_adapter(np.stack(frames), targets, config)
    adapter.save(
        folder,
        config,
        render=asdict(render),
        env=env_id(s),
        targets="segmentation",
        seconds=time.perf_counter() - start,
    )
    log(f"oracle adapter fitted in {time.perf_counter() - start:.0f} s")
    return folder


def mask_quality(s: Settings, adapter: Path, frames: int = 200, threshold: float = 0.3) -> dict[str, Any]:
    """The adapter's masks against MuJoCo's segmentation of the cart and pole, per visual condition.

    Random-policy frames (episodes seeded 20000+); for each condition the same states are rendered, so
    the numbers differ only by what the distraction does to the adapter. Reported per condition:
    foreground recall (share of cart/pole pixels whose mask passes ``threshold``), IoU at that
    threshold, and the mean mask on the background.
    """
    from critwrap.attention.adapter import MaskAdapter
    from critwrap.attention.pipeline import RenderSettings, make_pixel_env
    from critwrap.attention.pixels import PixelObservation, mujoco_handles

    model_adapter = MaskAdapter.load(str(adapter))
    render = RenderSettings(size=s.size, action_repeat=s.action_repeat, shadows=False)
    out: dict[str, Any] = {}
    for condition in CONDITIONS:
        env = make_pixel_env(env_id(s), render, channels_first=False, distraction=condition)
        pixels = env
        while not isinstance(pixels, PixelObservation):
            pixels = pixels.env  # type: ignore[assignment]
        moving = np.flatnonzero(mujoco_handles(env).model.geom_bodyid != 0)
        env.action_space.seed(0)
        obs_list, seg_list = [], []
        episode = 0
        while len(obs_list) < frames:
            obs, _ = env.reset(seed=20_000 + episode)
            for _ in range(25):
                obs_list.append(obs)
                seg_list.append(np.isin(pixels.render_segmentation(), moving))
                obs, *_ = env.step(env.action_space.sample())
            episode += 1
        env.close()
        masks = model_adapter.predict(np.stack(obs_list[:frames]))
        truth = np.stack(seg_list[:frames])
        on = masks > threshold
        out[condition] = {
            "recall": float((on & truth).sum() / max(truth.sum(), 1)),
            "iou": float((on & truth).sum() / max((on | truth).sum(), 1)),
            "background_mask": float(masks[~truth].mean()),
            "foreground_mask": float(masks[truth].mean()),
        }
    return out


def stage_mask_quality(s: Settings, adapters: list[Path]) -> dict[str, Any]:
    """:func:`mask_quality` of every adapter (cached in OUT/mask_quality.json)."""
    path = s.out / "mask_quality.json"
    done: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for adapter in dict.fromkeys(adapters):
        if adapter.name not in done:
            done[adapter.name] = mask_quality(s, adapter)
            log(f"mask quality of {adapter.name}: {done[adapter.name]}")
            path.write_text(json.dumps(done, indent=2))
    return {a.name: done[a.name] for a in adapters}


def stage_pictures(s: Settings, adapter: Path) -> None:
    from critwrap.attention.pipeline import show_adapter

    for condition in CONDITIONS:
        path = s.out / f"{adapter.name}_{condition}.png"
        if not path.exists():
            show_adapter(adapter, path, distraction=condition, frames=6, seed=1)


def stage_cartpole(s: Settings, adapters: dict[str, tuple[Path | None, str]]) -> dict[str, Any]:
    """``adapters``: variant -> (adapter checkpoint or None, AttentionAdapter output)."""
    results: dict[str, Any] = {}
    for seed in range(s.first_seed, s.first_seed + s.seeds):
        for variant, (adapter, output) in adapters.items():
            path = s.out / "cartpole" / f"{variant}_seed{seed}.json"
            if path.is_file():
                results[f"{variant}/{seed}"] = json.loads(path.read_text())
                continue
            start = time.perf_counter()
            ckpt = None if adapter is None else str(adapter)
            policy, history = train_dagger(s, seed, ckpt, output)
            train_s = time.perf_counter() - start
            returns = {}
            for condition in CONDITIONS:
                returns[condition] = evaluate(s, policy, condition, ckpt, output)
                log(f"  seed {seed} {variant} {condition}: {np.mean(returns[condition]):.1f}")
            record = {
                "variant": variant,
                "adapter_output": output,
                "seed": seed,
                "history": history,
                "returns": returns,
                "train_seconds": train_s,
                "total_seconds": time.perf_counter() - start,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2))
            torch.save(policy.state_dict(), path.with_suffix(".pt"))
            results[f"{variant}/{seed}"] = record
    return results


def reference_returns(s: Settings) -> dict[str, float]:
    """The LQR expert and a uniform random policy on the state env (the same for every visual condition)."""
    import critwrap

    env = critwrap.make(env_id(s))
    gain = lqr_gain(env, s.action_repeat)
    out: dict[str, list[float]] = {"expert": [], "random": []}
    for name in out:
        for e in range(s.eval_episodes):
            env.action_space.seed(e)
            act = (lambda: expert_action(env, gain, s)) if name == "expert" else env.action_space.sample
            out[name].append(state_episode(env, s, act, seed=10_000 + e))
    return {k: float(np.mean(v)) for k, v in out.items()}


def state_episode(env: Any, s: Settings, act: Any, seed: int) -> float:
    """One episode of the state env, ``act()`` choosing each agent step's action (held for
    ``action_repeat`` env steps); returns the episode's return."""
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = act()
        for _ in range(s.action_repeat):
            _, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
            if done:
                break
    return total


def stage_atari(s: Settings) -> dict[str, Any]:
    path = s.out / "atari" / "results.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import critwrap
    from critwrap.extractors import WhatWhereExtractor, find_what_where, save_attention

    out: dict[str, Any] = {"game": s.atari_game, "steps": s.atari_steps, "algo": "PPO", "seed": 0}
    for name, extractor in (("nature-cnn", None), ("what-where", WhatWhereExtractor)):
        venv = make_vec_env(lambda: critwrap.make(s.atari_game, training=True), n_envs=4, seed=0)
        kwargs: dict[str, Any] = {}
        if extractor is not None:
            kwargs["features_extractor_class"] = extractor
        model = PPO(
            "CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, clip_range=0.1,
            ent_coef=0.01, vf_coef=0.5, seed=0, policy_kwargs=kwargs, verbose=0,
        )  # fmt: skip
        start = time.perf_counter()
        model.learn(s.atari_steps)
        train_s = time.perf_counter() - start
        env = critwrap.make(s.atari_game)
        returns = []
        frames, maps = [], []
        for e in range(s.eval_episodes):
            obs, _ = env.reset(seed=500 + e)
            total, done, t = 0.0, False, 0
            while not done and t < 10_000:
                action, _ = model.predict(obs, deterministic=False)
                if extractor is not None and e == 0 and t < 120 and t % 2 == 0:
                    frames.append(obs)
                    maps.append(find_what_where(model).attention_map(obs)[0])
                obs, reward, terminated, truncated, _ = env.step(int(action))
                total += float(reward)
                done = terminated or truncated
                t += 1
            returns.append(total)
        if frames:
            save_attention(
                frames[:6], np.stack(maps[:6]), s.out / "atari" / "what_where_attention.png", scale=2
            )
            save_attention(
                frames, np.stack(maps), s.out / "atari" / "what_where_attention.gif", scale=2, fps=15
            )
        out[name] = {"returns": returns, "mean": float(np.mean(returns)), "train_seconds": train_s}
        log(f"atari {name}: {out[name]}")
        venv.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return out


def summarize(
    s: Settings,
    cartpole: dict[str, Any],
    refs: dict[str, float],
    atari: dict[str, Any] | None,
    seconds: float,
    quality: dict[str, Any] | None = None,
) -> str:
    lines = []
    table: dict[str, dict[str, list[float]]] = {}
    for record in cartpole.values():
        means = {c: float(np.mean(record["returns"][c])) for c in CONDITIONS}
        row = table.setdefault(
            record["variant"],
            {f"{c}": [] for c in CONDITIONS} | {f"retained/{c}": [] for c in CONDITIONS[1:]},
        )
        for c in CONDITIONS:
            row[c].append(means[c])
        for c in CONDITIONS[1:]:
            row[f"retained/{c}"].append(means[c] / max(means["none"], 1e-9))
    lines.append("| agent | clean | color-hard | background | retained color-hard | retained background |")
    lines.append("|---|---|---|---|---|---|")
    names = {
        "plain": "pixel policy",
        "adapter": "pixel policy + VAI adapter",
        "oracle": "pixel policy + adapter on segmentation targets (ablation)",
        "recolor": "pixel policy + VAI adapter fitted with foreground recolouring (critwrap)",
        "recolor-mask": "pixel policy + that adapter, mask output (critwrap)",
        "critwrap": "pixel policy + adapter fitted with colour remapping (critwrap)",
        "critwrap-mask": "pixel policy + that adapter, mask output (critwrap)",
        "segmentation": "pixel policy + perfect masks (MuJoCo segmentation; reference)",
        "segmentation-mask": "pixel policy + perfect masks, mask output (reference)",
        "oracle-critwrap": "pixel policy + colour-remapped adapter on segmentation targets (ablation)",
    }
    for variant in names:
        if variant not in table:
            continue
        row = table[variant]

        def fmt(values: list[float], digits: int = 0) -> str:
            return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"

        lines.append(
            f"| {names[variant]} | {fmt(row['none'])} | "
            f"{fmt(row['color-hard'])} | {fmt(row['background'])} | {fmt(row['retained/color-hard'], 2)} | "
            f"{fmt(row['retained/background'], 2)} |"
        )
    lines.append("")
    lines.append(
        f"References on the same evaluation seeds: expert {refs['expert']:.0f}, uniform random policy {refs['random']:.0f}."
    )
    if quality:
        lines.append("")
        lines.append(
            "| adapter | condition | foreground recall (mask > 0.3) | IoU | mean mask on foreground | on background |"
        )
        lines.append("|---|---|---|---|---|---|")
        for name, per in quality.items():
            for c in CONDITIONS:
                q = per[c]
                lines.append(
                    f"| {name} | {c} | {q['recall']:.2f} | {q['iou']:.3f} | {q['foreground_mask']:.2f} | "
                    f"{q['background_mask']:.3f} |"
                )
    if atari:
        lines.append("")
        lines.append(
            f"| {atari['game']}, PPO, {atari['steps']} steps, seed 0 | mean return ({s.eval_episodes} episodes) | training time |"
        )
        lines.append("|---|---|---|")
        for name in ("nature-cnn", "what-where"):
            if name in atari:
                lines.append(
                    f"| {name} | {atari[name]['mean']:.1f} | {atari[name]['train_seconds'] / 60:.1f} min |"
                )
        if "nature-cnn" in atari and "what-where" in atari and atari["nature-cnn"]["mean"] > 0:
            lines.append("")
            lines.append(
                f"what-where / NatureCNN return ratio: {atari['what-where']['mean'] / atari['nature-cnn']['mean']:.2f}"
            )
    lines.append("")
    lines.append(
        f"Wall time of this invocation: {seconds / 60:.1f} min on {platform.machine()} ({os.cpu_count()} CPUs), torch threads {s.threads}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/attention"))
    for f in Settings.__dataclass_fields__.values():
        if f.name != "out":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.add_argument(
        "--stop-after",
        choices=["adapter", "masks", "cartpole", "atari"],
        default=None,
        help="stop after fitting the adapter, after the adapters' mask quality, after the cartpole agents, "
        "or after Atari",
    )
    p.add_argument("--skip-atari", action="store_true")
    p.add_argument(
        "--pilot",
        action="store_true",
        help="only the plain pixel policy of --first-seed, evaluated on the clean env (no adapter, no "
        "distraction): checks that DAgger learns the task before the full run; writes OUT/pilot.jsonl",
    )
    p.add_argument(
        "--oracle", action="store_true", help="also the ablation: stage 2 trained on segmentation masks"
    )
    p.add_argument(
        "--segmentation",
        action="store_true",
        help="also the perfect-mask reference: agents behind MuJoCo's segmentation (frame x mask, mask alone)",
    )
    args = p.parse_args(argv)
    s = Settings(**{k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__})
    torch.set_num_threads(s.threads)
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "settings.json").write_text(json.dumps(asdict(s), indent=2, default=str))
    start = time.perf_counter()
    if args.pilot:
        refs = reference_returns(s)
        policy, history = train_dagger(s, s.first_seed, None)
        clean = evaluate(s, policy, "none", None)
        record = {
            "settings": asdict(s),
            "references": refs,
            "history": history,
            "clean": clean,
            "clean_mean": float(np.mean(clean)),
            "seconds": time.perf_counter() - start,
        }
        with (s.out / "pilot.jsonl").open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        log(
            f"pilot: clean return {record['clean_mean']:.1f} (expert {refs['expert']:.1f}, random {refs['random']:.1f})"
        )
        return 0
    adapter = stage_adapter(s)
    stage_pictures(s, adapter)
    if args.stop_after == "adapter":
        return 0
    refs = reference_returns(s)
    log(f"references: {refs}")
    adapters: dict[str, tuple[Path | None, str]] = {"plain": (None, "masked"), "adapter": (adapter, "masked")}
    if args.oracle:
        oracle = stage_oracle_adapter(s)
        adapters["oracle"] = (oracle, "masked")
        stage_pictures(s, oracle)
    if s.color_transform_prob > 0:
        robust = stage_adapter(s, critwrap=True)
        stage_pictures(s, robust)
        adapters["critwrap"] = (robust, "masked")
        adapters["critwrap-mask"] = (robust, "mask")
        if args.oracle:
            adapters["oracle-critwrap"] = (stage_oracle_adapter(s, critwrap=True), "masked")
    elif s.recolor_prob > 0:
        recolored = stage_adapter(s, recolor=True)
        stage_pictures(s, recolored)
        adapters["recolor"] = (recolored, "masked")
        adapters["recolor-mask"] = (recolored, "mask")
    if args.segmentation:
        adapters["segmentation"] = (Path(SEGMENTATION), "masked")
        adapters["segmentation-mask"] = (Path(SEGMENTATION), "mask")
    quality = stage_mask_quality(
        s, [a for a, _ in adapters.values() if a is not None and str(a) != SEGMENTATION]
    )
    if args.stop_after == "masks":
        print(json.dumps(quality, indent=2))
        return 0
    if s.variants:
        chosen = [v.strip() for v in s.variants.split(",") if v.strip()]
        unknown = sorted(set(chosen) - set(adapters))
        if unknown:
            raise SystemExit(f"--variants: unknown {unknown}; this run has {sorted(adapters)}")
        adapters = {v: adapters[v] for v in chosen}
    cartpole = stage_cartpole(s, adapters)
    if args.stop_after == "cartpole" or args.skip_atari:
        atari = None
    else:
        atari = stage_atari(s)
    seconds = time.perf_counter() - start
    report = summarize(s, cartpole, refs, atari, seconds, quality)
    (s.out / "report.md").write_text(report + "\n")
    (s.out / "results.json").write_text(
        json.dumps(
            {
                "settings": asdict(s),
                "references": refs,
                "cartpole": cartpole,
                "mask_quality": quality,
                "atari": atari,
                "command": sys.argv,
            },
            indent=2,
            default=str,
        )
    )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
