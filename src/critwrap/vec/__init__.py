"""SB3 ``VecEnvWrapper`` twins of critwrap wrappers that run a learned model: one forward pass per step
for all envs instead of one per env.

Example:
    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> from critwrap.vec import SubgoalRewardVecEnv
    >>> from critwrap.wrappers.subgoal import pixel_encoder
    >>> venv = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    >>> venv = SubgoalRewardVecEnv(venv, subgoals=[[0.0, 0.0, 0.0, 0.0]], encoder=pixel_encoder, threshold=0.5)
    >>> obs = venv.reset()
    >>> obs.shape
    (4, 4)

Importing :mod:`critwrap.vec` does not import Stable-Baselines3; the classes are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from critwrap.vec.subgoal import SubgoalRewardVecEnv

__all__ = ["SubgoalRewardVecEnv"]

_LAZY = {"SubgoalRewardVecEnv": "critwrap.vec.subgoal"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'critwrap.vec' has no attribute {name!r}")
