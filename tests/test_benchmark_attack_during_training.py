"""benchmarks/attack_during_training.py (runs T-T4): the training-noise wrapper and a toy-scale run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minatar")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> object:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attack_during_training
    finally:
        sys.path.pop(0)
    return attack_during_training


def test_training_noise_replaces_an_action_by_a_different_one_at_the_given_rate(bench: object) -> None:
    from attack_minatar import make_env

    env = bench.random_action_noise(make_env(500, 0.1, "breakout"), 0.4, seed=0)  # type: ignore[attr-defined]
    actions = np.array([env.action(1) for _ in range(20_000)])
    share = np.bincount(actions, minlength=3) / len(actions)
    assert share[1] == pytest.approx(0.6, abs=0.02) and share[0] == pytest.approx(0.2, abs=0.02)
    assert {env.action(a) for a in range(3) for _ in range(5)} <= {0, 1, 2}
    quiet = bench.random_action_noise(make_env(500, 0.1, "breakout"), 0.0, seed=0)  # type: ignore[attr-defined]
    assert all(quiet.action(2) == 2 for _ in range(100))


def test_a_toy_run_tracks_the_attack_and_writes_its_results(
    bench: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from critwrap.detectors.baselines import RandomDetector

    RandomDetector(seed=0).save(tmp_path / "det")
    # the benchmark loads run M4's windowed DSI; a random detector stands in for it here
    monkeypatch.setattr(bench, "load_scorer", lambda path, windows: RandomDetector(seed=0))
    out = tmp_path / "out"
    argv = ["--out", str(out), "--dsi", str(tmp_path / "det"), "--steps", "2048", "--eval-every", "1024",
            "--episodes", "2", "--ks", "2", "5", "--train-random-actions", "0.2"]  # fmt: skip
    assert bench.main(argv) == 0  # type: ignore[attr-defined]
    result = json.loads((out / "results.json").read_text())
    assert set(result["summary"]) == {"2", "5"}
    assert [r["timesteps"] for r in result["summary"]["2"]] == [1024, 2048]
    assert result["settings"]["train_random_actions"] == 0.2
    assert (out / "attack_during_training.png").is_file() and (out / "k5" / "attack_eval.jsonl").is_file()
