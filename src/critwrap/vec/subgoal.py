"""``SubgoalRewardVecEnv``: :class:`~critwrap.wrappers.subgoal.SubgoalReward` for an SB3 ``VecEnv``.

Same arguments, same rewards and ``info`` keys as wrapping every env in ``SubgoalReward``, but the
observations of all envs (and, for envs that just ended an episode, the terminal observation from
``infos[i]["terminal_observation"]`` plus the first observation of the next episode) are embedded in
**one** encoder call per step. That is what makes a CNN scorer affordable: one batch of N frames
instead of N batches of one.

SB3 resets an env automatically when its episode ends; this wrapper scores the transition into the
terminal observation, with ``terminated`` read from ``dones`` and ``infos[i]["TimeLimit.truncated"]``
(a truncated episode keeps ``gamma * phi(s')``, a terminated one does not), then starts the next
episode's subgoal record from the reset observation.

Example:
    >>> import numpy as np
    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> from critwrap.vec import SubgoalRewardVecEnv
    >>> from critwrap.wrappers.subgoal import pixel_encoder
    >>> venv = SubgoalRewardVecEnv(
    ...     make_vec_env("CartPole-v1", n_envs=2, seed=0), subgoals=np.zeros((1, 4)), encoder=pixel_encoder,
    ...     threshold=0.0, potential_based=False)
    >>> _ = venv.reset()
    >>> obs, rewards, dones, infos = venv.step(np.array([0, 1]))
    >>> sorted(k for k in infos[0] if "subgoal" in k or k == "original_reward")
    ['new_subgoals', 'original_reward', 'subgoal_bonus', 'subgoals_reached']
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from critwrap.wrappers.subgoal import Encoder, _SubgoalCore, shaped_rewards

if TYPE_CHECKING:  # pragma: no cover
    from critwrap.detectors.base import Detector

__all__ = ["SubgoalRewardVecEnv"]


class SubgoalRewardVecEnv(VecEnvWrapper, _SubgoalCore):
    """Subgoal reward for all envs of a ``VecEnv``, one encoder call per step.

    Args:
        venv: an SB3 ``VecEnv`` with array (``Box``) observations.
        detector, episodes, subgoals, encoder, threshold, bonus, weights, potential_based, gamma, k,
        score_threshold, success_above, exclude_failed, detector_device: as
        :class:`~critwrap.wrappers.subgoal.SubgoalReward`.

    Hot swap (what the ``DetectorRefresh`` callback calls), as on the wrapper:

    * :meth:`set_detector` ``(detector, episodes=None)``: another detector, subgoals re-extracted from
      ``episodes`` (default: those given before);
    * :meth:`set_subgoals` ``(embeddings, weights=None)``: these embeddings as the subgoals.

    Both forget the subgoals reached in the running episodes.

    Attributes:
        encoder_calls: how many times the encoder has been called (one per ``reset`` and per step).
    """

    def __init__(
        self,
        venv: VecEnv,
        detector: Detector | str | os.PathLike[str] | None = None,
        episodes: Any = None,
        subgoals: Any = None,
        encoder: Encoder | str | None = None,
        threshold: float = 0.99,
        bonus: float = 1.0,
        weights: Any = None,
        potential_based: bool = True,
        gamma: float = 0.99,
        k: int | None = 3,
        score_threshold: float | None = None,
        success_above: float = 0.0,
        exclude_failed: bool = False,
        detector_device: str | None = None,
    ) -> None:
        VecEnvWrapper.__init__(self, venv)
        self._setup(
            venv.observation_space,
            "SubgoalRewardVecEnv",
            detector,
            episodes,
            subgoals,
            encoder,
            threshold,
            bonus,
            weights,
            potential_based,
            gamma,
            k,
            score_threshold,
            success_above,
            exclude_failed,
            detector_device,
        )
        self.encoder_calls = 0
        self._reached = np.zeros((self.num_envs, len(self.subgoal_set)), dtype=bool)

    @property
    def reached(self) -> np.ndarray:
        """(num_envs, K): which subgoals each env's episode has reached (a copy)."""
        return self._reached.copy()

    def set_detector(self, detector: Detector | str | os.PathLike[str], episodes: Any = None) -> None:
        """Use ``detector`` from now on and re-extract the subgoals from ``episodes`` (default: as before)."""
        self._set_detector(detector, episodes)
        self._reached = np.zeros((self.num_envs, len(self.subgoal_set)), dtype=bool)

    def set_subgoals(self, embeddings: Any, weights: Any = None) -> None:
        """Replace the subgoals by ``embeddings`` (K, D) with ``weights`` (default 1 each)."""
        self._set_subgoals(embeddings, weights)
        self._reached = np.zeros((self.num_envs, len(self.subgoal_set)), dtype=bool)

    def _match_batch(self, frames: np.ndarray) -> np.ndarray:
        self.encoder_calls += 1
        return self._match(frames)

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        if not isinstance(obs, np.ndarray):
            raise TypeError("SubgoalRewardVecEnv needs array observations, got a dict/tuple from the VecEnv")
        self._reached = self._match_batch(obs)
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        assert isinstance(obs, np.ndarray)
        n = len(rewards)
        done_idx = np.flatnonzero(dones)
        next_frames = obs
        if len(done_idx):
            next_frames = obs.copy()
            for i in done_idx.tolist():
                terminal = infos[i].get("terminal_observation")
                if terminal is None:
                    raise KeyError(
                        f"env {i} is done but its info has no 'terminal_observation'; SubgoalRewardVecEnv "
                        "needs an SB3 VecEnv (DummyVecEnv / SubprocVecEnv) that auto-resets"
                    )
                next_frames[i] = terminal
            # the next episodes' first observations go through the same encoder call
            frames = np.concatenate([next_frames, obs[done_idx]])
        else:
            frames = obs
        matches_all = self._match_batch(frames)
        matches = matches_all[:n]
        terminated = np.array(
            [bool(dones[i]) and not infos[i].get("TimeLimit.truncated", False) for i in range(n)]
        )
        shaped, after, new = shaped_rewards(
            rewards,
            self._reached,
            matches,
            terminated,
            self.subgoal_set.weights,
            bonus=self.bonus,
            potential_based=self.potential_based,
            gamma=self.gamma,
        )
        for i in range(n):
            infos[i]["original_reward"] = float(rewards[i])
            infos[i]["subgoal_bonus"] = float(shaped[i]) - float(rewards[i])
            infos[i]["subgoals_reached"] = int(after[i].sum())
            infos[i]["new_subgoals"] = [int(j) for j in np.flatnonzero(new[i])]
        self._reached = after
        if len(done_idx):
            self._reached[done_idx] = matches_all[n:]
        return obs, shaped.astype(np.float32), dones, infos
