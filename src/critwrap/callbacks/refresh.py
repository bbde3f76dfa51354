"""``DetectorRefresh``: learn the critical-state detector online, from the episodes the agent plays.

The callback records every finished training episode (of every env of the ``VecEnv``; it *is* an
:class:`~critwrap.callbacks.record.EpisodeRecorderCallback`, kept in memory unless ``store`` is given)
and, every ``every`` environment steps (at the end of a rollout, so on-policy rollouts are never
split), fits the detector on the most recent ``max_episodes`` episodes (the first time from scratch,
``epochs`` epochs; later, for detectors whose ``fit`` takes ``warm_start``, such as DSI, it continues
from the current weights for ``finetune_epochs`` epochs). Then it hot-swaps the detector everywhere it
is used:

* env wrappers with a ``set_detector(detector, episodes=None)`` method (``SubgoalReward``), through
  ``VecEnv.env_method``, and ``VecEnvWrapper`` twins in the ``VecEnv`` chain (``SubgoalRewardVecEnv``),
  given the recorded episodes to re-extract their subgoals from;
* the algorithm's replay buffer when it has ``set_detector`` (:class:`critwrap.buffers.CriticalNStepReplayBuffer`),
  which re-scores the finished episodes it holds.

Metrics go through SB3's logger under ``detector/``: ``refreshes``, ``episodes`` (used in the last fit),
``fit_seconds``, ``mean_score`` (mean detector score over the fitted episodes), the detector's last
training record (DSI: ``loss_predictor``, ``loss_detector``, ``mask_mean``, accuracies), ``skipped``
(refreshes skipped because the data could not train the detector, e.g. a single class) and
``buffer_rescored``.

**Targets.** ``target="success"`` labels an episode 1 if its return exceeds ``success_above`` (DSI
classification: success / failure, as on GridWorld); ``target="return"`` keeps the return (DSI
regression, as on Seaquest); ``"auto"`` picks ``"return"`` for regression detectors and ``"success"``
otherwise. With ``window=N`` episodes are cut into consecutive windows of N steps, each with its own
return (Seaquest: 200). When a ``SubgoalReward`` wrapper (or its VecEnv twin) is in the env, returns
are computed from ``info["original_reward"]`` (the task's reward, without the subgoal bonus).

Example:
    >>> from stable_baselines3 import PPO
    >>> from critwrap.callbacks.refresh import DetectorRefresh
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> cb = DetectorRefresh(RandomDetector(seed=0), every=128, min_episodes=2)
    >>> model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0)
    >>> _ = model.learn(512, callback=cb)
    >>> cb.refreshes >= 2, cb.last_metrics["episodes"] >= 2
    (True, True)
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from critwrap.callbacks.record import EpisodeRecorderCallback
from critwrap.detectors.base import Detector
from critwrap.episodes import Episode, EpisodeStore

__all__ = ["DetectorRefresh"]

_TARGETS = ("auto", "success", "return")
_REWARD_KEY = "original_reward"


class _RecentEpisodes:
    """In-memory stand-in for an EpisodeStore (``append`` -> id), keeping the newest ``maxlen`` episodes;
    optionally also writes every episode to a real store on disk."""

    def __init__(self, maxlen: int, disk: EpisodeStore | None, max_frames: int | None = None) -> None:
        self.episodes: deque[Episode] = deque(maxlen=maxlen)
        self.disk = disk
        self.count = 0
        self.max_frames = max_frames

    @property
    def frames(self) -> int:
        return sum(len(ep) for ep in self.episodes)

    def append(self, episode: Episode) -> str:
        self.episodes.append(episode)
        if self.max_frames is not None:
            total = self.frames
            while len(self.episodes) > 1 and total > self.max_frames:
                total -= len(self.episodes.popleft())
        self.count += 1
        if self.disk is not None:
            return self.disk.append(episode)
        return f"mem-{self.count - 1:06d}"

    def __len__(self) -> int:
        return len(self.episodes)


def _resolve_detector(
    detector: Detector | str | os.PathLike[str] | None, kwargs: Mapping[str, Any]
) -> Detector:
    """A Detector object from an instance, a saved detector's directory or a registry name (+ kwargs)."""
    if isinstance(detector, Detector):
        if kwargs:
            raise ValueError("detector_kwargs is only used with a registry name (e.g. detector='dsi')")
        return detector
    if detector is None:
        detector = "dsi"
    if isinstance(detector, os.PathLike) or (isinstance(detector, str) and Path(detector).is_dir()):
        from critwrap.detectors.base import load_detector

        if kwargs:
            raise ValueError("detector_kwargs is only used with a registry name, not a saved detector")
        return load_detector(detector)
    if isinstance(detector, str):
        from critwrap import registry

        cls = registry.resolve("detectors", detector)
        obj = cls(**dict(kwargs))
        if not isinstance(obj, Detector):
            raise TypeError(f"detector {detector!r} resolved to {cls!r}, which is not a critwrap Detector")
        return obj
    raise TypeError(
        f"detector must be a Detector, a saved detector's directory or a registry name, got {type(detector).__name__}"
    )


