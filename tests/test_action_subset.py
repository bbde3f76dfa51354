"""ActionSubset: maps the kept indices onto the inner actions and refuses bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import critwrap
from critwrap.wrappers.actions import ActionSubset
from critwrap.wrappers.base import IncompatibleSpaceError


class _Echo(gym.Env[np.ndarray, int]):
    """Observation = the last inner action taken."""

    observation_space = gym.spaces.Box(-1, 10, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(7)

    def reset(self, *, seed=None, options=None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        return np.array([-1], dtype=np.float32), {}

    def step(self, action):  # type: ignore[no-untyped-def]
        assert self.action_space.contains(action)
        return np.array([action], dtype=np.float32), 0.0, False, False, {}


def test_indices_map_to_the_kept_inner_actions() -> None:
    env = ActionSubset(_Echo(), actions=[5, 0, 2])
    assert env.action_space == gym.spaces.Discrete(3)
    env.reset(seed=0)
    seen = [int(env.step(i)[0][0]) for i in (0, 1, 2, 0)]
    assert seen == [5, 0, 2, 5]
    assert int(env.step(np.int64(2))[0][0]) == 2  # numpy scalars, as SB3 passes them


def test_minigrid_movement_actions_by_name() -> None:
    env = critwrap.make("MiniGrid-LavaGapS6-v0", preprocess=False, wrappers=[("action-subset", {})])
    assert env.action_space == gym.spaces.Discrete(3)
    env.reset(seed=3)
    before = env.unwrapped.agent_dir
    env.step(1)  # inner 1 = turn right
    assert env.unwrapped.agent_dir == (before + 1) % 4


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="outside the inner action space"):
        ActionSubset(_Echo(), actions=[0, 7])
    with pytest.raises(ValueError, match="duplicate"):
        ActionSubset(_Echo(), actions=[1, 1])
    with pytest.raises(ValueError, match="at least one"):
        ActionSubset(_Echo(), actions=[])
    with pytest.raises(IncompatibleSpaceError, match="Discrete"):
        ActionSubset(gym.make("Pendulum-v1"))
    env = ActionSubset(_Echo(), actions=[0, 1])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step(2)
