"""``python -m critwrap.zoo sweep``: a grid of zoo training runs (algos x envs x variants x seeds).

Every grid point is one ``critwrap.zoo.train`` run written to the result store
(``<log-dir>/<experiment>/<algo>/<env>/<variant>/seed_<seed>/``, see :mod:`critwrap.zoo.runs`), so
``python -m critwrap.zoo report <log-dir>/<experiment>`` reads the outcome.

Variants: a variant is a named set of wrappers, callbacks and hyperparameter overrides applied on top
of the algorithm's YAML hyperparameters. ``--variants`` takes comma-separated names, each one of:

* ``base``: nothing added;
* a name defined under ``variants:`` in the experiment file (``--experiment-file``), e.g.
  ``subgoal: {wrappers: [subgoal-reward:k=8], callbacks: [...], hp: {learning_rate: 1e-4}}``;
* a registry name with optional arguments, colon-separated (commas separate variants):
  ``NAME[:key=value[:key=value...]]``, e.g. ``example-sticky-actions:p=0.5``. A name in the
  ``critwrap.wrappers`` group becomes that wrapper, one in ``critwrap.callbacks`` that callback, one
  in ``critwrap.extractors`` the policy's ``features_extractor_class`` (arguments go to
  ``features_extractor_kwargs``). An import path (``pkg.mod:Class:key=value``) works too, for a
  gymnasium wrapper, an SB3 callback, features extractor or replay buffer class.

The run directory's ``<variant>`` is the variant as written, made path-safe
(``example-sticky-actions:p=0.5`` -> ``example-sticky-actions-p=0.5``).

Backends:

* ``local`` (default): up to ``--workers`` runs at a time (default: CPU count / ``--cpus-per-trial``),
  each in its own process (forked from a preloaded fork server, so starting one is cheap). Nothing to
  install.
* ``ray``: the same runs as Ray tasks (``pip install 'critwrap[ray]'``), each declaring
  ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs. Without ``--address`` a local Ray
  instance is started (or the one already initialised in this process is used); ``--address
  HOST:PORT`` / ``ray://HOST:10001`` / ``auto`` joins an existing cluster, failing within
  ``--connect-timeout`` seconds, address in the message, when it cannot be reached. Every node needs
  critwrap installed and the ``--log-dir`` on a shared filesystem (it is made absolute).

Sweeps are resumable: a run whose ``status.json`` says ``finished`` (with a readable
``final_eval.json``) is skipped; partial, failed or corrupt runs are started again from scratch
(``--overwrite`` reruns everything). A failing run is reported (its error, and the log in
``<log-dir>/<experiment>/sweep_logs/``) and the others go on; the exit status is 1 when a run
failed. Progress is shown with tqdm; ``<log-dir>/<experiment>/sweep.json`` records the last sweep.

Experiment files (``zoo/experiments/<name>.yml``) describe a whole sweep, so a paper's table is one
command (keys: :data:`EXPERIMENT_KEYS`; command-line options override the file)::

    experiment: atari-critical          # default: the file name
    algos: [dqn]
    envs: [Seaquest, Breakout]
    variants:
      base: {}
      sticky: {wrappers: ["example-sticky-actions:p=0.25"]}
    seeds: 5                            # or a list [0, 1, 2]
    timesteps: 1000000                  # or per env: {Seaquest: 2000000, default: 1000000}
    hp: {buffer_size: 100000}           # overrides for every run (then hp_per_algo, hp_per_env)
    train: {eval_freq: 50000, eval_episodes: 10}
    resources: {cpus_per_trial: 1, gpus_per_trial: 0}

Example:
    .. code-block:: console

        python -m critwrap.zoo sweep --algo dqn --envs Seaquest,Breakout --variants base,example-sticky-actions:p=0.25 --seeds 5
        python -m critwrap.zoo sweep --experiment-file zoo/experiments/cartpole-demo.yml --workers 2
        python -m critwrap.zoo sweep --experiment-file zoo/experiments/cartpole-demo.yml --backend ray --address ray://head:10001
        python -m critwrap.zoo report runs/cartpole-demo
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXPERIMENT_KEYS",
    "ClusterUnreachableError",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "Trial",
    "TrialResult",
    "Variant",
    "add_parser",
    "check_address",
    "expand",
    "load_experiment",
    "parse_seeds",
    "parse_variant",
    "run",
    "run_sweep",
    "run_trial",
]

NAME = "sweep"

EXPERIMENT_KEYS: dict[str, str] = {
    "experiment": "experiment name: the first directory level under log_dir (default: the file name)",
    "algos": "algorithm or list of algorithms (dqn, ppo, ...)",
    "envs": "environment or list of environments (short names or Gymnasium ids)",
    "variants": "list of variant names/specs, or a mapping name -> {wrappers, callbacks, hp}",
    "seeds": "number of seeds (0..N-1) or a list of seeds",
    "timesteps": "training budget: an int, or a mapping env -> int with an optional 'default'",
    "hp": "hyperparameter overrides for every run (like --hp)",
    "hp_per_algo": "mapping algo -> hyperparameter overrides",
    "hp_per_env": "mapping env -> hyperparameter overrides",
    "train": "other train options: eval_freq, eval_episodes, eval_max_steps, n_envs, save_freq, keep_checkpoints, "
    "num_threads, device, vec_env, hyperparams",
    "resources": "cpus_per_trial and gpus_per_trial of each run",
    "log_dir": "root of the result store (default runs)",
    "backend": "local or ray",
    "workers": "runs at a time (local) or in flight (ray)",
    "address": "Ray cluster address",
    "description": "free text",
}
TRAIN_KEYS = (
    "eval_freq",
    "eval_episodes",
    "eval_max_steps",
    "n_envs",
    "save_freq",
    "keep_checkpoints",
    "num_threads",
    "device",
    "vec_env",
    "hyperparams",
)
VARIANT_KEYS = ("wrappers", "callbacks", "hp", "description")
PRELOAD = ["critwrap.zoo.sweep", "critwrap.zoo.train", "torch", "stable_baselines3", "gymnasium"]


class SweepError(ValueError):
    """The sweep description is invalid (unknown key, variant, malformed seeds ...)."""


class ClusterUnreachableError(ConnectionError):
    """The Ray cluster at the given address cannot be reached."""


# ------------------------------------------------------------------------------------ variants


@dataclass
class Variant:
    """A named set of wrappers, callbacks and hyperparameter overrides (``base``: none)."""

    name: str
    wrappers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    callbacks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    hp: dict[str, Any] = field(default_factory=dict)

    @property
    def dirname(self) -> str:
        from critwrap.zoo.runs import safe_name

        return safe_name(self.name)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _hp_mapping(value: Any, where: str) -> dict[str, Any]:
    from critwrap.zoo.hyperparams import parse_hp_overrides

    if value is None:
        return {}
    if isinstance(value, Mapping):
        return parse_hp_overrides(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return parse_hp_overrides(list(value))
    raise SweepError(
        f"{where}: expected a mapping of hyperparameters or a list of key=value strings, got {value!r}"
    )


def _classify_import(obj: Any, ref: str) -> str:
    import gymnasium as gym

    if isinstance(obj, type) and issubclass(obj, gym.Wrapper):
        return "wrappers"
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    if isinstance(obj, type) and issubclass(obj, BaseCallback):
        return "callbacks"
    if isinstance(obj, type) and issubclass(obj, BaseFeaturesExtractor):
        return "extractors"
    if isinstance(obj, type) and issubclass(obj, ReplayBuffer):
        return "buffers"
    raise SweepError(
        f"variant {ref!r}: {obj!r} is not a gymnasium wrapper, SB3 callback, features extractor or replay buffer"
    )


def parse_variant(text: str, defined: Mapping[str, Variant] | None = None) -> Variant:
    """A variant from ``--variants``: ``base``, a name defined in the experiment file, or
    ``NAME[:key=value[:key=value...]]`` naming a registered wrapper / callback / extractor or an import path.
    """
    from critwrap import registry
    from critwrap.zoo.specs import _HEAD_RE, SpecSyntaxError, parse_spec_string

    text = text.strip()
    if not text:
        raise SweepError("an empty variant name (two commas in a row in --variants?)")
    defined = defined or {}
    if text in defined:
        return defined[text]
    if text == "base":
        return Variant("base")
    match = _HEAD_RE.match(text)
    if match is None:
        raise SweepError(
            f"variant {text!r}: expected base, a variant of the experiment file, or NAME[:key=value...]"
        )
    head, rest = text[: match.end()], text[match.end() :]
    args = [a for a in rest.split(":") if a] if rest.startswith(":") else []
    if rest and not rest.startswith(":"):
        raise SweepError(f"variant {text!r}: expected NAME[:key=value[:key=value...]]")
    try:
        name, kwargs = parse_spec_string(head + (":" + ",".join(args) if args else ""), what="variant")
    except SpecSyntaxError as exc:
        problem = str(exc).split(". Expected", 1)[0].split(": ", 1)[-1]
        raise SweepError(
            f"malformed variant {text!r}: {problem}. Expected NAME[:key=value[:key=value...]] (colons "
            "separate arguments, commas separate variants), e.g. example-sticky-actions:p=0.25"
        ) from None
    key = registry.normalize_name(name)
    kind: str | None = None
    if ":" in name or (
        "." in name and all(key not in registry.names(k) for k in ("wrappers", "callbacks", "extractors"))
    ):
        try:
            obj = registry.resolve("wrappers", name)
        except ImportError as exc:
            raise SweepError(f"variant {text!r}: {exc}") from None
        kind = _classify_import(obj, text)
    else:
        for k in ("wrappers", "callbacks", "extractors"):
            if key in registry.names(k):
                kind = k
                break
    if kind is None:
        known = ", ".join(
            [
                "base",
                *defined,
                *registry.names("wrappers"),
                *registry.names("callbacks"),
                *registry.names("extractors"),
            ]
        )
        raise SweepError(
            f"unknown variant {text!r}: not defined in the experiment file and not a registered wrapper, "
            f"callback or extractor. Known: {known}. Define it under 'variants:' in an experiment file, "
            "or use an import path (pkg.module:Class:key=value)."
        )
    variant = Variant(text)
    if kind == "wrappers":
        variant.wrappers.append((name, kwargs))
    elif kind == "callbacks":
        variant.callbacks.append((name, kwargs))
    elif kind == "extractors":
        variant.hp = {
            "policy_kwargs": {"features_extractor_class": name, "features_extractor_kwargs": kwargs}
        }
        if not kwargs:
            del variant.hp["policy_kwargs"]["features_extractor_kwargs"]
    else:
        variant.hp = {"replay_buffer_class": name, **({"replay_buffer_kwargs": kwargs} if kwargs else {})}
    return variant


def _defined_variants(value: Any, where: str) -> tuple[dict[str, Variant], list[str]]:
    """``variants:`` of an experiment file -> (definitions, names in order)."""
    from critwrap.zoo.specs import normalize_specs

    if value is None:
        return {}, []
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return {}, [str(v) for v in value]
    if not isinstance(value, Mapping):
        raise SweepError(f"{where}: 'variants' must be a list of names or a mapping name -> definition")
    out: dict[str, Variant] = {}
    for name, body in value.items():
        name = str(name)
        body = body or {}
        if not isinstance(body, Mapping):
            raise SweepError(f"{where}: variant {name!r} must be a mapping with {', '.join(VARIANT_KEYS)}")
        unknown = set(body) - set(VARIANT_KEYS)
        if unknown:
            raise SweepError(
                f"{where}: variant {name!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(VARIANT_KEYS)}"
            )
        out[name] = Variant(
            name,
            wrappers=normalize_specs(body.get("wrappers"), f"{where}: variant {name} wrappers"),
            callbacks=normalize_specs(body.get("callbacks"), f"{where}: variant {name} callbacks"),
            hp=_hp_mapping(body.get("hp"), f"{where}: variant {name} hp"),
        )
    return out, list(out)


# --------------------------------------------------------------------------------- sweep spec


def parse_seeds(value: Any) -> list[int]:
    """``5`` -> 0..4; ``"0,3,7"`` / ``[0, 3, 7]`` -> those; ``"10-14"`` -> 10..14."""
    if isinstance(value, bool):
        raise SweepError(f"seeds: expected a count or a list, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise SweepError(f"seeds: the number of seeds must be >= 1, got {value}")
        return list(range(value))
    if isinstance(value, list | tuple):
        try:
            seeds = [int(v) for v in value]
        except (TypeError, ValueError):
            raise SweepError(f"seeds: expected integers, got {value!r}") from None
    else:
        text = str(value).strip()
        match = re.match(r"^(-?\d+)\s*-\s*(-?\d+)$", text)
        if text.isdigit() and int(text) == 0:
            raise SweepError("seeds: 0 seeds (N means seeds 0..N-1); for seed 0 alone write 0-0")
        if match and int(match.group(1)) > int(match.group(2)):
            raise SweepError(f"seeds: the range {text!r} is empty; write LO-HI with LO <= HI")
        try:
            if text.isdigit():
                return parse_seeds(int(text))
            if match:
                seeds = list(range(int(match.group(1)), int(match.group(2)) + 1))
            else:
                seeds = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise SweepError(f"seeds: expected N, a list 0,3,7 or a range 10-14, got {value!r}") from None
    if not seeds:
        raise SweepError(f"seeds: no seeds in {value!r}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds: {value!r} repeats a seed")
    return seeds


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        raise SweepError(f"{key}: expected a name or a list of names, got {value!r}")
    if any(not v for v in items):
        raise SweepError(f"{key}: an empty name in {value!r}")
    return items


@dataclass
class SweepSpec:
    """A whole sweep. Build it from an experiment file (:func:`load_experiment`) and/or arguments."""

    algos: list[str]
    envs: list[str]
    variants: list[Variant]
    seeds: list[int]
    experiment: str = "default"
    timesteps: int | dict[str, int] | None = None
    hp: dict[str, Any] = field(default_factory=dict)
    hp_per_algo: dict[str, dict[str, Any]] = field(default_factory=dict)
    hp_per_env: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    log_dir: str = "runs"
    backend: str = "local"
    workers: int | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    source: str | None = None

    def validate(self) -> None:
        from critwrap.zoo.algos import canonical_algo

        for key in ("algos", "envs", "variants", "seeds"):
            if not getattr(self, key):
                raise SweepError(
                    f"the sweep has no {key}: give --{key.rstrip('s') if key == 'algos' else key} or set it in the experiment file"
                )
        self.algos = [canonical_algo(a) for a in self.algos]
        names = [v.dirname for v in self.variants]
        if len(set(names)) != len(names):
            raise SweepError(
                f"variants {[v.name for v in self.variants]} map to the same directory names {names}"
            )
        if self.backend not in ("local", "ray"):
            raise SweepError(f"backend must be local or ray, got {self.backend!r}")
        if self.workers is not None and self.workers < 1:
            raise SweepError(f"workers must be >= 1, got {self.workers}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise SweepError("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        unknown = set(self.train) - set(TRAIN_KEYS)
        if unknown:
            raise SweepError(f"train: unknown options {sorted(unknown)}; allowed: {', '.join(TRAIN_KEYS)}")
        for name in ("hp_per_algo", "hp_per_env"):
            if not isinstance(getattr(self, name), Mapping):
                raise SweepError(f"{name} must be a mapping")

    def timesteps_for(self, env: str) -> int | None:
        if isinstance(self.timesteps, Mapping):
            value = self.timesteps.get(env, self.timesteps.get("default"))
            return None if value is None else int(float(value))
        return None if self.timesteps is None else int(float(self.timesteps))


def load_experiment(path: str | Path) -> tuple[dict[str, Any], dict[str, Variant]]:
    """Read an experiment YAML (``yaml.safe_load``); returns its validated top-level mapping and the
    variants it defines. Use :func:`build_spec` to combine it with command-line options."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping with keys {', '.join(EXPERIMENT_KEYS)}")
    unknown = set(data) - set(EXPERIMENT_KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}; allowed: {', '.join(EXPERIMENT_KEYS)}")
    data.setdefault("experiment", path.stem)
    defined, _ = _defined_variants(data.get("variants"), str(path))
    return data, defined


