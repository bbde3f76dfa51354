"""Baseline detectors: the ones every learned detector must beat.

* :class:`RandomDetector`: independent uniform scores (seeded); top-k of it is k random steps.

Example:
    >>> import numpy as np
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> det = RandomDetector(seed=0)
    >>> scores = det.score(np.zeros((5, 4)))                       # any frames (T, ...)
    >>> scores.shape, bool(((0 <= scores) & (scores < 1)).all())
    ((5,), True)
    >>> np.allclose(RandomDetector(seed=0).score(np.zeros((5, 4))), scores)  # seeded: repeatable
    True
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from critwrap.detectors.base import Detector

__all__ = ["RandomDetector"]


class RandomDetector(Detector):
    """Uniform random importance in [0, 1] per step, reproducible from ``seed``."""

    registry_name: ClassVar[str] = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def score(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim < 1 or len(frames) == 0:
            raise ValueError(f"frames must be an array (T, ...) with T >= 1, got shape {frames.shape}")
        return self._rng.random(len(frames))

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}
