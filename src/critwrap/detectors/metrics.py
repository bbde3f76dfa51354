"""Scores for critical-state detectors: F1@T as the Deep State Identifier computes it, top-m precision.

**F1@T** (tolerance ``T`` steps) follows the official evaluation of the Deep State Identifier
(``evaluate`` in ``test.py`` of AI-Initiative-KAUST/VideoRLCS), which counts frames:

* a *predicted* frame ``t`` is a true positive (TP) if a ground-truth critical step lies in
  ``[t - T, t + T]``, otherwise a false positive (FP);
* a frame that is *not predicted* but is itself a ground-truth critical step is a false negative (FN);
* precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 P R / (P + R).

Recall is therefore asymmetric: a prediction near a true step counts as TP, but a true step that is not
itself predicted still counts as FN. Predicting every frame gives recall 1, so F1@T of that trivial
detector is ``2p / (1 + p)`` with ``p`` the share of frames within ``T`` of a true step; on short
episodes it is high (always report it, see :func:`all_frames_f1`).

Over many episodes the counts are summed before dividing (``average="micro"``, as the official code
does); ``average="macro"`` averages the per-episode F1 instead. The official code adds ``1e-8`` to every
count; here empty denominators give 0 instead, which differs only when a count is zero.

Hand-computed example (one episode, true critical steps 3 and 9, predictions 2, 5, 9):

* ``T = 1``: 2 (near 3) and 9 are TP, 5 is FP; 3 is not predicted -> FN = 1.
  P = 2/3, R = 2/3, F1 = 2/3.
* ``T = 2``: 5 is now within 2 of 3 -> TP = 3, FP = 0, FN = 1; P = 1, R = 3/4, F1 = 6/7.

Example:
    >>> from critwrap.detectors.metrics import f1_at_t, top_m_precision
    >>> round(f1_at_t([2, 5, 9], [3, 9], T=1), 4), round(f1_at_t([2, 5, 9], [3, 9], T=2), 4)
    (0.6667, 0.8571)
    >>> top_m_precision([0.1, 0.9, 0.2, 0.8, 0.0], [2, 4], tol=1)   # top-2 frames 1 and 3: both near one
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLDS",
    "F1Counts",
    "all_frames_f1",
    "choose_threshold",
    "f1_at_t",
    "f1_counts",
    "f1_report",
    "lookahead",
    "top_m_precision",
]

#: The thresholds the official evaluation sweeps: 0.0, 0.1, ..., 1.0.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(i / 10 for i in range(11))


@dataclass(frozen=True)
class F1Counts:
    """Frame counts of F1@T (see the module docstring) and the scores they give."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp > 0 else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn > 0 else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def __add__(self, other: F1Counts) -> F1Counts:
        return F1Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def _steps(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x if len(x) else [], dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold non-negative integer step indices, got {list(arr)[:10]}")
    return np.unique(arr.astype(np.int64))


def _is_batch(x: Any) -> bool:
    """True for a list of episodes (a sequence whose items are sequences / arrays), False for one episode."""
    if isinstance(x, np.ndarray):
        return x.dtype == object or x.ndim > 1
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence):
        raise TypeError(f"expected a sequence of steps or a list of them, got {type(x).__name__}")
    return len(x) > 0 and all(isinstance(item, (Sequence, np.ndarray)) for item in x)


def f1_counts(
    pred_steps: Sequence[int] | np.ndarray, true_steps: Sequence[int] | np.ndarray, T: int
) -> F1Counts:
    """TP / FP / FN of one episode: ``pred_steps`` predicted critical steps, ``true_steps`` the ground truth."""
    if T < 0:
        raise ValueError(f"the tolerance T must be >= 0, got {T}")
    pred = _steps(pred_steps, "pred_steps")
    true = _steps(true_steps, "true_steps")
    if len(true):
        dist = np.abs(pred[:, None] - true[None, :]).min(axis=1) if len(pred) else np.zeros(0)
        tp = int(np.sum(dist <= T))
    else:
        tp = 0
    fp = len(pred) - tp
    fn = len(np.setdiff1d(true, pred))
    return F1Counts(tp, fp, fn)