def build_spec(
    file_data: Mapping[str, Any] | None = None, defined: Mapping[str, Variant] | None = None, **cli: Any
) -> SweepSpec:
    """Combine an experiment file's content with command-line values (``None`` = not given)."""
    data = dict(file_data or {})
    defined = dict(defined or {})
    where = str(data.get("experiment", "sweep"))

    def pick(key: str, file_key: str | None = None) -> Any:
        value = cli.get(key)
        return value if value is not None else data.get(file_key or key)

    _, file_variant_names = _defined_variants(data.get("variants"), where)
    variant_names = _str_list(cli["variants"], "--variants") if cli.get("variants") else file_variant_names
    variants = [parse_variant(v, defined) for v in variant_names]
    resources = data.get("resources") or {}
    if not isinstance(resources, Mapping) or set(resources) - {"cpus_per_trial", "gpus_per_trial"}:
        raise SweepError(f"{where}: resources takes cpus_per_trial and gpus_per_trial, got {resources!r}")
    train = dict(data.get("train") or {})
    for key in TRAIN_KEYS:
        if cli.get(key) is not None:
            train[key] = cli[key]
    hp = _hp_mapping(data.get("hp"), f"{where}: hp")
    if cli.get("hp"):
        hp = _deep_merge(hp, _hp_mapping(list(cli["hp"]), "--hp"))
    seeds_value = pick("seeds")
    raw_steps = cli.get("timesteps") if cli.get("timesteps") is not None else data.get("timesteps")
    timesteps: int | dict[str, int] | None = None
    try:
        if isinstance(raw_steps, Mapping):
            timesteps = {str(k): int(float(v)) for k, v in raw_steps.items()}
        elif raw_steps is not None:
            timesteps = int(float(raw_steps))
    except (TypeError, ValueError):
        raise SweepError(
            f"timesteps: expected a number or a mapping env -> number, got {raw_steps!r}"
        ) from None
    spec = SweepSpec(
        algos=_str_list(pick("algos"), "algos"),
        envs=_str_list(pick("envs"), "envs"),
        variants=variants,
        seeds=parse_seeds(seeds_value) if seeds_value is not None else [],
        experiment=str(pick("experiment") or "default"),
        timesteps=timesteps,
        hp=hp,
        hp_per_algo={
            str(k): _hp_mapping(v, f"{where}: hp_per_algo.{k}")
            for k, v in (data.get("hp_per_algo") or {}).items()
        },
        hp_per_env={
            str(k): _hp_mapping(v, f"{where}: hp_per_env.{k}")
            for k, v in (data.get("hp_per_env") or {}).items()
        },
        train=train,
        log_dir=str(pick("log_dir") or "runs"),
        backend=str(pick("backend") or "local"),
        workers=pick("workers"),
        address=pick("address"),
        cpus_per_trial=float(cli.get("cpus_per_trial") or resources.get("cpus_per_trial") or 1.0),
        gpus_per_trial=float(
            cli["gpus_per_trial"]
            if cli.get("gpus_per_trial") is not None
            else resources.get("gpus_per_trial") or 0.0
        ),
        source=cli.get("source"),
    )
    spec.validate()
    return spec