def _wrappers_with_set_detector(env: Any) -> list[Any]:
    """The wrappers in ``env``'s chain (outermost first) whose class defines ``set_detector``."""
    found = []
    seen = 0
    while env is not None and seen < 1000:
        if callable(getattr(type(env), "set_detector", None)):
            found.append(env)
        env = env.__dict__.get("env")  # gymnasium.Wrapper.env; the base env has none
        seen += 1
    return found


def fit_parameters(detector: Any) -> set[str]:
    """The keyword arguments ``detector.fit`` takes. For wrappers whose ``fit(episodes, **kwargs)`` hands
    them on (:class:`~critwrap.detectors.windowed.Windowed`'s ``member``,
    :class:`~critwrap.detectors.ensemble.MeanEnsemble`'s ``members``), those of the wrapped detectors
    (every member's, for an ensemble), so that epochs, warm starts and progress settings reach them."""
    params = inspect.signature(detector.fit).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        inner = getattr(detector, "members", None)
        if inner is None and getattr(detector, "member", None) is not None:
            inner = [detector.member]
        if inner:
            names |= set.intersection(*(fit_parameters(m) for m in inner))
    return names


class DetectorRefresh(EpisodeRecorderCallback):
    """Refit (or fine-tune) a detector on recent training episodes every ``every`` steps and hot-swap it.

    Args:
        detector: a :class:`~critwrap.detectors.base.Detector` (fitted or not), the directory of a saved
            one, or a registry name (default ``"dsi"``) built with ``detector_kwargs``.
        every: environment steps (over all envs) between refreshes.
        min_episodes: finished episodes needed before the first refresh.
        max_episodes: fit on at most this many of the most recent episodes (older ones are dropped).
        max_frames: and on at most this many frames (the newest episodes; bounds memory: 50 000 Atari
            frames of 4x84x84 take 1.4 GB). ``None``: no bound.
        epochs: epochs of the first fit (and of every fit of detectors that cannot warm-start).
        finetune_epochs: epochs of later fits, continued from the current weights.
        target: ``"auto"``, ``"success"`` or ``"return"`` (see the module docstring).
        success_above: an episode (window) is a success when its return exceeds this.
        window: cut episodes into windows of this many steps for fitting (``None``: whole episodes).
        fit_kwargs: extra keyword arguments for ``detector.fit`` (e.g. ``{"batch_size": 16}``).
        update_envs: call ``set_detector`` on the env wrappers / VecEnv twins that have it.
        update_buffer: call ``set_detector`` on the replay buffer when it has it.
        rescore_buffer: let the replay buffer re-score the episodes it holds.
        store: also write every recorded episode to this :class:`EpisodeStore` directory.
        save_dir: save the detector after each refresh to ``save_dir/refresh-<k>`` (and ``latest``).
        run_dir: the zoo's run directory (passed by ``python -m critwrap.zoo train``); without ``save_dir``
            the detectors are saved to ``run_dir/detector``.
        seed: seed of the fits (``seed + k`` for the k-th refresh).
        verbose: 1 prints a line per refresh.
        detector_device: fit and score the detector there (``"cuda"``; see
            :meth:`critwrap.detectors.base.Detector.to`); ``None`` (default): where it is (the CPU for a
            registry name or a saved detector). The wrappers and the buffer receive the detector itself,
            so they score on that device too.

    Attributes:
        detector: the current detector. ``refreshes``: refreshes done. ``skipped``: refreshes skipped.
        last_metrics: what the last refresh logged (without the ``detector/`` prefix).
    """

    def __init__(
        self,
        detector: Detector | str | os.PathLike[str] | None = None,
        every: int = 50_000,
        min_episodes: int = 16,
        max_episodes: int = 500,
        max_frames: int | None = 50_000,
        epochs: int = 5,
        finetune_epochs: int = 1,
        target: str = "auto",
        success_above: float = 0.0,
        window: int | None = None,
        detector_kwargs: Mapping[str, Any] | None = None,
        fit_kwargs: Mapping[str, Any] | None = None,
        update_envs: bool = True,
        update_buffer: bool = True,
        rescore_buffer: bool = True,
        store: str | os.PathLike[str] | None = None,
        save_dir: str | os.PathLike[str] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        verbose: int = 0,
        detector_device: str | None = None,
    ) -> None:
        for name, value, low in (
            ("every", every, 1),
            ("min_episodes", min_episodes, 1),
            ("max_episodes", max_episodes, 1),
            ("epochs", epochs, 1),
            ("finetune_epochs", finetune_epochs, 0),
        ):
            if int(value) < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if int(min_episodes) > int(max_episodes):
            raise ValueError(f"min_episodes ({min_episodes}) cannot exceed max_episodes ({max_episodes})")
        if target not in _TARGETS:
            raise ValueError(f"target must be one of {_TARGETS}, got {target!r}")
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self._own_tmp = store is None
        super().__init__(
            store if store is not None else tempfile.mkdtemp(prefix="critwrap-refresh-"), verbose=verbose
        )
        self.detector = _resolve_detector(detector, detector_kwargs or {})
        if detector_device is not None:
            self.detector = self.detector.to(detector_device)
        self.every = int(every)
        self.min_episodes = int(min_episodes)
        self.max_episodes_kept = int(max_episodes)
        if max_frames is not None and int(max_frames) < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        self.max_frames = None if max_frames is None else int(max_frames)
        self.epochs = int(epochs)
        self.finetune_epochs = int(finetune_epochs)
        self.target = target
        self.success_above = float(success_above)
        self.window = None if window is None else int(window)
        self.fit_kwargs = dict(fit_kwargs or {})
        self.update_envs = bool(update_envs)
        self.update_buffer = bool(update_buffer)
        self.rescore_buffer = bool(rescore_buffer)
        if save_dir is None and run_dir is not None and str(run_dir):
            save_dir = Path(run_dir) / "detector"
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.seed = int(seed)
        self.refreshes = 0
        self.skipped = 0
        self.last_metrics: dict[str, float] = {}
        self._last_refresh_step = 0
        self._recent: _RecentEpisodes | None = None
        self._reward_key: str | None = None
        self._env_targets: list[VecEnvWrapper] = []
        self._wrappers_in_envs = False
        self._check_fit_kwargs()

    # -- setup -------------------------------------------------------------------------------------
    def _check_fit_kwargs(self) -> None:
        try:
            params = inspect.signature(self.detector.fit).parameters
        except (TypeError, ValueError):  # pragma: no cover
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        unknown = sorted(set(self.fit_kwargs) - set(params))
        if unknown:
            raise TypeError(
                f"fit_kwargs {unknown} are not arguments of {type(self.detector).__name__}.fit "
                f"(it takes {', '.join(p for p in params if p != 'self')})"
            )

    @property
    def regression(self) -> bool:
        config = getattr(self.detector, "config", None)
        return getattr(config, "task", None) == "regression"

    @property
    def resolved_target(self) -> str:
        if self.target != "auto":
            return self.target
        return "return" if self.regression else "success"

    def _init_callback(self) -> None:
        venv = self.training_env
        # VecEnv twins with set_detector in the wrapper chain, and per-env wrappers with it
        inner: VecEnv = venv
        twins: list[VecEnvWrapper] = []
        while isinstance(inner, VecEnvWrapper):
            if callable(getattr(type(inner), "set_detector", None)):
                twins.append(inner)
            inner = inner.venv
        self._env_targets = twins
        # in-process envs: walk each env's wrapper chain ourselves (VecEnv.env_method only reaches inner
        # wrappers on SB3 versions that forward through get_wrapper_attr)
        self._env_wrappers: list[Any] = []
        if isinstance(inner, DummyVecEnv):
            for env in inner.envs:
                self._env_wrappers.extend(_wrappers_with_set_detector(env))
            self._wrappers_in_envs = bool(self._env_wrappers)
        else:
            try:
                self._wrappers_in_envs = bool(inner.has_attr("set_detector"))
            except Exception as exc:
                self._wrappers_in_envs = False
                if self.update_envs:
                    warnings.warn(
                        f"DetectorRefresh cannot ask the envs of this {type(inner).__name__} whether a wrapper "
                        f"has set_detector ({type(exc).__name__}: {exc}); env wrappers will not be updated. "
                        "Use a DummyVecEnv or stable-baselines3 >= 2.7.",
                        stacklevel=2,
                    )
        self._check_observations()
        super()._init_callback()
        if self._recent is None:  # a second learn() call keeps the episodes recorded so far
            disk = None if self._own_tmp else self.store
            self._recent = _RecentEpisodes(self.max_episodes_kept, disk, self.max_frames)
        self.store = self._recent  # type: ignore[assignment]
        self._last_refresh_step = int(self.num_timesteps)
        if self.update_buffer:
            buffer = getattr(self.model, "replay_buffer", None)
            if buffer is not None and callable(getattr(buffer, "set_detector", None)):
                if getattr(buffer, "detector", None) is None and getattr(self.detector, "is_fitted", True):
                    buffer.set_detector(self.detector, rescore=False)

    def _check_observations(self) -> None:
        """Fail before training when the detector cannot read this env's observations."""
        space = self.training_env.observation_space
        shape = tuple(getattr(space, "shape", None) or ())
        det = self.detector
        name = type(det).__name__
        if getattr(det, "is_fitted", False):
            dtype = getattr(space, "dtype", None) or np.float32
            probe = np.zeros((2, *shape), dtype=dtype)
            candidates = [probe]
            if probe.ndim == 4:  # VecTransposeImage: the recorder stores channels-last frames
                candidates.append(np.ascontiguousarray(np.moveaxis(probe, 1, -1)))
            errors = []
            for frames in candidates:
                try:
                    det.score(frames)
                    return
                except (ValueError, TypeError, RuntimeError) as exc:
                    errors.append(str(exc))
            raise ValueError(
                f"DetectorRefresh: the {name} cannot score this env's observations of shape {shape}: "
                f"{'; '.join(errors)}. Give a detector trained on this env's observations, or an untrained one."
            )
        if name == "DSI":
            from critwrap.detectors.dsi import MIN_FRAME_SIZE

            spatial = shape[:2] if len(shape) == 2 else sorted(shape)[1:] if len(shape) == 3 else ()
            if len(spatial) != 2 or min(spatial) < MIN_FRAME_SIZE:
                raise ValueError(
                    f"DetectorRefresh: a DSI learns from image observations of at least {MIN_FRAME_SIZE}x"
                    f"{MIN_FRAME_SIZE} pixels; this env's observations have shape {shape}. Use image "
                    "observations (e.g. the minigrid-image wrapper, Atari frames) or another detector."
                )

    def _on_step(self) -> bool:
        if self._reward_key is None and self.recording:
            # a reward-shaping wrapper (SubgoalReward) puts the task's own reward in info["original_reward"]:
            # the detector learns from that; seen from the first step on, recorded from then on
            infos = self.locals.get("infos") or []
            if infos and all(_REWARD_KEY in info for info in infos):
                self._reward_key = _REWARD_KEY
                if _REWARD_KEY not in self.record_infos:
                    self.record_infos = (*self.record_infos, _REWARD_KEY)
                    for ongoing in self._ongoing:
                        ongoing.infos[_REWARD_KEY] = [np.asarray(r) for r in ongoing.rewards]
        return super()._on_step()

    # -- data --------------------------------------------------------------------------------------
    def _rewards(self, ep: Episode) -> np.ndarray:
        if self._reward_key is not None and self._reward_key in ep.infos:
            return np.asarray(ep.infos[self._reward_key], dtype=np.float64).reshape(-1)
        return np.asarray(ep.rewards if ep.rewards is not None else np.zeros(len(ep)), dtype=np.float64)

    def _label(self, ret: float) -> int | None:
        return int(ret > self.success_above) if self.resolved_target == "success" else None

    def training_episodes(self) -> list[Episode]:
        """The recent episodes as the detector is fitted on them (windows, targets, length limit)."""
        assert self._recent is not None
        out: list[Episode] = []
        max_len = getattr(getattr(self.detector, "config", None), "max_length", None)
        fitted = bool(getattr(self.detector, "is_fitted", False))
        for ep in self._recent.episodes:
            rewards = self._rewards(ep)
            frames = ep.observations
            if self.window is not None:
                pieces = [(s, min(s + self.window, len(ep))) for s in range(0, len(ep), self.window)]
            else:
                pieces = [(0, len(ep))]
            for start, stop in pieces:
                ret = float(rewards[start:stop].sum())
                label = self._label(ret if self.window is not None else float(rewards.sum()))
                lo = start
                if fitted and max_len is not None and stop - start > int(max_len):
                    lo = stop - int(max_len)  # the predictor's fixed length: keep the end (where success is)
                    if self.resolved_target == "return":
                        ret = float(rewards[lo:stop].sum())
                out.append(
                    Episode(
                        frames[lo:stop],
                        rewards=rewards[lo:stop],
                        episode_return=ret,
                        label=label,
                        metadata=dict(ep.metadata),
                    )
                )
        return out

    def _subgoal_episodes(self) -> list[Episode]:
        """Whole recent episodes, returns from the task's reward (what SubgoalReward extracts subgoals from)."""
        assert self._recent is not None
        out = []
        for ep in self._recent.episodes:
            rewards = self._rewards(ep)
            ret = float(rewards.sum())
            out.append(Episode(ep.observations, rewards=rewards, episode_return=ret, label=self._label(ret)))
        return out

    # -- refresh -----------------------------------------------------------------------------------
    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        if self._recent is None or len(self._recent) < self.min_episodes:
            return
        if self.num_timesteps - self._last_refresh_step >= self.every:
            self.refresh()

    def _fit(self, episodes: list[Episode]) -> tuple[bool, float]:
        """Fit the detector; returns (fine-tuned?, seconds)."""
        det = self.detector
        params = fit_parameters(det)
        kwargs = dict(self.fit_kwargs)
        warm = "warm_start" in params and bool(getattr(det, "is_fitted", False))
        if "epochs" in params:
            kwargs.setdefault("epochs", self.finetune_epochs if warm else self.epochs)
        if warm:
            kwargs["warm_start"] = True
        if "progress" in params:
            kwargs.setdefault("progress", False)
        if "seed" in params:
            kwargs.setdefault("seed", self.seed + self.refreshes)
        t0 = time.perf_counter()
        if not (warm and kwargs.get("epochs") == 0):
            det.fit(episodes, **kwargs)
        return warm, time.perf_counter() - t0

    def refresh(self) -> bool:
        """Fit on the recent episodes now and hot-swap the detector; ``False`` if the data could not
        train it (e.g. DSI classification with only failures so far): then training goes on unchanged."""
        self._last_refresh_step = int(self.num_timesteps)
        episodes = self.training_episodes()
        try:
            warm, seconds = self._fit(episodes)
        except ValueError as exc:
            self.skipped += 1
            self.logger.record("detector/skipped", self.skipped)
            if self.verbose >= 1:
                print(f"DetectorRefresh: refresh skipped at {self.num_timesteps} steps: {exc}")
            return False
        self.refreshes += 1
        det = self.detector
        sample = [ep.frames for ep in episodes[: min(len(episodes), 32)]]
        scores = det.score_batch(sample)
        metrics: dict[str, float] = {
            "refreshes": float(self.refreshes),
            "episodes": float(len(episodes)),
            "fit_seconds": seconds,
            "fine_tuned": float(warm),
            "mean_score": float(np.mean(np.concatenate(scores))) if scores else float("nan"),
            "skipped": float(self.skipped),
        }
        if self.resolved_target == "success":
            metrics["success_fraction"] = float(np.mean([ep.label for ep in episodes]))
        history = getattr(det, "history", None)
        if history:
            for key, value in history[-1].items():
                if key != "epoch" and np.isfinite(value):
                    metrics[key] = float(value)
        path = self._save()
        metrics.update(self._hot_swap(path))
        for key, value in metrics.items():
            self.logger.record(f"detector/{key}", value)
        self.last_metrics = metrics
        if self.verbose >= 1:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"DetectorRefresh at {self.num_timesteps} steps: {shown}")
        return True

    def _save(self) -> Path | None:
        if self.save_dir is None:
            return None
        path = self.detector.save(self.save_dir / f"refresh-{self.refreshes:03d}")
        self.detector.save(self.save_dir / "latest")
        return path

    def _hot_swap(self, saved: Path | None) -> dict[str, float]:
        out: dict[str, float] = {}
        det = self.detector
        if self.update_envs and (self._env_targets or self._wrappers_in_envs):
            try:
                self._update_envs(det, saved)
                out["envs_updated"] = 1.0
            except ValueError as exc:
                # e.g. no successful episode among the recent ones to take subgoals from: keep the old ones
                warnings.warn(
                    f"DetectorRefresh: the env wrappers kept their previous detector/subgoals: {exc}",
                    stacklevel=2,
                )
                out["envs_updated"] = 0.0
        if self.update_buffer:
            buffer = getattr(self.model, "replay_buffer", None)
            if buffer is not None and callable(getattr(buffer, "set_detector", None)):
                t0 = time.perf_counter()
                buffer.set_detector(det, rescore=self.rescore_buffer)
                out["buffer_rescore_seconds"] = time.perf_counter() - t0
                scored = getattr(buffer, "scored_fraction", None)
                if callable(scored):
                    out["buffer_scored_fraction"] = float(scored())
                histogram = getattr(buffer, "horizon_histogram", None)
                if callable(histogram):
                    hist = histogram()
                    if hist["transitions"]:
                        out["horizon_mean"] = hist["mean"]
                        for i, share in enumerate(hist["shares"], start=1):
                            out[f"horizon_share_{i}"] = float(share)
        return out

    def _update_envs(self, det: Detector, saved: Path | None) -> None:
        """``set_detector(det, episodes=...)`` on the VecEnv twins and the per-env wrappers that have it."""
        episodes = self._subgoal_episodes()
        for twin in self._env_targets:
            twin.set_detector(det, episodes=episodes)  # type: ignore[attr-defined]
        if not self._wrappers_in_envs:
            return
        if self._env_wrappers:
            for wrapper in self._env_wrappers:
                wrapper.set_detector(det, episodes=episodes)
            return
        inner: VecEnv = self.training_env
        while isinstance(inner, VecEnvWrapper):
            inner = inner.venv
        # other processes get a saved copy: detectors hold torch modules that pickle poorly
        payload: Any = det
        tmp = None
        if not isinstance(inner, DummyVecEnv):
            if saved is None:
                tmp = tempfile.mkdtemp(prefix="critwrap-detector-")
                saved = det.save(tmp)
            payload = str(saved)
        try:
            inner.env_method("set_detector", payload, episodes=episodes)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _on_training_end(self) -> None:
        if self.verbose >= 1:
            print(
                f"DetectorRefresh: {self.refreshes} refreshes ({self.skipped} skipped), "
                f"{self.episodes_recorded} episodes recorded"
            )
        if self._own_tmp:
            shutil.rmtree(self.store_path, ignore_errors=True)
