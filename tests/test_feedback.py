"""critwrap.feedback: the FDT loss on hand-built batches, oracle feedback at planted important states,
feedback files, offline data windows and bad input."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from critwrap.detectors.base import Detector
from critwrap.detectors.rtg_gap import RTGGap
from critwrap.episodes import Episode, EpisodeStore
from critwrap.feedback.data import DatasetError, OfflineData
from critwrap.feedback.dt import fdt_loss
from critwrap.feedback.evaluate import TargetReturnError, aggregate, check_target_return, iqm_ci
from critwrap.feedback.oracle import FeedbackLabels, FeedbackMismatchError, FeedbackOracle


# --------------------------------------------------------------------------------------------------
# the loss, against numbers computed by hand
# --------------------------------------------------------------------------------------------------
def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


LOGITS = np.array(
    [
        [2.0, 0.0, -1.0],  # logged 0, positive feedback
        [0.5, 1.5, 0.0],  # logged 1, negative feedback, best action 2
        [1.0, 1.0, 3.0],  # logged 2, negative feedback, best action 2 == logged -> fallback
        [0.0, 0.0, 0.0],  # logged 1, negative feedback, no best action -> fallback
        [1.0, -2.0, 0.5],  # logged 0, no feedback
        [9.0, 9.0, 9.0],  # padding
    ]
)
ACTIONS = np.array([0, 1, 2, 1, 0, 0])
FEEDBACK = np.array([1, 0, 0, 0, -1, 1])  # the padded position's label must be ignored
BEST = np.array([-1, 2, 2, -1, -1, 1])
MASK = np.array([True, True, True, True, True, False])


def _hand_numbers() -> tuple[float, float]:
    p = [_softmax(row) for row in LOGITS]
    # CE over real positions without negative feedback: positions 0 and 4
    ce = -(math.log(p[0][0]) + math.log(p[4][0])) / 2
    terms = [
        -math.log(p[0][0]),  # positive: -log pi(a_logged)
        -math.log(p[1][2]),  # negative with a usable best action: -log pi(best)
        -math.log(1 - p[2][2]),  # best == logged: -log(1 - pi(a_logged))
        -math.log(1 - p[3][1]),  # no best action: -log(1 - pi(a_logged))
    ]
    return ce, sum(terms) / 4


def _loss(lam: float, feedback: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    return fdt_loss(
        torch.tensor(LOGITS, dtype=torch.float32).reshape(2, 3, 3),
        torch.tensor(ACTIONS).reshape(2, 3),
        torch.tensor(MASK).reshape(2, 3),
        torch.tensor(FEEDBACK).reshape(2, 3) if feedback else None,
        torch.tensor(BEST).reshape(2, 3) if feedback else None,
        lam,
    )


def test_fdt_loss_matches_hand_computed_terms() -> None:
    ce, reg = _hand_numbers()
    loss, parts = _loss(0.1)
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["feedback_term"] == pytest.approx(reg, rel=1e-5)
    assert parts["n_feedback"] == 4
    assert float(loss) == pytest.approx(ce + 0.1 * reg, rel=1e-5)


def test_without_feedback_or_lambda_the_loss_is_dt_cross_entropy() -> None:
    p = [_softmax(row) for row in LOGITS[:5]]
    full_ce = -sum(math.log(p[i][ACTIONS[i]]) for i in range(5)) / 5
    for loss, parts in (_loss(0.0), _loss(0.5, feedback=False)):
        assert float(loss) == pytest.approx(full_ce, rel=1e-5)
        assert parts["feedback_term"] == 0.0


def test_fdt_loss_gradient_pushes_toward_best_action_on_negative_feedback() -> None:
    logits = torch.zeros(1, 1, 3, requires_grad=True)
    loss, _ = fdt_loss(
        logits, torch.tensor([[1]]), torch.tensor([[True]]), torch.tensor([[0]]), torch.tensor([[2]]), 1.0
    )
    loss.backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None
    g = logits.grad[0, 0]
    assert g[2] < 0 and g[0] > 0 and g[1] > 0  # descent raises the best action's logit only


def test_fdt_loss_complement_term_is_finite_when_logged_action_is_certain() -> None:
    logits = torch.tensor([[[60.0, 0.0, 0.0]]])
    loss, parts = fdt_loss(
        logits, torch.tensor([[0]]), torch.tensor([[True]]), torch.tensor([[0]]), torch.tensor([[-1]]), 1.0
    )
    assert math.isfinite(float(loss)) and parts["feedback_term"] == pytest.approx(
        60.0 - math.log(2), rel=1e-4
    )


# --------------------------------------------------------------------------------------------------
# oracle feedback at planted important states
# --------------------------------------------------------------------------------------------------
PLANTED_STATE, PLANTED_BEST = 7, 2


def _planted_episodes(n: int = 30, seed: int = 0) -> list[Episode]:
    """Vector states 0..9. In each episode the planted state 7 appears once; action 2 there is followed by
    reward 1, any other action by nothing. Other states get random actions and tiny rewards."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n):
        states = rng.choice([s for s in range(10) if s != PLANTED_STATE], size=6)
        k = int(rng.integers(1, 5))
        states[k] = PLANTED_STATE
        actions = rng.integers(0, 3, size=6)
        rewards = rng.random(6) * 0.01
        rewards[k + 1] = 1.0 if actions[k] == PLANTED_BEST else 0.0
        eps.append(Episode(states.astype(np.float32)[:, None], actions=actions, rewards=rewards))
    return eps