# ------------------------------------------------------------------------------------ trials


@dataclass
class Trial:
    """One grid point: the keyword arguments of :func:`critwrap.zoo.train.train` and where it writes."""

    algo: str
    env: str
    variant: str
    seed: int
    options: dict[str, Any]
    run_dir: Path
    log_file: Path

    @property
    def label(self) -> str:
        return f"{self.algo}/{self.env}/{self.variant}/seed_{self.seed}"


@dataclass
class TrialResult:
    trial: Trial
    status: str  # "finished" | "failed" | "skipped"
    error: str | None = None
    mean_return: float | None = None
    seconds: float = 0.0


def expand(spec: SweepSpec) -> list[Trial]:
    """The grid as :class:`Trial` objects (algo, env, variant, seed order)."""
    from critwrap.zoo.runs import run_dir, safe_name

    log_dir = Path(spec.log_dir).expanduser().resolve()
    device = spec.train.get("device") or ("cuda" if spec.gpus_per_trial > 0 else "cpu")
    num_threads = spec.train.get("num_threads")
    if num_threads is None:
        num_threads = max(1, int(spec.cpus_per_trial))
    trials = []
    for algo in spec.algos:
        for env in spec.envs:
            for variant in spec.variants:
                hp = _deep_merge(spec.hp, spec.hp_per_algo.get(algo, {}))
                hp = _deep_merge(hp, spec.hp_per_env.get(env, {}))
                hp = _deep_merge(hp, variant.hp)
                for seed in spec.seeds:
                    options: dict[str, Any] = {
                        "algo": algo,
                        "env": env,
                        "seed": int(seed),
                        "timesteps": spec.timesteps_for(env),
                        "wrappers": [(n, dict(k)) for n, k in variant.wrappers],
                        "callbacks": [(n, dict(k)) for n, k in variant.callbacks],
                        "hp": hp or None,
                        "log_dir": str(log_dir),
                        "experiment": spec.experiment,
                        "variant": variant.dirname,
                        "eval_freq": spec.train.get("eval_freq"),
                        "eval_episodes": spec.train.get("eval_episodes"),
                        "eval_max_steps": spec.train.get("eval_max_steps"),
                        "n_envs": spec.train.get("n_envs"),
                        "save_freq": spec.train.get("save_freq"),
                        "keep_checkpoints": spec.train.get("keep_checkpoints"),
                        "num_threads": int(num_threads),
                        "device": device,
                        "vec_env": spec.train.get("vec_env") or "dummy",
                        "hyperparams": spec.train.get("hyperparams"),
                        "command": ["python", "-m", "critwrap.zoo", "sweep"]
                        + (["--experiment-file", spec.source] if spec.source else [])
                        + ["--experiment", spec.experiment],
                    }
                    rdir = run_dir(log_dir, spec.experiment, algo, env, variant.dirname, seed)
                    log = (
                        log_dir
                        / safe_name(spec.experiment)
                        / "sweep_logs"
                        / f"{safe_name(algo)}__{safe_name(env)}__{variant.dirname}__seed_{seed}.log"
                    )
                    trials.append(Trial(algo, env, variant.dirname, int(seed), options, rdir, log))
    return trials


