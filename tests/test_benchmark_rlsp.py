"""Fast checks of benchmarks/rlsp.py's per-env profiles and calibration rewards (no training)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import rlsp
    finally:
        sys.path.pop(0)
    return rlsp


def test_every_profile_names_a_calibration_and_the_sac_settings(bench: Any) -> None:
    assert set(bench.PROFILES) == {"InvertedPendulum-v5", "HalfCheetah-v5"}
    for env_id, prof in bench.PROFILES.items():
        name, wrapper = prof["oracle"]
        assert name.startswith("oracle-")
        assert issubclass(wrapper, gym.Wrapper)
        assert {"learning_rate", "batch_size", "policy_kwargs"} <= set(prof["sac_kwargs"])
        assert prof["eval_steps"] > 0 and prof["train_episode_steps"] > 0, env_id


def test_velocity_calibration_pays_the_forward_velocity_and_never_terminates(bench: Any) -> None:
    env = bench.VelocityReward(gym.make("HalfCheetah-v5"))
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rewards, finite_difference = [], []
    for _ in range(200):
        obs, reward, terminated, _, info = env.step(rng.uniform(-1, 1, size=6).astype(np.float32))
        assert reward == pytest.approx(float(obs[8]))  # the root's x velocity at the end of the step
        assert not terminated
        rewards.append(reward)
        finite_difference.append(info["x_velocity"])  # what the true reward pays: (x' - x) / dt
    env.close()
    # the same quantity up to the integration over the frame skip
    assert np.corrcoef(rewards, finite_difference)[0, 1] > 0.8
    assert np.mean(rewards) == pytest.approx(np.mean(finite_difference), abs=0.05)


def test_alive_calibration_is_the_upright_indicator(bench: Any) -> None:
    env = bench.AliveReward(gym.make("InvertedPendulum-v5"))
    env.reset(seed=0)
    obs, reward, terminated, _, _ = env.step(np.zeros(1, dtype=np.float32))
    assert reward == float(abs(obs[1]) <= 0.2) == 1.0
    assert not terminated
    env.close()


def test_states_from_an_earlier_run_are_reused_and_checked(bench: Any, tmp_path: Path) -> None:
    states = np.arange(40, dtype=np.float64).reshape(10, 4)
    np.save(tmp_path / "states_seed3.npy", states)
    np.testing.assert_array_equal(bench.reuse_states(tmp_path, 3, 5, "InvertedPendulum-v5"), states[:5])
    with pytest.raises(ValueError, match=r"at least \(11, 4\)"):
        bench.reuse_states(tmp_path, 3, 11, "InvertedPendulum-v5")
    with pytest.raises(ValueError, match="HalfCheetah"):
        bench.reuse_states(tmp_path, 3, 1, "HalfCheetah-v5")
    with pytest.raises(FileNotFoundError, match="states_seed4"):
        bench.reuse_states(tmp_path, 4, 1, "InvertedPendulum-v5")
