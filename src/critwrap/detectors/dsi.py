"""Deep State Identifier (DSI): critical states learned from videos and episode returns only.

Liu et al., "Learning to Identify Critical States for Reinforcement Learning from Videos" (ICCV 2023).
Two networks share one backbone design: a per-frame CNN (five 3x3/2x2 conv layers 32-64-128-128-256,
InstanceNorm after the 2nd and 4th, ReLU, global average pool -> 256) followed by a bidirectional LSTM
(128 units per direction).

* the **detector** puts a linear 256 -> 1 + sigmoid on every LSTM output: a soft mask ``m_t`` in (0, 1),
  the importance of step ``t`` (what :meth:`DSI.score` returns);
* the **return predictor** pads the LSTM outputs to a fixed ``max_length``, flattens them and predicts
  the episode's return class (cross-entropy) or the return itself (SmoothL1).

Training alternates per batch, each net with its own Adam (lr 1e-4, weight decay 1e-4):

* detector step: ``l1 * |m|_1 + classify * L(P(m * x), y) + reverse * L_rev(P((1 - m) * x))``; the mask
  scales whole frames; ``L_rev`` pushes the prediction from the complementary video to the uniform
  class distribution (or to 0 for regression); only the detector is updated;
* predictor step: the plain loss ``L(P(x), y)`` on the unmasked video.

Example:
    >>> import numpy as np
    >>> from critwrap.episodes import Episode
    >>> from critwrap.detectors.dsi import DSI
    >>> rng = np.random.default_rng(0)
    >>> eps = [Episode(rng.integers(0, 255, (12, 24, 24, 3), dtype=np.uint8), label=i % 2) for i in range(8)]
    >>> det = DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8).fit(eps, epochs=1, progress=False, seed=0)
    >>> scores = det.score(eps[0].frames)
    >>> scores.shape, bool(((scores > 0) & (scores < 1)).all())
    ((12,), True)
    >>> det.critical_steps(scores=scores, k=2).shape
    (2,)

Where critwrap deviates from the original code (``AI-Initiative-KAUST/VideoRLCS``):

* **What the predictor sees of a masked video (defaults changed; ``mask_input="frames"``,
  ``length_blind=False`` restore the original).** Measured on the GridWorld (400 training episodes,
  small nets): with the original pipeline the mask collapsed to ~0 while the predictor stayed 91-93%
  accurate, because the predictor ran each LSTM direction over the episode's own length and
  zero-padded the outputs to ``max_length``, so an all-black video still told the linear head its
  length, and on the paper's GridWorld length alone predicts success (85% of failures are 24 steps
  long; 89% accuracy from length alone). Masking frames cost nothing and the L1 term drove the mask
  to 0. critwrap therefore

  - multiplies each frame's CNN *features* by the mask (``mask_input="features"``): a masked-out frame
    gives exactly zero input to the LSTMs, the same as a padding step (the predictor's CNN runs once,
    without gradients; with ``"frames"``, padding steps get the CNN's features of a black frame);
  - runs the predictor's LSTMs over all ``max_length`` steps with padding steps fed the same zero
    input (``length_blind=True``), so a fully masked video carries no trace of its length. The
    detector network is unchanged and still scores episodes of any length.

  Neither removes a length cue from the *clean* videos the predictor learns from; for that the
  GridWorld generator has length-matched negatives (:mod:`critwrap.gridworld`, ``negative_length``).
  On length-matched data the original pipeline ranked critical frames as well as these defaults (within
  the spread of 3 seeds; ``docs/benchmarks_critical_states.md``): the data and choosing the epoch on
  validation are what mattered there.
  ``mask_sampling="bernoulli"`` (0/1 masks drawn from the soft mask, straight-through gradients) is
  available; it did not help in our measurements (see ``docs/benchmarks_critical_states.md``).

* **Speed, same maths.** The original takes about 330 s per epoch of 2000 GridWorld episodes on two
  CPU cores. critwrap computes the same functions about 4x faster: on one batch of 64 GridWorld
  episodes (2100 frames, one thread), a re-implementation of the original code path trains about 100
  frames per CPU-second, critwrap about 400 (about 600 with ``bf16=True``); scoring runs at about 4500
  frames per CPU-second. How:

  - only the valid frames of a batch go through the CNN (the original also ran the zero-padding
    frames, whose features the packed LSTM then ignored), in chunks of ``cnn_chunk`` frames;
  - InstanceNorm (no affine parameters, as in the original) is computed as a GroupNorm with one group
    per channel, which is the same function and several times faster on CPU than InstanceNorm2d;
  - the bidirectional LSTM over packed sequences is run as two one-directional LSTMs over padded
    batches, the backward one on each episode reversed within its own length: exactly the same outputs,
    but the fused oneDNN LSTM kernels instead of the slow packed-sequence path (the weights are
    therefore stored as ``backbone.lstm_fwd.*`` / ``backbone.lstm_bwd.*``);
  - in the detector step, the masked and the complementary videos go through the predictor in one
    pass, with the predictor's weights frozen (the original also computed predictor weight gradients
    there and discarded them with ``zero_grad``);
  - scoring runs under ``torch.inference_mode`` and scores many episodes per forward pass.

* **L1 term.** The original computes ``torch.linalg.norm(mask, ord=1)`` on the (batch, time) mask, which
  for a 2-D tensor is the *matrix* 1-norm: the largest over time steps of the mask summed over the
  batch. ``l1_reduction="original"`` (default) reproduces that (the paper's weights were tuned on it);
  ``"mean"`` is the mean mask value over all valid frames; ``"sum"`` is the entry-wise sum.
* **Reverse loss.** GridWorld/Seaquest code: soft-label cross-entropy to the uniform distribution
  (``reverse_loss="ce_uniform"``, default); Pong code: MSE between the softmax and uniform
  (``"mse_uniform"``). Regression always uses SmoothL1 to 0, as the Seaquest code does.
* Frames are scaled by 1/255 (the original training loader divided by 256 and its test code by 255).
* ``max_length`` (the predictor's fixed length; 84 in the GridWorld code) defaults to the longest
  training episode. The detector scores episodes of any length; only the predictor (and the saliency
  baseline, which differentiates it) needs episodes no longer than ``max_length``.
* Frames must be at least 23x23 pixels (the unpadded convolutions shrink them to 2x2 before the last
  layer); resize smaller frames first.
* Optional, off by default: bfloat16 autocast (``bf16=True``) for CPUs with bf16 support.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from critwrap.detectors.base import Detector, DetectorFormatError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DSI", "MIN_FRAME_SIZE", "DSIConfig"]

MIN_FRAME_SIZE = 23
#: classification on unlabelled episodes uses their returns as classes; more distinct returns than this
#: (e.g. success 1 / failure 0) means returns that are not outcome labels, and is refused
MAX_RETURN_CLASSES = 2
# a trained mask whose std within episodes is below this singles out no frames (fit warns)
FLAT_MASK_STD = 0.005
"""Smallest frame height/width the unpadded 5-layer CNN accepts."""

_CHANNELS_LAST = False  # NCHW measured faster on CPU for this network (GroupNorm needs NCHW)
_TASKS = ("classification", "regression")
_L1_REDUCTIONS = ("original", "mean", "sum")
_REVERSE_LOSSES = ("ce_uniform", "mse_uniform")
_MASK_INPUTS = ("features", "frames")
_MASK_SAMPLINGS = ("bernoulli", "soft")
_LAYOUTS = ("auto", "HWC", "CHW", "HW")


@dataclass
class DSIConfig:
    """Every setting of a :class:`DSI`; the fields marked *set by fit* describe the training data.

    Attributes:
        task: ``"classification"`` (episode label or return classes; classes inferred from the data)
            or ``"regression"`` (the episode return divided by ``return_scale``, SmoothL1).
        l1: weight of the mask's L1 term (5e-3 in the paper).
        classify: weight of the masked video's prediction loss (1).
        reverse: weight of the complementary video's loss (2 for GridWorld / Seaquest, 1 for Pong).
        l1_reduction: ``"original"`` (matrix 1-norm of the (batch, time) mask, as in the paper's code),
            ``"mean"`` or ``"sum"`` over valid frames.
        reverse_loss: ``"ce_uniform"`` (GridWorld code) or ``"mse_uniform"`` (Pong code).
        mask_budget: a critwrap addition, off by default (``None``). A share of frames in (0, 1]: the
            detector step adds ``mask_budget_weight * mean_episodes(relu(mean_t m_t - mask_budget))``,
            a hinge on each episode's mean mask, so no episode's mask covers more than that share on
            average (the L1 term alone lets the mask saturate towards 1 on every frame when many
            frames explain the outcome). Keep ``l1`` as well, or set it to 0. On the GridWorld benchmark
            ``mask_budget=0.5, mask_budget_weight=10`` is what stopped about 60% of runs from failing
            (``docs/benchmarks_critical_states.md``, runs T and V); weight 1 was too weak there, and
            a tighter budget (0.3) slowed the mask's take-off. On MiniGrid LavaGap the same setting made
            the detector's top-1 attack reliable (``docs/benchmarks_attack.md``, run U).
        mask_budget_weight: weight of the budget hinge (1).
        mask_input: ``"features"`` (default: the mask scales each frame's CNN features in the
            predictor) or ``"frames"`` (the original: it scales the frames).
        length_blind: the predictor runs its LSTMs over all ``max_length`` steps, padding steps fed what
            a fully masked frame gives, so a masked video does not reveal its length (default ``True``;
            ``False``: the original, outputs zero-padded after each episode's end).
        mask_sampling: ``"soft"`` (default, the paper: the mask's values scale the frames) or
            ``"bernoulli"`` (0/1 masks drawn with probabilities m in the detector step, ``m > 0.5`` at
            evaluation, straight-through gradients).
        lr: Adam learning rate of both nets (1e-4).
        weight_decay: Adam weight decay of both nets (1e-4).
        batch_size: episodes per batch (64 for GridWorld, 16 for Atari in the paper).
        epochs: default number of epochs for :meth:`DSI.fit` (20 in the paper).
        channels: output channels of the five conv layers (32, 64, 128, 128, 256); the last is the
            per-frame feature size. Smaller widths make fast tests.
        lstm_hidden: LSTM units per direction (128).
        max_length: the predictor's fixed sequence length; ``None``: the longest training episode.
        return_scale: regression targets are ``return / return_scale`` (1000 for Seaquest windows).
        frame_layout: ``"auto"``, ``"HWC"`` (T, H, W, C), ``"CHW"`` (T, C, H, W) or ``"HW"`` (T, H, W).
            ``"auto"`` takes the smaller of the two outer dimensions as channels; fit resolves it.
        cnn_chunk: frames per CNN call inside a batch (speed only; results are the same).
        score_batch_frames: frames per forward pass when scoring many episodes.
        num_threads: torch CPU threads during fit / score (``None``: leave torch's setting).
        bf16: bfloat16 autocast for the CNNs (faster on CPUs with bf16 support; off by default).
        seed: default seed of :meth:`DSI.fit` (initial weights and batch order).
        in_channels: *set by fit*: channels per frame.
        frame_size: *set by fit*: (height, width).
        classes: *set by fit* (classification): the sorted label / return values, one per class.
        float_scale: *set by fit*: factor applied to float frames (1.0 if the training floats were in
            [0, 1], 1/255 if they were in [0, 255]); uint8 frames are always divided by 255.
    """

    task: str = "classification"
    l1: float = 5e-3
    classify: float = 1.0
    reverse: float = 2.0
    l1_reduction: str = "original"
    reverse_loss: str = "ce_uniform"
    mask_budget: float | None = None
    mask_budget_weight: float = 1.0
    mask_input: str = "features"
    length_blind: bool = True
    mask_sampling: str = "soft"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 20
    channels: tuple[int, ...] = (32, 64, 128, 128, 256)
    lstm_hidden: int = 128
    max_length: int | None = None
    return_scale: float = 1.0
    frame_layout: str = "auto"
    cnn_chunk: int = 512
    score_batch_frames: int = 4096
    num_threads: int | None = None
    bf16: bool = False
    seed: int | None = 0
    in_channels: int | None = None
    frame_size: tuple[int, int] | None = None
    classes: list[float] | None = None
    float_scale: float | None = None

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.frame_size is not None:
            self.frame_size = (int(self.frame_size[0]), int(self.frame_size[1]))
        if self.classes is not None:
            self.classes = [float(c) for c in self.classes]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that is out of range."""
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {self.task!r}")
        if self.l1_reduction not in _L1_REDUCTIONS:
            raise ValueError(f"l1_reduction must be one of {_L1_REDUCTIONS}, got {self.l1_reduction!r}")
        if self.reverse_loss not in _REVERSE_LOSSES:
            raise ValueError(f"reverse_loss must be one of {_REVERSE_LOSSES}, got {self.reverse_loss!r}")
        if self.mask_input not in _MASK_INPUTS:
            raise ValueError(f"mask_input must be one of {_MASK_INPUTS}, got {self.mask_input!r}")
        if self.mask_sampling not in _MASK_SAMPLINGS:
            raise ValueError(f"mask_sampling must be one of {_MASK_SAMPLINGS}, got {self.mask_sampling!r}")
        if self.frame_layout not in _LAYOUTS:
            raise ValueError(f"frame_layout must be one of {_LAYOUTS}, got {self.frame_layout!r}")
        if len(self.channels) != 5 or min(self.channels) < 1:
            raise ValueError(f"channels must be 5 positive conv widths, got {self.channels}")
        for name in ("batch_size", "epochs", "lstm_hidden", "cnn_chunk", "score_batch_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mask_budget is not None and not (
            math.isfinite(float(self.mask_budget)) and 0 < float(self.mask_budget) <= 1
        ):
            raise ValueError(f"mask_budget must be in (0, 1] or None, got {self.mask_budget}")
        for name in ("l1", "classify", "reverse", "lr", "weight_decay", "mask_budget_weight"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.return_scale) and self.return_scale > 0):
            raise ValueError(f"return_scale must be > 0, got {self.return_scale}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 or None, got {self.max_length}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        if self.frame_size is not None:
            out["frame_size"] = list(self.frame_size)
        return out


# --------------------------------------------------------------------------------------------------
# networks (torch is imported lazily: building them imports torch)
# --------------------------------------------------------------------------------------------------


def _torch() -> Any:
    import torch

    return torch


def _build_modules() -> dict[str, Any]:
    """Define the nn.Module classes on first use so that importing this module does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class InstanceNorm(nn.Module):
        """``nn.InstanceNorm2d`` without affine parameters, computed as a GroupNorm with one group per
        channel on a contiguous (NCHW) tensor: the same numbers, several times faster on CPU than
        InstanceNorm2d or than GroupNorm on channels-last tensors."""

        def __init__(self, channels: int, eps: float = 1e-5) -> None:
            super().__init__()
            self.channels = channels
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not x.is_contiguous(memory_format=torch.channels_last):
                return F.group_norm(x, self.channels, eps=self.eps)
            y = F.group_norm(x.contiguous(), self.channels, eps=self.eps)
            return y.contiguous(memory_format=torch.channels_last)

    class FrameEncoder(nn.Module):
        """Per-frame CNN of the paper: (N, C, H, W) in [0, 1] -> (N, channels[-1])."""

        def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
            super().__init__()
            c1, c2, c3, c4, c5 = channels
            self.conv1 = nn.Conv2d(in_channels, c1, 3, stride=2)
            self.conv2 = nn.Conv2d(c1, c2, 3, stride=1)
            self.norm2 = InstanceNorm(c2)
            self.conv3 = nn.Conv2d(c2, c3, 3, stride=2)
            self.conv4 = nn.Conv2d(c3, c4, 3, stride=1)
            self.norm4 = InstanceNorm(c4)
            self.conv5 = nn.Conv2d(c4, c5, 2, stride=1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.act(self.conv1(x))
            x = self.act(self.norm2(self.conv2(x)))
            x = self.act(self.conv3(x))
            x = self.act(self.norm4(self.conv4(x)))
            x = self.act(self.conv5(x))
            return x.mean(dim=(2, 3))

    class SequenceNet(nn.Module):
        """Frame encoder + bidirectional LSTM over the valid frames of a batch of episodes.

        The bidirectional LSTM is run as two one-directional LSTMs on zero-padded batches, the
        backward one on each episode reversed within its own length. That computes exactly what
        ``nn.LSTM(bidirectional=True)`` computes on a packed sequence, but uses the fused (oneDNN)
        LSTM kernels, which are several times faster on CPU than the packed-sequence path.
        """

        def __init__(self, in_channels: int, channels: Sequence[int], hidden: int, chunk: int) -> None:
            super().__init__()
            self.encoder = FrameEncoder(in_channels, channels)
            self.lstm_fwd = nn.LSTM(channels[-1], hidden, batch_first=True)
            self.lstm_bwd = nn.LSTM(channels[-1], hidden, batch_first=True)
            self.chunk = chunk
            self.bf16 = False

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            ctx = (
                torch.autocast(x.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            )
            with ctx:
                parts = [self.encoder(x[i : i + self.chunk]) for i in range(0, len(x), self.chunk)]
            feats = parts[0] if len(parts) == 1 else torch.cat(parts)
            return feats.float()

        def sequence(self, x: torch.Tensor, layout: _Layout) -> torch.Tensor:
            """(N, C, H, W) valid frames -> (N, 2 * hidden) bidirectional LSTM outputs, one per frame."""
            return self.sequence_from_features(self.encode(x), layout)

        def sequence_from_features(self, feats: torch.Tensor, layout: _Layout) -> torch.Tensor:
            """(N, D) per-frame features -> (N, 2 * hidden): each episode run over its own length."""
            shape = (layout.n_episodes, layout.t_max, feats.shape[1])
            fwd_in = feats.new_zeros(shape).index_put((layout.b_idx, layout.t_idx), feats)
            bwd_in = feats.new_zeros(shape).index_put((layout.b_idx, layout.rev_idx), feats)
            fwd_out, _ = self.lstm_fwd(fwd_in)
            bwd_out, _ = self.lstm_bwd(bwd_in)
            return torch.cat(
                [fwd_out[layout.b_idx, layout.t_idx], bwd_out[layout.b_idx, layout.rev_idx]], dim=1
            )

    class MaskNet(nn.Module):
        """The detector: a soft mask in (0, 1) for every valid frame, (N, C, H, W) -> (N,)."""

        def __init__(self, in_channels: int, channels: Sequence[int], hidden: int, chunk: int) -> None:
            super().__init__()
            self.backbone = SequenceNet(in_channels, channels, hidden, chunk)
            self.head = nn.Linear(2 * hidden, 1)

        def forward(self, x: torch.Tensor, layout: _Layout) -> torch.Tensor:
            return torch.sigmoid(self.head(self.backbone.sequence(x, layout)).squeeze(-1))

    class ReturnNet(nn.Module):
        """The return predictor: LSTM outputs zero-padded to max_length, flattened, linear -> (B, n_out)."""

        def __init__(
            self,
            in_channels: int,
            channels: Sequence[int],
            hidden: int,
            chunk: int,
            max_length: int,
            n_out: int,
        ) -> None:
            super().__init__()
            self.backbone = SequenceNet(in_channels, channels, hidden, chunk)
            self.max_length = max_length
            self.head = nn.Linear(max_length * 2 * hidden, n_out)
            self.length_blind = True
            self.mask_input = "features"

        def forward(
            self, x: torch.Tensor, layout: _Layout, feature_mask: torch.Tensor | None = None
        ) -> torch.Tensor:
            """(N, C, H, W) valid frames -> (B, n_out); ``feature_mask`` (N,) scales each frame's features."""
            feats = self.backbone.encode(x)
            if feature_mask is not None:
                feats = feats * feature_mask[:, None]
            return self.from_features(feats, layout, self.padding_features(x))

        def padding_features(self, x: torch.Tensor) -> torch.Tensor | None:
            """What a padding step feeds the length-blind LSTMs: the features of a fully masked frame,
            zero for feature masking, the CNN's features of a black frame for pixel masking."""
            if not self.length_blind or self.mask_input == "features":
                return None
            return self.backbone.encode(x.new_zeros(1, *x.shape[1:]))[0]

        def from_features(
            self, feats: torch.Tensor, layout: _Layout, pad: torch.Tensor | None = None
        ) -> torch.Tensor:
            """(N, D) per-frame CNN features -> (B, n_out).

            ``length_blind`` (default): the episodes are zero-padded to ``max_length`` *before* the
            LSTMs, which run over all ``max_length`` steps, so a zeroed (masked-out) frame and a padding
            step are the same input and an entirely masked video carries no trace of its length.
            Otherwise (the original code): each LSTM direction runs over the episode's own length and its
            outputs are zero-padded to ``max_length``, which tells the linear head the episode length.
            ``pad``: the (D,) input of a padding step (default zeros).
            """
            b, t, bb = layout.n_episodes, self.max_length, self.backbone
            if not self.length_blind:
                out = bb.sequence_from_features(feats, layout)
                padded = out.new_zeros(b, t, out.shape[1]).index_put((layout.b_idx, layout.t_idx), out)
                return self.head(padded.flatten(1))
            if pad is None:
                padded = feats.new_zeros(b, t, feats.shape[1])
            else:
                padded = pad.to(feats.dtype).expand(b, t, feats.shape[1]).clone()
            padded = padded.index_put((layout.b_idx, layout.t_idx), feats)
            fwd_out, _ = bb.lstm_fwd(padded)
            bwd_out, _ = bb.lstm_bwd(padded.flip(1))
            return self.head(torch.cat([fwd_out, bwd_out.flip(1)], dim=2).flatten(1))

    return {"MaskNet": MaskNet, "ReturnNet": ReturnNet}


_MODULES: dict[str, Any] = {}


def _modules() -> dict[str, Any]:
    if not _MODULES:
        _MODULES.update(_build_modules())
    return _MODULES


@dataclass
class _Layout:
    """Where each valid frame of a packed batch sits: episode index and time index."""

    lengths: Any  # torch.Tensor (B,) int64
    b_idx: Any  # torch.Tensor (N,)
    t_idx: Any  # torch.Tensor (N,)
    rev_idx: Any  # torch.Tensor (N,): time index of the frame in its episode reversed
    t_max: int
    n_episodes: int

    @classmethod
    def from_lengths(cls, lengths: Sequence[int], device: Any = None) -> _Layout:
        torch = _torch()
        lens = torch.as_tensor(list(lengths), dtype=torch.int64)
        b_idx = torch.repeat_interleave(torch.arange(len(lens)), lens)
        starts = torch.cumsum(lens, 0) - lens
        t_idx = torch.arange(int(lens.sum())) - torch.repeat_interleave(starts, lens)
        rev_idx = lens[b_idx] - 1 - t_idx
        t_max, n = int(lens.max()), len(lens)
        if device is not None and torch.device(device).type != "cpu":
            lens, b_idx, t_idx, rev_idx = (v.to(device) for v in (lens, b_idx, t_idx, rev_idx))
        return cls(lens, b_idx, t_idx, rev_idx, t_max, n)

    def doubled(self) -> _Layout:
        """The layout of this batch concatenated with itself (two videos per episode)."""
        torch = _torch()
        b = self.n_episodes
        return _Layout(
            torch.cat([self.lengths, self.lengths]),
            torch.cat([self.b_idx, self.b_idx + b]),
            torch.cat([self.t_idx, self.t_idx]),
            torch.cat([self.rev_idx, self.rev_idx]),
            self.t_max,
            2 * b,
        )


# --------------------------------------------------------------------------------------------------
# data handling
# --------------------------------------------------------------------------------------------------


def _check_device(device: Any) -> Any:
    """``device`` as a ``torch.device`` (``"auto"`` as in SB3); a ``ValueError`` naming it when torch
    cannot use it here (:func:`critwrap.devices.resolve_device`)."""
    from critwrap.devices import resolve_device

    return resolve_device(device, "the DSI")


def _infer_layout(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return "HW"
    if len(shape) != 4:
        hint = (
            ": these look like vector observations, and the DSI is a convolutional network for image frames. "
            "Record rendered frames instead (the record-episodes wrapper with record='frames' and "
            "render_mode='rgb_array'; zoo: --wrapper record-episodes:store=DIR,record=frames "
            "--hp 'env_kwargs={render_mode: rgb_array}')"
            if len(shape) == 2
            else ""
        )
        raise ValueError(
            f"frames must be (T, H, W, C), (T, C, H, W) or (T, H, W) images, got an array of shape {shape}{hint}"
        )
    return "HWC" if shape[3] <= shape[1] else "CHW"


def _to_hwc(frames: np.ndarray, layout: str) -> np.ndarray:
    if layout == "HW":
        if frames.ndim != 3:
            raise ValueError(f"expected (T, H, W) frames (frame_layout='HW'), got shape {frames.shape}")
        return frames[..., None]
    if frames.ndim != 4:
        raise ValueError(
            f"expected (T, ...) frames of rank 4 (frame_layout={layout!r}), got shape {frames.shape}"
        )
    if layout == "CHW":
        return np.ascontiguousarray(frames.transpose(0, 2, 3, 1))
    return frames


def _is_float(frames: np.ndarray) -> bool:
    return bool(np.issubdtype(frames.dtype, np.floating))


@dataclass
class _Data:
    """Training episodes in memory: HWC frames (uint8 or float32) and one target per episode."""

    frames: list[np.ndarray]
    targets: np.ndarray  # int64 class indices or float32 regression targets
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.lengths = np.array([len(f) for f in self.frames], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frames)


def _iter_episodes(episodes: Any) -> Iterator[tuple[int, np.ndarray, float | None, float | None]]:
    """Yield ``(index, frames, label, episode_return)`` from Episodes, a store, a folder or pairs."""
    if isinstance(episodes, (str, os.PathLike)):
        episodes = _open_folder(Path(episodes))
    for i, ep in enumerate(episodes):
        if hasattr(ep, "observations"):
            frames = np.asarray(ep.observations)
            label = getattr(ep, "label", None)
            ret = getattr(ep, "episode_return", None)
        elif isinstance(ep, tuple) and len(ep) == 2:
            frames = np.asarray(ep[0])
            label, ret = None, ep[1]
        else:
            raise TypeError(
                f"episode {i} is a {type(ep).__name__}; give critwrap.episodes.Episode objects, an "
                "EpisodeStore, a folder, or (frames, return_or_label) pairs"
            )
        yield i, frames, None if label is None else float(label), None if ret is None else float(ret)


def _open_folder(root: Path) -> Iterable[Any]:
    """A directory: an EpisodeStore (it has a ``store.json``) or a folder of videos / ``.npy`` files."""
    from critwrap.episodes import EpisodeStore, read_video_folder

    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory of episodes")
    if (root / "store.json").is_file():
        return list(EpisodeStore(root, create=False))
    episodes = list(read_video_folder(root))
    if not episodes:
        raise FileNotFoundError(f"{root} is neither an episode store nor a folder of videos / .npy episodes")
    return episodes


# --------------------------------------------------------------------------------------------------
# the detector
# --------------------------------------------------------------------------------------------------


class DSI(Detector):
    """Deep State Identifier: a soft per-frame mask trained so that the masked video predicts the return.

    Build with a :class:`DSIConfig` and/or its fields as keywords (keywords win), e.g.
    ``DSI(l1=5e-3, reverse=2.0, task="classification")``. Train with :meth:`fit`, score with
    :meth:`score` / :meth:`score_batch`, save and reopen with :meth:`save` / :meth:`Detector.load`.

    Attributes:
        config: the :class:`DSIConfig` (the fields set by fit are filled in after :meth:`fit`).
        history: one dict of mean losses (and validation metrics) per epoch of the last :meth:`fit`.
        fit_stats: wall time, frames and frames per second of the last :meth:`fit`.

    ``device`` (``"cpu"`` by default, ``"cuda"``, ``"cuda:1"``, ``"auto"`` as in SB3: a GPU when there is
    one) is where the networks live and run
    for fit, score, embed and predict; it is a property of this object, not of the checkpoint (a DSI
    saved on a GPU loads on the CPU): move a loaded one with :meth:`to`. Initial weights are drawn on
    the CPU, so a seed gives the same starting networks on every device.
    """

    registry_name: ClassVar[str] = "dsi"

    def __init__(
        self, config: DSIConfig | dict[str, Any] | None = None, *, device: Any = "cpu", **kwargs: Any
    ) -> None:
        self._device = _check_device(device)
        if isinstance(config, DSIConfig):
            base = config.to_dict()
        elif isinstance(config, dict):
            base = dict(config)
        elif config is None:
            base = {}
        else:
            raise TypeError(f"config must be a DSIConfig, a dict or None, got {type(config).__name__}")
        base.update(kwargs)
        known = {f.name for f in dataclasses.fields(DSIConfig)}
        unknown = sorted(set(base) - known)
        if unknown:
            from_config = [k for k in unknown if k not in kwargs]  # e.g. a saved checkpoint's config.json
            hint = " (a checkpoint from a newer critwrap? upgrade critwrap to load it)" if from_config else ""
            close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
            did = "; ".join(f"{k!r}: did you mean {m[0]!r}?" for k, m in close.items() if m)
            raise TypeError(
                f"unknown DSI setting(s) {unknown}; known: {sorted(known)}{hint}"
                + (f" ({did})" if did else "")
            )
        self.config = DSIConfig(**base)
        self.history: list[dict[str, float]] = []
        self.fit_stats: dict[str, float] = {}
        self.detector_net: Any = None
        self.predictor_net: Any = None
        self._mask_gen: Any = None  # torch.Generator of the Bernoulli masks, seeded by fit
        self._resume: dict[str, Any] | None = None  # optimisers and generators of the last fit (resume=True)
        if self._shape_known():
            self._build_nets()

    # Settings added after the first release whose new defaults differ from what checkpoints saved
    # before them were trained with: a config without the key loads with the old behaviour.
    _PRE_DEFAULTS: ClassVar[dict[str, Any]] = {
        "mask_input": "frames",
        "length_blind": False,
        "mask_sampling": "soft",
    }

    @classmethod
    def _upgrade_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        for key, old in cls._PRE_DEFAULTS.items():
            config.setdefault(key, old)
        return config

    # ---- device ----------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        """The ``torch.device`` the networks run on (see :meth:`to`)."""
        return self._device

    def to(self, device: Any) -> DSI:
        """Run the networks on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"auto"``, a ``torch.device``) from
        now on; returns ``self``. An unavailable device is a ``ValueError`` naming it. A ``fit`` in
        progress cannot be resumed on another device (``resume=True`` after ``to`` raises)."""
        dev = _check_device(device)
        if self.is_fitted:
            self.detector_net.to(dev)
            self.predictor_net.to(dev)
        if dev != self._device:
            self._resume = None  # the optimisers' states live on the old device
        self._device = dev
        return self

    # ---- helpers ---------------------------------------------------------------------------------
    def _shape_known(self) -> bool:
        c = self.config
        return (
            c.in_channels is not None
            and c.frame_size is not None
            and c.max_length is not None
            and (c.task == "regression" or c.classes is not None)
        )

    @property
    def n_outputs(self) -> int:
        """Width of the predictor's output: the number of classes, or 1 for regression."""
        if self.config.task == "regression":
            return 1
        if self.config.classes is None:
            raise RuntimeError("the DSI has not been fitted: its classes are unknown")
        return len(self.config.classes)

    @property
    def is_fitted(self) -> bool:
        """Whether the networks exist (after :meth:`fit` or loading a trained checkpoint)."""
        return self.detector_net is not None

    def _build_nets(self) -> None:
        torch = _torch()
        c = self.config
        assert c.in_channels is not None and c.max_length is not None
        mods = _modules()
        self.detector_net = mods["MaskNet"](c.in_channels, c.channels, c.lstm_hidden, c.cnn_chunk)
        self.predictor_net = mods["ReturnNet"](
            c.in_channels, c.channels, c.lstm_hidden, c.cnn_chunk, c.max_length, self.n_outputs
        )
        self.predictor_net.length_blind = bool(c.length_blind)
        self.predictor_net.mask_input = c.mask_input
        for net in (self.detector_net, self.predictor_net):
            net.backbone.bf16 = bool(c.bf16)
            if _CHANNELS_LAST:
                net.to(memory_format=torch.channels_last)
            net.to(self._device)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        torch = _torch()
        n = self.config.num_threads
        if n is None:
            yield
            return
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("this DSI is not trained: call fit(episodes) or DSI.load(path) first")

    def _frames_hwc(self, frames: np.ndarray, where: str) -> np.ndarray:
        """Check one episode's frames against the fitted shape and return them as (T, H, W, C)."""
        c = self.config
        frames = np.asarray(frames)
        if frames.ndim < 1 or len(frames) == 0:
            raise ValueError(f"{where}: an episode needs at least one frame, got shape {frames.shape}")
        layout = c.frame_layout if c.frame_layout != "auto" else _infer_layout(frames.shape)
        hwc = _to_hwc(frames, layout)
        if c.frame_size is not None and c.in_channels is not None:
            expected = (*c.frame_size, c.in_channels)
            if hwc.shape[1:] != expected:
                raise ValueError(
                    f"{where}: frames of shape {frames.shape} (layout {layout}) do not match the "
                    f"(H, W, C) = {expected} this DSI was trained on"
                )
        if _is_float(hwc) and not np.isfinite(hwc).all():
            raise ValueError(f"{where}: frames contain NaN or infinite values")
        return hwc

    def _to_tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Concatenate HWC episodes into one float (N, C, H, W) tensor in [0, 1]."""
        torch = _torch()
        fmt = torch.channels_last if _CHANNELS_LAST else torch.contiguous_format
        dev = self._device
        if all(f.dtype == np.uint8 for f in frames):
            cat = np.concatenate(frames) if len(frames) > 1 else frames[0]
            # uint8 crosses to the device (a quarter of the bytes of float32), then converts there
            x = torch.from_numpy(np.ascontiguousarray(cat)).to(dev).permute(0, 3, 1, 2)
            return x.contiguous(memory_format=fmt).float().div_(255.0)
        parts = []
        for f in frames:
            if f.dtype == np.uint8:
                parts.append(f.astype(np.float32) / 255.0)
            else:
                scale = self.config.float_scale
                if scale is None:
                    scale = 1.0 / 255.0 if float(np.max(f)) > 1.0 else 1.0
                parts.append(f.astype(np.float32) * np.float32(scale))
        cat = np.concatenate(parts)
        x = torch.from_numpy(np.ascontiguousarray(cat)).to(dev)
        return x.permute(0, 3, 1, 2).contiguous(memory_format=fmt)

    # ---- data ------------------------------------------------------------------------------------
    def _prepare(self, episodes: Any, what: str, fitting: bool) -> _Data:
        """Read, validate and convert episodes; on the training set also fix the data-dependent settings."""
        c = self.config
        frames_list: list[np.ndarray] = []
        raw_targets: list[float] = []
        from_returns = 0  # classification targets taken from returns (episodes without a label)
        shape0: tuple[int, ...] | None = None
        layout = c.frame_layout
        for i, frames, label, ret in _iter_episodes(episodes):
            if frames.ndim < 1 or len(frames) == 0:
                raise ValueError(
                    f"{what} episode {i} has no frames (shape {frames.shape}); drop empty episodes"
                )
            if layout == "auto":
                layout = _infer_layout(frames.shape)
            if shape0 is None:
                shape0 = frames.shape[1:]
            elif frames.shape[1:] != shape0:
                raise ValueError(
                    f"{what} episode {i} has frames of shape {frames.shape[1:]} but episode 0 has {shape0}; "
                    "all episodes must share one frame shape (resize them first)"
                )
            if c.task == "classification":
                target = label if label is not None else ret
                from_returns += label is None
            else:
                target = ret if ret is not None else label
            if target is None:
                raise ValueError(
                    f"{what} episode {i} has neither a label nor an episode_return; DSI learns from one of them"
                )
            if not math.isfinite(target):
                raise ValueError(
                    f"{what} episode {i} has a non-finite return/label ({target}); fix or drop it"
                )
            frames_list.append(frames)
            raw_targets.append(float(target))
        if not frames_list:
            raise ValueError(f"no {what} episodes given")
        assert shape0 is not None
        hwc_shape = _to_hwc(np.zeros((1, *shape0), dtype=np.uint8), layout).shape[1:]
        h, w, ch = (int(v) for v in hwc_shape)
        if min(h, w) < MIN_FRAME_SIZE:
            raise ValueError(
                f"frames of {h}x{w} pixels are too small for the DSI CNN (at least {MIN_FRAME_SIZE}x"
                f"{MIN_FRAME_SIZE}); resize them (e.g. cv2.resize) before fitting"
            )
        lengths = [len(f) for f in frames_list]
        if fitting:
            if (
                c.in_channels is not None
                and c.frame_size is not None
                and (h, w, ch) != (*c.frame_size, c.in_channels)
            ):
                raise ValueError(
                    f"{what} frames are (H, W, C) = {(h, w, ch)} but this DSI was trained on "
                    f"{(*c.frame_size, c.in_channels)}"
                )
            floats = [f for f in frames_list if _is_float(f)]
            if floats and c.float_scale is None:
                top = max(float(np.max(f)) for f in floats)
                self.config.float_scale = 1.0 / 255.0 if top > 1.0 else 1.0
            self.config.frame_layout = layout
            self.config.in_channels, self.config.frame_size = ch, (h, w)
            if c.max_length is None:
                self.config.max_length = max(lengths)
            if c.task == "classification":
                classes = sorted(set(raw_targets))
                if len(classes) > MAX_RETURN_CLASSES and from_returns:
                    raise ValueError(
                        f"{from_returns} of the {len(raw_targets)} {what} episodes have no label, so their returns "
                        f"became class labels: {len(classes)} classes ({classes[0]:g} ... {classes[-1]:g}). Label "
                        "the episodes (e.g. 1 = success), split them by return (zoo detect fit --success-above R), "
                        "or learn from the returns with task='regression' (--set task=regression)"
                    )
                if len(classes) < 2:
                    raise ValueError(
                        f"all {len(raw_targets)} {what} episodes have the same label/return {classes[0]}; "
                        "DSI needs at least two classes (or use task='regression')"
                    )
                if c.classes is None:
                    self.config.classes = classes
        max_len = self.config.max_length
        assert max_len is not None
        too_long = [i for i, n in enumerate(lengths) if n > max_len]
        if too_long:
            raise ValueError(
                f"{what} episode {too_long[0]} has {lengths[too_long[0]]} frames, more than the predictor's "
                f"max_length={max_len}; set DSIConfig(max_length=...) large enough or cut the episodes"
            )
        if c.task == "classification":
            assert self.config.classes is not None
            index = {v: k for k, v in enumerate(self.config.classes)}
            unknown = sorted({t for t in raw_targets if t not in index})
            if unknown:
                raise ValueError(
                    f"{what} episodes have labels {unknown} that are not among the training classes "
                    f"{self.config.classes}"
                )
            targets: np.ndarray = np.array([index[t] for t in raw_targets], dtype=np.int64)
        else:
            targets = np.array(raw_targets, dtype=np.float32) / np.float32(c.return_scale)
        hwc = [self._frames_hwc(f, f"{what} episode {i}") for i, f in enumerate(frames_list)]
        return _Data(hwc, targets)

    # ---- losses ----------------------------------------------------------------------------------
    def _task_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if self.config.task == "classification":
            return F.cross_entropy(out, y)
        return F.smooth_l1_loss(out.squeeze(-1), y)

    def _reverse_loss(self, out: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if self.config.task == "regression":
            return F.smooth_l1_loss(out.squeeze(-1), out.new_zeros(out.shape[0]))
        k = out.shape[1]
        if self.config.reverse_loss == "ce_uniform":
            return -(F.log_softmax(out, dim=1).mean(dim=1)).mean()
        return F.mse_loss(F.softmax(out, dim=1), out.new_full(out.shape, 1.0 / k))

    def _l1(self, mask: torch.Tensor, layout: _Layout) -> torch.Tensor:
        red = self.config.l1_reduction
        if red == "mean":
            return mask.mean()
        if red == "sum":
            return mask.sum()
        col = mask.new_zeros(layout.t_max).index_add(0, layout.t_idx, mask)
        return col.max()

    def _budget_hinge(self, mask: torch.Tensor, layout: _Layout) -> torch.Tensor:
        """Mean over episodes of ``relu(episode mean mask - mask_budget)``."""
        torch = _torch()
        budget = self.config.mask_budget
        assert budget is not None
        sums = mask.new_zeros(layout.n_episodes).index_add(0, layout.b_idx, mask)
        means = sums / layout.lengths.to(mask.dtype)
        return torch.relu(means - float(budget)).mean()

    def _mask_spread(self, mask: torch.Tensor, layout: _Layout) -> float:
        """Mean over episodes of the mask's standard deviation within the episode (0: a flat mask that
        singles out no frame, whatever its mean)."""
        m = mask.detach()
        n = layout.lengths.to(m.dtype)
        means = m.new_zeros(layout.n_episodes).index_add(0, layout.b_idx, m) / n
        var = m.new_zeros(layout.n_episodes).index_add(0, layout.b_idx, (m - means[layout.b_idx]) ** 2) / n
        return float(var.sqrt().mean())

    def _constant_output(self, targets: np.ndarray) -> np.ndarray:
        """The best input-blind prediction from the training targets, (1, n_out): the log class frequencies
        (classification) or the mean or median target, whichever has the lower training loss (regression).
        Its validation loss (``val_loss_constant``) tells whether the predictor learned anything at all."""
        if self.config.task == "classification":
            n_out = len(self.config.classes or [])
            counts = np.bincount(targets.astype(np.int64), minlength=n_out).astype(np.float64)
            return np.log((counts + 1e-6) / (counts + 1e-6).sum()).astype(np.float32)[None]
        y = targets.astype(np.float64)

        def smooth_l1(c: float) -> float:
            d = np.abs(y - c)
            return float(np.mean(np.where(d < 1, 0.5 * d**2, d - 0.5)))

        best = min((float(np.mean(y)), float(np.median(y))), key=smooth_l1)
        return np.array([[best]], dtype=np.float32)

    def _accuracies(self, y: torch.Tensor, **outputs: torch.Tensor) -> dict[str, float]:
        """Classification accuracy of each named output (nothing for regression)."""
        if self.config.task != "classification":
            return {}
        return {name: float((out.argmax(1) == y).float().mean()) for name, out in outputs.items()}

    # ---- training --------------------------------------------------------------------------------
    def fit(  # type: ignore[override]
        self,
        episodes: Any,
        epochs: int | None = None,
        val_episodes: Any = None,
        tensorboard_log: str | os.PathLike[str] | None = None,
        progress: bool = True,
        seed: int | None = None,
        *,
        batch_size: int | None = None,
        predictor_only: bool = False,
        warm_start: bool = False,
        resume: bool = False,
        callback: Callable[[DSI, dict[str, float]], bool | None] | None = None,
    ) -> DSI:
        """Train both networks (the paper's alternating loop) on episodes with a label or a return.

        Args:
            episodes: :class:`~critwrap.episodes.Episode` objects (frames + ``label`` or
                ``episode_return``), an ``EpisodeStore``, a folder (a store or a folder of videos), or
                ``(frames, return_or_label)`` pairs.
            epochs: passes over the data (default ``config.epochs``).
            val_episodes: optional held-out episodes; their losses and accuracies are recorded per
                epoch in :attr:`history` (and TensorBoard).
            tensorboard_log: directory for a TensorBoard log of the losses of every step.
            progress: show a tqdm progress bar.
            seed: seed of the initial weights and the batch order (default ``config.seed``); the same
                seed and thread count give the same weights on CPU.
            batch_size: episodes per batch (default ``config.batch_size``).
            predictor_only: train only the return predictor (plain loss), e.g. for the saliency baseline.
            warm_start: continue from the current weights instead of initialising new networks
                (new optimisers and a new batch order from ``seed``).
            resume: continue the previous ``fit`` call of this object exactly where it stopped: same
                weights, optimiser states, batch-order and mask generators; its epochs are numbered on
                from the previous ones and appended to :attr:`history`. ``fit(e, epochs=10)`` then
                ``fit(e, epochs=10, resume=True)`` gives the weights of ``fit(e, epochs=20)``. ``seed`` and
                ``predictor_only`` are ignored; pass the same episodes (checked by count and frames).
            callback: called after every epoch as ``callback(dsi, record)`` with that epoch's
                :attr:`history` record; returning ``False`` stops training (e.g. early stopping).

        All inputs are checked (empty episodes, mixed frame shapes, NaN returns, a single class,
        frames too small or too long for ``max_length``) before any training starts. The settings
        derived from the data (``in_channels``, ``frame_size``, ``frame_layout``, ``max_length``,
        ``classes``, ``float_scale``) are filled in by the first fit and kept by later ones.
        """
        torch = _torch()
        n_epochs = self.config.epochs if epochs is None else int(epochs)
        if n_epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {n_epochs}")
        bs = self.config.batch_size if batch_size is None else int(batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs}")
        seed = self.config.seed if seed is None else seed
        if warm_start and not self.is_fitted:
            raise RuntimeError("warm_start=True needs a trained DSI (fit or load one first)")
        if resume and self._resume is None:
            raise RuntimeError("resume=True continues an earlier fit() of this object; there was none")
        if resume and warm_start:
            raise ValueError("give resume=True or warm_start=True, not both")
        saved_config = dataclasses.replace(self.config)
        try:
            data = self._prepare(episodes, "training", fitting=not (warm_start or resume))
            if (
                resume
                and self._resume is not None
                and self._resume["data"] != (len(data), int(data.lengths.sum()))
            ):
                raise ValueError(
                    f"resume=True needs the episodes of the previous fit ({self._resume['data'][0]} episodes, "
                    f"{self._resume['data'][1]} frames); got {len(data)} episodes, {int(data.lengths.sum())} frames"
                )
            val = (
                self._prepare(val_episodes, "validation", fitting=False) if val_episodes is not None else None
            )
            self._constant = self._constant_output(data.targets)
        except Exception:
            self.config = saved_config  # bad input leaves the detector as it was
            raise

        with self._threads():
            c = self.config
            if resume:
                assert self._resume is not None
                rng, opt_det, opt_pred = (
                    self._resume["rng"],
                    self._resume["opt_det"],
                    self._resume["opt_pred"],
                )
                predictor_only = self._resume["predictor_only"]
                first_epoch, step = len(self.history), self._resume["step"]
            else:
                rng = np.random.default_rng(seed)
                if not warm_start:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(rng.integers(2**31 - 1)) if seed is not None else torch.seed())
                        self._build_nets()
                self._mask_gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
                opt_det = torch.optim.Adam(
                    self.detector_net.parameters(), lr=c.lr, weight_decay=c.weight_decay
                )
                opt_pred = torch.optim.Adam(
                    self.predictor_net.parameters(), lr=c.lr, weight_decay=c.weight_decay
                )
                first_epoch, step = 0, 0
                self.history = []
            writer = None
            if tensorboard_log is not None:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(tensorboard_log))
            n_batches = math.ceil(len(data) / bs)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_epochs * n_batches, desc="DSI fit", unit="batch", dynamic_ncols=True)
            frames_seen = 0
            t0 = time.perf_counter()
            try:
                for epoch in range(first_epoch, first_epoch + n_epochs):
                    order = rng.permutation(len(data))
                    sums: dict[str, float] = {}
                    for b in range(n_batches):
                        idx = order[b * bs : (b + 1) * bs]
                        logs = self._train_step(data, idx, opt_det, opt_pred, predictor_only)
                        frames_seen += int(data.lengths[idx].sum())
                        for k, v in logs.items():
                            sums[k] = sums.get(k, 0.0) + v
                        if writer is not None:
                            for k, v in logs.items():
                                writer.add_scalar(f"train/{k}", v, step)
                        step += 1
                        if bar is not None:
                            bar.update(1)
                            fps = frames_seen / max(time.perf_counter() - t0, 1e-9)
                            bar.set_postfix(
                                epoch=epoch,
                                pred=f"{logs['loss_predictor']:.3f}",
                                mask=f"{logs.get('mask_mean', float('nan')):.2f}",
                                fps=f"{fps:.0f}",
                            )
                    record = {k: v / n_batches for k, v in sums.items()}
                    record["epoch"] = float(epoch)
                    if val is not None:
                        for k, v in self._evaluate(val).items():
                            record[f"val_{k}"] = v
                            if writer is not None:
                                writer.add_scalar(f"val/{k}", v, epoch)
                    self.history.append(record)
                    if callback is not None and callback(self, record) is False:
                        break
            finally:
                if bar is not None:
                    bar.close()
                if writer is not None:
                    writer.close()
            self._resume = {
                "rng": rng,
                "opt_det": opt_det,
                "opt_pred": opt_pred,
                "predictor_only": predictor_only,
                "step": step,
                "data": (len(data), int(data.lengths.sum())),
            }
            dt = time.perf_counter() - t0
            self.fit_stats = {
                "seconds": dt,
                "frames": float(frames_seen),
                "frames_per_s": frames_seen / dt if dt > 0 else float("nan"),
                "epochs": float(len(self.history)),
                "threads": float(torch.get_num_threads()),
            }
            last = self.history[-1] if self.history else {}
            val_pred = last.get("val_loss_predictor")
            if val_pred is not None and "val_loss_constant" in last and val_pred >= last["val_loss_constant"]:
                warnings.warn(
                    f"the DSI's return predictor does not beat a constant prediction on the validation episodes "
                    f"(loss {val_pred:.4g} vs {last['val_loss_constant']:.4g} for the training targets' "
                    f"{'class frequencies' if c.task == 'classification' else 'mean or median'}): it has not "
                    "learned to read the outcome from the frames, so the mask has nothing to select; more "
                    "episodes (or epochs) are the first thing to try (history's val_loss_constant tracks it)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            spread = last.get("val_mask_std", last.get("mask_std"))
            if spread is not None and spread < FLAT_MASK_STD:
                warnings.warn(
                    f"the DSI's mask is nearly constant within episodes after training (std {spread:.2g} "
                    f"< {FLAT_MASK_STD:g}, mean {last.get('mask_mean', float('nan')):.2f}): it singles out no "
                    "frames, so its top-k is arbitrary; more data or epochs, another target or another "
                    "mask_budget may help (history's mask_std tracks it per epoch)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self

    def _batch(self, data: _Data, idx: np.ndarray) -> tuple[torch.Tensor, _Layout, torch.Tensor]:
        torch = _torch()
        frames = [data.frames[i] for i in idx]
        x = self._to_tensor(frames)
        layout = _Layout.from_lengths([len(f) for f in frames], self._device)
        y = torch.from_numpy(data.targets[idx]).to(self._device)
        return x, layout, y

    def _train_step(
        self, data: _Data, idx: np.ndarray, opt_det: Any, opt_pred: Any, predictor_only: bool
    ) -> dict[str, float]:
        c = self.config
        det, pred = self.detector_net, self.predictor_net
        x, layout, y = self._batch(data, idx)
        logs: dict[str, float] = {}
        det.train()
        pred.train()
        if not predictor_only:
            # --- detector step: the predictor is frozen (its gradients would be discarded anyway)
            pred.requires_grad_(False)
            try:
                opt_det.zero_grad(set_to_none=True)
                m = det(x, layout)
                l1 = self._l1(m, layout)
                out_m, out_r = self._masked_outputs(x, layout, m, sample=True)
                assert out_r is not None
                loss_cls = self._task_loss(out_m, y)
                loss_rev = self._reverse_loss(out_r)
                total = c.l1 * l1 + c.classify * loss_cls + c.reverse * loss_rev
                if c.mask_budget is not None:
                    budget = self._budget_hinge(m, layout)
                    total = total + c.mask_budget_weight * budget
                    logs["loss_budget"] = float(budget.detach())
                total.backward()
                opt_det.step()
            finally:
                pred.requires_grad_(True)
            logs.update(
                loss_l1=float(l1.detach()),
                loss_masked=float(loss_cls.detach()),
                loss_reverse=float(loss_rev.detach()),
                loss_detector=float(total.detach()),
                mask_mean=float(m.detach().mean()),
                mask_std=self._mask_spread(m, layout),
                **self._accuracies(acc_masked=out_m.detach(), acc_reverse=out_r.detach(), y=y),
            )
        # --- predictor step on the clean video
        opt_pred.zero_grad(set_to_none=True)
        out = pred(x, layout)
        loss = self._task_loss(out, y)
        loss.backward()
        opt_pred.step()
        logs["loss_predictor"] = float(loss.detach())
        logs.update(self._accuracies(acc_predictor=out.detach(), y=y))
        return logs

    def _masked_outputs(
        self, x: torch.Tensor, layout: _Layout, m: torch.Tensor, reverse: bool = True, sample: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The predictor's outputs on the masked video ``m * x`` and (``reverse``) on its complement.

        ``mask_sampling="bernoulli"``: the mask applied is 0/1, drawn from Bernoulli(m) when ``sample``
        (training), ``m > 0.5`` otherwise, with the straight-through gradient to ``m``.

        ``mask_input="features"`` scales each frame's CNN features (computed once, without gradients:
        the detector's gradient reaches ``m`` through the LSTM and head only); ``"frames"`` scales the
        frames themselves (the original code).
        Both videos go through the predictor in one pass.
        """
        torch = _torch()
        pred = self.predictor_net
        n = layout.n_episodes
        if self.config.mask_sampling == "bernoulli":
            if sample:  # a 0/1 mask drawn with probabilities m; gradients pass straight through to m
                # drawn on the CPU from the fit's seeded generator: the same draws on every device
                hard = torch.bernoulli(m.detach().cpu(), generator=self._mask_gen).to(m.device)
            else:
                hard = (m.detach() > 0.5).to(m.dtype)
            m = hard + m - m.detach()
        if self.config.mask_input == "features":
            with torch.no_grad():
                feats = pred.backbone.encode(x)
            if not reverse:
                return pred.from_features(feats * m[:, None], layout), None
            both = pred.from_features(
                torch.cat([feats * m[:, None], feats * (1.0 - m)[:, None]]), layout.doubled()
            )
        else:
            mv = m.view(-1, 1, 1, 1)
            if not reverse:
                return pred(x * mv, layout), None
            both = pred(torch.cat([x * mv, x * (1.0 - mv)]), layout.doubled())
        return both[:n], both[n:]

    def _evaluate(self, data: _Data) -> dict[str, float]:
        """Mean losses / accuracies on held-out episodes (clean, masked and complementary video)."""
        torch = _torch()
        bs = max(1, self.config.batch_size)
        sums: dict[str, float] = {}
        n = 0
        with torch.inference_mode():
            for start in range(0, len(data), bs):
                idx = np.arange(start, min(start + bs, len(data)))
                x, layout, y = self._batch(data, idx)
                m = self.detector_net(x, layout)
                out = self.predictor_net(x, layout)
                out_m, out_r = self._masked_outputs(x, layout, m)
                assert out_r is not None
                k = len(idx)
                vals = {
                    "loss_predictor": float(self._task_loss(out, y)),
                    "loss_masked": float(self._task_loss(out_m, y)),
                    "loss_reverse": float(self._reverse_loss(out_r)),
                    "mask_mean": float(m.mean()),
                    "mask_std": self._mask_spread(m, layout),
                    **self._accuracies(acc_predictor=out, acc_masked=out_m, acc_reverse=out_r, y=y),
                }
                constant = getattr(self, "_constant", None)
                if constant is not None and constant.shape[1] == out.shape[1]:
                    const_out = torch.from_numpy(constant).to(out.device, out.dtype).expand(k, -1)
                    vals["loss_constant"] = float(self._task_loss(const_out, y))
                    vals.update(self._accuracies(acc_constant=const_out, y=y))
                for key, v in vals.items():
                    sums[key] = sums.get(key, 0.0) + v * k
                n += k
        return {k: v / n for k, v in sums.items()}

    # ---- scoring ---------------------------------------------------------------------------------
    def _chunks(self, hwc: list[np.ndarray]) -> Iterator[list[int]]:
        limit = self.config.score_batch_frames
        cur: list[int] = []
        size = 0
        for i, f in enumerate(hwc):
            if cur and size + len(f) > limit:
                yield cur
                cur, size = [], 0
            cur.append(i)
            size += len(f)
        if cur:
            yield cur

    def score(self, frames: np.ndarray) -> np.ndarray:
        """The detector's mask for every step of one episode: (T, ...) frames -> float32 (T,) in (0, 1)."""
        return self.score_batch([frames])[0]

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Score many episodes with one forward pass per ``score_batch_frames`` frames."""
        torch = _torch()
        self._require_fitted()
        hwc = [self._frames_hwc(np.asarray(f), f"episode {i}") for i, f in enumerate(episodes)]
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(hwc)
        with self._threads(), torch.inference_mode():
            self.detector_net.eval()
            for chunk in self._chunks(hwc):
                frames = [hwc[i] for i in chunk]
                layout = _Layout.from_lengths([len(f) for f in frames], self._device)
                m = self.detector_net(self._to_tensor(frames), layout).float().cpu().numpy()
                offsets = np.cumsum([0] + [len(f) for f in frames])
                for j, i in enumerate(chunk):
                    out[i] = m[offsets[j] : offsets[j + 1]].copy()
        return out

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """The detector network's per-frame CNN features: (T, ...) frames -> float32 (T, D).

        D is the last entry of ``config.channels``. Frames are checked against the fitted shape and
        batched ``score_batch_frames`` at a time under ``torch.inference_mode``.
        """
        torch = _torch()
        self._require_fitted()
        frames = np.asarray(frames)
        limit = max(1, int(self.config.score_batch_frames))
        nchw = self._uint8_nchw(frames)
        hwc = self._frames_hwc(frames, "embed") if nchw is None else nchw
        parts = []
        with self._threads(), torch.inference_mode():
            self.detector_net.eval()
            for i in range(0, len(hwc), limit):
                if nchw is None:
                    x = self._to_tensor([hwc[i : i + limit]])
                else:  # the per-step path of SubgoalReward on stacked Atari frames: no HWC round trip
                    x = torch.from_numpy(nchw[i : i + limit]).to(self._device).float().div_(255.0)
                parts.append(self.detector_net.backbone.encode(x).float().cpu().numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _uint8_nchw(self, frames: np.ndarray) -> np.ndarray | None:
        """``frames`` as a C-contiguous (T, C, H, W) uint8 array when they already are channels-first uint8
        of the fitted shape (so they can go to the network without the HWC round trip), else ``None``."""
        c = self.config
        if _CHANNELS_LAST or frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) == 0:
            return None
        layout = c.frame_layout if c.frame_layout != "auto" else _infer_layout(frames.shape)
        if layout != "CHW" or c.frame_size is None or c.in_channels is None:
            return None
        if frames.shape[1:] != (c.in_channels, *c.frame_size):
            return None  # _frames_hwc raises the error naming the expected shape
        return np.ascontiguousarray(frames)

    def predict(self, episodes: Sequence[np.ndarray], masked: bool = False) -> np.ndarray:
        """The return predictor's output per episode: class probabilities (B, K) or returns (B,).

        With ``masked=True`` the frames are first multiplied by the detector's mask (what the detector
        is trained to keep predictive). Regression outputs are rescaled by ``return_scale``.
        """
        torch = _torch()
        self._require_fitted()
        hwc = [self._frames_hwc(np.asarray(f), f"episode {i}") for i, f in enumerate(episodes)]
        max_len = self.config.max_length
        assert max_len is not None
        for i, f in enumerate(hwc):
            if len(f) > max_len:
                raise ValueError(
                    f"episode {i} has {len(f)} frames, more than the predictor's max_length={max_len}"
                )
        results = []
        with self._threads(), torch.inference_mode():
            for chunk in self._chunks(hwc):
                frames = [hwc[i] for i in chunk]
                layout = _Layout.from_lengths([len(f) for f in frames], self._device)
                x = self._to_tensor(frames)
                if masked:
                    o = self._masked_outputs(x, layout, self.detector_net(x, layout), reverse=False)[0]
                else:
                    o = self.predictor_net(x, layout)
                o = o.float()
                results.append(o.softmax(1) if self.config.task == "classification" else o.squeeze(-1))
        res = torch.cat(results).cpu().numpy()
        return res if self.config.task == "classification" else res * self.config.return_scale

    # ---- persistence -----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _get_state(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            return {}
        state: dict[str, np.ndarray] = {}
        for prefix, net in (("detector", self.detector_net), ("predictor", self.predictor_net)):
            for k, v in net.state_dict().items():
                state[f"{prefix}.{k}"] = v.detach().cpu().contiguous().numpy().copy()
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        torch = _torch()
        self._resume = None  # new weights: an earlier fit's optimiser state no longer applies
        if not state:
            return
        if not self.is_fitted:
            if not self._shape_known():
                raise DetectorFormatError(
                    "the checkpoint holds DSI weights but its config lacks in_channels / frame_size / "
                    "max_length / classes; it is corrupt"
                )
            self._build_nets()
        for prefix, net in (("detector", self.detector_net), ("predictor", self.predictor_net)):
            own = net.state_dict()
            sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
            missing, extra = sorted(set(own) - set(sub)), sorted(set(sub) - set(own))
            if missing or extra:
                raise DetectorFormatError(
                    f"DSI checkpoint does not match the {prefix} network: missing {missing[:5]}, "
                    f"unexpected {extra[:5]}"
                )
            for k, v in sub.items():
                if tuple(v.shape) != tuple(own[k].shape):
                    raise DetectorFormatError(
                        f"DSI checkpoint tensor {prefix}.{k} has shape {tuple(v.shape)}, "
                        f"the network expects {tuple(own[k].shape)}"
                    )
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sub.items()})
        stray = [k for k in state if not k.startswith(("detector.", "predictor."))]
        if stray:
            raise DetectorFormatError(f"DSI checkpoint holds unexpected tensors {stray[:5]}")