@contextlib.contextmanager
def _redirect_fds(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors 1 and 2, so C code too) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_trial(options: Mapping[str, Any], log_file: str | None = None) -> dict[str, Any]:
    """Train one grid point (in the calling process); never raises for a failed run.

    Returns ``{"status": "finished" | "failed", "error", "mean_return", "seconds", "run_dir"}``.
    Output goes to ``log_file`` when given. Used by both backends (a Ray task runs this function).
    """
    start = time.time()
    opts = dict(options)
    opts["wrappers"] = [tuple(w) for w in opts.get("wrappers", [])]
    opts["callbacks"] = [tuple(c) for c in opts.get("callbacks", [])]
    algo, env = opts.pop("algo"), opts.pop("env")
    ctx = _redirect_fds(Path(log_file)) if log_file else contextlib.nullcontext()
    try:
        with ctx:
            print(f"[critwrap sweep] train {algo} {env} {json.dumps(opts, default=str)}", flush=True)
            from critwrap.zoo.train import train

            result = train(algo, env, **opts)
            print(f"[critwrap sweep] finished: {result.final_eval.get('mean_return')}", flush=True)
        return {
            "status": "finished",
            "error": None,
            "mean_return": float(result.final_eval["mean_return"]),
            "seconds": time.time() - start,
            "run_dir": str(result.run_dir),
        }
    except Exception as exc:
        tb = traceback.format_exc()
        if log_file:
            with contextlib.suppress(OSError), open(log_file, "a") as fh:
                fh.write(tb)
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "mean_return": None,
            "seconds": time.time() - start,
            "run_dir": None,
        }


