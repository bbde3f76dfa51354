"""The run directory: where ``python -m critwrap.zoo train`` writes one training run (the result store).

Layout::

    <log-dir>/<experiment>/<algo>/<env>/<variant>/seed_<seed>/
        config.json        the resolved configuration: algo, env (as given and the Gymnasium id),
                           hyperparameters after merging YAML and CLI overrides (JSON-able: schedules
                           stay "lin_7e-4", classes stay import paths), the YAML file and entry used,
                           wrappers and callbacks as [{"name", "kwargs"}], seed, n_envs, eval/save
                           settings, device, the command line, critwrap version, creation time
        versions.json      python, platform, critwrap, gymnasium, stable-baselines3, sb3-contrib,
                           torch, numpy, ale-py, minigrid, mujoco versions
        status.json        {"status": "running" | "finished" | "failed", "error": str | null,
                            "num_timesteps", "total_timesteps", "started", "updated", "pid"}
        tb/<algo>_<n>/     TensorBoard event files (SB3's logger, ``tensorboard_log``)
        evaluations.npz    SB3 EvalCallback's arrays: timesteps (E,), results (E, episodes),
                           ep_lengths (E, episodes)
        evaluations.csv    timesteps, mean_return, std_return, mean_length, returns (JSON list),
                           lengths (JSON list): one row per periodic evaluation
        checkpoints/       rl_model_<steps>_steps.zip, rl_model_replay_buffer_<steps>_steps.pkl
                           (off-policy), rl_model_vecnormalize_<steps>_steps.pkl (with normalize);
                           the newest few are kept
        model.zip          the final model
        vecnormalize.pkl   the final VecNormalize statistics (only with normalize)
        best_model.zip     the model with the best mean evaluation return
        final_eval.json    {"returns": [...], "lengths": [...], "mean_return", "std_return",
                            "mean_length", "n_episodes", "deterministic", "seed", "num_timesteps"}
        eval_<timestamp>.json   written by ``python -m critwrap.zoo evaluate`` (same fields, plus
                           "model", "algo", "env", "timestamp")
        enjoy_<timestamp>.json  written by ``python -m critwrap.zoo enjoy`` (same fields; "video" with
                           ``--record``)
        videos/enjoy_<timestamp>.mp4   written by ``enjoy --record``
        attack_<timestamp>.json / .csv / .png  written by ``python -m critwrap.zoo attack`` (the attack table:
                           clean and attacked returns, drops, win rates, flipped wins per method)
        detector/refresh-<k>/, detector/latest/   detectors saved by the ``detector-refresh``
                           callback (added by ``train --buffer critical-nstep`` without ``--detector``)
        attack_eval.jsonl  one line per evaluation of the ``attack-eval`` callback
    <log-dir>/<experiment>/<algo>/<env>/<variant>/.seed_<seed>.lock
                           the lock ``zoo train`` holds while it trains (:func:`run_lock`; it names the
                           process while held, and is empty otherwise)

A run is identified by ``(experiment, algo, env, variant, seed)``, stored in ``config.json`` (and
mirrored by the path). It is complete when ``status.json`` says ``finished`` and
``final_eval.json`` exists; :mod:`critwrap.evaluation.store` reads a whole store back (good runs and
named partial / failed / corrupt ones), ``python -m critwrap.zoo report`` aggregates it with rliable
and ``python -m critwrap.zoo sweep`` fills it (see those modules).

``<env>`` is the environment name as given, with ``/`` replaced by ``-`` (``ALE/Pong-v5`` ->
``ALE-Pong-v5``). ``<variant>`` is ``base`` when no ``--wrapper`` / ``--callback`` was given on the
command line, else a slug of their names plus a short hash of their arguments
(``record-episodes+episode-recorder-1a2b3c``; a ``--buffer NAME`` adds ``buffer-NAME``), or the
``--variant`` given. Wrappers and callbacks
from the YAML entry belong to the hyperparameters and do not change the variant.

Example:
    >>> from critwrap.zoo.runs import run_dir, variant_slug
    >>> variant_slug([("record-episodes", {"store": "eps"})], [])
    'record-episodes-870f53'
    >>> str(run_dir("runs", "default", "ppo", "ALE/Pong-v5", "base", 0))
    'runs/default/ppo/ALE-Pong-v5/base/seed_0'
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_PREFIX",
    "RunInUseError",
    "RunNotFoundError",
    "checkpoint_files",
    "latest_checkpoint",
    "list_checkpoints",
    "read_json",
    "read_status",
    "record_path",
    "run_dir",
    "run_in_use",
    "run_lock",
    "safe_name",
    "variant_slug",
    "versions",
    "write_json",
    "write_status",
]

CHECKPOINT_PREFIX = "rl_model"
_CKPT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)_steps\.zip$")


class RunNotFoundError(FileNotFoundError):
    """The run directory, or a file it should hold, is missing."""


class RunInUseError(FileExistsError):
    """Another process is training in the same run directory (``owner``: which, as its lock file says)."""

    owner: str = "another process"


def _lock_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.lock"


def run_in_use(directory: str | Path) -> str | None:
    """Who holds the lock of :func:`run_lock` on this run directory now (``"pid N on HOST since T"``;
    ``None``: no process on this machine). Only reads: safe on a read-only result store."""
    path = _lock_path(Path(directory))
    try:
        import fcntl

        fh = open(path, encoding="utf-8")  # closed below
    except (ImportError, OSError):  # no fcntl (Windows), no lock file, or unreadable: nobody here
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails while a trainer holds it exclusively
        except BlockingIOError:
            return fh.read().strip() or "another process"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on a run directory while training in it.

    The lock is ``fcntl.flock`` on ``<parent>/.<name>.lock`` (next to the run directory, so that
    ``--overwrite`` can delete the directory without dropping the lock); the kernel releases it when the
    process ends, however it ends. A second ``zoo train`` (or a second sweep) on the same run gets a
    :class:`RunInUseError` naming the process that holds it, instead of two processes writing the same
    files. Where ``fcntl`` does not exist (Windows) no lock is taken.
    """
    directory = Path(directory)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(directory)
    fh = open(path, "a+", encoding="utf-8")  # held for the duration of the context
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process holds it
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            err = RunInUseError(
                f"{directory} is in use: {owner} is training in it (lock {path}). Wait for it to finish, or "
                "choose another --seed / --experiment / --variant."
            )
            err.owner = owner
            raise err from None
        except OSError as exc:  # a filesystem without flock (some network mounts): train unlocked
            import warnings

            warnings.warn(
                f"could not lock {path} ({exc}); training without the run lock, so nothing stops a second "
                "process from using the same run directory",
                stacklevel=3,
            )
            yield
            return
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def safe_name(text: str) -> str:
    """A path component from a name: ``/`` and characters outside ``[A-Za-z0-9._+=-]`` become ``-``."""
    out = re.sub(r"[^A-Za-z0-9._+=-]+", "-", text.strip()).strip("-.")
    return out or "unnamed"


