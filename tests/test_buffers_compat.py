"""CriticalNStepReplayBuffer refuses, at construction, an SB3 whose DQN would ignore its n-step discounts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from critwrap.buffers import CriticalNStepReplayBuffer


def _make() -> CriticalNStepReplayBuffer:
    space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    return CriticalNStepReplayBuffer(8, space, gym.spaces.Discrete(2), check_algorithm=False)


def test_construction_matches_the_installed_sb3() -> None:
    if "discounts" in ReplayBufferSamples._fields:  # SB3 >= 2.7: DQN reads the discounts
        assert _make().n_max == 5
    else:  # older SB3 would bootstrap an n-step return with gamma^1: a silent wrong target
        with pytest.raises(ImportError, match=r"stable-baselines3 >= 2\.7"):
            _make()