def f1_at_t(
    pred_steps: Sequence[Any] | np.ndarray,
    true_steps: Sequence[Any] | np.ndarray,
    T: int,
    *,
    average: str = "micro",
) -> float:
    """F1@T of one episode (two lists of step indices) or of many (two lists of such lists).

    Over many episodes ``average="micro"`` (default, the official one) sums TP / FP / FN over all
    episodes before computing precision and recall; ``"macro"`` is the mean of per-episode F1.
    """
    if average not in ("micro", "macro"):
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")
    if not _is_batch(pred_steps) and not _is_batch(true_steps):
        return f1_counts(pred_steps, true_steps, T).f1
    preds, trues = list(pred_steps), list(true_steps)
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} episodes of predictions but {len(trues)} of ground truth")
    counts = [f1_counts(p, t, T) for p, t in zip(preds, trues)]
    if not counts:
        raise ValueError("no episodes to score")
    if average == "macro":
        return float(np.mean([c.f1 for c in counts]))
    total = F1Counts(0, 0, 0)
    for c in counts:
        total = total + c
    return total.f1


def _scores_list(scores_list: Sequence[Any], true_list: Sequence[Any]) -> list[np.ndarray]:
    scores = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores_list]
    if len(scores) != len(true_list):
        raise ValueError(f"{len(scores)} episodes of scores but {len(true_list)} of ground truth")
    if not scores:
        raise ValueError("no episodes to score")
    for i, (s, t) in enumerate(zip(scores, true_list)):
        if len(t) and max(int(x) for x in t) >= len(s):
            raise ValueError(f"episode {i}: a true critical step ({max(t)}) lies past its {len(s)} scores")
    return scores


def choose_threshold(
    scores_list: Sequence[Any],
    true_list: Sequence[Any],
    T: int,
    grid: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
    *,
    average: str = "micro",
) -> tuple[float, float]:
    """The threshold of ``grid`` that maximises F1@T (frames with score >= threshold are predicted).

    Call it on a VALIDATION split and apply the threshold to the test split (the original evaluation
    picks the best threshold on the test episodes themselves). Ties go to the first threshold of
    ``grid`` reaching the best F1 (as the official loop keeps the first strict improvement).
    Returns ``(threshold, f1_at_that_threshold)``.
    """
    scores = _scores_list(scores_list, true_list)
    thresholds = [float(g) for g in grid]
    if not thresholds:
        raise ValueError("the threshold grid is empty")
    best_t, best_f1 = thresholds[0], -1.0
    for th in thresholds:
        preds = [np.flatnonzero(s >= th) for s in scores]
        f1 = f1_at_t(preds, [list(t) for t in true_list], T, average=average)
        if f1 > best_f1:
            best_t, best_f1 = th, f1
    return best_t, best_f1


def all_frames_f1(
    lengths: Sequence[int] | np.ndarray, true_list: Sequence[Any], T: int, *, average: str = "micro"
) -> float:
    """F1@T of the trivial detector that marks every frame critical (episodes of the given lengths).

    This is what the official sweep gives at threshold 0 and what the paper's "Random" row amounts to.
    """
    lengths = [int(n) for n in lengths]
    if len(lengths) != len(true_list):
        raise ValueError(f"{len(lengths)} episode lengths but {len(true_list)} episodes of ground truth")
    preds = [np.arange(n) for n in lengths]
    return f1_at_t(preds, [list(t) for t in true_list], T, average=average)


def lookahead(scores: Sequence[Any] | np.ndarray, steps: int) -> Any:
    """Scores that look ``steps`` frames ahead: ``out[t] = max(scores[t : t + steps + 1])``.

    A detector trained to explain an episode's outcome tends to mark the frame where the outcome becomes
    visible, which can be just *after* the critical state (on the GridWorld in the original generator's
    style, 32 % of the top-scored validation frames of run Q's best DSI run lie one step after a labelled
    critical frame, 44 % on one; see docs/benchmarks.md, run Q). With
    ``steps=1`` a frame is marked when it or the next frame scores high. ``steps=0`` returns the scores
    unchanged. Choose ``steps`` on validation episodes, never on the ones you report (:func:`f1_report`
    does this with ``lookaheads=``). Works on one episode (a 1-D array) or a list of them.

    Example:
        >>> lookahead([0.1, 0.2, 0.9, 0.3], 1).tolist()
        [0.2, 0.9, 0.9, 0.3]
    """
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"lookahead steps must be >= 0, got {steps}")
    if isinstance(scores, np.ndarray) and scores.dtype != object:
        if scores.ndim == 2:  # a batch of equally long episodes
            return [lookahead(row, steps) for row in scores]
        if scores.ndim != 1:
            raise ValueError(f"scores must be one episode (T,) or a list of them, got shape {scores.shape}")
        s = scores.astype(np.float64)
        if steps == 0 or len(s) == 0:
            return s.copy()
        padded = np.concatenate([s, np.full(steps, -np.inf)])
        return np.max(np.stack([padded[i : i + len(s)] for i in range(steps + 1)]), axis=0)
    if len(scores) == 0 or all(np.ndim(x) == 0 for x in scores):
        return lookahead(np.asarray(scores, dtype=np.float64).reshape(-1), steps)
    return [lookahead(np.asarray(x, dtype=np.float64).reshape(-1), steps) for x in scores]