def _oracle(obs: np.ndarray) -> np.ndarray:
    """Knows the planted state's best action; elsewhere always says 0."""
    return np.where(obs[:, 0] == PLANTED_STATE, PLANTED_BEST, 0)


def test_rtg_gap_selection_finds_planted_state_and_oracle_labels_it(tmp_path: Path) -> None:
    eps = _planted_episodes()
    store = EpisodeStore(tmp_path / "data")
    for ep in eps:
        store.append(ep)
    with pytest.warns(UserWarning, match="only 180 of the budget of 1000 steps could be labelled"):
        labels = FeedbackOracle(_oracle, selector=RTGGap(gamma=0.9), budget=1000, occurrences="all").label(
            store
        )
    assert labels.metadata["labelled"] == 180 and "10 important states" in labels.metadata["shortfall"]
    planted = [i for i in range(len(labels)) if labels.state_hash[i] == labels.state_hash[0]]
    # the planted state ranks first and every one of its occurrences is labelled
    assert len(planted) == len(eps)
    assert sorted(planted) == list(range(len(eps)))
    for i in planted:
        ep = store.get(str(labels.episode_id[i]))
        step = int(labels.step[i])
        assert ep.observations[step, 0] == PLANTED_STATE
        assert labels.action[i] == ep.actions[step]
        assert labels.best_action[i] == PLANTED_BEST
        assert labels.label[i] == int(ep.actions[step] == PLANTED_BEST)
    assert 0 < labels.n_positive < len(labels)


def test_budget_and_best_worst_occurrences() -> None:
    eps = _planted_episodes()
    labels = FeedbackOracle(_oracle, selector=RTGGap(gamma=0.9), budget=2).label(eps)
    # best-worst: the first step with the best action and the first with the worst, of the top state
    assert len(labels) == 2
    assert {int(a) for a in labels.action} == {PLANTED_BEST, int(labels.action[1])}
    assert labels.action[0] == PLANTED_BEST and labels.label.tolist() == [1, 0]
    for i in range(2):
        assert eps[int(str(labels.episode_id[i])[3:])].observations[labels.step[i], 0] == PLANTED_STATE


def test_at_most_n_occurrences_per_state() -> None:
    eps = _planted_episodes()
    with pytest.warns(UserWarning, match="occurrences=5 labels at most 5 steps of each"):
        labels = FeedbackOracle(_oracle, selector=RTGGap(gamma=0.9), budget=10_000, occurrences=5).label(eps)
    per_state: dict[str, int] = {}
    for h in labels.state_hash.tolist():
        per_state[h] = per_state.get(h, 0) + 1
    assert max(per_state.values()) == 5
    planted = [i for i in range(len(labels)) if labels.state_hash[i] == labels.state_hash[0]]
    best_worst = FeedbackOracle(_oracle, selector=RTGGap(gamma=0.9), budget=2).label(eps)
    chosen = {(str(labels.episode_id[i]), int(labels.step[i])) for i in planted}
    assert {(str(e), int(s)) for e, s in zip(best_worst.episode_id, best_worst.step)} <= chosen
    with pytest.raises(ValueError, match="positive integer"):
        FeedbackOracle(_oracle, occurrences=0)