# ----------------------------------------------------------------------------------- backends


def _die_with_parent(alive: Any) -> None:
    """Stop this run (SIGTERM to itself) as soon as the sweep process is gone.

    ``alive`` is the read end of a pipe whose write end only the sweep holds: when the sweep exits or
    is killed (even with SIGKILL), reading it ends with EOF. On Linux the parent-death signal is set
    as well.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            alive.recv()
        os.kill(os.getpid(), signal.SIGTERM)

    import threading

    threading.Thread(target=watch, name="critwrap-sweep-watch", daemon=True).start()


def _child_main(options: dict[str, Any], log_file: str, conn: Any, alive: Any) -> None:
    _die_with_parent(alive)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the sweep, which stops its runs
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    result = run_trial(options, log_file)
    try:
        conn.send(result)
    finally:
        conn.close()


class _Stop(Exception):
    """SIGTERM / SIGINT received."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def default_workers(cpus_per_trial: float = 1.0) -> int:
    """CPUs available to this process divided by the CPUs of one run (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, int(cpus // max(cpus_per_trial, 1e-9)))


def _mp_context() -> Any:
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _run_local(
    trials: Sequence[Trial], workers: int, on_done: Callable[[Trial, dict[str, Any]], None]
) -> None:
    """Each trial in its own process (a crash or kill affects that run only), ``workers`` at a time."""
    from multiprocessing.connection import wait

    ctx = _mp_context()
    pending = list(trials)
    running: dict[Any, tuple[Trial, Any, Any, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                trial = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                alive_r, alive_w = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_child_main,
                    args=(trial.options, str(trial.log_file), send, alive_r),
                    name=f"critwrap-sweep:{trial.label}",
                    daemon=False,
                )
                proc.start()
                send.close()
                alive_r.close()
                running[proc.sentinel] = (trial, proc, recv, alive_w)
            for sentinel in wait(list(running)):
                trial, proc, recv, alive_w = running.pop(sentinel)  # type: ignore[index]
                result = None
                with contextlib.suppress(EOFError, OSError):
                    if recv.poll():
                        result = recv.recv()
                recv.close()
                proc.join()
                alive_w.close()
                if result is None:
                    code = proc.exitcode
                    why = (
                        f"killed by signal {-code}"
                        if code is not None and code < 0
                        else f"exit status {code}"
                    )
                    result = {
                        "status": "failed",
                        "error": f"the run's process died ({why}; out of memory?) before reporting",
                        "mean_return": None,
                        "seconds": 0.0,
                    }
                on_done(trial, result)
    finally:
        for _trial, proc, _recv, _alive in running.values():
            if proc.is_alive():
                proc.terminate()
        for _trial, proc, recv, alive_w in running.values():
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            recv.close()
            alive_w.close()


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast when a Ray cluster address cannot be reached (a TCP connect with ``timeout`` seconds).

    ``None`` / ``local`` / ``auto`` are not checked here (``auto`` is looked up by Ray, which fails
    quickly when there is no local cluster).
    """
    if address in (None, "", "local", "auto"):
        return
    assert address is not None
    text = address.strip()
    default_port = 6379
    if text.startswith("ray://"):
        text, default_port = text[len("ray://") :], 10001
    elif "://" in text:
        raise ClusterUnreachableError(f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ClusterUnreachableError(
            f"Ray address {address!r}: {port_text!r} is not a port number"
        ) from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {address!r} ({host}:{port}) within {timeout:g} s: {exc}. "
            "Is the head node running (`ray start --head`) and the port open? Leave --address out to "
            "start a local Ray instance, or use --backend local."
        ) from None


