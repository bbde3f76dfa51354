"""benchmarks/attack_minatar.py: its frames, the determinism the replay protocol needs, and a toy-scale run."""

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
        import attack_minatar
    finally:
        sys.path.pop(0)
    return attack_minatar


def test_frames_scale_each_cell_to_a_block(bench: object) -> None:
    obs = np.zeros((10, 10, 4), dtype=bool)
    obs[9, 2, 0] = True  # the paddle's cell
    f = bench.frame(None, obs)  # type: ignore[attr-defined]
    assert f.shape == (30, 30, 4) and f.dtype == np.uint8
    assert (f[27:30, 6:9, 0] == 255).all() and f.sum() == 9 * 255


def test_games_replay_exactly_without_sticky_actions_and_differ_across_seeds(bench: object) -> None:
    env = bench.make_env(200)  # type: ignore[attr-defined]

    def game(seed: int, actions: np.ndarray) -> list[bytes]:
        obs, _ = env.reset(seed=seed)
        seen = [obs.tobytes()]
        for a in actions:
            obs, _, term, trunc, _ = env.step(int(a))
            seen.append(obs.tobytes())
            if term or trunc:
                break
        return seen

    actions = np.random.default_rng(0).integers(0, 3, size=200)
    assert game(1, actions) == game(1, actions)
    starts = {game(s, actions[:1])[0] for s in range(20)}
    assert len(starts) > 1  # the ball's start depends on the seed


@pytest.mark.slow
def test_attack_minatar_pipeline_runs(tmp_path: Path, bench: object) -> None:
    argv = ["--out", str(tmp_path), "--ppo-steps", "1024", "--data-episodes", "8", "--max-steps", "80"]
    argv += [
        "--data-epsilon",
        "1.0,0.5",
        "--check-episodes",
        "2",
        "--dsi-epochs",
        "1",
        "--dsi-channels",
        "4,4,4,4,4",
        "--dsi-lstm",
        "4",
    ]
    argv += ["--episodes", "2", "--ks", "1", "2", "--jobs", "1", "--chunk", "1"]
    assert bench.main(argv) == 0  # type: ignore[attr-defined]
    out = json.loads((tmp_path / "results.json").read_text())
    assert [r["k"] for r in out["reports"]] == [1, 2]
    for report in out["reports"]:
        rows = {r["method"]: r for r in report["table"]}
        assert set(rows) == {"clean", "detector", "random", "victim", "block", "detector-spaced"}
        assert all(rows[m]["mean_perturbed_steps"] <= report["k"] for m in rows if m != "clean")
    assert json.loads((tmp_path / "data.json").read_text())["games"] == 16  # 8 per epsilon
