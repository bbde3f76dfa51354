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


def test_overhead_writes_its_rows_after_every_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped by a time limit keeps the envs it finished: the file exists, marked incomplete,
    after the first env, and is complete after the last."""
    overhead = _load("overhead")
    out = tmp_path / "o.json"
    seen: list[dict] = []
    real = overhead.measure_env

    def spy(env_id: str, *args: object, **kwargs: object) -> list:
        if out.exists():
            seen.append(json.loads(out.read_text()))
        return real(env_id, *args, **kwargs)

    monkeypatch.setattr(overhead, "measure_env", spy)
    argv = ["--envs", "MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0", "--steps", "16", "--rounds", "1"]
    argv += ["--n-envs", "2", "--scorer", "none", "--paths", "vec", "--out", str(out)]
    assert overhead.main(argv) == 0
    assert len(seen) == 1  # written after the first env, before the second ran
    assert seen[0]["meta"]["complete"] is False and [r["env"] for r in seen[0]["rows"]] == [
        "MiniGrid-Empty-5x5-v0"
    ]
    final = json.loads(out.read_text())
    assert final["meta"]["complete"] is True and len(final["rows"]) == 2
