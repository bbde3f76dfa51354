"""``MeanEnsemble``: average the per-frame scores of several detectors (critwrap's addition).

Detectors trained from different seeds disagree most on the frames they are unsure of; averaging
their scores keeps what they agree on. On the GridWorld benchmark two DSI runs whose validation
top-m precision was good gave a better ranking together than either alone (``docs/benchmarks.md``),
while one poor run dragged a plain average down, so the benchmark picks the members on validation
episodes (:func:`select_members`). That choice needs ground-truth critical steps on the validation
episodes; without them, average every member.

The ensemble is a :class:`~critwrap.detectors.base.Detector` like any other: ``fit`` fits every
member in turn, ``score`` / ``score_batch`` average the members' scores, ``embed`` concatenates their
frame features, and ``save`` / ``load`` write one directory (the members' configs in ``config.json``,
their weights under ``m<i>/`` prefixes in one ``weights.safetensors``; nothing is unpickled).

Example:
    >>> import numpy as np
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> ens = MeanEnsemble([RandomDetector(seed=0), RandomDetector(seed=1)])
    >>> frames = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    >>> a, b = RandomDetector(seed=0).score(frames), RandomDetector(seed=1).score(frames)
    >>> bool(np.allclose(ens.score(frames), (a + b) / 2))
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from critwrap.detectors.base import Detector, DetectorFormatError

__all__ = ["MeanEnsemble", "select_members"]


def _member(spec: Detector | dict[str, Any]) -> Detector:
    if isinstance(spec, Detector):
        return spec
    if not isinstance(spec, dict) or "detector" not in spec:
        raise TypeError(
            f"an ensemble member must be a Detector or a dict {{'detector': NAME, 'config': {{...}}}}, got {spec!r}"
        )
    from critwrap import registry

    cls = registry.resolve("detectors", spec["detector"])
    return cls(**cls._upgrade_config(dict(spec.get("config", {}))))


class MeanEnsemble(Detector):
    """The mean of the member detectors' scores, frame by frame.

    Args:
        members: detectors (fitted or not), or their saved configs
            (``{"detector": registry name, "config": {...}}``, as :meth:`get_config` writes them).
    """

    registry_name: ClassVar[str] = "ensemble"

    def __init__(self, members: Sequence[Detector | dict[str, Any]]) -> None:
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or len(members) == 0:
            raise ValueError("MeanEnsemble needs a non-empty list of member detectors")
        self.members = [_member(m) for m in members]
        for m in self.members:
            if not m.registry_name:
                raise ValueError(
                    f"{type(m).__name__} has no registry_name; register it in the critwrap.detectors "
                    "entry-point group to use it in a saved ensemble"
                )

    @property
    def is_fitted(self) -> bool:
        """Whether every member is fitted (members without an ``is_fitted`` attribute count as fitted)."""
        return all(bool(getattr(m, "is_fitted", True)) for m in self.members)

    def fit(self, episodes: Iterable[Any], **kwargs: Any) -> MeanEnsemble:
        """Fit every member on the same episodes (a list is kept in memory so each member sees all).

        A ``seed`` keyword gives member ``i`` the seed ``seed + i``, so that members of the same
        configuration do not become copies of each other.
        """
        episodes = list(episodes)
        seed = kwargs.pop("seed", None)
        for i, m in enumerate(self.members):
            m.fit(episodes, **kwargs, **({} if seed is None else {"seed": int(seed) + i}))
        return self

    def score(self, frames: np.ndarray) -> np.ndarray:
        return np.mean([m.score(frames) for m in self.members], axis=0)

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        per_member = [m.score_batch(episodes) for m in self.members]
        return [np.mean([scores[i] for scores in per_member], axis=0) for i in range(len(episodes))]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return np.concatenate([m.embed(frames) for m in self.members], axis=1).astype(np.float32)

    def to(self, device: Any) -> MeanEnsemble:
        """Move every member to ``device`` (each must support it, see :meth:`Detector.to`)."""
        for m in self.members:
            m.to(device)
        return self

    def get_config(self) -> dict[str, Any]:
        return {"members": [{"detector": m.registry_name, "config": m.get_config()} for m in self.members]}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {f"m{i}/{k}": v for i, m in enumerate(self.members) for k, v in m._get_state().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        parts: list[dict[str, np.ndarray]] = [{} for _ in self.members]
        for key, value in state.items():
            head, _, rest = key.partition("/")
            if not head.startswith("m") or not head[1:].isdigit() or int(head[1:]) >= len(self.members):
                raise DetectorFormatError(
                    f"ensemble weight {key!r} belongs to no member (the ensemble has {len(self.members)})"
                )
            parts[int(head[1:])][rest] = value
        for m, part in zip(self.members, parts):
            m._set_state(part)


def select_members(
    detectors: Sequence[Detector],
    val_frames: Sequence[np.ndarray],
    val_critical_steps: Sequence[Sequence[int]],
    keep: int,
    *,
    by: str = "top-m",
    T: int = 2,
    lookaheads: Sequence[int] = (0,),
) -> tuple[list[int], list[float]]:
    """Indices of the ``keep`` detectors that do best on labelled validation episodes.

    ``by="top-m"`` (default): top-m precision. ``by="f1"``: F1@``T`` at the best validation threshold
    (steps of 0.01 plus the percentiles of the scores) and the best of ``lookaheads``
    (:func:`critwrap.detectors.metrics.lookahead`). Returns the chosen indices (best first) and every
    detector's validation figure.
    """
    from critwrap.detectors.metrics import choose_threshold, lookahead, top_m_precision

    if not 1 <= keep <= len(detectors):
        raise ValueError(f"keep must be between 1 and {len(detectors)}, got {keep}")
    if by not in ("top-m", "f1"):
        raise ValueError(f"by must be 'top-m' or 'f1', got {by!r}")
    truth = [list(t) for t in val_critical_steps]

    def figure(d: Detector) -> float:
        scores = d.score_batch(list(val_frames))
        if by == "top-m":
            return float(top_m_precision(scores, truth))
        best = -1.0
        for a in sorted({int(x) for x in lookaheads}):
            ahead = lookahead(scores, a)
            pooled = np.concatenate([np.asarray(x, dtype=np.float64) for x in ahead])
            grid = np.unique(
                np.concatenate([np.linspace(0, 1, 101), np.percentile(pooled, np.arange(1, 100))])
            )
            best = max(best, float(choose_threshold(ahead, truth, T, grid)[1]))
        return best

    precision = [figure(d) for d in detectors]
    order = sorted(range(len(detectors)), key=lambda i: -precision[i])
    return order[:keep], precision
