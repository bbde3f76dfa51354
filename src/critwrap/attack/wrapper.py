"""``CriticalAttack``: the online protocol as a Gymnasium wrapper (attack when the detector says "critical").

At every step the wrapper scores the episode's frames so far with the detector and reads the score of
the current frame. When it reaches ``threshold`` and the episode's budget of ``k`` attacked steps is not
spent, the step is attacked:

* ``perturbation="action"`` (or an action-replacing callable): the action passed to ``step`` is replaced
  by a random different one before it reaches the env (works with any agent, no victim needed);
* ``"fgsm"`` / ``"pgd"`` (or an observation callable): the observation returned to the agent is
  perturbed against ``victim`` (an SB3 model, or a path to a saved model with ``victim_algo``); set or
  replace it later with :meth:`CriticalAttack.set_victim` (e.g. the learner itself, for adversarial training).

``info["attack"]`` reports ``attacked`` (this step's action, or the returned observation, was perturbed),
``score``, ``n_attacked`` and ``budget_left``. Scoring the whole prefix each step costs O(T) per step;
``window`` scores only the last ``window`` frames. ``min_gap`` is a cooldown: no two attacked steps
closer than that, however long the score stays above the threshold.

Example:
    >>> import critwrap
    >>> env = critwrap.make("CartPole-v1", wrappers=[("critical-attack", {"detector": "random", "k": 3, "threshold": 0.5})])
    >>> obs, info = env.reset(seed=0)
    >>> for _ in range(20):
    ...     obs, r, term, trunc, info = env.step(env.action_space.sample())
    ...     if term or trunc:
    ...         break
    >>> info["attack"]["n_attacked"] <= 3
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np

from critwrap.attack.perturbations import Perturbation, make_perturbation
from critwrap.attack.protocols import FrameSource, get_frame, score_frames
from critwrap.attack.victim import Victim
from critwrap.wrappers.base import CritwrapWrapper

__all__ = ["CriticalAttack", "load_detector_like"]


def load_detector_like(detector: Any) -> Any:
    """A detector object, a saved detector directory, or a registry name of a detector needing no training."""
    if hasattr(detector, "score"):
        return detector
    if isinstance(detector, str):
        from pathlib import Path

        if Path(detector).is_dir():
            from critwrap.detectors.base import Detector

            return Detector.load(detector)
        from critwrap import registry

        return registry.resolve("detectors", detector)()
    raise TypeError(
        f"detector must be a Detector, a saved detector directory or a registry name, got {type(detector).__name__}"
    )


class CriticalAttack(CritwrapWrapper, gym.Wrapper[Any, Any, Any, Any]):
    """Online attack at critical states (see the module docstring).

    Args:
        env: the environment.
        detector: a :class:`~critwrap.detectors.base.Detector`, a saved detector directory or a registry name.
        k: budget: at most ``k`` attacked steps per episode.
        threshold: attack a step when its score is at least this.
        perturbation: ``"action"``, ``"fgsm"``, ``"pgd"``, a Perturbation or a callable (action target).
        epsilon: L-inf budget of ``"fgsm"`` / ``"pgd"`` in observation units.
        victim: the policy observation perturbations are computed against: an SB3 model, a :class:`Victim`,
            or a path to a saved model (with ``victim_algo``); ``None`` for action perturbations.
        victim_algo: the algorithm of a ``victim`` path (``"ppo"``, ``"dqn"``...).
        frames: what the detector scores: ``"observations"``, ``"render"`` or ``fn(env, obs)``.
        window: score only the last ``window`` frames (``None``: the whole episode so far).
        seed: seed of the perturbation's randomness; ``reset(seed=s)`` reseeds it from ``(s, seed)`` (and a
            ``"random"`` detector's scores too), so that seeded episodes are repeatable.
        min_gap: attack no two steps closer than this many steps (1, the default: no cooldown).
        delay: attack ``delay`` steps after the step whose score passed the threshold (the score of step
            ``t - delay`` decides step ``t``; the replay protocol's negative ``lead``). Default 0.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        detector: Any,
        k: int = 10,
        threshold: float = 0.5,
        perturbation: str | Perturbation | Callable[..., Any] = "action",
        epsilon: float | None = None,
        victim: Any = None,
        victim_algo: str | None = None,
        frames: FrameSource = "observations",
        window: int | None = None,
        seed: int | None = None,
        min_gap: int = 1,
        delay: int = 0,
    ) -> None:
        CritwrapWrapper.__init__(
            self,
            detector=detector,
            k=k,
            threshold=threshold,
            perturbation=perturbation,
            epsilon=epsilon,
            victim=victim,
            victim_algo=victim_algo,
            frames=frames,
            window=window,
            seed=seed,
            min_gap=min_gap,
            delay=delay,
        )
        gym.Wrapper.__init__(self, env)
        if int(k) < 0:
            raise ValueError(f"k (attacked steps per episode) must be >= 0, got {k}")
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if int(min_gap) != min_gap or min_gap < 1:
            raise ValueError(f"min_gap must be an integer >= 1 steps, got {min_gap}")
        self.min_gap = int(min_gap)
        if isinstance(delay, bool) or int(delay) != delay or delay < 0:
            raise ValueError(f"delay must be an integer >= 0 steps, got {delay!r}")
        self.delay = int(delay)
        self.detector = load_detector_like(detector)
        self.k = int(k)
        self.threshold = float(threshold)
        self.frames_source = frames
        self.window = None if window is None else int(window)
        self.perturbation = make_perturbation(perturbation, epsilon=epsilon)
        self._seed = seed
        self.rng = np.random.default_rng(seed)
        self.victim: Victim | None = None
        if victim is not None:
            self.set_victim(victim, victim_algo)
        if self.perturbation.target == "action" or not self.perturbation.needs_victim:
            self.perturbation.check(env.observation_space, env.action_space, self.victim)
        self._frames: list[np.ndarray] = []
        self._n_attacked = 0
        self._obs: Any = None
        self._score = 0.0
        self._obs_attacked = False
        self.episode_attacked_steps: list[int] = []

    def set_victim(self, victim: Any, algo: str | None = None) -> None:
        """The policy that observation perturbations are computed against (a model, Victim or model path)."""
        if isinstance(victim, str):
            if algo is None:
                raise ValueError("a victim given as a path needs victim_algo (e.g. 'ppo', 'dqn')")
            from critwrap.zoo.algos import get_algo_class

            victim = get_algo_class(algo).load(victim, device="cpu")
        self.victim = victim if isinstance(victim, Victim) else Victim(victim)
        self.perturbation.check(self.env.observation_space, self.env.action_space, self.victim)

    @property
    def n_attacked(self) -> int:
        """Attacked steps so far in the current episode."""
        return self._n_attacked

    def _current_score(self) -> float:
        """The score that decides the current step: of the frame ``delay`` steps ago (``-inf`` before it)."""
        hi = len(self._frames) - self.delay
        if hi < 1:
            return float("-inf")
        frames = self._frames[:hi] if self.window is None else self._frames[max(0, hi - self.window) : hi]
        scores = score_frames(self.detector, np.stack(frames))
        return float(scores[-1])

    def _observe(self, obs: Any, final: bool = False) -> Any:
        """Record the clean frame, decide, and return what the agent sees (a final observation is not attacked)."""
        self._obs = obs
        self._frames.append(get_frame(self.env, obs, self.frames_source))
        self._score = self._current_score()
        self._obs_attacked = False
        if self.perturbation.target == "observation" and not final and self._should_attack():
            if self.victim is None and self.perturbation.needs_victim:
                raise RuntimeError(
                    f"{self.perturbation.describe()} needs a victim: pass victim= or call set_victim(model)"
                )
            adv = self.perturbation.perturb_observation(
                np.asarray(obs), cast(Victim, self.victim), self.rng, self.env.observation_space
            )
            self._mark_attacked()
            self._obs_attacked = True
            return adv
        return obs

    def _should_attack(self) -> bool:
        cooling = bool(self.episode_attacked_steps) and (
            len(self._frames) - 1 - self.episode_attacked_steps[-1] < self.min_gap
        )
        return self._n_attacked < self.k and not cooling and self._score >= self.threshold

    def _mark_attacked(self) -> None:
        self._n_attacked += 1
        self.episode_attacked_steps.append(len(self._frames) - 1)

    def _info(self, info: dict[str, Any], attacked: bool) -> dict[str, Any]:
        info = dict(info)
        info["attack"] = {
            "attacked": attacked,
            "score": self._score,
            "n_attacked": self._n_attacked,
            "budget_left": self.k - self._n_attacked,
        }
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # reset(seed) makes the attack repeatable too
            self.rng = np.random.default_rng([int(seed), int(self._seed or 0)])
            from critwrap.detectors.baselines import RandomDetector

            if isinstance(self.detector, RandomDetector):
                self.detector._rng = np.random.default_rng([int(seed), int(self._seed or 0), 1])
        self._frames = []
        self._n_attacked = 0
        self.episode_attacked_steps = []
        out = self._observe(obs)
        return out, self._info(info, self._obs_attacked)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        attacked = False
        if self.perturbation.target == "action" and self._should_attack():
            action = self.perturbation.perturb_action(action, self._obs, self.rng)
            self._mark_attacked()
            attacked = True
        obs, reward, terminated, truncated, info = self.env.step(action)
        out = self._observe(obs, final=bool(terminated or truncated))
        if self.perturbation.target == "observation":
            attacked = self._obs_attacked
        return out, float(reward), bool(terminated), bool(truncated), self._info(info, attacked)
