"""``AttackEvalCallback``: how vulnerable is the policy at its critical states, as it trains?

Every ``eval_freq`` calls (SB3's ``EvalCallback`` convention: one call per ``VecEnv`` step, so
``eval_freq * n_envs`` environment steps), the callback runs the replay-protocol attack of
:func:`critwrap.attack.evaluate_attack` on the current policy: ``episodes`` clean episodes with seeds
``seed, seed + 1, ...``, each replayed with the detector's top-``k`` steps perturbed, and again with ``k``
random steps (and, with ``methods=("detector", "random", "victim")``, the victim's own ``k`` most
important steps). Nothing is trained on these episodes. Results go through SB3's logger (TensorBoard)
under ``attack/``:

* ``clean_return``, ``clean_win_rate``;
* per method ``m``: ``{m}_return``, ``{m}_drop`` (clean minus attacked return, mean over the seeds),
  ``{m}_win_rate`` and ``{m}_flipped_wins``;
* ``detector_to_random`` (the detector's drop over random-k's, the issue's ratio) when both ran and
  random-k's drop is positive; ``seconds``.

Each evaluation is also kept in :attr:`AttackEvalCallback.history` and, with ``log_path`` (the zoo: the
run directory), appended as one JSON line to ``attack_eval.jsonl`` (the full table of
:meth:`critwrap.attack.AttackReport.table`).

**Which env.** ``env`` is a Gymnasium env, a name for :func:`critwrap.make` (built for evaluation:
``training=False``), or a function returning an env; it must replay deterministically from a reset seed
(checked on every replay: a :class:`critwrap.attack.ReplayDivergenceError` stops training with the
step where it diverged). In the zoo (``--callback attack-eval:detector=DIR,k=5``) ``env`` may be left
out: the run's own evaluation env is built from its ``config.json`` (its wrappers, frame stacking and
``eval_max_steps``; with ``normalize`` the training env's running statistics are copied in before each
evaluation, as SB3's ``EvalCallback`` does).

Example:
    >>> from stable_baselines3 import PPO
    >>> from critwrap.callbacks.attack import AttackEvalCallback
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> cb = AttackEvalCallback(RandomDetector(seed=0), env="CartPole-v1", k=3, episodes=2, eval_freq=256)
    >>> model = PPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=64, n_epochs=1, seed=0)
    >>> _ = model.learn(512, callback=cb)
    >>> [h["timesteps"] for h in cb.history], sorted(cb.history[0]["methods"])
    ([256, 512], ['detector', 'random'])
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["AttackEvalCallback"]

_LOG_FILE = "attack_eval.jsonl"


class AttackEvalCallback(BaseCallback):
    """Evaluate top-k critical-state attacks on the policy being trained (module docstring).

    Args:
        detector: a fitted :class:`~critwrap.detectors.base.Detector`, the folder of a saved one, or
            ``None`` when ``"detector"`` is not among ``methods``.
        env: the env to attack (module docstring); ``None`` only inside a zoo run (``run_dir`` set).
        k: attacked steps per episode.
        eval_freq: evaluate every this many calls (VecEnv steps); also once when training ends if
            ``at_end``.
        episodes: seeds per evaluation (each is played clean, then once per method).
        perturbation: ``"action"``, ``"fgsm"``, ``"pgd"`` (with ``epsilon``), or a Perturbation.
        epsilon: the L-infinity budget of ``"fgsm"`` / ``"pgd"``.
        methods: any of ``"detector"``, ``"random"``, ``"victim"``, ``"block"``, ``"detector-spaced"``.
        seed: the first reset seed (the same seeds at every evaluation, so the curve compares like with like).
        frames: what the detector scores: ``"observations"``, ``"render"``, ``"minigrid-pov[:TILE]"`` or a
            function ``(env, obs) -> frame``.
        win_threshold: an episode is won when its return exceeds this.
        allow_short: attack every step of episodes shorter than ``k`` (default; ``False``: an error).
        detector_lead: shift the detector's steps (see :func:`critwrap.attack.evaluate_attack`).
        sample: the victim samples its actions (reproducibly per seed and step; see
            :class:`critwrap.attack.Victim`) instead of acting greedily; for policies that get stuck
            when greedy (PPO on Atari / MinAtar).
        at_end: also evaluate when training ends (unless an evaluation just ran at that step).
        log_path: folder for ``attack_eval.jsonl``; default ``run_dir`` (set by the zoo), else none.
        run_dir: the zoo run directory (filled in by ``zoo train``).
        detector_device: where a detector loaded from a folder scores (default: the CPU).
        verbose: 1 prints a line per evaluation.
    """

    def __init__(
        self,
        detector: Any = None,
        *,
        env: gym.Env[Any, Any] | str | Callable[[], gym.Env[Any, Any]] | None = None,
        k: int = 5,
        eval_freq: int = 10_000,
        episodes: int = 10,
        perturbation: Any = "action",
        epsilon: float | None = None,
        methods: Sequence[str] = ("detector", "random"),
        seed: int = 0,
        frames: Any = "observations",
        win_threshold: float = 0.0,
        allow_short: bool = True,
        detector_lead: int = 0,
        sample: bool = False,
        at_end: bool = True,
        log_path: str | os.PathLike[str] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        detector_device: str | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        from critwrap.attack.evaluate import EXTRA_METHODS, METHODS

        for name, value in (("k", k), ("eval_freq", eval_freq), ("episodes", episodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AttackEvalCallback: {name} must be a positive integer, got {value!r}")
        if isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        known = (*METHODS, *EXTRA_METHODS)
        unknown = [m for m in methods if m not in known]
        if unknown or not methods:
            raise ValueError(
                f"AttackEvalCallback: methods must be a non-empty subset of {known}, got {list(methods)}"
            )
        if "detector" in methods or "detector-spaced" in methods:
            if detector is None:
                raise ValueError(
                    "AttackEvalCallback: the 'detector' method needs a detector (a fitted Detector or the "
                    "folder of a saved one); or leave it out of methods"
                )
        if isinstance(detector, str | os.PathLike):
            from critwrap.detectors.base import load_detector

            detector = load_detector(detector, device=detector_device)
        if detector is not None and not hasattr(detector, "score"):
            raise TypeError(
                f"AttackEvalCallback: detector must have score(frames), got {type(detector).__name__}"
            )
        if env is None and run_dir is None:
            raise ValueError(
                "AttackEvalCallback needs env= (a Gymnasium env, a name for critwrap.make or a function "
                "returning an env); only inside `zoo train` is the run's own evaluation env used"
            )
        from critwrap.attack.perturbations import make_perturbation

        make_perturbation(perturbation, epsilon=epsilon)  # a bad name or a missing epsilon fails now
        if isinstance(frames, str):
            from critwrap.zoo.attack import parse_frames

            frames = parse_frames(frames)
        self.detector = detector
        self.env_arg = env
        self.k = int(k)
        self.eval_freq = int(eval_freq)
        self.episodes = int(episodes)
        self.perturbation = perturbation
        self.epsilon = epsilon
        self.methods = list(methods)
        self.seed = int(seed)
        self.frames = frames
        self.win_threshold = float(win_threshold)
        self.allow_short = bool(allow_short)
        self.detector_lead = int(detector_lead)
        self.sample = bool(sample)
        self.at_end = bool(at_end)
        self.run_dir = None if run_dir is None else Path(run_dir)
        log = log_path if log_path is not None else run_dir
        self.log_file = None if log is None else Path(log) / _LOG_FILE
        self.history: list[dict[str, Any]] = []
        self._env: gym.Env[Any, Any] | None = None
        self._venv: Any = None  # the zoo's evaluation VecEnv, for VecNormalize syncing
        self._last_eval_step = -1

    # -- the env ---------------------------------------------------------------------------------
    def _build_env(self) -> gym.Env[Any, Any]:
        env = self.env_arg
        if isinstance(env, gym.Env):
            return env
        if isinstance(env, str):
            import critwrap

            return critwrap.make(env)
        if callable(env):
            built = env()
            if not isinstance(built, gym.Env):
                raise TypeError(
                    f"AttackEvalCallback: env() returned {type(built).__name__}, not a gymnasium.Env"
                )
            return built
        return self._zoo_env()

    def _zoo_env(self) -> gym.Env[Any, Any]:
        """The run's evaluation env, as `zoo attack` builds it (:func:`critwrap.zoo.attack.make_attack_env`)."""
        from critwrap.zoo.attack import VecEnvAsEnv, make_attack_env, needs_render
        from critwrap.zoo.common import LoadedRun
        from critwrap.zoo.runs import read_json

        assert self.run_dir is not None
        path = self.run_dir / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"AttackEvalCallback: no config.json in {self.run_dir}; outside `zoo train` pass env="
            )
        run = LoadedRun(
            model=None,
            config=dict(read_json(path)),
            model_path=path,
            run_dir=self.run_dir,
            vecnormalize_path=None,
        )
        env = make_attack_env(run, render_mode="rgb_array" if needs_render(self.frames) else None)
        if isinstance(env, VecEnvAsEnv):  # frame stacking / VecNormalize at the VecEnv level
            self._venv = env.venv  # its normalisation statistics are synced from training's
        return env

    def _init_callback(self) -> None:
        if self._env is None:
            self._env = self._build_env()
        if self.detector is not None and any(m.startswith("detector") for m in self.methods):
            # a detector for other frames fails now, before training, not at the first evaluation
            import numpy as np

            from critwrap.attack.protocols import get_frame, score_frames

            self._sync_normalization()
            obs, _ = self._env.reset(seed=self.seed)
            frame = get_frame(self._env, obs, self.frames)
            score_frames(self.detector, np.stack([frame, frame]))

    # -- evaluation ------------------------------------------------------------------------------
    def _sync_normalization(self) -> None:
        if self._venv is None:
            return
        from stable_baselines3.common.vec_env import sync_envs_normalization

        try:
            sync_envs_normalization(self.training_env, self._venv)
        except AttributeError as exc:  # the wrappers of the two VecEnvs differ
            raise RuntimeError(
                f"AttackEvalCallback: could not copy the training env's normalisation statistics: {exc}"
            ) from exc

    def evaluate(self) -> dict[str, Any]:
        """Run one attack evaluation now, log it, and return its record."""
        from critwrap.attack.evaluate import evaluate_attack

        assert self._env is not None, "the callback is not initialised (model.learn(callback=...))"
        self._sync_normalization()
        t0 = time.perf_counter()
        from critwrap.attack.victim import Victim

        victim = Victim(self.model, sample=self.sample, sample_seed=self.seed) if self.sample else self.model
        report = evaluate_attack(
            self._env,
            victim,
            self.detector,
            k=self.k,
            perturbation=self.perturbation,
            episodes=self.episodes,
            seed=self.seed,
            methods=self.methods,
            frames=self.frames,
            epsilon=self.epsilon,
            win_threshold=self.win_threshold,
            allow_short=self.allow_short,
            detector_lead=self.detector_lead,
            n_boot=200,
        )
        seconds = time.perf_counter() - t0
        rows = {r["method"]: r for r in report.table()}
        clean = rows["clean"]
        self.logger.record("attack/clean_return", clean["mean_return"])
        self.logger.record("attack/clean_win_rate", clean["win_rate"])
        for m in self.methods:
            r = rows[m]
            key = m.replace("-", "_")
            self.logger.record(f"attack/{key}_return", r["mean_return"])
            self.logger.record(f"attack/{key}_drop", r["drop"])
            self.logger.record(f"attack/{key}_win_rate", r["win_rate"])
            self.logger.record(f"attack/{key}_flipped_wins", r["flipped_wins"])
        ratio = None
        if "detector" in rows and "random" in rows and rows["random"]["drop"] > 0:
            ratio = rows["detector"]["drop"] / rows["random"]["drop"]
            self.logger.record("attack/detector_to_random", ratio)
        self.logger.record("attack/seconds", seconds)
        table = [
            {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in report.table()
        ]
        record = {
            "timesteps": int(self.num_timesteps),
            "k": self.k,
            "episodes": self.episodes,
            "seed": self.seed,
            "methods": list(self.methods),
            "sample": self.sample,
            "detector_to_random": ratio,
            "seconds": round(seconds, 3),
            "table": table,  # NaN (no attacked step) as null: strict JSON
        }
        self.history.append(record)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, allow_nan=False) + "\n")
        if self.verbose:
            drops = ", ".join(f"{m} drop {rows[m]['drop']:.3g}" for m in self.methods)
            print(
                f"attack eval at {self.num_timesteps} steps (k={self.k}, {self.episodes} episodes): clean "
                f"{clean['mean_return']:.3g}, {drops} ({seconds:.1f} s)"
            )
        self._last_eval_step = self.num_timesteps
        return record

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq == 0:
            self.evaluate()
            self.logger.dump(self.num_timesteps)
        return True

    def _on_training_end(self) -> None:
        if self.at_end and self._last_eval_step != self.num_timesteps:
            self.evaluate()
            self.logger.dump(self.num_timesteps)
