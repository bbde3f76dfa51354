"""Reading the result store that ``python -m critwrap.zoo train`` (and ``sweep``) write.

The layout is documented in :mod:`critwrap.zoo.runs`: one directory per run,
``<root>/<experiment>/<algo>/<env>/<variant>/seed_<seed>/``, holding plain files (``config.json``,
``status.json``, ``final_eval.json``, ``evaluations.npz`` ...). A run is identified by
:class:`RunKey` ``(experiment, algo, env, variant, seed)``, read from its ``config.json`` (the path is
the fallback). :func:`scan` walks a root and sorts what it finds into good runs (:class:`Run`) and
bad ones (:class:`BadRun`: partial, failed or corrupt, each with a reason), so that a report can
name every bad run, skip it and go on with the rest.

A run is good when ``status.json`` says ``finished``, ``config.json`` and ``final_eval.json`` parse
and hold what they should, and ``evaluations.npz`` (optional: runs with ``--eval-freq 0`` have none)
loads without pickle and has consistent shapes.

Example:
    >>> from critwrap.evaluation.store import scan
    >>> store = scan("runs")  # doctest: +SKIP
    >>> [(r.key.env, r.key.variant, r.key.seed, r.score) for r in store.runs]  # doctest: +SKIP
    [('CartPole-v1', 'base', 0, 9.4), ...]
    >>> [(str(b.path), b.reason) for b in store.bad]  # doctest: +SKIP
    [('runs/default/ppo/CartPole-v1/base/seed_3', 'partial: status.json says running ...')]
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BadRun",
    "BadRunError",
    "Curve",
    "ResultStore",
    "Run",
    "RunKey",
    "find_run_dirs",
    "is_finished",
    "load_run_record",
    "run_state",
    "scan",
]

_SEED_RE = re.compile(r"^seed_(-?\d+)$")


class BadRunError(ValueError):
    """A run directory is partial, failed or corrupt; ``kind`` says which and ``str()`` why."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, order=True)
class RunKey:
    """What identifies a run in the store."""

    experiment: str
    algo: str
    env: str
    variant: str
    seed: int

    def __str__(self) -> str:
        return f"{self.experiment}/{self.algo}/{self.env}/{self.variant}/seed_{self.seed}"


@dataclass
class Curve:
    """A run's periodic evaluations (``evaluations.npz``): ``timesteps`` (E,), ``returns`` and
    ``lengths`` (E, episodes)."""

    timesteps: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean_returns(self) -> np.ndarray:
        """The mean return of each evaluation, shape (E,)."""
        return np.asarray(self.returns, dtype=np.float64).mean(axis=1)


@dataclass
class Run:
    """A finished run read from the store."""

    path: Path
    key: RunKey
    config: dict[str, Any]
    status: dict[str, Any]
    final_eval: dict[str, Any]
    curve: Curve | None = None

    @property
    def score(self) -> float:
        """The run's score: the mean return of its final evaluation (``final_eval.json``)."""
        return float(self.final_eval["mean_return"])

    @property
    def env_id(self) -> str:
        return str(self.config.get("env_id") or self.key.env)

    def eval_records(self) -> list[dict[str, Any]]:
        """The ``eval_*.json`` / ``enjoy_*.json`` records written later by ``evaluate`` / ``enjoy``
        (oldest first; unreadable ones are left out)."""
        out = []
        for path in sorted([*self.path.glob("eval_*.json"), *self.path.glob("enjoy_*.json")]):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                data.setdefault("file", path.name)
                out.append(data)
        return sorted(out, key=lambda d: str(d.get("timestamp", "")))


@dataclass
class BadRun:
    """A run that cannot be used: ``kind`` is ``partial``, ``failed`` or ``corrupt``."""

    path: Path
    kind: str
    reason: str
    key: RunKey | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.reason}"


@dataclass
class ResultStore:
    """What :func:`scan` found under ``root``."""

    root: Path
    runs: list[Run] = field(default_factory=list)
    bad: list[BadRun] = field(default_factory=list)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def select(
        self,
        *,
        experiment: str | None = None,
        algo: str | None = None,
        env: str | None = None,
        variant: str | None = None,
    ) -> list[Run]:
        """The good runs matching every given field."""
        want = {"experiment": experiment, "algo": algo, "env": env, "variant": variant}
        return [r for r in self.runs if all(v is None or getattr(r.key, k) == v for k, v in want.items())]


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every ``seed_<n>`` directory under ``root`` (``root`` itself when it is one), sorted.

    Run directories are not descended into (their ``checkpoints/`` and ``tb/`` are skipped).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {root} does not exist")
    if _SEED_RE.match(root.name):
        return [root]
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        keep = []
        for d in sorted(dirnames):
            if _SEED_RE.match(d):
                found.append(Path(dirpath) / d)
            elif not d.startswith("."):
                keep.append(d)
        dirnames[:] = keep
    return sorted(found)


