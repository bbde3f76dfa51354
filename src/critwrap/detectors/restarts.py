"""Probed restarts for DSI: start several seeds, continue the one that ranks validation frames best.

critwrap's addition. DSI runs from different seeds differ a lot: on the GridWorld benchmark more than
half of the runs of one recipe never rank the labelled critical frames well, while the others reach the
paper's numbers (``docs/benchmarks.md``, runs K, N, Q and R). :func:`fit_with_restarts` trains each
candidate seed for ``probe_epochs``, scores it on validation episodes with known critical steps (top-m
precision, the mean over its last ``last`` probe epochs), and continues the best candidate for the
remaining epochs exactly where its probe stopped (:meth:`DSI.fit` with ``resume=True``). It costs
``(n_seeds - 1) * probe_epochs`` epochs more than one run; the probes are independent and can run on
separate cores (:func:`probe_seed`, whose curves ``fit_with_restarts`` takes through ``probes=``, but
then the chosen candidate is trained again from the start with its seed: the result is the same,
since training is deterministic per seed and thread count on CPU).

It needs labelled validation episodes (``metadata["critical_steps"]``), like choosing the threshold
does; without them, train one seed (or a :class:`~critwrap.detectors.ensemble.MeanEnsemble`).

Example:
    >>> from critwrap.detectors.dsi import DSI
    >>> from critwrap.detectors.restarts import fit_with_restarts
    >>> det, report = fit_with_restarts(
    ...     lambda seed: DSI(seed=seed), train, val, seeds=[0, 1, 2, 3], probe_epochs=10, epochs=20
    ... )  # doctest: +SKIP
    >>> report["chosen_seed"], report["probe_score"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["fit_with_restarts", "probe_score", "probe_seed"]


def _validation(val_episodes: Any, truth_key: str) -> tuple[list[np.ndarray], list[list[int]]]:
    episodes = [e for e in val_episodes if e.metadata.get(truth_key)]
    if not episodes:
        raise ValueError(
            f"no validation episode has metadata[{truth_key!r}] (true critical steps); restarts are "
            "chosen on labelled validation episodes"
        )
    return [np.asarray(e.frames) for e in episodes], [list(e.metadata[truth_key]) for e in episodes]


def probe_score(curve: Sequence[float], last: int = 3) -> float:
    """A probe's figure: the mean validation top-m of its last ``last`` epochs (robust to early spikes)."""
    if not len(curve):
        raise ValueError("empty probe curve")
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    return float(np.mean(list(curve)[-last:]))


def _probe(
    make: Callable[[int], Any],
    seed: int,
    episodes: Any,
    frames: list[np.ndarray],
    truth: list[list[int]],
    probe_epochs: int,
) -> tuple[Any, list[float]]:
    from critwrap.detectors.metrics import top_m_precision

    if probe_epochs < 1:
        raise ValueError(f"probe_epochs must be >= 1, got {probe_epochs}")
    curve: list[float] = []

    def record(det: Any, _record: dict[str, float]) -> None:
        curve.append(float(top_m_precision(det.score_batch(frames), truth)))

    det = make(seed)
    det.fit(episodes, epochs=probe_epochs, seed=seed, progress=False, callback=record)
    return det, curve


def probe_seed(
    make: Callable[[int], Any],
    seed: int,
    episodes: Any,
    val_episodes: Any,
    probe_epochs: int = 10,
    *,
    truth_key: str = "critical_steps",
) -> list[float]:
    """Train ``make(seed)`` for ``probe_epochs`` and return its validation top-m precision per epoch."""
    if probe_epochs < 1:
        raise ValueError(f"probe_epochs must be >= 1, got {probe_epochs}")
    frames, truth = _validation(val_episodes, truth_key)
    return _probe(make, seed, episodes, frames, truth, probe_epochs)[1]


def fit_with_restarts(
    make: Callable[[int], Any],
    episodes: Any,
    val_episodes: Any,
    seeds: Sequence[int],
    probe_epochs: int = 10,
    epochs: int | None = None,
    *,
    last: int = 3,
    truth_key: str = "critical_steps",
    probes: dict[int, list[float]] | None = None,
    **fit_kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """Probe every seed, then finish the best one.

    Args:
        make: ``make(seed) -> DSI`` (an unfitted detector whose ``fit`` takes ``epochs``, ``seed``,
            ``callback`` and ``resume``).
        episodes: training episodes (as :meth:`DSI.fit` takes them; a list is kept in memory).
        val_episodes: episodes with ``metadata[truth_key]``; the others are ignored.
        seeds: candidate seeds (at least one; duplicates are an error).
        probe_epochs: epochs per candidate before choosing.
        epochs: total epochs of the chosen run (default: its ``config.epochs``); at least
            ``probe_epochs``.
        last: the probe figure is the mean validation top-m of the last ``last`` probe epochs.
        probes: already measured probe curves by seed (e.g. from :func:`probe_seed` in parallel
            processes). If the chosen seed's curve was given, it is trained from the start for
            ``epochs``; otherwise the probed run is continued.
        **fit_kwargs: passed to the chosen run's remaining ``fit`` (``callback``, ``tensorboard_log``,
            ...); its callback sees the epochs after the probe (all of them when trained from the start).

    Returns:
        ``(detector, report)``: the trained detector of the chosen seed and ``{"seeds", "probe_score"
        (per seed), "probe_curves", "chosen_seed"}``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if probe_epochs < 1:
        raise ValueError(f"probe_epochs must be >= 1, got {probe_epochs}")
    frames, truth = _validation(val_episodes, truth_key)  # fail before any training
    episodes = list(episodes)
    total = epochs
    if total is None:
        config = getattr(make(seeds[0]), "config", None)
        total = int(getattr(config, "epochs", probe_epochs))
    if total < probe_epochs:
        raise ValueError(f"epochs ({total}) must be >= probe_epochs ({probe_epochs})")
    given = dict(probes or {})
    curves: dict[int, list[float]] = {}
    runs: dict[int, Any] = {}
    for s in seeds:
        if s in given:
            curves[s] = list(given[s])
        else:
            runs[s], curves[s] = _probe(make, s, episodes, frames, truth, probe_epochs)
    score = {s: probe_score(curves[s], last) for s in seeds}
    chosen = max(seeds, key=lambda s: (score[s], -seeds.index(s)))  # ties: the earlier seed
    if chosen in runs:
        det = runs[chosen]
        det.fit(episodes, epochs=total - probe_epochs, resume=True, **fit_kwargs)
    else:
        det = make(chosen)
        det.fit(episodes, epochs=total, seed=chosen, **fit_kwargs)
    report = {
        "seeds": seeds,
        "probe_score": {s: round(score[s], 4) for s in seeds},
        "probe_curves": {s: [round(x, 4) for x in curves[s]] for s in seeds},
        "chosen_seed": chosen,
    }
    return det, report
