"""VAI stage 2: the foreground-mask adapter, its augmentation, its loss, and its checkpoints.

A small conv net maps one RGB frame to a 1-channel mask in [0, 1]. It learns from the keypoint-derived
targets of :func:`critwrap.attention.transporter.foreground_masks`, on frames whose background is
replaced by clutter so that the mask depends on the foreground only (VAI, Wang, Lian, Yu, CVPR 2021):

* foreground colour jitter, one draw per frame: hue ~ N(-0.015, 0.015), brightness and contrast ~
  N(1, 0.08), saturation ~ N(1, 0.05); optionally (``recolor_prob`` > 0, critwrap's addition, off by
  default) a share of the frames gets a random foreground colour instead (:func:`recolor`; hue
  uniform, or with ``recolor_mode="rgb"`` a colour uniform in the RGB cube, ``color_hard``'s law);
* a random crop: frames are padded by ``crop_pad`` pixels (replicate) and cropped back at a random
  offset, target masks alike (VAI renders 100x100 and crops 84x84);
* a new background: ``noise_level`` x uniform noise plus 0.5 x one of {the original background
  (p 0.3), a random colour (p 0.5), the mean foreground colour + N(0, 0.2) (p 0.2)}, optionally
  random boxes, then blended with a "natural" image with opacity ~ U(0, 1). VAI uses Places365
  photos; critwrap downloads nothing and uses procedural images instead (multi-scale smooth colour
  noise, stripes, checkerboards);
* optionally (``region_recolor_prob`` > 0, critwrap's addition, off by default) a share of the
  original backgrounds gets a new colour per colour region (:func:`recolor_regions`), as ``color_hard``
  recolours sky and floor;
* optionally (``color_transform_prob`` > 0, critwrap's addition, off by default) a share of the
  cluttered frames gets its colours remapped as a whole (:func:`transform_colors`: channel
  permutation, per-channel inversion), so that colour alone cannot tell foreground from background;
* loss = mean(neg_weight * relu(m - y)^2 + pos_weight * relu(y - m)^2) (pos_weight 15: missing
  foreground costs more than keeping some background) + ``feature_weight`` (0.5) x the MSE between
  the encoder's features of the cluttered frame and of the clean masked frame (feature matching).

The architecture is VAI's ``AdapterEncoder`` (two stride-2 conv-BN-ReLU blocks with a sigmoid-gated
branch) and decoder (bilinear upsampling back to the input size), ``width`` channels (VAI: 16);
frame sides must be multiples of 4. At RL time :class:`MaskAdapter` runs frozen
(``torch.inference_mode``, eval-mode BatchNorm) and :class:`critwrap.wrappers.attention.AttentionAdapter`
multiplies every frame by its mask.

Example:
    >>> import numpy as np
    >>> from critwrap.attention.adapter import AdapterConfig, fit_adapter
    >>> frames = np.zeros((8, 16, 16, 3), dtype=np.uint8); frames[:, 4:12, 6:10] = 200
    >>> targets = frames[..., 0] > 0
    >>> adapter = fit_adapter(frames, targets, AdapterConfig(width=4, iterations=2, batch_size=4))
    >>> adapter.predict(frames).shape
    (8, 16, 16)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from critwrap.attention.checkpoints import CheckpointError, read_checkpoint, save_checkpoint
from critwrap.attention.transporter import Block, frames_to_tensor

__all__ = [
    "AdapterConfig",
    "AdapterShapeError",
    "MaskAdapter",
    "augment",
    "fit_adapter",
    "mask_loss",
    "procedural_images",
    "recolor",
    "recolor_regions",
    "transform_colors",
]

KIND = "vai-adapter"


class AdapterShapeError(ValueError):
    """Frames do not have the shape the adapter was trained on."""


@dataclass
class AdapterConfig:
    """Stage 2 hyperparameters (VAI's cartpole values by default)."""

    width: int = 16
    iterations: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_decay: float = 0.95
    lr_decay_every: int = 200
    pos_weight: float = 15.0
    neg_weight: float = 1.0
    feature_weight: float = 0.5
    noise_level: float = 0.1
    crop_pad: int = -1  # pixels; -1: 16/84 of the image side, VAI's 100 -> 84 crop
    natural_alpha: tuple[float, float] = (0.0, 1.0)
    random_boxes: int = 0  # VAI's optional boxes (5 for hard video backgrounds); 0: none
    recolor_prob: float = 0.0  # critwrap: share of frames whose foreground gets a random colour; 0: VAI's
    recolor_mode: str = "hsv"  # critwrap: "hsv" (hue uniform, shading kept) or "rgb" (uniform RGB x shading)
    color_transform_prob: float = 0.0  # critwrap: share of cluttered frames whose colours are remapped
    region_recolor_prob: float = (
        0.0  # critwrap: share of original backgrounds whose colour regions are recoloured
    )
    seed: int = 0


class _Encoder(nn.Module):
    def __init__(self, w: int, channels: int = 3) -> None:
        super().__init__()
        self.front = nn.Sequential(Block(channels, w, stride=2), Block(w, w))
        self.attention = Block(w, w, stride=2)
        self.middle = Block(w, w, stride=2)
        self.last = Block(w, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        front = self.front(x)
        return self.last(self.middle(front) * torch.sigmoid(self.attention(front)))


class MaskAdapter(nn.Module):
    """RGB frame (N, 3, H, W) in [0, 1] -> foreground mask (N, 1, H, W) in [0, 1]."""

    def __init__(self, width: int = 16, image_size: Sequence[int] = (84, 84)) -> None:
        super().__init__()
        self.width = int(width)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if self.image_size[0] % 4 or self.image_size[1] % 4:
            raise ValueError(f"the adapter needs frame sides that are multiples of 4, got {self.image_size}")
        self.encoder = _Encoder(self.width)
        self.decoder = nn.Sequential(
            Block(self.width, self.width),
            Block(self.width, self.width),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            Block(self.width, self.width),
            Block(self.width, 1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, *self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).clamp(0.0, 1.0)

    def check_frames(self, shape: Sequence[int], layout: str = "(N, H, W, 3)") -> None:
        """Raise :class:`AdapterShapeError` naming the expected shape if frames of ``shape`` do not fit."""
        h, w = self.image_size
        if tuple(shape[-3:]) not in ((h, w, 3), (3, h, w)):
            raise AdapterShapeError(
                f"this adapter was trained on RGB frames of {h}x{w} (shape (3, {h}, {w}) or ({h}, {w}, 3)); "
                f"got frames of shape {tuple(shape)} {layout}. Render at {h}x{w} or fit an adapter for this size "
                "(python -m critwrap.zoo adapter fit --size ...)"
            )

    @torch.inference_mode()
    def predict(self, frames: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """Masks (N, H, W) float32 in [0, 1] for uint8 frames (N, H, W, 3) (or float (N, 3, H, W) in [0, 1])."""
        self.eval()
        device = next(self.parameters()).device
        if isinstance(frames, np.ndarray):
            self.check_frames(frames.shape)
            if frames.ndim != 4:
                raise AdapterShapeError(f"expected a batch of frames (N, H, W, 3), got shape {frames.shape}")
            x = (
                frames_to_tensor(frames)
                if frames.shape[-1] == 3
                else torch.from_numpy(frames).float() / 255.0
            )
        else:
            x = frames
        out = [self(x[i : i + batch_size].to(device))[:, 0] for i in range(0, len(x), batch_size)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, *self.image_size), np.float32)

    # -- checkpoints ---------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], config: AdapterConfig | None = None, **extra: Any) -> Path:
        cfg = asdict(config) if config is not None else {}
        cfg.update(width=self.width)
        return save_checkpoint(
            folder,
            "adapter",
            self,
            kind=KIND,
            config=cfg,
            extra={"image_shape": list(self.image_shape), **extra},
        )

    @classmethod
    def load(cls, folder: str | os.PathLike[str], device: str = "cpu") -> MaskAdapter:
        """A frozen adapter (eval mode, no gradients) from ``folder/adapter.{json,safetensors}``."""
        meta, state = read_checkpoint(folder, "adapter", kind=KIND)
        shape = meta.get("image_shape")
        if not (isinstance(shape, list) and len(shape) == 3 and shape[0] == 3):
            raise CheckpointError(f"{folder}/adapter.json has no valid image_shape [3, H, W]: {shape!r}")
        model = cls(int(meta["config"]["width"]), (int(shape[1]), int(shape[2])))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"the adapter weights in {folder} do not match its config: {exc}") from exc
        model.meta = meta  # type: ignore[assignment]
        for p in model.parameters():
            p.requires_grad_(False)
        return model.to(device).eval()


# ---- augmentation ---------------------------------------------------------------------------------


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(
        maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    return torch.stack((h, s, maxc), 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6) % 6
    f = h * 6 - torch.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = torch.zeros_like(x)
    for k, c in enumerate(choices):
        out = torch.where((i == k).unsqueeze(1), c, out)
    return out


def jitter_colors(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """VAI's per-frame colour jitter (hue, brightness, contrast, saturation) of (N, 3, H, W) in [0, 1]."""
    n = x.shape[0]

    def normal(mean: float, std: float) -> torch.Tensor:
        return (torch.randn(n, 1, 1, 1, generator=generator) * std + mean).to(x)

    hsv = _rgb_to_hsv(x.clamp(0, 1))
    hsv[:, 0] = (hsv[:, 0] + normal(-0.015, 0.015)[:, 0]) % 1.0
    x = _hsv_to_rgb(hsv)
    x = (x * normal(1.0, 0.08)).clamp(0, 1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = ((x - gray.mean((2, 3), keepdim=True)) * normal(1.0, 0.08) + gray.mean((2, 3), keepdim=True)).clamp(
        0, 1
    )
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    return ((x - gray) * normal(1.0, 0.05) + gray).clamp(0, 1)


def recolor(x: torch.Tensor, prob: float, generator: torch.Generator, mode: str = "hsv") -> torch.Tensor:
    """Give a share ``prob`` of the (N, 3, H, W) frames a random colour, shading kept (critwrap's addition).

    The hue is drawn uniformly, the saturation scaled by U(0, 1.5) and the value by U(0.5, 1.5), one
    draw per frame. VAI's own jitter moves the hue by about 0.015 only, so an adapter trained with it
    alone keys on the foreground's colour and loses it under ``color_hard`` (random body colours).
    ``mode="rgb"``: a colour uniform in [0, 1]^3 (``color_hard``'s distribution) times the frame's
    shading (its luminance over the frame's mean luminance), so dark and grey colours occur too.
    """
    if mode not in ("hsv", "rgb"):
        raise ValueError(f"recolor mode must be 'hsv' or 'rgb', got {mode!r}")
    if prob <= 0:
        return x
    n = x.shape[0]
    chosen = (torch.rand(n, 1, 1, 1, generator=generator) < prob).to(x)
    if mode == "rgb":
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        shading = gray / gray.mean((2, 3), keepdim=True).clamp_min(1e-3)
        color = torch.rand(n, 3, 1, 1, generator=generator).to(x)
        return chosen * (color * shading).clamp(0, 1) + (1 - chosen) * x
    hsv = _rgb_to_hsv(x.clamp(0, 1))
    hsv[:, 0] = (hsv[:, 0] + torch.rand(n, 1, 1, generator=generator).to(x)) % 1.0
    hsv[:, 1] = (hsv[:, 1] * torch.rand(n, 1, 1, generator=generator).to(x) * 1.5).clamp(0, 1)
    hsv[:, 2] = (hsv[:, 2] * (0.5 + torch.rand(n, 1, 1, generator=generator).to(x))).clamp(0, 1)
    return chosen * _hsv_to_rgb(hsv) + (1 - chosen) * x


def transform_colors(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Remap the colours of a share ``prob`` of the (N, 3, H, W) frames (critwrap's addition).

    One draw per frame: a random channel permutation, each channel inverted with probability 0.5, then
    a blend towards the frame's grey level by U(0, 0.5). The target mask does not depend on colour, so
    the adapter must find the foreground by shape and contrast rather than by its colours.
    """
    if prob <= 0:
        return x
    n = x.shape[0]
    chosen = (torch.rand(n, 1, 1, 1, generator=generator) < prob).to(x)
    order = torch.argsort(torch.rand(n, 3, generator=generator), dim=1)
    out = torch.gather(x, 1, order.view(n, 3, 1, 1).expand_as(x))
    invert = (torch.rand(n, 3, 1, 1, generator=generator) < 0.5).to(x)
    out = invert * (1 - out) + (1 - invert) * out
    gray = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1)
    blend = (torch.rand(n, 1, 1, 1, generator=generator) * 0.5).to(x)
    out = (1 - blend) * out + blend * gray
    return chosen * out + (1 - chosen) * x


def recolor_regions(
    x: torch.Tensor, prob: float, generator: torch.Generator, regions: int = 4, steps: int = 5
) -> torch.Tensor:
    """Recolour the colour regions of a share ``prob`` of the (N, 3, H, W) frames (critwrap's addition).

    Per chosen frame, its pixels are grouped into ``regions`` colour clusters (a few k-means steps in
    RGB, started at a random pixel and the pixels farthest from the centres so far) and every cluster gets its own colour uniform in [0, 1]^3, times
    each pixel's luminance over its cluster's mean luminance (texture and shading kept). On a
    background of a few flat parts (sky, floor, walls) this draws what ``color_hard`` draws: a new
    colour per part, with new edges between them, which VAI's backgrounds never show.
    """
    if prob <= 0:
        return x
    n, _, h, w = x.shape
    out = x.clone()
    chosen = torch.nonzero(torch.rand(n, generator=generator) < prob).flatten()
    for i in chosen.tolist():
        pixels = x[i].reshape(3, -1).T  # (H*W, 3)
        first = int(torch.randint(0, h * w, (1,), generator=generator))
        centers = pixels[first : first + 1].clone()
        while len(centers) < regions:  # farthest-point start: distinct parts get distinct centres
            far = int(torch.cdist(pixels, centers).min(1).values.argmax())
            centers = torch.cat([centers, pixels[far : far + 1]])
        for _ in range(steps):
            labels = torch.cdist(pixels, centers).argmin(1)
            for k in range(regions):
                members = pixels[labels == k]
                if len(members):
                    centers[k] = members.mean(0)
        labels = torch.cdist(pixels, centers).argmin(1)
        gray = 0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]
        colors = torch.rand(regions, 3, generator=generator).to(x)
        shading = torch.ones_like(gray)
        for k in range(regions):
            member = labels == k
            if member.any():
                shading[member] = gray[member] / gray[member].mean().clamp_min(1e-3)
        out[i] = (colors[labels] * shading.unsqueeze(1)).clamp(0, 1).T.reshape(3, h, w)
    return out


def random_crop(tensors: Sequence[torch.Tensor], pad: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The same random pad-and-crop (replicate padding) of several (N, C, H, W) tensors."""
    if pad <= 0:
        return list(tensors)
    n, _, h, w = tensors[0].shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    out = []
    for t in tensors:
        padded = F.pad(t, (pad, pad, pad, pad), mode="replicate")
        out.append(
            torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())])
        )
    return out


def procedural_images(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, H, W) "natural image" stand-ins in [0, 1]: multi-scale smooth colour noise, stripes, checkers."""
    kinds = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    noise = torch.zeros(n, 3, height, width)
    for octave, weight in ((2, 0.5), (6, 0.3), (16, 0.2)):
        grid = torch.rand(n, 3, octave, octave, generator=generator)
        noise += weight * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
    yy = torch.arange(height).view(1, 1, -1, 1).float()
    xx = torch.arange(width).view(1, 1, 1, -1).float()
    angle = torch.rand(n, 1, 1, 1, generator=generator) * math.pi
    period = 4 + torch.rand(n, 1, 1, 1, generator=generator) * 20
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * (xx * torch.cos(angle) + yy * torch.sin(angle)) / period)
    cell = torch.randint(3, 16, (n, 1, 1, 1), generator=generator).float()
    checkers = (torch.div(yy, cell, rounding_mode="floor") + torch.div(xx, cell, rounding_mode="floor")) % 2
    t = torch.where(kinds == 1, stripes, checkers)
    c1, c2 = torch.rand(n, 3, 1, 1, generator=generator), torch.rand(n, 3, 1, 1, generator=generator)
    patterns = t * c1 + (1 - t) * c2
    return torch.where(kinds == 0, noise, patterns).clamp(0, 1)


def _add_boxes(x: torch.Tensor, boxes: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    for _ in range(boxes):
        size = int(torch.clamp(torch.randn(1, generator=generator) * 5 + 5, 1, max(1, min(h, w) // 8)))
        ys = torch.randint(0, max(1, h - size), (n,), generator=generator)
        xs = torch.randint(0, max(1, w - size), (n,), generator=generator)
        colors = torch.rand(n, 3, generator=generator)
        for i in range(n):
            x[i, :, ys[i] : ys[i] + size, xs[i] : xs[i] + size] = colors[i].view(3, 1, 1)
    return x


def augment(
    frames: torch.Tensor, masks: torch.Tensor, config: AdapterConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VAI's stage-2 pairs: (clean masked frames, cluttered frames, cropped masks), all (N, C, H, W)."""
    n, _, h, w = frames.shape
    jittered = recolor(jitter_colors(frames, generator), config.recolor_prob, generator, config.recolor_mode)
    pad = config.crop_pad if config.crop_pad >= 0 else round(16 / 84 * min(h, w))
    frames, jittered, masks = random_crop([frames, jittered, masks], pad, generator)
    masked = frames * masks
    masked_jittered = jittered * masks
    choice = torch.rand(n, 1, 1, 1, generator=generator)
    original_bg, random_bg, confuse_bg = choice < 0.3, (choice >= 0.3) & (choice < 0.8), choice >= 0.8
    area = masks.sum((2, 3), keepdim=True) + 1e-5
    confuse = masked_jittered.sum((2, 3), keepdim=True) / area
    confuse = confuse + torch.randn(confuse.shape, generator=generator) * 0.2
    random_color = torch.rand(n, 3, 1, 1, generator=generator)
    own = recolor_regions(jittered, config.region_recolor_prob, generator)
    background = (
        torch.rand(jittered.shape, generator=generator) * config.noise_level
        + 0.5 * (own * original_bg + random_color * random_bg + confuse * confuse_bg)
    ).clamp(0, 1)
    if config.random_boxes:
        background = _add_boxes(background, config.random_boxes, generator)
    low, high = config.natural_alpha
    alpha = torch.rand(n, 1, 1, 1, generator=generator) * (high - low) + low
    background = (1 - alpha) * background + alpha * procedural_images(n, h, w, generator)
    noisy = masked_jittered + background * (1 - masks)
    noisy = transform_colors(noisy, config.color_transform_prob, generator)
    return masked, noisy, masks


def mask_loss(
    prediction: torch.Tensor, target: torch.Tensor, pos_weight: float = 15.0, neg_weight: float = 1.0
) -> torch.Tensor:
    """VAI's weighted mask MSE: missing foreground costs ``pos_weight``, extra foreground ``neg_weight``."""
    return torch.mean(
        neg_weight * F.relu(prediction - target) ** 2 + pos_weight * F.relu(target - prediction) ** 2
    )


def fit_adapter(
    frames: np.ndarray,
    targets: np.ndarray,
    config: AdapterConfig | None = None,
    *,
    device: str = "cpu",
    progress: Callable[[int, float, float], None] | None = None,
) -> MaskAdapter:
    """Train the adapter on (N, H, W, 3) uint8 frames and their (N, H, W) foreground masks."""
    config = config or AdapterConfig()
    frames = np.asarray(frames)
    targets = np.asarray(targets)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"fit_adapter needs RGB frames (N, H, W, 3), got shape {frames.shape}")
    if targets.shape != frames.shape[:3]:
        raise ValueError(f"targets must be (N, H, W) = {frames.shape[:3]}, got {targets.shape}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = MaskAdapter(config.width, frames.shape[1:3]).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_decay_every, gamma=config.lr_decay)
    all_frames = frames_to_tensor(frames)
    all_masks = torch.from_numpy(targets.astype(np.float32)).unsqueeze(1)
    for it in range(config.iterations):
        idx = torch.randint(0, len(all_frames), (config.batch_size,), generator=generator)
        masked, noisy, masks = augment(all_frames[idx], all_masks[idx], config, generator)
        masked, noisy, masks = masked.to(device), noisy.to(device), masks.to(device)
        features = model.encoder(noisy)
        with torch.no_grad():
            clean_features = model.encoder(masked)
        prediction = model.decoder(features).clamp(0, 1)
        reconstruction = mask_loss(prediction, masks, config.pos_weight, config.neg_weight)
        matching = F.mse_loss(features, clean_features)
        loss = reconstruction + config.feature_weight * matching
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress(it, reconstruction.item(), matching.item())
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def config_from_dict(values: dict[str, Any]) -> AdapterConfig:
    names = {f.name for f in fields(AdapterConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown adapter settings {unknown}; known: {sorted(names)}")
    values = dict(values)
    if "natural_alpha" in values:
        values["natural_alpha"] = tuple(values["natural_alpha"])
    return AdapterConfig(**values)
