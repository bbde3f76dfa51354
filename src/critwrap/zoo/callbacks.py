"""The zoo's own SB3 callbacks: evaluation that also writes a CSV and survives ``--resume``, and
checkpoints that keep only the newest few (replay buffers are large).

Example:
    >>> from critwrap.zoo.callbacks import ZooCheckpointCallback
    >>> cb = ZooCheckpointCallback(save_freq=1000, save_path="runs/x/checkpoints", keep=2)
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback

from critwrap.zoo.runs import CHECKPOINT_PREFIX, checkpoint_files, list_checkpoints

__all__ = ["ZooCheckpointCallback", "ZooEvalCallback", "write_evaluations_csv"]


def write_evaluations_csv(
    path: str | Path, timesteps: list[int], results: list[list[float]], lengths: list[list[int]]
) -> None:
    """One row per evaluation: timesteps, mean/std return, mean length, per-episode returns/lengths (JSON)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timesteps", "mean_return", "std_return", "mean_length", "returns", "lengths"])
        for t, r, n in zip(timesteps, results, lengths):
            writer.writerow(
                [
                    int(t),
                    float(np.mean(r)),
                    float(np.std(r)),
                    float(np.mean(n)),
                    json.dumps([float(x) for x in r]),
                    json.dumps([int(x) for x in n]),
                ]
            )
    os.replace(tmp, path)


class ZooEvalCallback(EvalCallback):
    """SB3's ``EvalCallback`` writing ``evaluations.npz`` and ``evaluations.csv`` into ``log_dir``.

    ``load_history(up_to)`` reloads earlier evaluations (``--resume``), dropping those made after the
    checkpoint resumed from, so the files keep one consistent history and ``best_mean_reward`` holds.
    """

    #: an evaluation longer than this many seconds prints a one-time note (how to make evaluations cheaper)
    slow_seconds: float = 60.0

    def __init__(self, eval_env: Any, *, log_dir: str | Path, **kwargs: Any) -> None:
        self.log_dir = Path(log_dir)
        super().__init__(
            eval_env, log_path=str(self.log_dir), best_model_save_path=str(self.log_dir), **kwargs
        )
        self.csv_path = self.log_dir / "evaluations.csv"
        self.slow_noted = False

    def load_history(self, up_to: int | None = None) -> int:
        """Reload ``evaluations.npz`` (evaluations at or before ``up_to`` timesteps); returns how many."""
        path = self.log_dir / "evaluations.npz"
        if not path.is_file():
            return 0
        with np.load(path) as data:
            timesteps = [int(t) for t in data["timesteps"]]
            results = [list(map(float, r)) for r in data["results"]]
            lengths = [list(map(int, n)) for n in data["ep_lengths"]]
        keep = [i for i, t in enumerate(timesteps) if up_to is None or t <= up_to]
        self.evaluations_timesteps = [timesteps[i] for i in keep]
        self.evaluations_results = [results[i] for i in keep]
        self.evaluations_length = [lengths[i] for i in keep]
        if self.evaluations_results:
            self.best_mean_reward = float(max(np.mean(r) for r in self.evaluations_results))
            self.last_mean_reward = float(np.mean(self.evaluations_results[-1]))
        return len(keep)

    def _on_step(self) -> bool:
        before = len(self.evaluations_timesteps)
        t0 = time.perf_counter()
        logger = self.logger
        dump = logger.dump
        patched_before = "dump" in vars(logger)

        def dump_with_seconds(step: int = 0) -> None:
            # EvalCallback dumps its eval/ metrics right after evaluating: add the evaluation's time to
            # the same record, so it lands at the evaluation's step (TensorBoard, CSV, stdout)
            logger.record("eval/seconds", time.perf_counter() - t0)
            dump(step)

        logger.dump = dump_with_seconds  # type: ignore[method-assign]
        try:
            keep_going = super()._on_step()
        finally:
            if patched_before:
                logger.dump = dump  # type: ignore[method-assign]
            else:
                del logger.dump  # the class's method again
        if len(self.evaluations_timesteps) != before:
            seconds = time.perf_counter() - t0
            write_evaluations_csv(
                self.csv_path, self.evaluations_timesteps, self.evaluations_results, self.evaluations_length
            )
            if seconds > self.slow_seconds and not self.slow_noted:
                self.slow_noted = True
                lengths = self.evaluations_length[-1]
                print(
                    f"note: the evaluation at step {self.num_timesteps} took {seconds:.0f} s ({len(lengths)} "
                    f"episodes, mean length {np.mean(lengths):.0f} steps, longest {max(lengths)}); a greedy "
                    "policy early in training can play until the env's time limit. Make evaluations cheaper "
                    "with --eval-max-steps N (e.g. 4500 on Atari), --eval-freq or --eval-episodes.",
                    file=sys.stderr,
                    flush=True,
                )
        return keep_going


class ZooCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` (model, replay buffer, VecNormalize) keeping the newest ``keep`` checkpoints."""

    def __init__(self, save_freq: int, save_path: str | Path, keep: int = 2, verbose: int = 0) -> None:
        super().__init__(
            save_freq=save_freq,
            save_path=str(save_path),
            name_prefix=CHECKPOINT_PREFIX,
            save_replay_buffer=True,
            save_vecnormalize=True,
            verbose=verbose,
        )
        self.keep = keep

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self.save_now()
        return True

    def save_now(self) -> Path:
        """Save a checkpoint at the model's current timestep and prune old ones; returns the model zip."""
        self.num_timesteps = self.model.num_timesteps
        os.makedirs(self.save_path, exist_ok=True)
        model_path = Path(self._checkpoint_path(extension="zip"))
        self.model.save(model_path)
        buffer = getattr(self.model, "replay_buffer", None)
        if self.save_replay_buffer and buffer is not None:
            self.model.save_replay_buffer(self._checkpoint_path("replay_buffer_", extension="pkl"))  # type: ignore[attr-defined]
        vecnorm = self.model.get_vec_normalize_env()
        if self.save_vecnormalize and vecnorm is not None:
            vecnorm.save(self._checkpoint_path("vecnormalize_", extension="pkl"))
        if self.verbose >= 2:
            print(f"Saved checkpoint {model_path}")
        self.prune()
        return model_path

    def prune(self) -> None:
        if self.keep <= 0:
            return
        found = list_checkpoints(self.save_path)
        for _, path in found[: -self.keep]:
            for file in checkpoint_files(path).values():
                file.unlink(missing_ok=True)
