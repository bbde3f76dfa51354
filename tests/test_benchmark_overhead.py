"""Smoke tests of the overhead benchmarks (benchmarks/overhead.py, benchmarks/embed_call.py): they run,
measure both paths and write what the docs quote."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("scorer", ["none", "dsi"])
def test_overhead_rows_for_both_paths(scorer: str, tmp_path: Path) -> None:
    overhead = _load("overhead")
    out = tmp_path / "o.json"
    argv = ["--envs", "MiniGrid-Empty-5x5-v0", "--steps", "32", "--rounds", "1", "--n-envs", "2"]
    argv += ["--scorer", scorer, "--channels", "2", "2", "2", "2", "4", "--out", str(out)]
    assert overhead.main(argv) == 0
    data = json.loads(out.read_text())
    assert [r["path"] for r in data["rows"]] == ["per-env", "vec x2"]
    for r in data["rows"]:
        assert r["bare_steps_per_cpu_s"] > 0 and r["wrapped_steps_per_cpu_s"] > 0
        assert (r["scorer"] == "none (constant encoder)") == (scorer == "none")
    assert data["meta"]["device"] == "cpu" and "no GPU" in data["meta"]["machine"]


def test_embed_call_compares_the_two_paths_on_the_same_features(tmp_path: Path) -> None:
    embed_call = _load("embed_call")
    row = embed_call.measure((1, 1, 1, 1, 1), batch=2, calls=2, rounds=1, device="cpu")
    assert row["same_features"] is True
    assert row["ms_per_call_general"] > 0 and row["ms_per_call_shortcut"] > 0