def top_m_precision(
    scores: Sequence[Any] | np.ndarray, true_steps: Sequence[Any] | np.ndarray, tol: int = 1
) -> float:
    """Share of an episode's ``m`` top-scored frames within ``tol`` steps of a true critical step.

    ``m`` is the number of (distinct) true critical steps of the episode. Ties in the scores go to the
    earlier frame. For many episodes (a list of score arrays and a list of step lists) this is the mean
    over the episodes that have at least one true critical step. Returns ``nan`` when none has.
    """
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if _is_batch(true_steps) or (len(scores) > 0 and isinstance(scores[0], (Sequence, np.ndarray))):
        per_episode = [
            top_m_precision(s, t, tol)
            for s, t in zip(_scores_list(list(scores), list(true_steps)), true_steps)
        ]
        valid = [p for p in per_episode if not np.isnan(p)]
        return float(np.mean(valid)) if valid else float("nan")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    true = _steps(true_steps, "true_steps")
    m = len(true)
    if m == 0:
        return float("nan")
    if true.max() >= len(s):
        raise ValueError(f"a true critical step ({true.max()}) lies past the {len(s)} scores")
    top = np.argsort(-s, kind="stable")[:m]
    near = np.abs(top[:, None] - true[None, :]).min(axis=1) <= tol
    return float(near.mean())


def f1_report(
    val_scores: Sequence[Any],
    val_true: Sequence[Any],
    test_scores: Sequence[Any],
    test_true: Sequence[Any],
    tolerances: Sequence[int] = (1, 2, 3),
    grid: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
    lookaheads: Sequence[int] = (0,),
) -> dict[str, Any]:
    """The figures to report for a detector: per tolerance ``T``, the threshold chosen on validation, the
    test F1@T at that threshold, the test F1@T of the all-frames detector, the (optimistic) best test F1@T
    over the grid as the original reports it; plus the test top-m precision (tolerance 1).

    ``lookaheads``: the :func:`lookahead` steps tried; per ``T`` the pair (lookahead, threshold) with the
    best validation F1@T is applied to the test scores (ties go to the smaller lookahead). The default
    ``(0,)`` is the plain evaluation. ``grid`` is used for every lookahead (the lookahead only takes
    maxima of scores, so it does not move them outside the grid's range)."""
    tests = _scores_list(test_scores, test_true)
    vals = _scores_list(val_scores, val_true)
    steps = sorted({int(a) for a in lookaheads})
    if not steps:
        raise ValueError("lookaheads is empty; give (0,) for the plain evaluation")
    out: dict[str, Any] = {"per_T": {}, "top_m_precision": top_m_precision(tests, list(test_true), tol=1)}
    lengths = [len(s) for s in tests]
    for T in tolerances:
        best: tuple[float, int, float] | None = None
        for a in steps:
            th_a, f1_a = choose_threshold(lookahead(vals, a), val_true, T, grid)
            if best is None or f1_a > best[0]:
                best = (f1_a, a, th_a)
        assert best is not None
        val_f1, a, th = best
        preds = [np.flatnonzero(s >= th) for s in lookahead(tests, a)]
        out["per_T"][int(T)] = {
            "threshold": th,
            "lookahead": a,
            "val_f1": val_f1,
            "test_f1": f1_at_t(preds, [list(t) for t in test_true], T),
            "all_frames_f1": all_frames_f1(lengths, list(test_true), T),
            "best_test_f1_oracle_threshold": choose_threshold(lookahead(tests, a), list(test_true), T, grid)[
                1
            ],
        }
    return out
