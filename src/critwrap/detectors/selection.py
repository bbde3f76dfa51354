"""Choose a detector's training epoch on labelled validation episodes (critwrap's addition).

DSI's ranking of critical frames is not monotone in training: on the GridWorld benchmark the validation
top-m precision of a run rises, peaks and falls again (``docs/benchmarks_critical_states.md``; with a
mask budget the peak comes after 4-8 epochs). :class:`BestEpoch` is a :meth:`DSI.fit` callback that
scores validation episodes with known critical steps after every epoch, keeps a copy of the weights of
the best epoch and puts them back with :meth:`BestEpoch.restore`. The threshold is still chosen on the
validation split afterwards, never on test episodes.

Example:
    >>> from critwrap.detectors.dsi import DSI
    >>> from critwrap.detectors.selection import BestEpoch
    >>> best = BestEpoch(val)                                    # doctest: +SKIP
    >>> det = DSI(mask_budget=0.5, mask_budget_weight=10).fit(train, epochs=10, callback=best)  # doctest: +SKIP
    >>> best.restore(det); best.best_epoch, best.curve           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SELECT_BY", "BestEpoch", "validation_figure"]

#: The figures :class:`BestEpoch` can maximise.
SELECT_BY = ("top-m", "f1")


def validation_figure(
    scores: list[np.ndarray], truth: list[list[int]], by: str = "top-m", tolerance: int = 2
) -> float:
    """``"top-m"``: top-m precision; ``"f1"``: F1@``tolerance`` at its best threshold on these episodes
    (steps of 0.01 plus the percentiles of the scores, as ``zoo detect eval --grid fine``)."""
    from critwrap.detectors.metrics import choose_threshold, top_m_precision

    if by == "top-m":
        return float(top_m_precision(scores, truth))
    if by == "f1":
        pooled = np.concatenate(scores)
        grid = np.unique(np.concatenate([np.linspace(0, 1, 101), np.percentile(pooled, np.arange(1, 100))]))
        return float(choose_threshold(scores, truth, tolerance, grid)[1])
    raise ValueError(f"by must be one of {SELECT_BY}, got {by!r}")


class BestEpoch:
    """A ``fit`` callback that keeps the weights of the epoch with the best validation figure.

    Args:
        val_episodes: episodes with ``metadata[truth_key]`` (the true critical steps); episodes without
            them (e.g. failures) are ignored. At least one must have them: checked here, before training.
        by: ``"top-m"`` (top-m precision, default) or ``"f1"`` (F1@``tolerance`` at the best validation
            threshold).
        tolerance: T of ``by="f1"``.
        truth_key: metadata key of the true steps.
        then: another callback to call after this one (its return value is passed on: ``False`` stops).

    After training, :attr:`curve` holds the figure per epoch, :attr:`best_epoch` (0-based, as in
    ``DSI.history``) and :attr:`best_score` the best one; :meth:`restore` loads its weights.
    """

    def __init__(
        self,
        val_episodes: Any,
        by: str = "top-m",
        *,
        tolerance: int = 2,
        truth_key: str = "critical_steps",
        then: Callable[[Any, dict[str, float]], bool | None] | None = None,
    ) -> None:
        if by not in SELECT_BY:
            raise ValueError(f"by must be one of {SELECT_BY}, got {by!r}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        labelled = [e for e in val_episodes if e.metadata.get(truth_key)]
        if not labelled:
            raise ValueError(
                f"no validation episode has metadata[{truth_key!r}] (true critical steps); the epoch is "
                "chosen on labelled validation episodes"
            )
        self.frames = [np.asarray(e.frames) for e in labelled]
        self.truth = [list(e.metadata[truth_key]) for e in labelled]
        self.by, self.tolerance, self.then = by, int(tolerance), then
        self.curve: list[float] = []
        self.best_epoch: int | None = None
        self.best_score = -np.inf
        self._state: dict[str, np.ndarray] | None = None

    def __call__(self, det: Any, record: dict[str, float]) -> bool | None:
        figure = validation_figure(det.score_batch(self.frames), self.truth, self.by, self.tolerance)
        self.curve.append(round(figure, 4))
        record[f"val_select_{self.by}"] = figure
        if figure > self.best_score:
            self.best_score = figure
            self.best_epoch = int(record.get("epoch", len(self.curve) - 1))
            self._state = {k: v.copy() for k, v in det._get_state().items()}
        return self.then(det, record) if self.then is not None else None

    def restore(self, det: Any) -> Any:
        """Load the best epoch's weights into ``det`` (the detector this callback watched) and return it."""
        if self._state is None:
            raise RuntimeError("no epoch was scored: pass this object as fit(..., callback=...) first")
        det._set_state(self._state)
        return det
