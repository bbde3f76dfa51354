"""Epoch selection on validation (critwrap.detectors.selection.BestEpoch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from critwrap.detectors.dsi import DSI
from critwrap.detectors.selection import BestEpoch, validation_figure
from critwrap.episodes import Episode


class FakeRun:
    """Ranks the planted last frame first only at epoch ``good``; its 'weights' are the epoch number."""

    def __init__(self, good: int) -> None:
        self.good, self.epoch = good, -1

    def fit(self, episodes: Any, epochs: int, callback: Any) -> FakeRun:
        for e in range(epochs):
            self.epoch = e
            if callback(self, {"epoch": float(e)}) is False:
                break
        return self

    def score_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for f in frames:
            s = np.linspace(1.0, 0.0, len(f))  # marks the first frames: wrong
            if self.epoch == self.good:
                s = np.zeros(len(f))
                s[-1] = 1.0
            out.append(s)
        return out

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"epoch": np.array([self.epoch])}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.epoch = int(state["epoch"][0])


def _val(n: int = 5, length: int = 12) -> list[Episode]:
    eps = [
        Episode(np.zeros((length, 4, 4, 3), np.uint8), label=1, metadata={"critical_steps": [length - 1]})
        for _ in range(n)
    ]
    return [*eps, Episode(np.zeros((length, 4, 4, 3), np.uint8), label=0)]  # a failure: ignored


@pytest.mark.parametrize("by", ["top-m", "f1"])
def test_the_best_epoch_is_kept_and_restored(by: str) -> None:
    best = BestEpoch(_val(), by=by)
    run = FakeRun(good=2).fit(None, epochs=5, callback=best)
    assert run.epoch == 4 and len(best.curve) == 5
    assert best.best_epoch == 2 and best.best_score == pytest.approx(1.0)
    assert max(best.curve) == best.curve[2] and best.curve[0] < 1.0
    best.restore(run)
    assert run.epoch == 2


def test_a_chained_callback_still_stops_training() -> None:
    best = BestEpoch(_val(), then=lambda det, rec: rec["epoch"] < 1)  # False after epoch 1
    run = FakeRun(good=0).fit(None, epochs=5, callback=best)
    assert run.epoch == 1 and len(best.curve) == 2


def test_bad_input_is_refused_before_training() -> None:
    with pytest.raises(ValueError, match="critical_steps"):
        BestEpoch([Episode(np.zeros((3, 4, 4, 3), np.uint8), label=1)])
    with pytest.raises(ValueError, match="by must be"):
        BestEpoch(_val(), by="accuracy")
    with pytest.raises(RuntimeError, match="no epoch"):
        BestEpoch(_val()).restore(FakeRun(0))


def test_with_dsi_the_restored_weights_give_the_best_figure() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    eps = []
    for i in range(16):
        frames = np.full((10, 24, 24, 3), 40, np.uint8)
        t = int(rng.integers(0, 10))
        frames[t, 5:15, 5:15] = 255 if i % 2 else 90
        eps.append(Episode(frames, label=i % 2, metadata={"critical_steps": [t]}))
    best = BestEpoch(eps[:6])
    det = DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8, batch_size=8)
    det.fit(eps, epochs=3, progress=False, seed=0, callback=best)
    assert len(best.curve) == 3 and [h["val_select_top-m"] for h in det.history] == pytest.approx(
        best.curve, abs=1e-4
    )
    best.restore(det)
    again = validation_figure(det.score_batch(best.frames), best.truth)
    assert again == pytest.approx(best.best_score)
