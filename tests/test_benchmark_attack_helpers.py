"""Fast checks of the attack benchmarks' helpers (argument parsing, paired statistics)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> tuple[object, object]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attack_atari
        import attack_lunar
    finally:
        sys.path.pop(0)
    return attack_atari, attack_lunar


def test_data_epsilons_parse_one_or_several_and_refuse_bad_values(bench: tuple[object, object]) -> None:
    _, lunar = bench
    assert lunar.data_epsilons("0.25") == [0.25]
    assert lunar.data_epsilons("0.25,0.5") == [0.25, 0.5]
    for bad in ("", "x", "0.3,x", "1.5", "-0.1", "0.25,0.25"):
        with pytest.raises(SystemExit, match="--data-epsilon"):
            lunar.data_epsilons(bad)


def test_paired_diff_is_the_difference_of_drops_with_a_bootstrap_ci(bench: tuple[object, object]) -> None:
    atari, _ = bench
    rng = np.random.default_rng(0)
    ret_control = rng.normal(100.0, 5.0, size=400)
    ret_detector = ret_control - 10.0 + rng.normal(0.0, 1.0, size=400)  # the detector costs 10 more
    idx = rng.integers(0, 400, size=(2000, 400))
    d = atari.paired_diff(ret_control, ret_detector, idx)
    assert d["diff"] == pytest.approx(np.mean(ret_control - ret_detector))
    assert 9.5 < d["diff_ci_low"] < d["diff"] < d["diff_ci_high"] < 10.5
    same = atari.paired_diff(ret_control, ret_control.copy(), idx)  # no difference: a CI of zero width at 0
    assert same["diff"] == 0.0 and same["diff_ci_low"] == 0.0 and same["diff_ci_high"] == 0.0


def test_paired_ratio_is_marked_undefined_when_the_denominator_drop_is_not_positive(
    bench: tuple[object, object],
) -> None:
    atari, _ = bench
    rng = np.random.default_rng(0)
    clean = rng.normal(30.0, 1.0, size=50)
    idx = rng.integers(0, 50, size=(200, 50))
    # a detector costing 4 points against a random-k costing 2: ratio about 2, defined
    v = atari.paired_ratio(clean, clean - 4.0, clean - 2.0, idx)
    assert v["defined"] and v["ratio"] == pytest.approx(2.0)
    assert atari.format_ratio(v) == "2.00 [2.00, 2.00]"
    # random-k raised the score: the ratio is not a meaningful number and must not print as one
    v = atari.paired_ratio(clean, clean - 4.0, clean + 1.0, idx)
    assert not v["defined"] and atari.format_ratio(v).startswith("n/a")
