"""Resize image observations, by registry name (``resize``) and with YAML-friendly arguments.

Gymnasium's ``ResizeObservation`` wants a tuple, which a zoo ``--wrapper`` spec (YAML values) cannot
write; ``Resize`` takes an int (square frames) or a list ``[height, width]``. Its main use is VAI on envs
that give their own RGB frames at sides VAI's networks cannot take (Atari's 210x160):

    >>> import critwrap
    >>> env = critwrap.make("ALE/Pong-v5", wrappers=[("resize", {"size": 84})])  # doctest: +SKIP
    >>> env.observation_space.shape  # doctest: +SKIP
    (84, 84, 3)

Frames are resized with OpenCV's area interpolation (Gymnasium's ``ResizeObservation``); the channels
stay last, the dtype stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.wrappers.base import CritwrapWrapper, IncompatibleSpaceError

__all__ = ["Resize"]


def _shape(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, bool):
        raise ValueError(f"size must be an int or [height, width], got {size!r}")
    if isinstance(size, int | np.integer):
        out = (int(size), int(size))
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        out = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be an int or [height, width], got {size!r}")
    if min(out) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return out


class Resize(CritwrapWrapper, gym.wrappers.ResizeObservation):  # type: ignore[misc]
    """Resize (H, W) or (H, W, C) image observations to ``size`` (an int: square; or ``[height, width]``).

    Args:
        env: an env with image observations, channels last (RGB frames as Gymnasium renders them).
        size: the new side (square) or ``[height, width]``.
    """

    def __init__(self, env: gym.Env[Any, Any], size: int | Sequence[int] = 84) -> None:
        shape = _shape(size)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) in (2, 3)):
            raise IncompatibleSpaceError(f"resize needs image observations (H, W) or (H, W, C), got {space}")
        if len(space.shape) == 3 and space.shape[-1] not in (1, 3, 4):
            raise IncompatibleSpaceError(
                f"resize needs channels-last images (H, W, C) with C in 1, 3, 4, got shape {space.shape}"
            )
        CritwrapWrapper.__init__(self, size=list(shape) if not isinstance(size, int) else int(size))
        gym.wrappers.ResizeObservation.__init__(self, env, shape)
