"""The what/where benchmark's summary: merged earlier runs and the seed-pair bootstrap of the ratio."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> object:
    spec = importlib.util.spec_from_file_location(
        "what_where_atari", ROOT / "benchmarks" / "what_where_atari.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(ww: list[float], nc: list[float]) -> list[dict[str, object]]:
    rows = []
    for name, vals in (("what-where", ww), ("nature-cnn", nc)):
        for seed, v in enumerate(vals):
            rows.append({"extractor": name, "game": "G", "steps": 10, "seed": seed, "eval_mean": v})
    return rows


def test_ratio_interval_brackets_the_ratio_and_pairs_seeds(bench: object) -> None:
    rng = np.random.default_rng(1)
    nc = list(rng.uniform(1000, 2000, size=8))
    ww = [0.5 * v for v in nc]  # what-where exactly half of NatureCNN on every seed
    lo, hi, n = bench.ratio_interval(_rows(ww, nc))  # type: ignore[attr-defined]
    assert n == 8
    # seed pairs are resampled together, so a constant per-seed ratio gives a degenerate interval
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    noisy = [v * f for v, f in zip(nc, rng.uniform(0.3, 1.1, size=8))]
    lo, hi, _ = bench.ratio_interval(_rows(noisy, nc))  # type: ignore[attr-defined]
    ratio = np.mean(noisy) / np.mean(nc)
    assert lo < ratio < hi and hi - lo > 0.05


def test_ratio_interval_ignores_seeds_run_with_one_extractor(bench: object) -> None:
    rows = _rows([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    rows.append({"extractor": "nature-cnn", "game": "G", "steps": 10, "seed": 9, "eval_mean": 1e6})
    lo, hi, n = bench.ratio_interval(rows)  # type: ignore[attr-defined]
    assert n == 3 and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_summary_only_merges_earlier_runs_and_refuses_repeats(
    bench: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    merged = tmp_path / "earlier.jsonl"
    merged.write_text("\n".join(json.dumps(r) for r in _rows([1.0, 3.0], [2.0, 4.0])) + "\n")
    out = tmp_path / "out"
    args = ["--out", str(out), "--game", "G", "--steps", "10", "--summary-only", "--merge", str(merged)]
    assert bench.main(args) == 0  # type: ignore[attr-defined]
    text = capsys.readouterr().out
    assert "what-where / NatureCNN (eval means): 0.67" in text
    assert "(2 seeds)" in text
    (out / "runs.jsonl").write_text(json.dumps(_rows([1.0], [2.0])[0]) + "\n")
    with pytest.raises(SystemExit, match="repeat runs"):
        bench.main(args)  # type: ignore[attr-defined]


def test_ww_kwargs_must_be_key_value(bench: object, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path), "--summary-only", "--ww-kwargs", "features_dim"])  # type: ignore[attr-defined]


def test_training_curve_table_reads_the_last_log_at_or_before_each_step(
    bench: object, tmp_path: Path
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    logs = {("what-where", 0): [(100, 1.0), (200, 3.0)], ("nature-cnn", 0): [(100, 2.0), (250, 4.0)]}
    for (name, seed), points in logs.items():
        writer = SummaryWriter(str(tmp_path / "tb" / f"{name}_seed{seed}_1"))
        for step, value in points:
            writer.add_scalar("rollout/ep_rew_mean", value, step)
        writer.close()
    rows = [{"extractor": n, "seed": s} for n, s in logs] + [
        {"extractor": "what-where", "seed": 5}
    ]  # 5: no log
    text = bench.training_curve_table(tmp_path, rows, [50, 150, 300])  # type: ignore[attr-defined]
    assert "| what-where | 0 | - | 1.00 | 3.00 |" in text
    assert "| nature-cnn | 0 | - | 2.00 | 4.00 |" in text
    assert "| what-where | 5 |" not in text
    assert "(seeds [0]): at 50: -, at 150: 0.50, at 300: 0.75" in text
