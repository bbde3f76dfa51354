"""Tests of the windowed detector (critwrap.detectors.windowed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from critwrap.detectors.base import Detector, load_detector
from critwrap.detectors.baselines import RandomDetector
from critwrap.detectors.dsi import DSI
from critwrap.detectors.windowed import Windowed, cut_windows
from critwrap.episodes import Episode


class Marker(Detector):
    """Scores every frame of a window by the window's first frame value, so overlaps average visibly."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def score(self, frames: np.ndarray) -> np.ndarray:
        return self.score_batch([frames])[0]

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.calls.append([len(e) for e in episodes])
        return [np.full(len(e), float(np.asarray(e)[0, 0]), dtype=np.float32) for e in episodes]


def test_each_frame_gets_the_mean_of_the_windows_that_cover_it() -> None:
    det = Windowed(Marker(), 4, 2)
    frames = np.arange(9, dtype=np.float32).reshape(9, 1)
    assert det.starts(9) == [0, 2, 4, 5]  # the last window aligned to the end
    s = det.score(frames)
    assert det.member.calls == [[4, 4, 4, 4]]  # type: ignore[attr-defined]
    # e.g. frame 5 lies in the windows starting at 2, 4 and 5
    assert np.allclose(s, [0, 0, 1, 1, 3, 11 / 3, 4.5, 4.5, 5])
    assert s.dtype == np.float32
    assert np.allclose(det.score(frames[:3]), [0, 0, 0])  # shorter than a window: one window
    assert Windowed(Marker(), 4).stride == 2  # default: width // 2


def test_score_batch_sends_every_window_of_every_episode_in_one_call() -> None:
    det = Windowed(Marker(), 4, 4)
    eps = [np.arange(n, dtype=np.float32).reshape(n, 1) for n in (9, 3, 8)]
    out = det.score_batch(eps)
    assert det.member.calls == [[4, 4, 4, 3, 4, 4]]  # type: ignore[attr-defined]
    assert [len(o) for o in out] == [9, 3, 8]
    for frames, scores in zip(eps, out, strict=True):
        assert np.allclose(scores, det.score(frames))


def test_round_trip_through_save_and_load_with_a_fitted_dsi(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    long = [Episode(rng.integers(0, 256, (30, 24, 24, 3), dtype=np.uint8), label=i % 2) for i in range(6)]
    clips = cut_windows(long, 10)
    assert len(clips) == 18 and all(len(c.observations) == 10 for c in clips)
    det = Windowed(DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8, batch_size=8), 10, 5)
    det.fit(clips, epochs=1, progress=False, seed=0)
    frames = long[0].observations
    before = det.score(frames)
    det.save(tmp_path / "w")
    back = load_detector(tmp_path / "w")
    assert isinstance(back, Windowed) and isinstance(back.member, DSI)
    assert (back.width, back.stride) == (10, 5)
    assert np.allclose(back.score(frames), before, atol=1e-6)
    assert np.allclose(back.embed(frames), det.member.embed(frames), atol=1e-6)
    # the windowed scores are not the whole-episode scores: the member sees 10-frame clips
    assert not np.allclose(before, det.member.score(frames), atol=1e-3)


def test_a_member_without_registry_name_scores_but_cannot_be_saved(tmp_path: Path) -> None:
    det = Windowed(Marker(), 2)
    det.score(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="registry_name"):
        det.save(tmp_path / "x")


