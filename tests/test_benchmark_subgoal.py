"""Fast checks of benchmarks/subgoal.py's oracle calibration arm (no training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minigrid")
ROOT = Path(__file__).resolve().parents[1]
KC = "MiniGrid-KeyCorridorS3R3-v0"


@pytest.fixture(scope="module")
def subgoal_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_subgoal", ROOT / "benchmarks" / "subgoal.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replay(bench: Any, env_id: str, seed: int, kind: str, gamma: float) -> tuple[Any, list[Any]]:
    import minigrid

    gym.register_envs(minigrid)
    ep = bench.scripted_episode(env_id, seed, kind)
    env = bench.OracleSubgoals(bench.Views(gym.make(env_id)), bonus=0.1, gamma=gamma)
    env.reset(seed=seed)
    steps = []
    for a in ep.actions:
        steps.append(env.step(int(a)))
        if steps[-1][2] or steps[-1][3]:
            break
    env.close()
    return ep, steps


def test_oracle_pays_at_the_scripted_critical_steps_and_keeps_success(subgoal_bench: Any) -> None:
    ep, steps = _replay(subgoal_bench, KC, 123, "positive", gamma=0.99)
    paid = [t for t, (_, _, _, _, info) in enumerate(steps) if info["subgoal_bonus"] > 0.05]
    # key picked up, locked door opened, key dropped: three of the planner's critical steps
    assert len(paid) == 3
    assert set(paid) <= set(ep.metadata["critical_steps"])
    last = steps[-1]
    assert last[2] and last[4]["success"]  # success reads the env's reward, not the shaped one
    # terminating gives the potential back: r - phi(s), phi = 3 subgoals x 0.1
    assert last[4]["original_reward"] > 0.5
    assert last[1] == pytest.approx(last[4]["original_reward"] - 0.3)


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_oracle_shaping_is_potential_based(subgoal_bench: Any, gamma: float) -> None:
    """Over a terminating episode the discounted bonuses sum to -phi(s_0) = 0 (Ng et al.)."""
    _, steps = _replay(subgoal_bench, KC, 7, "positive", gamma=gamma)
    assert steps[-1][2]
    bonuses = np.array([info["subgoal_bonus"] for *_, info in steps])
    assert abs(float(np.sum(gamma ** np.arange(len(bonuses)) * bonuses))) < 1e-9
    assert bonuses.max() > 0.05


def test_oracle_random_walk_without_the_key_earns_nothing(subgoal_bench: Any) -> None:
    for seed in range(20):
        ep, steps = _replay(subgoal_bench, KC, 500 + seed, "negative", gamma=0.99)
        if ep.metadata["critical_steps"]:
            continue  # this negative episode fetched the key first
        base_bonus = [info["subgoal_bonus"] for *_, info in steps]
        assert max(base_bonus) <= 1e-12, seed
        return
    pytest.fail("no random-walk episode among 20 seeds")


def test_oracle_phases_follow_the_scripted_plan(subgoal_bench: Any) -> None:
    ep = subgoal_bench.scripted_episode(KC, 123, "positive")
    phases = subgoal_bench.oracle_phases(KC, ep)
    assert len(phases) == len(ep.frames)
    assert phases[0] == 0 and np.all(np.diff(phases) >= 0)
    assert phases.max() == 3  # key, door, key put down: all before the ball is picked up
    # the phase changes after the step the planner marked critical (pickup, toggle, drop)
    assert set(np.flatnonzero(np.diff(phases)).tolist()) <= set(ep.metadata["critical_steps"])


def test_progress_encoder_learns_time_from_successful_episodes_only(subgoal_bench: Any) -> None:
    """The benchmark's ProgressEncoder regresses t / (T - 1) on successful episodes: on frames whose
    brightness grows with time it learns the order, and it refuses a set without successes."""
    import torch

    from critwrap.episodes import Episode

    rng = np.random.default_rng(0)

    def ep(label: int, length: int) -> Episode:
        level = np.linspace(0, 200, length)[:, None, None, None] + rng.integers(0, 30, (length, 12, 12, 3))
        return Episode(
            level.astype(np.uint8), actions=np.zeros(length, int), rewards=np.zeros(length), label=label
        )

    torch.set_num_threads(1)
    enc = subgoal_bench.ProgressEncoder([ep(1, 20) for _ in range(6)] + [ep(0, 20)], seed=0, epochs=40, dim=8)
    assert enc.losses[-1] < enc.losses[0] / 4
    held = ep(1, 20)
    emb = enc(held.frames)
    assert emb.shape == (20, 8) and emb.dtype == np.float32
    assert np.corrcoef(enc.progress(held.frames), np.arange(20))[0, 1] > 0.9
    with pytest.raises(ValueError, match="successful"):
        subgoal_bench.ProgressEncoder([ep(0, 10)])


def test_true_steps_scores_the_scripted_critical_steps(subgoal_bench: Any) -> None:
    ep = subgoal_bench.scripted_episode(KC, 10_001, "positive")
    det = subgoal_bench.TrueSteps([ep])
    scores = det.score(ep.frames)
    assert scores.shape == (len(ep.frames),)
    np.testing.assert_array_equal(np.flatnonzero(scores), sorted(ep.metadata["critical_steps"]))
    np.testing.assert_array_equal(det.critical_steps(scores=scores), np.flatnonzero(scores))
    with pytest.raises(KeyError, match="only the scripted episodes"):
        det.score(ep.frames[:-1])
    with pytest.raises(SystemExit):  # a diagnostic of --phases with a non-detector encoder only
        subgoal_bench.main(["--subgoal-steps", "true", "--phases"])
