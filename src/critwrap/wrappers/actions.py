"""Restrict a discrete action space to a subset of its actions.

MiniGrid's navigation tasks expose 7 actions of which only 3 move the agent (left, right, forward);
pickup, drop, toggle and done are no-ops there, yet random exploration and epsilon-mixed offline data
spend most of their steps on them. ``ActionSubset`` keeps the listed actions only:

    >>> import critwrap
    >>> env = critwrap.make("MiniGrid-LavaGapS6-v0", preprocess=False,
    ...                     wrappers=[("action-subset", {"actions": [0, 1, 2]})])
    >>> env.action_space
    Discrete(3)

Action ``i`` of the wrapped env is action ``actions[i]`` of the inner one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.wrappers.base import CritwrapWrapper, IncompatibleSpaceError

__all__ = ["ActionSubset"]


class ActionSubset(CritwrapWrapper, gym.ActionWrapper[Any, Any, Any]):
    """Expose only ``actions`` of a ``Discrete`` action space, as ``Discrete(len(actions))``.

    Args:
        env: an env with a ``Discrete`` action space.
        actions: the inner actions to keep, in the order the new action indices take them (no
            duplicates, each inside the inner space). Default ``(0, 1, 2)``: MiniGrid's turn left, turn
            right, move forward.
    """

    def __init__(self, env: gym.Env[Any, Any], actions: Sequence[int] = (0, 1, 2)) -> None:
        CritwrapWrapper.__init__(self, actions=[int(a) for a in actions])
        gym.ActionWrapper.__init__(self, env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise IncompatibleSpaceError(f"ActionSubset needs a Discrete action space, got {space}")
        kept = [int(a) for a in actions]
        if not kept:
            raise ValueError("ActionSubset needs at least one action")
        if len(set(kept)) != len(kept):
            raise ValueError(f"ActionSubset: duplicate actions in {kept}")
        lo, hi = int(space.start), int(space.start) + int(space.n)
        bad = [a for a in kept if not lo <= a < hi]
        if bad:
            raise ValueError(f"ActionSubset: actions {bad} are outside the inner action space {space}")
        self.actions = tuple(kept)
        self.action_space = gym.spaces.Discrete(len(kept))

    def action(self, action: Any) -> Any:
        index = int(np.asarray(action).reshape(()))
        if not 0 <= index < len(self.actions):
            raise ValueError(f"action {index} is outside {self.action_space}")
        return self.actions[index]
