"""Smoke test of benchmarks/attack_atari.py at toy scale (slow: trains a tiny PPO victim and a DSI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_attack_atari_pipeline_runs_and_resumes(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attack_atari
    finally:
        sys.path.pop(0)
    argv = ["--out", str(tmp_path), "--ppo-steps", "1024", "--data-episodes", "3", "--max-steps", "120"]
    argv += [
        "--window",
        "40",
        "--dsi-epochs",
        "1",
        "--episodes",
        "2",
        "--ks",
        "3",
        "5",
        "--jobs",
        "1",
        "--chunk",
        "1",
    ]
    assert attack_atari.main(argv) == 0
    out = json.loads((tmp_path / "results.json").read_text())
    assert [r["k"] for r in out["reports"]] == [3, 5]
    for report in out["reports"]:
        rows = {r["method"]: r for r in report["table"]}
        assert set(rows) == {"clean", "detector", "random", "victim"}
        assert all(rows[m]["mean_perturbed_steps"] <= report["k"] for m in ("detector", "random", "victim"))
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 4  # 2 seeds x 2 values of k
    # a second call reuses every stage and adds no episodes
    assert attack_atari.main(argv) == 0
    assert (tmp_path / "episodes.jsonl").read_text().splitlines() == lines
