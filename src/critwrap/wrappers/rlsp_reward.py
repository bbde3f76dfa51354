"""``RLSPReward``: replace the env's reward by a reward inferred with Deep RLSP, ``theta . f(s')``.

The reward of a step is the inferred reward of the observation it leads to (as the original's
``LatentSpaceRewardWrapper``). The env's own reward and termination stay in ``info``
(``info["true_reward"]``, ``info["true_terminated"]``) and the inferred one is in
``info["inferred_reward"]``, so the true return can be tracked while any algorithm trains on the
inferred reward.

By default (``ignore_termination=True``, as the original) the env's termination is ignored: episodes
end only at the time limit, so that when an episode ends says nothing about the task (in
InvertedPendulum, termination alone would reward staying upright). Evaluate the true return on the
env without this wrapper (``--eval-skip-wrapper rlsp-reward`` in the zoo).

``path`` is a reward file written by :meth:`critwrap.rlsp.reward.InferredReward.save` (for example by
``python -m critwrap.zoo rlsp``); it must come from the same environment id and observation size
(checked, with ``check_env_id=False`` to allow another id with the same observations). Without
``path`` the reward is 0 until :meth:`RLSPReward.set_inferred_reward` is called, which is what the
:class:`~critwrap.rlsp.callback.RLSPUpdate` callback does during Deep RLSP.

Example:
    .. code-block:: console

        python -m critwrap.zoo rlsp --env InvertedPendulum-v5 --states states.npy --n-states 1 --out pendulum.rlsp
        python -m critwrap.zoo train sac InvertedPendulum-v5 --wrapper rlsp-reward:path=pendulum.rlsp \\
            --eval-skip-wrapper rlsp-reward

    >>> import critwrap
    >>> env = critwrap.make("InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": "pendulum.rlsp"})])  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> obs, r, terminated, truncated, info = env.step(env.action_space.sample())  # doctest: +SKIP
    >>> info["true_reward"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import warnings
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from critwrap.wrappers.base import CritwrapWrapper, IncompatibleSpaceError

__all__ = ["RLSPReward"]


def _env_id(env: gym.Env[Any, Any]) -> str | None:
    spec = env.spec
    if spec is None:
        return None
    return str(spec.id).removeprefix("critwrap/")


class RLSPReward(CritwrapWrapper, gym.Wrapper[Any, Any, Any, Any]):
    """Reward ``theta . f(s')`` from a saved inferred reward; the true reward and termination go to ``info``.

    Args:
        env: an env with flat ``Box`` observations.
        path: the inferred reward file (safetensors); ``None``: reward 0 until :meth:`set_inferred_reward`.
        ignore_termination: report ``terminated=False`` (episodes end at the time limit), as the original.
        check_env_id: refuse a reward inferred in an env with another id (the observation size is
            always checked).
        warn_unset: warn (once) when a step is taken before any reward is set (its reward is then 0);
            ``False`` where a reward of 0 is meant (a wrapper used only to ignore termination).
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        path: str | None = None,
        ignore_termination: bool = True,
        check_env_id: bool = True,
        warn_unset: bool = True,
    ) -> None:
        CritwrapWrapper.__init__(
            self,
            path=path,
            ignore_termination=ignore_termination,
            check_env_id=check_env_id,
            warn_unset=warn_unset,
        )
        gym.Wrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise IncompatibleSpaceError(
                f"RLSPReward needs flat vector observations (a 1-D Box), got {space}; Deep RLSP's features "
                "are learned on state vectors (MuJoCo envs such as InvertedPendulum-v5 or HalfCheetah-v5)"
            )
        self.obs_dim = int(space.shape[0])
        self.ignore_termination = bool(ignore_termination)
        self.check_env_id = bool(check_env_id)
        self.inferred: Any = None
        self._start_states: np.ndarray | None = None
        self._start_prob = 0.0
        self._setter: Any = None
        self._rng = np.random.default_rng()
        self._warned_unset = not warn_unset
        if path is not None:
            from critwrap.rlsp.reward import load_reward

            env_id = _env_id(env) if self.check_env_id else None
            self.inferred = load_reward(path, env_id=env_id, obs_dim=self.obs_dim)

    def set_inferred_reward(self, reward: Any) -> None:
        """Use another :class:`~critwrap.rlsp.reward.InferredReward` from now on (checked like a file)."""
        from critwrap.rlsp.reward import RewardMismatchError

        if reward.obs_dim != self.obs_dim:
            raise RewardMismatchError(
                f"the inferred reward takes observations of size {reward.obs_dim}, this env's are {self.obs_dim}"
            )
        env_id = _env_id(self.env)
        if self.check_env_id and env_id and reward.env_id and reward.env_id != env_id:
            raise RewardMismatchError(f"the inferred reward is for {reward.env_id!r}, this env is {env_id!r}")
        self.inferred = reward

    def set_start_states(self, states: np.ndarray | None, prob: float = 0.2) -> None:
        """Start episodes, with probability ``prob``, in one of ``states`` (the simulator's state is set)."""
        if states is None or len(states) == 0 or prob <= 0:
            self._start_states, self._start_prob = None, 0.0
            return
        if self._setter is None:
            from critwrap.rlsp.gradient import MujocoStateSetter

            self._setter = MujocoStateSetter(self.env)
        arr = np.asarray(states, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.obs_dim:
            raise ValueError(f"start states must have shape (N, {self.obs_dim}), got {arr.shape}")
        self._start_states, self._start_prob = arr, float(prob)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        if self._start_states is not None and self._rng.random() < self._start_prob:
            start = self._start_states[int(self._rng.integers(len(self._start_states)))]
            self._setter(self.env, start)
            obs = start.astype(self.observation_space.dtype or np.float64)
            info = {**info, "rlsp_start_state": True}
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, true_reward, terminated, truncated, info = self.env.step(action)
        if self.inferred is None and not self._warned_unset:
            self._warned_unset = True
            warnings.warn(
                "RLSPReward has no inferred reward yet, so every reward it returns is 0: give path= (a reward "
                "file from `zoo rlsp` / InferredReward.save) or train with the RLSPUpdate callback, which "
                "sets it before the first step",
                stacklevel=2,
            )
        inferred = (
            float(self.inferred(np.asarray(obs, dtype=np.float64))) if self.inferred is not None else 0.0
        )
        info = {
            **info,
            "true_reward": float(true_reward),
            "true_terminated": bool(terminated),
            "inferred_reward": inferred,
        }
        if self.ignore_termination:
            terminated = False
        return obs, inferred, terminated, truncated, info