def connect_ray(address: str | None, connect_timeout: float = 5.0) -> bool:
    """Make sure Ray is initialised: reuse this process's Ray, join ``address``, or start a local
    instance. Returns whether it was started here (and should be shut down by the caller).

    Raises:
        SweepError: Ray is not installed.
        ClusterUnreachableError: ``address`` cannot be reached within about ``connect_timeout`` seconds.
    """
    try:
        import ray
    except ImportError:
        raise SweepError(
            "--backend ray needs Ray: pip install 'critwrap[ray]' (or 'ray[tune]'); --backend local needs nothing"
        ) from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    env_key = "RAY_gcs_server_port_wait_time_s"
    saved = os.environ.get(env_key)
    if address not in (None, "", "local"):
        check_address(address, connect_timeout)
        kwargs["address"] = address
        # Ray retries the GCS about once a second for ~20 s by default; keep it to the timeout asked for
        if saved is None:
            os.environ[env_key] = str(max(1, math.ceil(connect_timeout)))
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = repr(address) if address not in (None, "", "local") else "a new local instance"
        raise ClusterUnreachableError(f"could not connect to the Ray cluster at {where}: {exc}") from exc
    finally:
        if saved is None:
            os.environ.pop(env_key, None)
    return True


def _run_ray(
    trials: Sequence[Trial],
    spec: SweepSpec,
    on_done: Callable[[Trial, dict[str, Any]], None],
    started: bool,
) -> None:
    import ray

    remote = ray.remote(num_cpus=spec.cpus_per_trial, num_gpus=spec.gpus_per_trial, max_retries=0)(run_trial)
    limit = spec.workers or len(trials)
    pending = list(trials)
    refs: dict[Any, Trial] = {}
    try:
        while pending or refs:
            while pending and len(refs) < limit:
                trial = pending.pop(0)
                refs[remote.remote(trial.options, str(trial.log_file))] = trial
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                trial = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task's worker died, or Ray failed it
                    result = {
                        "status": "failed",
                        "error": f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        "mean_return": None,
                        "seconds": 0.0,
                    }
                on_done(trial, result)
    finally:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


