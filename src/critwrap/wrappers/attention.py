"""``AttentionAdapter``: multiply every frame by the mask of a frozen VAI foreground adapter.

At RL time VAI (Wang, Lian, Yu, CVPR 2021) does not adapt the policy but the vision: a frozen adapter
(:class:`critwrap.attention.adapter.MaskAdapter`, trained with
``python -m critwrap.zoo adapter fit --env ENV``) predicts a foreground mask for each RGB frame and the
policy sees ``frame * mask``, so distractions in the background are erased before the policy sees
them. Train the agent with the wrapper and evaluate it with the wrapper on the distracted env.

All frames of a stacked observation go through the adapter in one batched ``torch.inference_mode``
pass; observations keep their shape and dtype (uint8). ``self.last_mask`` holds the masks of the last
observation, (k, H, W) in [0, 1].

Example:
    >>> import critwrap
    >>> env = critwrap.make(
    ...     "dm_control/cartpole-balance-v0",
    ...     wrappers=[("pixel-observation", {"size": 64, "frame_stack": 3}),
    ...               ("attention-adapter", {"checkpoint": "adapters/cartpole"})],
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.wrappers.base import CritwrapWrapper, IncompatibleSpaceError
from critwrap.wrappers.distraction import FrameLayout

__all__ = ["AttentionAdapter"]


class AttentionAdapter(CritwrapWrapper, gym.ObservationWrapper[np.ndarray, Any, Any]):
    """Mask each RGB frame of the observation with a frozen VAI adapter's foreground mask.

    Args:
        env: an env with uint8 RGB image observations, ``(H, W, 3k)`` or ``(3k, H, W)`` (k stacked
            frames), of the resolution the adapter was trained on.
        checkpoint: folder of the adapter checkpoint (``adapter.safetensors`` + ``adapter.json``).
        device: torch device of the adapter (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` as in SB3: a GPU
            when there is one); one torch cannot use here is a ``ValueError`` naming it.
        threshold: if given, binarise the mask at this value (VAI multiplies by the soft mask).
        output: ``"masked"`` (default, VAI's): each frame times its mask; ``"mask"`` (critwrap's
            addition): the mask alone, as a grey frame (``255 * mask`` in all three channels), so the
            policy sees the foreground's silhouette and none of its colours.
    """

    OUTPUTS = ("masked", "mask")

    def __init__(
        self,
        env: gym.Env[Any, Any],
        checkpoint: str,
        device: str = "cpu",
        threshold: float | None = None,
        output: str = "masked",
    ) -> None:
        if output not in self.OUTPUTS:
            raise ValueError(f"AttentionAdapter output must be one of {self.OUTPUTS}, got {output!r}")
        CritwrapWrapper.__init__(
            self, checkpoint=checkpoint, device=device, threshold=threshold, output=output
        )
        gym.ObservationWrapper.__init__(self, env)
        self.layout = FrameLayout(env.observation_space, "AttentionAdapter")
        if self.layout.frame_channels != 3:
            raise IncompatibleSpaceError(
                f"AttentionAdapter needs RGB frames: observations of shape (H, W, 3k) or (3k, H, W); got "
                f"{env.observation_space.shape} ({self.layout.channels} channels is not a multiple of 3)"
            )
        from critwrap.attention.adapter import AdapterShapeError, MaskAdapter
        from critwrap.devices import resolve_device

        device = str(resolve_device(device, "the adapter"))
        self.adapter = MaskAdapter.load(str(checkpoint), device=device)
        h, w = self.adapter.image_size
        if (self.layout.height, self.layout.width) != (h, w):
            raise AdapterShapeError(
                f"the adapter in {checkpoint} was trained on {h}x{w} RGB frames (observations of shape "
                f"(3k, {h}, {w}) or ({h}, {w}, 3k)); this env gives {env.observation_space.shape}. Render at "
                f"{h}x{w} (pixel-observation size={h}) or fit an adapter at this size."
            )
        self.device = device
        self.threshold = threshold
        self.output = output
        self.last_mask: np.ndarray | None = None

    def masks(self, observation: np.ndarray) -> np.ndarray:
        """The (k, H, W) masks in [0, 1] of the frames of one observation."""
        return self._masks(self.layout.split(np.asarray(observation)))

    def _masks(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():  # all k frames of the stack in one batch
            x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            mask = self.adapter(x)[:, 0]
            if self.threshold is not None:
                mask = (mask > self.threshold).float()
            return mask.cpu().numpy()

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frames = self.layout.split(np.asarray(observation))
        mask = self._masks(frames)
        self.last_mask = mask
        if self.output == "mask":
            grey = np.round(255.0 * mask).astype(np.uint8)
            return self.layout.join(np.repeat(grey[..., None], 3, axis=-1))
        masked = np.round(frames.astype(np.float32) * mask[..., None]).astype(np.uint8)
        return self.layout.join(masked)