def _read_json(path: Path, missing: str | None = None) -> Any:
    if not path.is_file():
        raise BadRunError("partial", missing or f"no {path.name}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRunError("corrupt", f"{path.name} is not valid JSON ({exc})") from None


def _key_from(path: Path, config: Mapping[str, Any]) -> RunKey:
    parts = path.parts
    seed_match = _SEED_RE.match(path.name)
    fallback = list(parts[-5:-1]) if len(parts) >= 5 else ["default", "?", "?", "base"]
    try:
        seed = int(config["seed"]) if "seed" in config else int(seed_match.group(1)) if seed_match else 0
    except (TypeError, ValueError):
        raise BadRunError("corrupt", f"config.json has a non-integer seed {config.get('seed')!r}") from None
    from critwrap.zoo.runs import safe_name

    def field_(name: str, index: int) -> str:
        value = config.get(name)
        return safe_name(str(value)) if value else fallback[index]

    return RunKey(field_("experiment", 0), field_("algo", 1), field_("env", 2), field_("variant", 3), seed)


def _read_curve(path: Path) -> Curve | None:
    npz = path / "evaluations.npz"
    if not npz.is_file():
        return None
    if not zipfile.is_zipfile(npz):
        raise BadRunError(
            "corrupt", "evaluations.npz is not an NPZ (zip) archive (truncated or overwritten?)"
        )
    try:
        with np.load(npz, allow_pickle=False) as data:
            missing = [k for k in ("timesteps", "results", "ep_lengths") if k not in data.files]
            if missing:
                raise BadRunError("corrupt", f"evaluations.npz lacks {', '.join(missing)}")
            timesteps = np.asarray(data["timesteps"])
            results = np.asarray(data["results"], dtype=np.float64)
            lengths = np.asarray(data["ep_lengths"])
    except BadRunError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise BadRunError("corrupt", f"evaluations.npz is unreadable ({type(exc).__name__}: {exc})") from None
    if results.ndim == 1:
        results = results[:, None]
    if lengths.ndim == 1:
        lengths = lengths[:, None]
    if timesteps.ndim != 1 or len(results) != len(timesteps) or lengths.shape[0] != len(timesteps):
        raise BadRunError(
            "corrupt",
            f"evaluations.npz has inconsistent shapes (timesteps {timesteps.shape}, results {results.shape}, "
            f"ep_lengths {lengths.shape})",
        )
    if results.size and not np.all(np.isfinite(results)):
        raise BadRunError("corrupt", "evaluations.npz holds non-finite returns")
    return Curve(timesteps.astype(np.int64), results, lengths)


def load_run_record(path: str | Path) -> Run:
    """Read one run directory; raises :class:`BadRunError` (``partial`` / ``failed`` / ``corrupt``)."""
    path = Path(path)
    config = _read_json(path / "config.json", "no config.json (not a zoo run, or its start was interrupted)")
    if not isinstance(config, dict) or not {"algo", "env"} <= set(config):
        raise BadRunError("corrupt", "config.json is not a mapping with 'algo' and 'env'")
    status = _read_json(path / "status.json")
    if not isinstance(status, dict) or "status" not in status:
        raise BadRunError("corrupt", "status.json has no 'status'")
    state = status["status"]
    if state == "failed":
        raise BadRunError("failed", str(status.get("error") or "status.json says failed"))
    if state != "finished":
        from critwrap.zoo.runs import run_in_use

        # `zoo train` holds a lock while it trains: tell a live run from an interrupted one
        holder = run_in_use(path) if state == "running" else None
        why = (
            f"still training: {holder}"
            if holder
            else "no process here holds its lock: interrupted, or training on another machine"
        )
        raise BadRunError(
            "partial",
            f"status.json says {state!r} at {status.get('num_timesteps', '?')}/"
            f"{status.get('total_timesteps', '?')} timesteps ({why})",
        )
    final = _read_json(path / "final_eval.json", "status.json says finished, but there is no final_eval.json")
    if not isinstance(final, dict) or "mean_return" not in final:
        raise BadRunError("corrupt", "final_eval.json has no 'mean_return'")
    try:
        mean = float(final["mean_return"])
    except (TypeError, ValueError):
        raise BadRunError(
            "corrupt", f"final_eval.json: mean_return {final['mean_return']!r} is not a number"
        ) from None
    if not math.isfinite(mean):
        raise BadRunError("corrupt", f"final_eval.json: mean_return is {mean}")
    return Run(path, _key_from(path, config), config, status, final, _read_curve(path))


def scan(root: str | Path) -> ResultStore:
    """Read every run under ``root`` into a :class:`ResultStore` (good runs and named bad runs).

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no ``seed_<n>`` run directory.
    """
    root = Path(root)
    dirs = find_run_dirs(root)
    if not dirs:
        raise FileNotFoundError(
            f"no runs under {root}: expected run directories <experiment>/<algo>/<env>/<variant>/seed_<n>/ "
            "as written by `python -m critwrap.zoo train` or `sweep`"
        )
    store = ResultStore(root)
    seen: dict[RunKey, Path] = {}
    for path in dirs:
        try:
            run = load_run_record(path)
        except BadRunError as exc:
            key = None
            try:
                cfg = json.loads((path / "config.json").read_text())
                key = _key_from(path, cfg) if isinstance(cfg, dict) else None
            except (OSError, ValueError, BadRunError):
                pass
            store.bad.append(BadRun(path, exc.kind, exc.reason, key))
            continue
        if run.key in seen:
            store.bad.append(BadRun(path, "corrupt", f"duplicate of {seen[run.key]} ({run.key})", run.key))
            continue
        seen[run.key] = path
        store.runs.append(run)
    store.runs.sort(key=lambda r: r.key)
    return store


def run_state(path: str | Path) -> str:
    """``finished`` (a usable run), ``missing`` (no run yet), ``failed``, ``partial`` or ``corrupt``."""
    path = Path(path)
    if not path.exists() or not any(path.iterdir()):
        return "missing"
    try:
        load_run_record(path)
    except BadRunError as exc:
        return exc.kind
    return "finished"


def is_finished(path: str | Path) -> bool:
    """Whether ``path`` holds a finished, readable run (what a resumed sweep skips)."""
    return run_state(path) == "finished"
