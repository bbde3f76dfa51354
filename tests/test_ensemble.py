"""MeanEnsemble: averaging, save / load through the registry, member selection on validation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from critwrap import registry
from critwrap.detectors.base import Detector, DetectorFormatError, load_detector
from critwrap.detectors.baselines import RandomDetector
from critwrap.detectors.dsi import DSI
from critwrap.detectors.ensemble import MeanEnsemble, select_members
from critwrap.episodes import Episode

TINY = {"channels": (4, 8, 8, 8, 8), "lstm_hidden": 8, "batch_size": 4}


class Planted(Detector):
    """Scores 1 at the given steps, 0 elsewhere (a perfect or a wrong detector, by construction)."""

    registry_name = ""

    def __init__(self, steps: list[int]) -> None:
        self.steps = steps

    def score(self, frames: np.ndarray) -> np.ndarray:
        s = np.zeros(len(frames))
        s[[t for t in self.steps if t < len(frames)]] = 1.0
        return s


def test_scores_are_the_mean_of_the_members() -> None:
    frames = np.zeros((7, 4, 4, 3), dtype=np.uint8)
    members = [RandomDetector(seed=s) for s in range(3)]
    expected = np.mean([RandomDetector(seed=s).score(frames) for s in range(3)], axis=0)
    ens = MeanEnsemble(members)
    np.testing.assert_allclose(ens.score(frames), expected)
    batch = [np.zeros((n, 4, 4, 3), dtype=np.uint8) for n in (3, 5)]
    again = MeanEnsemble([RandomDetector(seed=s) for s in range(3)])
    got = again.score_batch(batch)
    want = [
        np.mean([RandomDetector(seed=s).score_batch(batch)[i] for s in range(3)], axis=0) for i in range(2)
    ]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w)
    assert registry.resolve("detectors", "ensemble") is MeanEnsemble


def test_fit_save_load_round_trip_of_dsi_members(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    eps = [
        Episode(rng.integers(0, 256, (int(rng.integers(5, 9)), 24, 24, 3), dtype=np.uint8), label=i % 2)
        for i in range(8)
    ]
    ens = MeanEnsemble([DSI(**TINY, seed=0), DSI(**TINY, seed=1)]).fit(eps, epochs=1, progress=False)
    a, b = ens.members
    assert not np.allclose(a.score(eps[0].frames), b.score(eps[0].frames))  # two different runs
    ens.save(tmp_path / "ens")
    cfg = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert cfg["detector"] == "ensemble" and [m["detector"] for m in cfg["config"]["members"]] == [
        "dsi",
        "dsi",
    ]
    loaded = load_detector(tmp_path / "ens")
    assert isinstance(loaded, MeanEnsemble)
    for e in eps[:3]:
        np.testing.assert_allclose(loaded.score(e.frames), ens.score(e.frames), atol=1e-6)
    assert loaded.embed(eps[0].frames).shape[0] == len(eps[0].frames)
    assert loaded.embed(eps[0].frames).shape[1] == 2 * a.embed(eps[0].frames).shape[1]
    with pytest.raises(DetectorFormatError, match="not a DSI"):
        DSI.load(tmp_path / "ens")


def test_select_members_keeps_the_best_on_validation() -> None:
    frames = [np.zeros((10, 2, 2, 3), dtype=np.uint8) for _ in range(4)]
    truth = [[2], [2], [2], [5]]
    good, bad, some = Planted([2]), Planted([8]), Planted([5])
    chosen, precision = select_members([bad, good, some], frames, truth, keep=2)
    assert chosen == [1, 2]
    assert precision == pytest.approx([0.0, 0.75, 0.25])
    with pytest.raises(ValueError, match="keep must be between 1 and 3"):
        select_members([bad, good, some], frames, truth, keep=4)


def test_bad_members_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        MeanEnsemble([])
    with pytest.raises(TypeError, match="must be a Detector or a dict"):
        MeanEnsemble([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="has no registry_name"):
        MeanEnsemble([Planted([1])])
    ens = MeanEnsemble([RandomDetector(seed=0)])
    with pytest.raises(DetectorFormatError, match="belongs to no member"):
        ens._set_state({"m3/x": np.zeros(1)})


def test_select_members_by_validation_f1_with_lookahead() -> None:
    frames = [np.zeros((10, 2, 2, 3), dtype=np.uint8) for _ in range(3)]
    truth = [[2], [2], [2]]
    late, wrong = Planted([3]), Planted([8])  # one step after the critical step / far from it
    chosen, f1 = select_members([wrong, late], frames, truth, keep=1, by="f1", T=1)
    assert chosen == [1] and f1[1] == pytest.approx(2 / 3)  # T = 1: predicted within 1, but 2 itself missed
    chosen, f1 = select_members([wrong, late], frames, truth, keep=1, by="f1", T=1, lookaheads=(0, 1))
    assert chosen == [1] and f1[1] == pytest.approx(1.0)
    assert f1[0] < 0.5
    with pytest.raises(ValueError, match="by must be"):
        select_members([late], frames, truth, keep=1, by="auc")
