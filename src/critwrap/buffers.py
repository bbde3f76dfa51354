"""Replay buffers: :class:`CriticalNStepReplayBuffer`, the Deep State Identifier's policy improvement.

For a sampled transition ``t`` the buffer looks at a detector's scores of the states ``t .. t+n_max-1``
of the same episode and bootstraps after the most critical one (METHODS.md, section 1)::

    n      = argmax(scores[t : t + n_max]) + 1          (the window stops at the episode's end)
    target = sum_{i<n} gamma^i r_{t+i} + gamma^n (1 - done_{t+n-1}) Q(s_{t+n})

It plugs into SB3's ``DQN`` and sb3-contrib's ``QRDQN`` through ``replay_buffer_class``: like SB3's own
``NStepReplayBuffer`` it returns the n-step return in ``rewards`` and ``gamma^n`` in ``discounts``,
which those algorithms use in their targets. With a timeout (``handle_timeout_termination=True``) the
last state is bootstrapped, as in SB3.

**When states are scored.** Detectors score whole sequences (the DSI is a bidirectional LSTM), so the
buffer scores an episode's observations, in one batch for all envs that finished together, when the
episode ends (``done``), and keeps the scores in an array beside the observations. Transitions of an
episode that has not ended yet, or that were stored while no detector was set, are **unscored**: they
use plain n-step returns with ``n = n_max`` (``unscored="nstep"``, the default; the same targets as
SB3's ``NStepReplayBuffer(n_steps=n_max)``) or 1-step targets (``unscored="one_step"``).
:meth:`CriticalNStepReplayBuffer.set_detector` swaps the detector during training and, by default,
re-scores every finished episode in the buffer.

Example:
    >>> import numpy as np
    >>> from stable_baselines3 import DQN
    >>> from critwrap.buffers import CriticalNStepReplayBuffer
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> model = DQN("MlpPolicy", "CartPole-v1", learning_starts=50, buffer_size=500, seed=0,
    ...             replay_buffer_class=CriticalNStepReplayBuffer,
    ...             replay_buffer_kwargs=dict(detector=RandomDetector(seed=0), n_max=5))
    >>> _ = model.learn(200)
    >>> model.replay_buffer.scored_fraction() > 0
    True
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from critwrap.detectors.base import Detector

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "CriticalNStepReplayBuffer",
    "UnsupportedAlgorithmError",
]

SUPPORTED_ALGORITHMS: tuple[str, ...] = ("DQN", "QRDQN")
"""Algorithms (and their subclasses) the buffer is built and tested for: they read ``discounts``."""

_UNTESTED_CONSUMERS = ("SAC", "TD3", "TQC", "CrossQ")
_FRAME_LAYOUTS = ("auto", "as_is", "chw_to_hwc", "hwc_to_chw")
_UNSCORED = ("nstep", "one_step")


class UnsupportedAlgorithmError(TypeError):
    """The replay buffer was given to an algorithm that would not use its n-step targets correctly."""


def _constructing_algorithm(max_depth: int = 12) -> BaseAlgorithm | None:
    """The SB3 algorithm whose ``_setup_model`` is building this buffer, if any (read from the call stack)."""
    frame = inspect.currentframe()
    try:
        depth = 0
        while frame is not None and depth < max_depth:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, BaseAlgorithm):
                return candidate
            frame = frame.f_back
            depth += 1
        return None
    finally:
        del frame


def _convert_layout(frames: np.ndarray, layout: str) -> np.ndarray:
    if layout == "chw_to_hwc":
        return np.ascontiguousarray(np.moveaxis(frames, 1, -1))
    if layout == "hwc_to_chw":
        return np.ascontiguousarray(np.moveaxis(frames, -1, 1))
    return frames


class CriticalNStepReplayBuffer(ReplayBuffer):
    """Replay buffer whose n-step horizon is chosen per transition by a critical-state detector.

    Args:
        buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage,
            handle_timeout_termination: as for SB3's ``ReplayBuffer`` (the algorithm passes them).
            ``optimize_memory_usage=True`` is not supported.
        detector: a fitted :class:`~critwrap.detectors.base.Detector`, the path of a saved one, or
            ``None`` (every transition unscored until :meth:`set_detector` is called, e.g. by
            :class:`critwrap.callbacks.refresh.DetectorRefresh`).
        n_max: the longest horizon (5 in the paper). ``n_max=1`` gives plain 1-step targets.
        gamma: discount factor. ``None`` (default): the constructing algorithm's ``gamma`` (0.99
            when built outside an algorithm). A value that differs from the algorithm's is an error.
        unscored: ``"nstep"`` (``n = n_max``, truncated at the episode end) or ``"one_step"``: the
            target of transitions whose episode has no scores (yet).
        frame_layout: how stored observations are given to the detector: ``"as_is"``,
            ``"chw_to_hwc"``, ``"hwc_to_chw"`` or ``"auto"`` (the first of those the detector accepts,
            tried on a dummy batch at construction).
        preprocess: optional ``frames (T, ...) -> frames`` applied after the layout conversion, before
            the detector (e.g. zero the score region the detector was trained without).
        score_window: score episodes in consecutive windows of this many steps (the length the
            detector was trained on); ``None``: each episode in one sequence.
        check_algorithm: refuse algorithms other than :data:`SUPPORTED_ALGORITHMS` (and subclasses).
        detector_device: where the detector scores finished episodes (``"cuda"``; see
            :meth:`critwrap.detectors.base.Detector.to`); ``"same"``: the buffer's own ``device`` (the
            algorithm's); ``None`` (default): leave the detector where it is (a saved one loads on the
            CPU). Saved detectors given to :meth:`set_detector` later load there too.

    Attributes:
        scores: ``(buffer_size, n_envs)`` float32 detector score of each stored state.
        scored: ``(buffer_size, n_envs)`` bool, whether ``scores`` holds a score for that transition.
        last_n_steps: the horizons ``n`` of the last sampled batch (diagnostics).
        episodes_scored: finished episodes scored so far; ``score_seconds``: time spent scoring.
    """

    scores: np.ndarray
    scored: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        detector: Detector | str | os.PathLike[str] | None = None,
        n_max: int = 5,
        gamma: float | None = None,
        unscored: str = "nstep",
        frame_layout: str = "auto",
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        score_window: int | None = None,
        check_algorithm: bool = True,
        detector_device: str | None = None,
    ) -> None:
        if "discounts" not in ReplayBufferSamples._fields:
            import stable_baselines3

            raise ImportError(
                "CriticalNStepReplayBuffer needs stable-baselines3 >= 2.7 (its DQN reads the per-sample "
                f"discounts gamma^n that n-step buffers return); installed: {stable_baselines3.__version__}. "
                "Upgrade with: pip install 'stable-baselines3>=2.7' 'sb3-contrib>=2.7'"
            )
        algo = _constructing_algorithm()
        if check_algorithm and algo is not None:
            self._check_algorithm(algo)
        if isinstance(observation_space, spaces.Dict | spaces.Tuple):
            raise TypeError(
                f"CriticalNStepReplayBuffer stores array observations; got a {type(observation_space).__name__} "
                "space. Flatten it (gymnasium.wrappers.FlattenObservation) or use image observations."
            )
        if optimize_memory_usage:
            raise ValueError(
                "CriticalNStepReplayBuffer does not support optimize_memory_usage=True (it reads next "
                "observations n steps ahead); set optimize_memory_usage=False"
            )
        if int(n_max) < 1:
            raise ValueError(f"n_max must be >= 1, got {n_max}")
        if unscored not in _UNSCORED:
            raise ValueError(f"unscored must be one of {_UNSCORED}, got {unscored!r}")
        if frame_layout not in _FRAME_LAYOUTS:
            raise ValueError(f"frame_layout must be one of {_FRAME_LAYOUTS}, got {frame_layout!r}")
        if score_window is not None and int(score_window) < 1:
            raise ValueError(f"score_window must be >= 1 or None, got {score_window}")
        algo_gamma = getattr(algo, "gamma", None) if algo is not None else None
        if gamma is None:
            gamma = float(algo_gamma) if algo_gamma is not None else 0.99
        elif algo_gamma is not None and not np.isclose(float(gamma), float(algo_gamma)):
            raise ValueError(
                f"gamma={gamma} differs from {type(algo).__name__}'s gamma={algo_gamma}; the n-step "
                "returns would be discounted differently from the algorithm's targets. Leave gamma unset."
            )
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.n_max = int(n_max)
        self.gamma = float(gamma)
        self.unscored = unscored
        self.requested_layout = frame_layout
        self.frame_layout = frame_layout
        self.preprocess = preprocess
        self.score_window = None if score_window is None else int(score_window)
        self.scores = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.scored = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self._episode_length = np.zeros(self.n_envs, dtype=np.int64)
        self.last_n_steps = np.zeros(0, dtype=np.int64)
        self.episodes_scored = 0
        self.score_seconds = 0.0
        self.detector_device = str(self.device) if detector_device == "same" else detector_device
        self.detector: Detector | None = None
        if detector is not None:
            self.set_detector(detector, rescore=False)
        elif self.detector_device is not None:
            raise ValueError(f"detector_device={detector_device!r} was given without a detector")

    # -- validation ------------------------------------------------------------------------------
    @staticmethod
    def _check_algorithm(algo: BaseAlgorithm) -> None:
        names = {cls.__name__ for cls in type(algo).__mro__}
        if names & set(SUPPORTED_ALGORITHMS):
            return
        what = type(algo).__name__
        if names & set(_UNTESTED_CONSUMERS):
            hint = (
                f"{what} reads n-step discounts too but is untested with this buffer; pass "
                "replay_buffer_kwargs=dict(check_algorithm=False, ...) to use it anyway"
            )
        else:
            hint = (
                "its training step may ignore the `discounts` of the samples and would then discount "
                "n-step returns wrongly; pass check_algorithm=False only if it uses replay_data.discounts"
            )
        raise UnsupportedAlgorithmError(
            f"CriticalNStepReplayBuffer supports {', '.join(SUPPORTED_ALGORITHMS)} (and subclasses), "
            f"not {what}: {hint}"
        )

    def _dummy_frames(self) -> np.ndarray:
        dtype = getattr(self.observation_space, "dtype", None) or np.float32
        return np.zeros((2, *self.obs_shape), dtype=dtype)

    def _resolve_layout(self, detector: Detector) -> str:
        """The frame layout under which ``detector`` accepts this buffer's observations (or a clear error)."""
        if getattr(detector, "is_fitted", True) is False:
            raise ValueError(
                f"the {type(detector).__name__} given to CriticalNStepReplayBuffer is not trained: fit it (or "
                "load a saved one) first, or pass detector=None and let DetectorRefresh set one during training"
            )
        dummy = self._dummy_frames()
        if self.requested_layout != "auto":
            candidates = [self.requested_layout]
        elif dummy.ndim == 4:
            candidates = ["as_is", "chw_to_hwc", "hwc_to_chw"]
        else:
            candidates = ["as_is"]
        errors: list[str] = []
        for layout in candidates:
            frames = _convert_layout(dummy, layout)
            if self.preprocess is not None:
                frames = np.asarray(self.preprocess(frames))
            try:
                out = np.asarray(detector.score(frames))
            except (ValueError, TypeError, RuntimeError) as exc:
                errors.append(f"{layout} {tuple(frames.shape[1:])}: {exc}")
                continue
            if out.shape != (len(frames),):
                errors.append(f"{layout}: score returned shape {out.shape}, expected ({len(frames)},)")
                continue
            return layout
        raise ValueError(
            f"the detector {type(detector).__name__} does not accept this env's observations of shape "
            f"{tuple(self.obs_shape)} (tried frame layouts: {'; '.join(errors)}). Train the detector on "
            "observations of the env the agent trains on (same preprocessing and frame stack), or pass "
            "frame_layout= / preprocess= to convert them."
        )

    # -- detector --------------------------------------------------------------------------------
    def set_detector(self, detector: Detector | str | os.PathLike[str] | None, rescore: bool = True) -> None:
        """Use ``detector`` from now on (``None``: stop scoring); with ``rescore`` re-score the finished
        episodes already stored (otherwise they keep the scores of the previous detector)."""
        if isinstance(detector, str | os.PathLike):
            from critwrap.detectors.base import load_detector

            detector = load_detector(detector, device=self.detector_device)
        if detector is not None and not isinstance(detector, Detector):
            raise TypeError(
                f"detector must be a critwrap Detector, a saved detector's path or None, got {type(detector).__name__}"
            )
        if detector is not None:
            self.frame_layout = self._resolve_layout(detector)
        self.detector = detector
        if rescore:
            if detector is None:
                self.scored[:] = False
            else:
                self.rescore()

    def _score_segments(self, segments: Sequence[tuple[int, np.ndarray]]) -> None:
        """Score ``(env, chronological buffer indices)`` segments in one batch and store the scores."""
        if self.detector is None or not segments:
            return
        t0 = time.perf_counter()
        seqs: list[np.ndarray] = []
        owners: list[tuple[int, np.ndarray]] = []
        for env_i, idx in segments:
            frames = _convert_layout(self.observations[idx, env_i], self.frame_layout)
            if self.preprocess is not None:
                frames = np.asarray(self.preprocess(frames))
            w = self.score_window or len(frames)
            for start in range(0, len(frames), w):
                seqs.append(frames[start : start + w])
                owners.append((env_i, idx[start : start + w]))
        outs = self.detector.score_batch(seqs)
        for (env_i, idx), s in zip(owners, outs, strict=True):
            s = np.asarray(s, dtype=np.float32).reshape(-1)
            if s.shape != (len(idx),):
                raise ValueError(
                    f"{type(self.detector).__name__}.score_batch returned {s.shape[0]} scores for a "
                    f"sequence of {len(idx)} frames"
                )
            self.scores[idx, env_i] = s
            self.scored[idx, env_i] = True
        self.score_seconds += time.perf_counter() - t0

    def _chronological(self) -> np.ndarray:
        if self.full:
            return (self.pos + np.arange(self.buffer_size)) % self.buffer_size
        return np.arange(self.pos)

    def rescore(self, max_frames_per_call: int = 20_000) -> int:
        """Score again every finished episode stored (the oldest may have lost its start to the
        circular overwrite; its remaining steps are scored). Returns the number of episodes scored."""
        self.scored[:] = False
        if self.detector is None:
            return 0
        order = self._chronological()
        n_episodes = 0
        batch: list[tuple[int, np.ndarray]] = []
        frames_in_batch = 0
        for env_i in range(self.n_envs):
            ends = np.flatnonzero(self.dones[order, env_i] > 0)
            start = 0
            for end in ends:
                idx = order[start : end + 1]
                start = end + 1
                batch.append((env_i, idx))
                frames_in_batch += len(idx)
                n_episodes += 1
                if frames_in_batch >= max_frames_per_call:
                    self._score_segments(batch)
                    batch, frames_in_batch = [], 0
        self._score_segments(batch)
        return n_episodes

    def scored_fraction(self) -> float:
        """Fraction of the stored transitions that carry detector scores."""
        n = self.size() * self.n_envs
        if n == 0:
            return 0.0
        return float(self.scored[self._chronological()].sum()) / n

    def horizon_histogram(self) -> dict[str, Any]:
        """The horizons the detector's scores choose, over every stored transition of a scored episode:
        ``counts`` and ``shares`` of n = 1..n_max, their ``mean`` and the number of ``transitions``.

        A detector that singles out no states gives near-uniform shares (the argmax of flat scores is
        arbitrary) or piles on one n; one that finds critical states gives shares that follow where
        they lie. ``DetectorRefresh`` logs them as ``detector/horizon_mean`` and ``detector/horizon_share_<n>``.
        """
        order = self._chronological()
        rows, cols = np.nonzero(self.scored[order])
        if len(rows) == 0:
            return {
                "transitions": 0,
                "counts": [0] * self.n_max,
                "shares": [0.0] * self.n_max,
                "mean": float("nan"),
            }
        n = self.horizons(order[rows], cols)
        counts = np.bincount(n, minlength=self.n_max + 1)[1 : self.n_max + 1]
        return {
            "transitions": len(n),
            "counts": counts.astype(int).tolist(),
            "shares": (counts / len(n)).tolist(),
            "mean": float(n.mean()),
        }

    # -- storage ---------------------------------------------------------------------------------
    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        pos = self.pos
        self.scored[pos] = False
        super().add(obs, next_obs, action, reward, done, infos)
        self._episode_length += 1
        finished = np.flatnonzero(np.asarray(done).reshape(-1) > 0)
        if len(finished) == 0:
            return
        segments = []
        for env_i in finished:
            length = int(min(self._episode_length[env_i], self.buffer_size))
            idx = (pos - np.arange(length)[::-1]) % self.buffer_size
            segments.append((int(env_i), idx))
            self._episode_length[env_i] = 0
        if self.detector is not None:
            self._score_segments(segments)
            self.episodes_scored += len(segments)

    # -- sampling --------------------------------------------------------------------------------
    def horizons(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        """The horizon ``n`` (1..n_max) of each transition ``(batch_inds[k], env_indices[k])``."""
        batch_inds = np.asarray(batch_inds, dtype=np.int64)
        env_indices = np.asarray(env_indices, dtype=np.int64)
        last_valid = self.pos - 1
        original = self.timeouts[last_valid].copy()
        # the newest transition of an unfinished episode ends what may be read (beyond it: older data)
        self.timeouts[last_valid] = np.logical_or(original, np.logical_not(self.dones[last_valid]))
        try:
            return self._horizons(batch_inds, env_indices)
        finally:
            self.timeouts[last_valid] = original

    def _window(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The buffer rows of each transition's next ``n_max`` steps ``(B, n_max)`` and the offset in
        that window of the step that ends its episode (``n_max - 1`` when none does) ``(B,)``."""
        steps = np.arange(self.n_max)[None, :]
        indices = (batch_inds[:, None] + steps) % self.buffer_size
        env_col = env_indices[:, None]
        stop = np.logical_or(self.dones[indices, env_col] > 0, self.timeouts[indices, env_col] > 0)
        first_stop = np.where(stop.any(axis=1), stop.argmax(axis=1), self.n_max - 1)
        return indices, first_stop

    def _horizons(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        steps = np.arange(self.n_max)[None, :]
        indices, first_stop = self._window(batch_inds, env_indices)
        env_col = env_indices[:, None]
        within = steps <= first_stop[:, None]
        window = np.where(within, self.scores[indices, env_col], -np.inf)
        critical = window.argmax(axis=1) + 1
        fallback = first_stop + 1 if self.unscored == "nstep" else np.ones_like(first_stop)
        return np.where(self.scored[batch_inds, env_indices], critical, fallback).astype(np.int64)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        return self._samples_at(np.asarray(batch_inds), env_indices, env)

    def _samples_at(
        self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None
    ) -> ReplayBufferSamples:
        """The samples of the given transitions (what :meth:`sample` returns, for chosen indices)."""
        last_valid = self.pos - 1
        original = self.timeouts[last_valid].copy()
        self.timeouts[last_valid] = np.logical_or(original, np.logical_not(self.dones[last_valid]))
        try:
            n = self._horizons(batch_inds, env_indices)
            steps = np.arange(self.n_max)[None, :]
            indices = (batch_inds[:, None] + steps) % self.buffer_size
            rewards = self._normalize_reward(self.rewards[indices, env_indices[:, None]], env)
            weights = (self.gamma ** steps.astype(np.float64)) * (steps < n[:, None])
            returns = (rewards * weights).sum(axis=1, keepdims=True).astype(np.float32)
            discounts = (self.gamma ** n.astype(np.float64))[:, None].astype(np.float32)
            last = (batch_inds + n - 1) % self.buffer_size
            next_obs = self._normalize_obs(self.next_observations[last, env_indices], env)
            dones = self.dones[last, env_indices] * (1.0 - self.timeouts[last, env_indices])
        finally:
            self.timeouts[last_valid] = original
        self.last_n_steps = n
        obs = self._normalize_obs(self.observations[batch_inds, env_indices], env)
        return ReplayBufferSamples(
            observations=self.to_torch(obs),  # type: ignore[arg-type]
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations=self.to_torch(next_obs),  # type: ignore[arg-type]
            dones=self.to_torch(dones[:, None].astype(np.float32)),
            rewards=self.to_torch(returns),
            discounts=self.to_torch(discounts),
        )

    # -- pickling (SB3's save_replay_buffer) -------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if state.get("detector") is not None:
            # detectors hold torch modules built at run time; save them with detector.save(DIR) instead
            state["detector"] = None
        if state.get("preprocess") is not None:
            try:
                import pickle

                pickle.dumps(state["preprocess"])
            except Exception:
                warnings.warn(
                    "CriticalNStepReplayBuffer: preprocess is not picklable and is dropped from the saved buffer",
                    stacklevel=2,
                )
                state["preprocess"] = None
        return state