# -------------------------------------------------------------------------------------- sweep


@dataclass
class SweepResult:
    """What a sweep did: every trial with its status (``finished`` / ``failed`` / ``skipped``)."""

    results: list[TrialResult]
    interrupted: bool = False

    def by_status(self, status: str) -> list[TrialResult]:
        return [r for r in self.results if r.status == status]

    @property
    def finished(self) -> list[TrialResult]:
        return self.by_status("finished")

    @property
    def failed(self) -> list[TrialResult]:
        return self.by_status("failed")

    @property
    def skipped(self) -> list[TrialResult]:
        return self.by_status("skipped")


def run_sweep(
    spec: SweepSpec,
    *,
    overwrite: bool = False,
    progress: bool = True,
    connect_timeout: float = 5.0,
    dry_run: bool = False,
) -> SweepResult:
    """Run the grid of ``spec`` (skipping finished runs unless ``overwrite``); see the module docstring."""
    from critwrap.evaluation.store import run_state
    from critwrap.zoo.runs import run_in_use

    spec.validate()
    trials = expand(spec)
    results: list[TrialResult] = []
    todo: list[Trial] = []
    rerun: list[tuple[Trial, str]] = []
    differs: list[str] = []
    in_use: list[str] = []
    for trial in trials:
        state = "missing" if overwrite else run_state(trial.run_dir)
        if trial.run_dir.parent.is_dir() and run_in_use(trial.run_dir):
            # another process (e.g. a second sweep) is training it: neither rerun nor delete it
            results.append(TrialResult(trial, "skipped"))
            in_use.append(trial.label)
            continue
        if state == "finished":
            results.append(TrialResult(trial, "skipped"))
            want = trial.options.get("timesteps")
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                have = int(json.loads((trial.run_dir / "config.json").read_text())["n_timesteps"])
                if want is not None and have != int(want):
                    differs.append(f"{trial.label} ({have} timesteps, the sweep asks for {want})")
        else:
            # partial / failed / corrupt runs start again from scratch (a missing one has nothing to replace)
            trial.options["overwrite"] = True
            todo.append(trial)
            if state != "missing":
                rerun.append((trial, state))
    exp_dir = trials[0].run_dir.parents[3] if trials else None

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    say(
        f"sweep {spec.experiment!r}: {len(trials)} runs ({len(spec.algos)} algo x {len(spec.envs)} env x "
        f"{len(spec.variants)} variant x {len(spec.seeds)} seed), {len(results) - len(in_use)} already "
        f"finished, {f'{len(in_use)} in use by another process, ' if in_use else ''}{len(todo)} to run on the "
        f"{spec.backend} backend"
    )
    for trial, state in rerun:
        say(f"  rerunning {trial.label} from scratch (it was {state})")
    for text in differs:
        say(f"  note: skipping the finished run {text}; use --overwrite or another --experiment to rerun")
    for label in in_use:
        say(f"  note: skipping {label}: another process is training it now")
    if dry_run:
        for trial in todo:
            say(f"  would run {trial.label} -> {trial.run_dir}")
        return SweepResult(results)
    if not todo:
        return SweepResult(results)

    started_ray = connect_ray(spec.address, connect_timeout) if spec.backend == "ray" else False
    bar = _progress_bar(len(trials), len(results), spec.experiment, progress)

    def on_done(trial: Trial, res: dict[str, Any]) -> None:
        tr = TrialResult(
            trial, res["status"], res.get("error"), res.get("mean_return"), float(res.get("seconds", 0.0))
        )
        results.append(tr)
        if tr.status == "finished":
            msg = f"done   {trial.label}: return {tr.mean_return:.2f} ({tr.seconds:.0f} s)"
        else:
            msg = f"FAILED {trial.label}: {tr.error} (log: {trial.log_file})"
        bar.write(msg)
        bar.update(1)
        bar.set_postfix(failed=sum(r.status == "failed" for r in results), refresh=False)

    interrupted = False
    try:
        with _stop_on_signals():
            if spec.backend == "ray":
                _run_ray(todo, spec, on_done, started_ray)
            else:
                workers = spec.workers or default_workers(spec.cpus_per_trial)
                _run_local(todo, min(workers, len(todo)), on_done)
    except _Stop as stop:
        interrupted = True
        bar.write(
            f"stopped by {stop}: unfinished runs are left partial; run the same sweep again to finish them"
        )
    finally:
        bar.close()
    result = SweepResult(results, interrupted)
    if exp_dir is not None:
        _write_summary(exp_dir / "sweep.json", spec, result)
    if interrupted:
        raise KeyboardInterrupt
    return result


class _NoBar:
    def write(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, initial: int, name: str, progress: bool) -> Any:
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=f"sweep {name}", unit="run", file=sys.stderr, dynamic_ncols=True
    )


