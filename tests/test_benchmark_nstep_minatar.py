"""benchmarks/nstep_minatar.py: its frames match the detector's training frames; a toy-scale run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minatar")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> tuple[object, object]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attack_minatar
        import nstep_minatar
    finally:
        sys.path.pop(0)
    return attack_minatar, nstep_minatar


def test_buffer_frames_are_the_attack_benchmarks_frames(bench: tuple[object, object]) -> None:
    attack, nstep = bench
    obs = np.random.default_rng(0).random((5, 10, 10, 4)) < 0.2
    batch = nstep.scale_frames(obs)  # type: ignore[attr-defined]
    assert batch.shape == (5, 30, 30, 4) and batch.dtype == np.uint8
    for t in range(5):
        np.testing.assert_array_equal(batch[t], attack.frame(None, obs[t]))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_nstep_minatar_runs_every_variant(tmp_path: Path, bench: tuple[object, object]) -> None:
    from critwrap.detectors.baselines import RandomDetector

    _, nstep = bench
    det = RandomDetector(seed=0).save(tmp_path / "det")
    argv = ["--out", str(tmp_path / "out"), "--detector", str(det), "--timesteps", "5200", "--seeds", "0"]
    argv += ["--eval-episodes", "1", "--workers", "1", "--buffer-size", "6000"]
    argv += ["--variants", "dqn,nstep5,critical,randhorizon"]
    assert nstep.main(argv) == 0  # type: ignore[attr-defined]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {r["variant"] for r in summary["runs"]} == {"dqn", "nstep5", "critical", "randhorizon"}
    crit = next(r for r in summary["runs"] if r["variant"] == "critical")
    assert crit["episodes_scored"] > 0 and len(crit["horizon_histogram"]["shares"]) == 5


def test_random_horizon_control_draws_the_mix_and_stops_at_episode_ends(bench: tuple[object, object]) -> None:
    import gymnasium as gym

    _, nstep = bench
    cls = nstep._random_horizon_buffer_class()  # type: ignore[attr-defined]
    space = gym.spaces.Box(0, 1, (2,), dtype=np.float32)
    shares = (0.5, 0.0, 0.0, 0.0, 0.5)
    buf = cls(4000, space, gym.spaces.Discrete(2), device="cpu", n_max=5, shares=shares, horizon_seed=1)
    for t in range(3000):
        done = np.array([t % 100 == 99])
        buf.add(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 1)), np.ones(1), done, [{}])
    inds = np.arange(2990)
    n = buf.horizons(inds, np.zeros(len(inds), dtype=np.int64))
    to_end = 100 - inds % 100  # steps left in the episode, this one included
    assert np.all(n <= to_end)
    free = to_end >= 5  # far from an end: only the drawn values 1 and 5
    assert set(np.unique(n[free])) == {1, 5}
    assert abs(np.mean(n[free] == 5) - 0.5) < 0.05
    with pytest.raises(ValueError, match="shares"):
        cls(100, space, gym.spaces.Discrete(2), device="cpu", n_max=5, shares=(1.0, 0.0))


def test_run_b_detector_is_committed_and_scores_buffer_frames(bench: tuple[object, object]) -> None:
    """Run B's detector (run M's DSI) ships in benchmarks/data, so run B reproduces from a fresh clone."""
    from critwrap.detectors.base import load_detector

    _, nstep = bench
    det = load_detector(ROOT / "benchmarks" / "data" / "attack_minatar_M" / "dsi")
    obs = np.random.default_rng(0).random((12, 10, 10, 4)) < 0.2
    scores = np.asarray(det.score(nstep.scale_frames(obs)))  # type: ignore[attr-defined]
    assert scores.shape == (12,) and np.all(np.isfinite(scores))


def test_critical_variant_needs_a_detector(bench: tuple[object, object], tmp_path: Path) -> None:
    _, nstep = bench
    with pytest.raises(SystemExit):
        nstep.main(["--out", str(tmp_path), "--variants", "critical"])  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        nstep.main(["--out", str(tmp_path), "--detector", str(tmp_path / "missing")])  # type: ignore[attr-defined]


@pytest.mark.slow
def test_nstep_minatar_seaquest_runs_without_a_detector(tmp_path: Path, bench: tuple[object, object]) -> None:
    _, nstep = bench
    argv = ["--out", str(tmp_path), "--game", "seaquest", "--variants", "dqn", "--timesteps", "5200"]
    argv += ["--seeds", "0", "--eval-episodes", "1", "--workers", "1", "--buffer-size", "6000"]
    assert nstep.main(argv) == 0  # type: ignore[attr-defined]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["game"] == "seaquest" and summary["runs"][0]["variant"] == "dqn"