def test_a_budget_the_data_cannot_fill_is_explained_not_silent() -> None:
    """Continuous states almost never repeat, so RTGGap ranks few of them: the shortfall is a warning
    that says why and what to change, and coarser hashing fills the budget."""
    rng = np.random.default_rng(0)
    eps = [
        Episode(
            rng.normal(size=(20, 3)).astype(np.float32),
            actions=rng.integers(0, 2, 20),
            rewards=rng.random(20),
        )
        for _ in range(10)
    ]
    with pytest.warns(
        UserWarning, match=r"only 0 of the budget of 50 steps.*among 200 distinct states"
    ) as rec:
        labels = FeedbackOracle(_oracle, selector=RTGGap(round_decimals=2), budget=50).label(eps)
    assert len(labels) == 0 and "--round-decimals" in str(rec[0].message)
    assert "--occurrences" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the budget is filled: no warning
        coarse = FeedbackOracle(
            _oracle, selector=RTGGap(round_decimals=0), budget=50, occurrences="all"
        ).label(eps)
    assert len(coarse) == 50 and coarse.metadata["shortfall"] == ""
    with pytest.warns(UserWarning, match="only 5 of the 30 logged steps have a positive score"):
        FeedbackOracle(_oracle, selector=_PlantedDetector(), budget=100).label(_planted_episodes(5))


