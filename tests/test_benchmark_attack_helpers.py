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


def test_spaced_ranking_takes_the_top_scores_at_least_gap_apart(bench: tuple[object, object]) -> None:
    _, lunar = bench
    led = np.array([0.1, 0.9, 0.8, 0.85, 0.2, 0.3, 0.7, 0.1, 0.05])  # one cluster at 1-3, a peak at 6
    r = lunar.spaced_ranking(led, 10, k=3, gap=3)  # the episode is one step longer than the led scores
    # 1 and 6 are taken; no third step is 3 apart from both, so the plain score order fills in (3)
    assert np.argsort(-r, kind="stable")[:3].tolist() == [1, 6, 3]
    assert r[1] > r[6] > 0 > max(np.delete(r, [1, 6]))
    assert np.isneginf(r[9])  # no score for the last step (beyond the led scores)
    dense = lunar.spaced_ranking(led, 9, k=3, gap=1)  # gap 1: the plain top-k
    assert sorted(np.argsort(-dense, kind="stable")[:3].tolist()) == [1, 2, 3]


def test_spaced_ranking_matches_the_library_method(bench: tuple[object, object]) -> None:
    """Run L3's `detector-spaced` (the benchmark's ranker) picks the steps `evaluate_attack`'s
    `detector-spaced` method picks (`critwrap.attack.spaced_top_k`), so its result applies to the latter."""
    from critwrap.attack import spaced_top_k

    _, lunar = bench
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(5, 80))
        k, gap = int(rng.integers(1, n + 1)), int(rng.integers(1, 8))
        led = rng.random(n).round(2)  # ties included
        r = lunar.spaced_ranking(led, n, k=k, gap=gap)
        assert sorted(np.argsort(-r, kind="stable")[:k].tolist()) == spaced_top_k(led, k, gap), trial
