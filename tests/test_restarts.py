"""Probed restarts (critwrap.detectors.restarts): the best probe is continued; bad input fails early."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from critwrap.detectors.dsi import DSI
from critwrap.detectors.restarts import fit_with_restarts, probe_score, probe_seed
from critwrap.episodes import Episode

TINY = {"channels": (4, 8, 8, 8, 8), "lstm_hidden": 8, "batch_size": 4}


class FakeRun:
    """A detector whose validation ranking after each epoch is set by its seed (no training)."""

    fits: list[tuple[Any, int | None]] = []

    def __init__(self, seed: int, good_from: dict[int, int]) -> None:
        self.seed, self.good_from, self.epoch = seed, good_from, -1

    def fit(
        self,
        episodes: Any,
        epochs: int | None = None,
        seed: int | None = None,
        resume: bool = False,
        **kw: Any,
    ) -> FakeRun:
        FakeRun.fits.append((("resume", self.seed) if resume else int(seed), epochs))  # type: ignore[arg-type]
        start = self.epoch + 1 if resume else 0
        for e in range(start, start + (epochs if epochs is not None else 20)):
            self.epoch = e
            if kw.get("callback") is not None:
                kw["callback"](self, {"epoch": float(e)})
        return self

    def score_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for f in frames:
            s = np.linspace(1.0, 0.0, len(f))  # marks the first frames: wrong
            if self.epoch >= self.good_from.get(self.seed, 10**9):
                s = np.zeros(len(f))
                s[len(f) - 1] = 1.0  # marks the planted critical (last) frame
            out.append(s)
        return out


def _val(n: int = 6, length: int = 12) -> list[Episode]:
    return [
        Episode(np.zeros((length, 4, 4, 3), np.uint8), label=1, metadata={"critical_steps": [length - 1]})
        for _ in range(n)
    ]


def test_the_seed_that_ranks_best_at_the_end_of_the_probe_is_continued() -> None:
    FakeRun.fits = []
    good_from = {3: 2, 5: 5}  # seed 3 finds the critical frame in epoch 2; seed 5 only after the probe
    det, report = fit_with_restarts(
        lambda s: FakeRun(s, good_from), [], _val(), seeds=[4, 5, 3], probe_epochs=3, epochs=7, last=2
    )
    assert report["chosen_seed"] == 3 and det.seed == 3 and det.epoch == 6
    assert report["probe_score"] == {4: 0.0, 5: 0.0, 3: 0.5}  # mean of the last 2 probe epochs
    assert report["probe_curves"][3] == [0.0, 0.0, 1.0]
    # three probes of 3 epochs, then the chosen run continued for the remaining 4
    assert FakeRun.fits == [(4, 3), (5, 3), (3, 3), (("resume", 3), 4)]


def test_probe_score_is_the_mean_of_the_last_epochs() -> None:
    assert probe_score([0.9, 0.1, 0.2, 0.3]) == pytest.approx(0.2)  # an early spike does not count
    assert probe_score([0.4], last=3) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        probe_score([])


def test_ties_go_to_the_earlier_seed_and_given_probes_are_not_rerun() -> None:
    FakeRun.fits = []
    _det, report = fit_with_restarts(
        lambda s: FakeRun(s, {}),
        [],
        _val(),
        seeds=[8, 2],
        probes={8: [0.5], 2: [0.5]},
        probe_epochs=1,
        epochs=2,
    )
    assert report["chosen_seed"] == 8 and FakeRun.fits == [(8, 2)]  # given probes: trained from the start


def test_bad_input_fails_before_training() -> None:
    FakeRun.fits = []
    unlabelled = [Episode(np.zeros((5, 4, 4, 3), np.uint8), label=1)]
    with pytest.raises(ValueError, match="critical_steps"):
        fit_with_restarts(lambda s: FakeRun(s, {}), [], unlabelled, seeds=[0, 1])
    with pytest.raises(ValueError, match="distinct"):
        fit_with_restarts(lambda s: FakeRun(s, {}), [], _val(), seeds=[0, 0])
    with pytest.raises(ValueError, match="at least one"):
        fit_with_restarts(lambda s: FakeRun(s, {}), [], _val(), seeds=[])
    with pytest.raises(ValueError, match="probe_epochs"):
        probe_seed(lambda s: FakeRun(s, {}), 0, [], _val(), probe_epochs=0)
    with pytest.raises(ValueError, match="must be >= probe_epochs"):
        fit_with_restarts(lambda s: FakeRun(s, {}), [], _val(), seeds=[0], probe_epochs=5, epochs=3)
    assert FakeRun.fits == []


def test_with_dsi_the_continued_probe_equals_one_run() -> None:
    """The chosen probe is resumed exactly: the result equals one uninterrupted run of that seed."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    eps = [
        Episode(rng.integers(0, 256, (int(rng.integers(5, 9)), 24, 24, 3), dtype=np.uint8), label=i % 2)
        for i in range(8)
    ]
    val = [Episode(e.frames, label=1, metadata={"critical_steps": [1]}) for e in eps[:4]]
    curve = probe_seed(lambda s: DSI(**TINY, seed=s), 1, eps, val, probe_epochs=2)
    assert len(curve) == 2 and all(0.0 <= x <= 1.0 for x in curve)
    det, report = fit_with_restarts(
        lambda s: DSI(**TINY, seed=s), eps, val, seeds=[0, 1], probe_epochs=2, epochs=3, progress=False
    )
    assert report["probe_curves"][1] == [round(x, 4) for x in curve]
    reference = DSI(**TINY, seed=report["chosen_seed"]).fit(
        eps, epochs=3, seed=report["chosen_seed"], progress=False
    )
    np.testing.assert_allclose(det.score(eps[0].frames), reference.score(eps[0].frames), atol=1e-6)