def variant_slug(
    wrappers: Sequence[tuple[str, Mapping[str, Any]]], callbacks: Sequence[tuple[str, Mapping[str, Any]]]
) -> str:
    """``base`` without wrappers/callbacks; else their names joined by ``+`` and a hash of their arguments."""
    if not wrappers and not callbacks:
        return "base"
    names = [n.rsplit(":", 1)[-1].rsplit(".", 1)[-1] for n, _ in [*wrappers, *callbacks]]
    slug = safe_name("+".join(names))[:80]
    canonical = json.dumps(
        {"wrappers": [[n, dict(k)] for n, k in wrappers], "callbacks": [[n, dict(k)] for n, k in callbacks]},
        sort_keys=True,
        default=str,
    )
    if any(k for _, k in [*wrappers, *callbacks]):
        slug += "-" + hashlib.sha1(canonical.encode()).hexdigest()[:6]
    return slug


def run_dir(log_dir: str | Path, experiment: str, algo: str, env: str, variant: str, seed: int) -> Path:
    """``<log_dir>/<experiment>/<algo>/<env>/<variant>/seed_<seed>`` (names made path-safe)."""
    return (
        Path(log_dir)
        / safe_name(experiment)
        / safe_name(algo)
        / safe_name(env)
        / safe_name(variant)
        / f"seed_{seed}"
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return repr(obj)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def record_path(directory: str | Path, prefix: str, suffix: str = ".json") -> Path:
    """A new ``<directory>/<prefix>_<YYYYmmdd-HHMMSS>[_<n>]<suffix>`` that does not exist yet."""
    directory = Path(directory)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = directory / f"{prefix}_{stamp}{suffix}"
    n = 1
    while path.exists():
        path = directory / f"{prefix}_{stamp}_{n}{suffix}"
        n += 1
    return path


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RunNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())


def write_status(
    directory: str | Path,
    status: str,
    *,
    error: str | None = None,
    previous: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``status.json`` (``running`` / ``finished`` / ``failed``), keeping ``started`` from ``previous``."""
    if status not in ("running", "finished", "failed"):
        raise ValueError(f"status must be running, finished or failed, got {status!r}")
    now = _now()
    data: dict[str, Any] = dict(previous or {})
    data.setdefault("started", now)
    data.update({"status": status, "error": error, "updated": now, "pid": os.getpid(), **extra})
    write_json(Path(directory) / "status.json", data)
    return data


def read_status(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / "status.json"
    return dict(read_json(path)) if path.is_file() else None


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a run depends on (``None`` where not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in (
        "critwrap",
        "gymnasium",
        "stable-baselines3",
        "sb3-contrib",
        "torch",
        "numpy",
        "ale-py",
        "minigrid",
        "mujoco",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(num_timesteps, model_zip)`` of the checkpoints in ``<run>/checkpoints`` (or a checkpoints dir), oldest first."""
    directory = Path(directory)
    ckpt_dir = directory / "checkpoints" if (directory / "checkpoints").is_dir() else directory
    found = []
    if ckpt_dir.is_dir():
        for path in ckpt_dir.iterdir():
            match = _CKPT_RE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return sorted(found)


def checkpoint_files(model_zip: Path) -> dict[str, Path]:
    """The files of one checkpoint: ``model`` and, where they exist, ``replay_buffer`` and ``vecnormalize``."""
    match = _CKPT_RE.match(model_zip.name)
    if not match:
        raise ValueError(f"{model_zip} is not a checkpoint ({CHECKPOINT_PREFIX}_<steps>_steps.zip)")
    steps = match.group(1)
    out = {"model": model_zip}
    for kind in ("replay_buffer", "vecnormalize"):
        path = model_zip.with_name(f"{CHECKPOINT_PREFIX}_{kind}_{steps}_steps.pkl")
        if path.is_file():
            out[kind] = path
    return out


def latest_checkpoint(directory: str | Path) -> tuple[int, dict[str, Path]] | None:
    """The newest checkpoint of a run as ``(num_timesteps, files)``, or ``None``."""
    found = list_checkpoints(directory)
    if not found:
        return None
    steps, path = found[-1]
    return steps, checkpoint_files(path)