def _write_summary(path: Path, spec: SweepSpec, result: SweepResult) -> None:
    from critwrap.zoo.runs import write_json

    spec_dict = asdict(spec)
    write_json(
        path,
        {
            "spec": spec_dict,
            "interrupted": result.interrupted,
            "runs": [
                {
                    "run": r.trial.label,
                    "run_dir": str(r.trial.run_dir),
                    "status": r.status,
                    "error": r.error,
                    "mean_return": r.mean_return,
                    "seconds": round(r.seconds, 2),
                    "log": str(r.trial.log_file),
                }
                for r in sorted(result.results, key=lambda r: r.trial.label)
            ],
        },
    )


# ---------------------------------------------------------------------------------------- CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="run a grid of training runs (algos x envs x variants x seeds), locally or on Ray",
        description=__doc__.split("\n\nExample")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--experiment-file",
        default=None,
        metavar="YAML",
        help="zoo/experiments/<name>.yml describing the sweep",
    )
    p.add_argument("--algo", "--algos", dest="algos", default=None, help="algorithm(s), comma-separated")
    p.add_argument("--envs", "--env", dest="envs", default=None, help="environments, comma-separated")
    p.add_argument("--variants", default=None, help="variants, comma-separated (default: base)")
    p.add_argument("--seeds", default=None, help="number of seeds N (0..N-1), a list 0,3,7 or a range 10-14")
    p.add_argument("--timesteps", "-n", type=int, default=None, help="training budget of every run")
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hyperparameter override for every run; repeatable",
    )
    p.add_argument("--experiment", default=None, help="experiment name (default: the file's, else 'default')")
    p.add_argument("--log-dir", default=None, help="root of the result store (default: runs)")
    p.add_argument(
        "--backend", choices=["local", "ray"], default=None, help="local process pool (default) or Ray"
    )
    p.add_argument("--address", default=None, help="Ray cluster to join (HOST:PORT, ray://HOST:10001, auto)")
    p.add_argument(
        "--connect-timeout", type=float, default=5.0, help="seconds to wait for --address (default 5)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="runs at a time (default: CPUs / --cpus-per-trial)"
    )
    p.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs each run declares (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs each run declares (default 0)")
    p.add_argument("--eval-freq", type=int, default=None, help="evaluate every N timesteps")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation")
    p.add_argument(
        "--eval-max-steps",
        type=int,
        default=None,
        metavar="N",
        help="end each evaluation episode after N steps",
    )
    p.add_argument("--n-envs", type=int, default=None, help="training envs per run")
    p.add_argument("--save-freq", type=int, default=None, help="checkpoint every N timesteps")
    p.add_argument(
        "--num-threads", type=int, default=None, help="torch threads per run (default: --cpus-per-trial)"
    )
    p.add_argument(
        "--device", default=None, help="torch device (default: cuda with --gpus-per-trial > 0, else cpu)"
    )
    p.add_argument(
        "--hyperparams", default=None, metavar="DIR", help="directory of <algo>.yml hyperparameter files"
    )
    p.add_argument("--overwrite", action="store_true", help="rerun finished runs too")
    p.add_argument("--dry-run", action="store_true", help="list the runs that would start, and stop")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tqdm progress bar (default on)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="show tracebacks of errors")
    return p


def run(args: argparse.Namespace) -> int:
    file_data: dict[str, Any] = {}
    defined: dict[str, Variant] = {}
    if args.experiment_file:
        file_data, defined = load_experiment(args.experiment_file)
    if not args.variants and not file_data.get("variants"):
        args.variants = "base"
    try:
        spec = build_spec(
            file_data,
            defined,
            algos=args.algos,
            envs=args.envs,
            variants=args.variants,
            seeds=args.seeds,
            timesteps=args.timesteps,
            hp=args.hp,
            experiment=args.experiment,
            log_dir=args.log_dir,
            backend=args.backend,
            address=args.address,
            workers=args.workers,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            eval_freq=args.eval_freq,
            eval_episodes=args.eval_episodes,
            eval_max_steps=args.eval_max_steps,
            n_envs=args.n_envs,
            save_freq=args.save_freq,
            num_threads=args.num_threads,
            device=args.device,
            hyperparams=args.hyperparams,
            source=args.experiment_file,
        )
        result = run_sweep(
            spec,
            overwrite=args.overwrite,
            progress=args.progress,
            connect_timeout=args.connect_timeout,
            dry_run=args.dry_run,
        )
    except ClusterUnreachableError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    failed = result.failed
    print(
        f"sweep {spec.experiment!r}: {len(result.finished)} finished, {len(result.skipped)} skipped (already "
        f"finished or in use), {len(failed)} failed. Report: python -m critwrap.zoo report "
        f"{Path(spec.log_dir) / spec.experiment}"
    )
    for r in failed:
        print(f"  failed {r.trial.label}: {r.error}\n    log: {r.trial.log_file}", file=sys.stderr)
    return 1 if failed else 0
