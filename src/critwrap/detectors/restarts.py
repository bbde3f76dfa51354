"""Probed restarts for DSI: start several seeds, keep the one that ranks validation frames best early.

critwrap's addition. DSI runs from different seeds differ a lot: on the GridWorld benchmark about half
of the runs of one recipe never rank the labelled critical frames above chance, while the others reach
the paper's numbers (``docs/benchmarks.md``, runs K, N and Q). :func:`fit_with_restarts` trains each
candidate seed for a few *probe* epochs, scores it on validation episodes with known critical steps
(top-m precision, the best over the probe epochs), then trains the best candidate for the full number of
epochs from the start with the same seed (training is deterministic per seed and thread count on CPU, so
its first epochs repeat the probe). Costs ``n_seeds * probe_epochs`` extra epochs.

It needs labelled validation episodes (``metadata["critical_steps"]``), like choosing the threshold
does; without them, train one seed (or a :class:`~critwrap.detectors.ensemble.MeanEnsemble`).

Example:
    >>> from critwrap.detectors.dsi import DSI
    >>> from critwrap.detectors.restarts import fit_with_restarts
    >>> det, report = fit_with_restarts(
    ...     lambda seed: DSI(seed=seed, epochs=20), train, val, seeds=[0, 1, 2, 3], probe_epochs=3
    ... )  # doctest: +SKIP
    >>> report["chosen_seed"], report["probe_top_m"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["fit_with_restarts", "probe_seed"]


def _validation(val_episodes: Any, truth_key: str) -> tuple[list[np.ndarray], list[list[int]]]:
    episodes = [e for e in val_episodes if e.metadata.get(truth_key)]
    if not episodes:
        raise ValueError(
            f"no validation episode has metadata[{truth_key!r}] (true critical steps); restarts are "
            "chosen on labelled validation episodes"
        )
    return [np.asarray(e.frames) for e in episodes], [list(e.metadata[truth_key]) for e in episodes]


def probe_seed(
    make: Callable[[int], Any],
    seed: int,
    episodes: Any,
    val_episodes: Any,
    probe_epochs: int = 3,
    *,
    truth_key: str = "critical_steps",
) -> list[float]:
    """Train ``make(seed)`` for ``probe_epochs`` and return its validation top-m precision per epoch."""
    from critwrap.detectors.metrics import top_m_precision

    if probe_epochs < 1:
        raise ValueError(f"probe_epochs must be >= 1, got {probe_epochs}")
    frames, truth = _validation(val_episodes, truth_key)
    curve: list[float] = []

    def record(det: Any, _record: dict[str, float]) -> None:
        curve.append(float(top_m_precision(det.score_batch(frames), truth)))

    make(seed).fit(episodes, epochs=probe_epochs, seed=seed, progress=False, callback=record)
    return curve


def fit_with_restarts(
    make: Callable[[int], Any],
    episodes: Any,
    val_episodes: Any,
    seeds: Sequence[int],
    probe_epochs: int = 3,
    epochs: int | None = None,
    *,
    truth_key: str = "critical_steps",
    probes: dict[int, list[float]] | None = None,
    **fit_kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """Probe every seed, then train the best one in full.

    Args:
        make: ``make(seed) -> DSI`` (an unfitted detector whose ``fit`` takes ``epochs``, ``seed`` and
            ``callback``).
        episodes: training episodes (as :meth:`DSI.fit` takes them; a list is kept in memory).
        val_episodes: episodes with ``metadata[truth_key]``; the others are ignored.
        seeds: candidate seeds (at least one; duplicates are an error).
        probe_epochs: epochs per candidate before choosing.
        epochs: epochs of the full run (default: the detector's ``config.epochs``).
        probes: already measured probe curves by seed (e.g. from :func:`probe_seed` run in parallel
            processes); seeds missing from it are probed here.
        **fit_kwargs: passed to the full run's ``fit`` (``callback``, ``tensorboard_log``, ...).

    Returns:
        ``(detector, report)``: the fully trained detector of the chosen seed and
        ``{"seeds", "probe_top_m" (best per seed), "probe_curves", "chosen_seed"}``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    _validation(val_episodes, truth_key)  # fail before any training
    episodes = list(episodes)
    curves = dict(probes or {})
    for s in seeds:
        if s not in curves:
            curves[s] = probe_seed(make, s, episodes, val_episodes, probe_epochs, truth_key=truth_key)
    best = {s: max(curves[s]) for s in seeds}
    chosen = max(seeds, key=lambda s: (best[s], -seeds.index(s)))  # ties: the earlier seed
    det = make(chosen)
    det.fit(episodes, epochs=epochs, seed=chosen, **fit_kwargs)
    report = {
        "seeds": seeds,
        "probe_top_m": {s: round(best[s], 4) for s in seeds},
        "probe_curves": {s: [round(x, 4) for x in curves[s]] for s in seeds},
        "chosen_seed": chosen,
    }
    return det, report
