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
    assert nstep.main(argv) == 0  # type: ignore[attr-defined]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {r["variant"] for r in summary["runs"]} == {"dqn", "nstep5", "critical"}
    crit = next(r for r in summary["runs"] if r["variant"] == "critical")
    assert crit["episodes_scored"] > 0 and len(crit["horizon_histogram"]["shares"]) == 5
