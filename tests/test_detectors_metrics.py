"""F1@T, threshold choice, top-m precision and the all-frames baseline, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from critwrap.detectors.metrics import (
    DEFAULT_THRESHOLDS,
    F1Counts,
    all_frames_f1,
    choose_threshold,
    f1_at_t,
    f1_counts,
    f1_report,
    top_m_precision,
)


def _official_evaluate(
    outputs: list[np.ndarray], labels: list[np.ndarray], threshold: float, tolerance: int
) -> float:
    """The frame loop of the official evaluation (test.py of VideoRLCS), without its 1e-8 smoothing."""
    tp = fp = fn = 0
    for output, label in zip(outputs, labels):
        for t in range(len(label)):
            lo, hi = max(0, t - tolerance), min(len(label), t + tolerance + 1)
            if output[t] < threshold:
                if label[t] != 0:
                    fn += 1
            elif np.mean(label[lo:hi]) > 0:
                tp += 1
            else:
                fp += 1
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def test_hand_computed_single_episode() -> None:
    # true 3, 9; predicted 2, 5, 9.  T=1: TP {2, 9}, FP {5}, FN {3} -> P = R = 2/3.
    c = f1_counts([2, 5, 9], [3, 9], T=1)
    assert (c.tp, c.fp, c.fn) == (2, 1, 1)
    assert f1_at_t([2, 5, 9], [3, 9], T=1) == pytest.approx(2 / 3)
    # T=2: 5 is within 2 of 3 -> TP 3, FP 0, FN 1 -> P = 1, R = 3/4, F1 = 6/7.
    assert f1_at_t([2, 5, 9], [3, 9], T=2) == pytest.approx(6 / 7)
    # T=0: only exact hits: TP {9}, FP {2, 5}, FN {3} -> P = 1/3, R = 1/2, F1 = 2/5.
    assert f1_at_t([2, 5, 9], [3, 9], T=0) == pytest.approx(0.4)


def test_recall_counts_unpredicted_true_steps_even_when_a_neighbour_is_predicted() -> None:
    # Predictions 4, 5, 6 around a single true step 5 that is predicted: TP 3, FN 0.
    assert f1_at_t([4, 5, 6], [5], T=1) == pytest.approx(1.0)
    # Predictions 4, 6 (not 5): both TP, but 5 itself is an FN -> P = 1, R = 2/3, F1 = 0.8.
    assert f1_at_t([4, 6], [5], T=1) == pytest.approx(0.8)


def test_degenerate_cases() -> None:
    assert f1_at_t([], [3], T=1) == 0.0
    assert f1_at_t([1, 2], [], T=1) == 0.0
    assert f1_at_t([], [], T=1) == 0.0
    with pytest.raises(ValueError, match="non-negative integer"):
        f1_at_t([1.5], [1], T=1)
    with pytest.raises(ValueError, match="T must be"):
        f1_at_t([1], [1], T=-1)


def test_micro_sums_counts_macro_averages_episodes() -> None:
    preds = [[2, 5, 9], [0]]
    trues = [[3, 9], [7]]
    # ep1 T=1: (2, 1, 1); ep2: (0, 1, 1) -> total (2, 2, 2): P = R = 1/2.
    assert f1_at_t(preds, trues, T=1) == pytest.approx(0.5)
    assert f1_at_t(preds, trues, T=1, average="macro") == pytest.approx((2 / 3 + 0.0) / 2)
    assert F1Counts(2, 1, 1) + F1Counts(0, 1, 1) == F1Counts(2, 2, 2)
    with pytest.raises(ValueError, match="episodes"):
        f1_at_t([[1]], [[1], [2]], T=1)


def test_matches_the_official_frame_loop_on_random_data() -> None:
    rng = np.random.default_rng(0)
    outputs, labels, trues = [], [], []
    for _ in range(30):
        n = int(rng.integers(5, 40))
        out = rng.random(n)
        lab = (rng.random(n) < 0.15).astype(int)
        outputs.append(out)
        labels.append(lab)
        trues.append(np.flatnonzero(lab).tolist())
    for T in (0, 1, 2, 3):
        for th in DEFAULT_THRESHOLDS:
            preds = [np.flatnonzero(o >= th) for o in outputs]
            assert f1_at_t(preds, trues, T) == pytest.approx(_official_evaluate(outputs, labels, th, T))


def test_all_frames_baseline_hand_computed() -> None:
    # One episode of 10 frames, true steps 3 and 9, T=1: frames within 1 of a truth: 2,3,4,8,9 -> P = 1/2, R = 1.
    assert all_frames_f1([10], [[3, 9]], T=1) == pytest.approx(2 * 0.5 / 1.5)
    # T=0: P = 2/10, R = 1 -> F1 = 1/3.
    assert all_frames_f1([10], [[3, 9]], T=0) == pytest.approx(1 / 3)


def test_choose_threshold_picks_the_best_and_first_on_ties() -> None:
    scores = [np.array([0.1, 0.2, 0.9, 0.3, 0.1]), np.array([0.8, 0.1, 0.1, 0.1])]
    trues = [[2], [0]]
    th, f1 = choose_threshold(scores, trues, T=0, grid=[0.0, 0.5, 0.55, 0.85, 0.95])
    # 0.5 and 0.55 both give the two exact hits and nothing else (F1 = 1): the first wins. 0.85 misses
    # step 0 of episode 2 (F1 2/3), 0.0 predicts everything (P 2/9, F1 4/11).
    assert th == 0.5 and f1 == pytest.approx(1.0)
    assert choose_threshold(scores, trues, T=0, grid=[0.85, 0.0])[1] == pytest.approx(2 / 3)
    th, f1 = choose_threshold(scores, trues, T=0, grid=[0.95, 0.0])
    assert th == 0.0 and f1 == pytest.approx(all_frames_f1([5, 4], trues, T=0))
    with pytest.raises(ValueError, match="past"):
        choose_threshold([np.zeros(3)], [[5]], T=1)


def test_top_m_precision_hand_computed() -> None:
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.0, 0.7])
    # m = 2 true steps (2, 5): top-2 frames are 1 and 3 -> both within 1 of step 2.
    assert top_m_precision(scores, [2, 5], tol=1) == 1.0
    # tol 0: neither 1 nor 3 is a true step.
    assert top_m_precision(scores, [2, 5], tol=0) == 0.0
    # m = 1 (true step 0): top-1 frame is 1, within 1 -> 1.0; true step 4: frame 1 is 3 away -> 0.
    assert top_m_precision(scores, [0], tol=1) == 1.0
    assert top_m_precision(scores, [4], tol=1) == 0.0
    assert math.isnan(top_m_precision(scores, [], tol=1))
    # Many episodes: mean over episodes with a true step (the empty one is skipped).
    assert top_m_precision([scores, scores, scores], [[2, 5], [4], []], tol=1) == pytest.approx(0.5)


def test_report_has_the_figures() -> None:
    rng = np.random.default_rng(1)
    trues = [[3, 10], [5]]
    scores = [rng.random(15), rng.random(12)]
    for s, t in zip(scores, trues):
        s[t] = 1.0
    rep = f1_report(scores, trues, scores, trues, tolerances=(1,))
    row = rep["per_T"][1]
    assert row["test_f1"] == pytest.approx(row["best_test_f1_oracle_threshold"])
    assert row["test_f1"] > row["all_frames_f1"]
    assert rep["top_m_precision"] == 1.0


def test_lookahead_takes_the_maximum_over_the_next_steps() -> None:
    from critwrap.detectors.metrics import lookahead

    s = np.array([0.1, 0.2, 0.9, 0.3])
    np.testing.assert_allclose(lookahead(s, 0), s)
    np.testing.assert_allclose(lookahead(s, 1), [0.2, 0.9, 0.9, 0.3])
    np.testing.assert_allclose(lookahead(s, 2), [0.9, 0.9, 0.9, 0.3])
    np.testing.assert_allclose(lookahead([0.5, 0.1], 1), [0.5, 0.1])  # a plain list is one episode
    both = lookahead([s, np.array([0.0, 1.0])], 1)  # a list of episodes of different lengths
    assert len(both) == 2
    np.testing.assert_allclose(both[1], [1.0, 1.0])
    rows = lookahead(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), 1)  # a 2-D array: one episode per row
    np.testing.assert_allclose(rows[0], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(rows[1], [1.0, 0.0, 0.0])
    assert lookahead(np.array([]), 3).shape == (0,)
    with pytest.raises(ValueError, match=">= 0"):
        lookahead(s, -1)


def test_f1_report_chooses_the_lookahead_on_validation() -> None:
    # the detector marks the step AFTER each true critical step (offset +1)
    trues = [[3], [5], [2, 7]]
    late = [np.zeros(10) for _ in trues]
    for s, t in zip(late, trues):
        s[[x + 1 for x in t]] = 1.0
    plain = f1_report(late, trues, late, trues, tolerances=(1,))
    assert plain["per_T"][1]["lookahead"] == 0
    # T = 1: every prediction is within 1 step (TP) but no true step is itself predicted: P = 1, R = 1/2
    assert plain["per_T"][1]["test_f1"] == pytest.approx(2 / 3)
    ahead = f1_report(late, trues, late, trues, tolerances=(1,), lookaheads=(0, 1, 2))
    assert ahead["per_T"][1]["lookahead"] == 1  # 1 and 2 both reach F1 1 on validation: the smaller wins
    assert ahead["per_T"][1]["test_f1"] == pytest.approx(1.0)
    # on validation episodes where the detector is on time, no lookahead is chosen, whatever the test set
    on_time = [np.zeros(10) for _ in trues]
    for s, t in zip(on_time, trues):
        s[t] = 1.0
    chosen_on_val = f1_report(on_time, trues, late, trues, tolerances=(1,), lookaheads=(0, 1))
    assert chosen_on_val["per_T"][1]["lookahead"] == 0
    assert chosen_on_val["per_T"][1]["test_f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="lookaheads is empty"):
        f1_report(late, trues, late, trues, lookaheads=())


def test_critical_steps_with_lookahead() -> None:
    from critwrap.detectors.baselines import RandomDetector

    det = RandomDetector(seed=0)
    scores = np.array([0.0, 0.1, 0.9, 0.2, 0.8])
    assert det.critical_steps(scores=scores, threshold=0.5).tolist() == [2, 4]
    assert det.critical_steps(scores=scores, threshold=0.5, lookahead=1).tolist() == [1, 2, 3, 4]
    assert det.critical_steps(scores=scores, k=2, lookahead=1).tolist() == [1, 2]