@pytest.mark.parametrize(
    ("width", "stride", "match"),
    [(0, None, "width"), (2.5, None, "width"), (4, 0, "stride"), (4, 5, "stride"), (True, None, "width")],
)
def test_bad_width_or_stride_is_refused(width: Any, stride: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Windowed(RandomDetector(seed=0), width, stride)


def test_a_member_that_returns_the_wrong_number_of_scores_is_caught() -> None:
    class Short(Marker):
        def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
            return [np.zeros(len(e) - 1, dtype=np.float32) for e in episodes]

    with pytest.raises(ValueError, match="scores for a window"):
        Windowed(Short(), 4).score(np.zeros((6, 1)))


def test_cut_windows_slices_observations_rewards_and_labels() -> None:
    ep = Episode(np.arange(7)[:, None], rewards=np.arange(7, dtype=np.float32), label=1)
    wins = cut_windows([ep], 3)
    # disjoint by default, the last one aligned to the end so that frame 6 is not left out
    assert [w.metadata["window"] for w in wins] == [[0, 3], [3, 6], [4, 7]]
    assert np.array_equal(wins[1].rewards, [3, 4, 5]) and all(w.label == 1 for w in wins)
    wins = cut_windows([ep], 3, stride=2, label=lambda e, s, t: int(t == 7))
    assert [w.metadata["window"] for w in wins] == [[0, 3], [2, 5], [4, 7]]
    assert [w.label for w in wins] == [0, 0, 1]
    assert len(cut_windows([Episode(np.zeros((2, 1)), label=0)], 5)) == 1  # short: one window
    with pytest.raises(ValueError, match="no label"):
        cut_windows([np.zeros((4, 1))], 2)  # plain arrays need label=
    unlabelled = cut_windows([Episode(np.arange(4)[:, None], rewards=np.ones(4, dtype=np.float32))], 2)
    assert [w.label for w in unlabelled] == [None, None]
    assert [w.episode_return for w in unlabelled] == [2.0, 2.0]  # the return within each window
    assert [w.label for w in cut_windows([np.zeros((5, 1))], 2, label=lambda e, s, t: s)] == [0, 2, 3]
    with pytest.raises(ValueError, match="width"):
        cut_windows([ep], 0)


def test_fit_on_windows_cuts_whole_episodes_into_clips_for_the_member(tmp_path: Path) -> None:
    class Recorder(Marker):
        registry_name = ""

        def fit(self, episodes: Any, **kwargs: Any) -> Recorder:
            self.seen = [len(e.observations) for e in episodes]
            self.val = [len(e.observations) for e in kwargs.get("val_episodes") or []]
            return self

    eps = [Episode(np.zeros((n, 1)), label=1) for n in (9, 3)]
    plain = Windowed(Recorder(), 4).fit(eps)
    assert plain.member.seen == [9, 3]  # type: ignore[attr-defined]
    cut = Windowed(Recorder(), 4, fit_on_windows=True).fit(eps, val_episodes=eps[:1])
    assert cut.member.seen == [4, 4, 4, 3] and cut.member.val == [4, 4, 4]  # type: ignore[attr-defined]
    det = Windowed(RandomDetector(seed=0), 4, fit_on_windows=True)
    det.save(tmp_path / "w")
    assert load_detector(tmp_path / "w").fit_on_windows is True  # type: ignore[attr-defined]


class LooksLate(Detector):
    """A clip detector with a positional prior: each frame scores its position in the clip (0 .. 1), plus
    2 on a planted frame (value 1 in the frame)."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        return self.score_batch([frames])[0]

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for e in episodes:
            e = np.asarray(e, dtype=np.float64).reshape(len(e), -1)
            out.append((np.linspace(0, 1, len(e)) * (len(e) > 1) + 2 * e[:, 0]).astype(np.float32))
        return out


def test_position_profile_removes_the_end_of_episode_artifact() -> None:
    frames = np.zeros((60, 1), dtype=np.float32)
    frames[25] = 1  # the one frame that matters
    det = Windowed(LooksLate(), 10)
    # averaged as they are, the positional prior cancels inside the episode but not at its end: the last
    # frames are covered only by the end-aligned window, in its late positions
    raw = det.score(frames)
    assert int(np.argmax(raw)) == 25
    assert set(np.argsort(-raw, kind="stable")[:3].tolist()) >= {59, 58}
    det.fit_position_profile([np.zeros((40, 1)), np.zeros((5, 1))])  # the short episode is skipped
    assert np.allclose(det.position_profile, np.linspace(0, 1, 10))  # type: ignore[arg-type]
    fixed = det.score(frames)
    assert np.argsort(-fixed, kind="stable")[0] == 25
    assert np.allclose(np.delete(fixed, 25), 0, atol=1e-6)  # no frame is ranked by its position any more


def test_position_profile_is_saved_and_checked(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    eps = [rng.integers(0, 256, (25, 24, 24, 3), dtype=np.uint8) for _ in range(2)]
    dsi = DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8, batch_size=8)
    dsi.fit([Episode(e[:10], label=i) for i, e in enumerate(eps)], epochs=1, progress=False, seed=0)
    det = Windowed(dsi, 10).fit_position_profile(eps)
    assert det.position_profile is not None and det.position_profile.shape == (10,)
    before = det.score(eps[0])
    det.save(tmp_path / "w")
    back = load_detector(tmp_path / "w")
    assert isinstance(back, Windowed) and np.allclose(back.position_profile, det.position_profile)  # type: ignore[arg-type]
    assert np.allclose(back.score(eps[0]), before, atol=1e-6)
    with pytest.raises(ValueError, match="width=10 finite numbers"):
        Windowed(dsi, 10, position_profile=[0.0] * 9)
    with pytest.raises(ValueError, match="at least width=10 frames"):
        Windowed(dsi, 10).fit_position_profile([eps[0][:5]])