class _PlantedDetector(Detector):
    """Scores the planted state 1, the others 0 (no best action)."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        return (np.asarray(frames)[:, 0] == PLANTED_STATE).astype(np.float64)


def test_any_detector_selects_top_steps_without_best_action() -> None:
    eps = _planted_episodes()
    labels = FeedbackOracle(_oracle, selector=_PlantedDetector(), budget=5).label(eps)
    assert len(labels) == 5
    assert (labels.best_action == -1).all()
    assert (labels.score == 1.0).all()


def test_feedback_file_roundtrip_and_offline_data(tmp_path: Path) -> None:
    eps = _planted_episodes()
    store = EpisodeStore(tmp_path / "data")
    for ep in eps:
        store.append(ep)
    labels = FeedbackOracle(_oracle, selector=RTGGap(gamma=0.9), budget=50, occurrences="all").label(store)
    path = labels.save(tmp_path / "data" / "feedback.npz")
    again = FeedbackLabels.load(path)
    for name in ("episode_id", "step", "action", "oracle_action", "label", "best_action", "state_hash"):
        np.testing.assert_array_equal(getattr(again, name), getattr(labels, name))
    assert again.metadata["budget"] == 50 and again.metadata["selector"] == "rtg-gap"
    data = OfflineData.load(store.root, feedback=path)
    assert data.n_feedback == len(labels)
    flat = again.flat_indices(data)
    np.testing.assert_array_equal(data.feedback[flat], labels.label)
    np.testing.assert_array_equal(data.actions[flat], labels.action)
    assert (data.feedback >= 0).sum() == len(labels)


def test_labels_for_states_not_in_the_dataset_are_refused(tmp_path: Path) -> None:
    eps = _planted_episodes()
    labels = FeedbackOracle(_oracle, selector=RTGGap(gamma=0.9), budget=20, occurrences="all").label(eps)
    other = _planted_episodes(seed=1)  # same ids and lengths, other logged actions
    with pytest.raises(FeedbackMismatchError, match="not in this dataset"):
        OfflineData.load(other, feedback=labels)
    with pytest.raises(FeedbackMismatchError, match="does not exist"):
        labels.check(eps[:1])
    bad = FeedbackLabels(["ep-000000"], [99], [0], [0], [1], [-1], [0.0], [""])
    with pytest.raises(FeedbackMismatchError, match="no step 99"):
        bad.check(eps)


def test_sample_windows_stay_in_episode_and_pad() -> None:
    eps = [
        Episode(np.arange(5, dtype=np.float32)[:, None], actions=[0, 1, 0, 1, 0], rewards=[1, 0, 0, 0, 2]),
        Episode(np.arange(2, dtype=np.float32)[:, None], actions=[1, 1], rewards=[0, 3]),
    ]
    data = OfflineData.from_episodes(eps)
    assert data.rtg.tolist() == [3, 2, 2, 2, 2, 3, 3]
    w = data.sample_windows(np.array([0, 4, 5]), context_length=3)
    assert w["observations"][:, :, 0].tolist() == [[0, 1, 2], [2, 3, 4], [0, 1, 0]]
    assert w["mask"].tolist() == [[True] * 3, [True] * 3, [True, True, False]]
    assert w["timestep"].tolist() == [0, 2, 0]
    assert w["feedback"][2].tolist() == [-1, -1, -1]


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_dataset_without_actions_or_rewards_is_refused() -> None:
    video = [Episode(np.zeros((4, 8, 8, 3), np.uint8))]
    with pytest.raises(DatasetError, match="no actions and rewards"):
        OfflineData.from_episodes(video)
    with pytest.raises(DatasetError, match="no rewards"):
        OfflineData.from_episodes([Episode(np.zeros((2, 3)), actions=[0, 1])])
    with pytest.raises(DatasetError, match="discrete"):
        OfflineData.from_episodes([Episode(np.zeros((2, 3)), actions=np.zeros((2, 2)), rewards=[0, 0])])
    with pytest.raises(DatasetError, match="non-integer"):
        OfflineData.from_episodes([Episode(np.zeros((2, 3)), actions=[0.5, 1.0], rewards=[0, 0])])
    with pytest.raises(ValueError, match="needs per-step actions and rewards"):
        FeedbackOracle(_oracle, selector=RTGGap(), budget=3).label(video)


def test_missing_dataset_and_feedback_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset"):
        OfflineData.load(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="offline feedback"):
        FeedbackLabels.load(tmp_path / "feedback.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a feedback file"):
        FeedbackLabels.load(tmp_path / "junk.npz")


def test_oracle_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="budget"):
        FeedbackOracle(_oracle, budget=0)
    with pytest.raises(ValueError, match="occurrences"):
        FeedbackOracle(_oracle, occurrences="some")
    with pytest.raises(TypeError, match="Detector"):
        FeedbackOracle(_oracle, selector="rtg-gap")  # type: ignore[arg-type]


def test_target_return_of_the_wrong_sign_is_refused() -> None:
    positive = {"data": {"return_min": 0.0, "return_max": 0.96}}
    with pytest.raises(TargetReturnError, match="negative"):
        check_target_return(-1.0, positive)
    check_target_return(0.9, positive)
    costs = {"data": {"return_min": -200.0, "return_max": -20.0}}
    with pytest.raises(TargetReturnError, match="positive"):
        check_target_return(10.0, costs)
    check_target_return(-20.0, costs)
    with pytest.raises(TargetReturnError, match="finite"):
        check_target_return(float("nan"), positive)


def test_aggregate_iqm_ci_and_probability_of_improvement(monkeypatch: pytest.MonkeyPatch) -> None:
    from critwrap.feedback import evaluate

    monkeypatch.setattr(evaluate, "_RLY", [None])  # the bootstrap fallback (rliable.library needs `arch`)
    better = [0.9, 0.8, 1.0, 0.85, 0.95]
    worse = [0.1, 0.5, 0.3, 0.2, 0.4]
    out = aggregate({"fdt": better, "dt": worse}, reps=300)
    g = out["groups"]["fdt"]
    assert g["iqm"] == pytest.approx(np.mean(sorted(better)[1:4]))  # IQM of 5: trimmed 25% each side
    assert g["ci_low"] <= g["iqm"] <= g["ci_high"]
    assert out["probability_of_improvement"]["fdt>dt"] == 1.0
    assert out["probability_of_improvement"]["dt>fdt"] == 0.0
    iqm, lo, hi = iqm_ci(np.full(5, 2.0), reps=50)
    assert iqm == lo == hi == 2.0
