"""Hyperparameters from YAML, per algorithm and per environment, the rl-zoo3 way (read safely).

Files are ``<dir>/<algo>.yml`` (``dqn.yml``, ``ppo.yml`` ...). Each top-level key is an entry: an
environment (short name such as ``Seaquest`` / ``KeyCorridor`` or a full id such as
``ALE/Seaquest-v5`` / ``CartPole-v1``), ``atari`` (used for any ALE game without its own entry),
``minigrid`` (any MiniGrid env without its own entry) or ``default`` (anything else). YAML anchors and
``<<:`` merges work. Files are read with ``yaml.safe_load``: a ``!!python/...`` tag is refused and
nothing is ever passed to ``eval``.

Allowed keys in an entry:

* every keyword argument of the algorithm's constructor (checked against ``inspect.signature``),
  except those the zoo sets itself (``env``, ``seed``, ``device``, ``verbose``, ``tensorboard_log``);
* the zoo's keys (:data:`ZOO_KEYS`): ``n_timesteps``, ``policy``, ``n_envs``, ``normalize``,
  ``env_wrapper``, ``callback``, ``env_kwargs``, ``frame_stack``, ``eval_freq``, ``n_eval_episodes``,
  ``noise_type``, ``noise_std``.

Values: ``lin_7e-4`` is a linear schedule (from 7e-4 at the start to 0 at the end), as in rl-zoo3.
``policy_kwargs`` is a mapping whose class-valued entries are strings: ``features_extractor_class:
nature-cnn`` (a registry name, see ``python -m critwrap plugins``, or an import path),
``activation_fn: torch.nn.ReLU`` (``nn.ReLU`` and ``ReLU`` work too), ``optimizer_class:
torch.optim.RMSprop``; ``net_arch`` is a YAML list or mapping. rl-zoo3's ``"dict(net_arch=[64, 64])"``
strings are also accepted: they are parsed as literals with :mod:`ast`, never evaluated.

Where the files are: ``--hyperparams DIR`` (or a ``.yml`` file), else ``./zoo/hyperparams`` under the
current directory when it holds ``<algo>.yml``, else the repository's ``zoo/hyperparams`` next to the
source tree (``Path(critwrap.__file__).parents[2] / "zoo" / "hyperparams"``).

Example:
    >>> from critwrap.zoo.hyperparams import load_hyperparams
    >>> hp = load_hyperparams("dqn", "CartPole-v1", overrides=["buffer_size=1000"])  # doctest: +SKIP
    >>> hp.raw["buffer_size"], hp.entry  # doctest: +SKIP
    (1000, 'CartPole-v1')
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critwrap.zoo.specs import coerce_scalar, normalize_specs, parse_value

__all__ = [
    "RESERVED_KEYS",
    "ZOO_KEYS",
    "Hyperparams",
    "HyperparamsError",
    "LinearSchedule",
    "allowed_keys",
    "build_algo_kwargs",
    "find_hyperparams_file",
    "hyperparams_dirs",
    "load_hyperparams",
    "load_yaml_file",
    "parse_hp_overrides",
    "parse_python_literal",
    "resolve_object",
    "select_entry",
    "validate_keys",
]

ZOO_KEYS: dict[str, str] = {
    "n_timesteps": "total environment steps to train for",
    "policy": "policy name (MlpPolicy, CnnPolicy, MultiInputPolicy, *LstmPolicy) or import path",
    "n_envs": "number of training envs",
    "normalize": "wrap in VecNormalize: true/false or VecNormalize keyword arguments",
    "env_wrapper": "list of wrapper specs: names, {name: kwargs} mappings, import paths",
    "callback": "list of callback specs: names, {name: kwargs} mappings, import paths",
    "env_kwargs": "keyword arguments for the environment (gymnasium.make)",
    "frame_stack": "stack this many observations with VecFrameStack",
    "eval_freq": "evaluate every this many environment steps (0 disables)",
    "n_eval_episodes": "episodes per periodic evaluation",
    "eval_max_steps": "end each evaluation episode after this many steps (default: the env's own limit)",
    "noise_type": "action noise for off-policy continuous control: normal | ornstein-uhlenbeck",
    "noise_std": "standard deviation of the action noise",
}
RESERVED_KEYS: dict[str, str] = {
    "env": "the zoo makes the environment (give env_kwargs instead)",
    "seed": "use --seed",
    "device": "use --device",
    "verbose": "use -v",
    "tensorboard_log": "the zoo writes TensorBoard logs to <run>/tb",
    "_init_setup_model": "internal to SB3",
}
FAMILY_ENTRIES = ("atari", "minigrid")
_LIN_RE = re.compile(r"^lin_([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")


class HyperparamsError(ValueError):
    """A hyperparameter file, entry or override is invalid."""


class LinearSchedule:
    """``lin_<x>``: ``x * progress_remaining``, from ``x`` at the start of training to 0 at the end."""

    def __init__(self, initial_value: float) -> None:
        self.initial_value = float(initial_value)

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial_value

    def __repr__(self) -> str:
        return f"lin_{self.initial_value:g}"


@dataclass
class Hyperparams:
    """The hyperparameters of one run, before conversion to Python objects (JSON-able).

    Attributes:
        algo: canonical algorithm name.
        env: the environment name as given.
        raw: the merged entry (YAML entry, then overrides), JSON-able; what ``config.json`` records.
        source: the YAML file read, or ``None`` when none was used.
        entry: the entry used (``"CartPole-v1"``, ``"atari"``, ``"default"``), or ``None``.
        overrides: the overrides applied on top of the entry.
    """

    algo: str
    env: str
    raw: dict[str, Any]
    source: str | None = None
    entry: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        if self.source is None:
            return "hyperparameters"
        return f"{self.source} (entry {self.entry!r})"


# --------------------------------------------------------------------------------------------- files


def hyperparams_dirs(explicit: str | Path | None = None, cwd: str | Path | None = None) -> list[Path]:
    """Directories searched for ``<algo>.yml``, in order (only ``explicit`` when it is given)."""
    if explicit is not None:
        return [Path(explicit)]
    here = Path(cwd) if cwd is not None else Path.cwd()
    import critwrap

    repo = Path(critwrap.__file__).resolve().parents[2] / "zoo" / "hyperparams"
    dirs = [here / "zoo" / "hyperparams", repo]
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_hyperparams_file(
    algo: str, explicit: str | Path | None = None, cwd: str | Path | None = None
) -> Path:
    """The YAML file for ``algo`` (see the module docstring for the search order)."""
    if explicit is not None and Path(explicit).suffix in (".yml", ".yaml"):
        path = Path(explicit)
        if not path.is_file():
            raise HyperparamsError(f"hyperparameter file {path} does not exist")
        return path
    dirs = hyperparams_dirs(explicit, cwd)
    for d in dirs:
        for suffix in (".yml", ".yaml"):
            candidate = d / f"{algo}{suffix}"
            if candidate.is_file():
                return candidate
    if explicit is not None and not Path(explicit).is_dir():
        raise HyperparamsError(f"--hyperparams {explicit}: no such directory (or .yml file)")
    searched = ", ".join(str(d) for d in dirs)
    raise HyperparamsError(
        f"no hyperparameter file {algo}.yml found (searched: {searched}). Create one with a 'default' "
        "entry, pass --hyperparams DIR, or give every setting with --hp key=value and --timesteps."
    )


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read a hyperparameter file safely; every top-level value must be a mapping (an entry)."""
    path = Path(path)
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise HyperparamsError(
            f"refusing to read {path}: {exc.problem}{where}. critwrap reads hyperparameters with "
            "yaml.safe_load: no !!python/... tags. Write classes as strings instead, e.g. "
            "'activation_fn: torch.nn.ReLU' or 'features_extractor_class: nature-cnn'."
        ) from None
    except yaml.YAMLError as exc:
        raise HyperparamsError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HyperparamsError(
            f"{path}: expected a mapping of entries (env name -> settings), got {type(data).__name__}"
        )
    for key, value in data.items():
        if value is None:
            data[key] = {}
        elif not isinstance(value, dict):
            raise HyperparamsError(f"{path}: entry {key!r} must be a mapping of settings, got {value!r}")
    return {str(k): v for k, v in data.items()}


def select_entry(
    data: Mapping[str, Any],
    env: str,
    env_id: str | None = None,
    short_name: str | None = None,
    family: str | None = None,
    resolve: Callable[[str], Any] | None = None,
) -> str | None:
    """The entry for an environment: its names (exact, then case-insensitive), an entry naming the same
    Gymnasium id (``KeyCorridor`` for ``MiniGrid-KeyCorridorS6R3-v0``, with ``resolve``), its family
    (``atari``, ``minigrid``), then ``default``."""
    names = [n for n in (env, short_name, env_id) if n]
    for name in names:
        if name in data:
            return name
    lower = {k.lower(): k for k in data}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    if resolve is not None and env_id is not None:
        for key in data:
            if key in (*FAMILY_ENTRIES, "default"):
                continue
            try:
                if resolve(key).id == env_id:
                    return key
            except Exception:  # an entry for an env that is not installed here
                continue
    if family in FAMILY_ENTRIES and family in data:
        return family
    if "default" in data:
        return "default"
    return None


# ------------------------------------------------------------------------------------ validation


def allowed_keys(algo_cls: Any) -> list[str]:
    """Keys an entry may hold for ``algo_cls``: its constructor's keyword arguments and the zoo's keys."""
    params = inspect.signature(algo_cls.__init__).parameters
    algo_keys = [
        p.name
        for p in params.values()
        if p.name not in ("self", "policy", *RESERVED_KEYS)
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return sorted({*algo_keys, *ZOO_KEYS})


def validate_keys(hp: Mapping[str, Any], algo_cls: Any, where: str) -> None:
    """Raise :class:`HyperparamsError` naming ``where``, the key, close matches and the allowed keys."""
    allowed = allowed_keys(algo_cls)
    for key in hp:
        if key in RESERVED_KEYS:
            raise HyperparamsError(f"{where}: key {key!r} cannot be set here: {RESERVED_KEYS[key]}.")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise HyperparamsError(
                f"{where}: unknown key {key!r} for {algo_cls.__name__}.{hint} Allowed keys: {', '.join(allowed)}."
            )


# ---------------------------------------------------------------------- values: literals, classes


def parse_python_literal(text: str, where: str = "value") -> Any:
    """Read rl-zoo3's ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` strings without evaluating them.

    Literals, lists, tuples, ``{...}`` and ``dict(...)`` are read as data; names such as ``nn.ReLU``
    become the string ``"nn.ReLU"`` (resolved later as an import path). Anything else (calls other
    than ``dict``, operators, lambdas) is refused.
    """

    def conv(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = conv(node.operand)
            if isinstance(value, int | float):
                return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.List | ast.Tuple):
            return [conv(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise HyperparamsError(f"{where}: '**' is not supported in {text!r}")
            return {conv(k): conv(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and not node.args
        ):
            if any(kw.arg is None for kw in node.keywords):
                raise HyperparamsError(f"{where}: '**' is not supported in {text!r}")
            return {kw.arg: conv(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{conv(node.value)}.{node.attr}"
        raise HyperparamsError(
            f"{where}: {text!r} contains {ast.dump(node)[:60]}..., which critwrap does not evaluate. Write a YAML "
            "mapping instead, e.g. policy_kwargs: {net_arch: [64, 64], activation_fn: torch.nn.ReLU}"
        )

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise HyperparamsError(f"{where}: cannot parse {text!r}: {exc.msg}") from None
    return conv(tree.body)


def _normalize_value(value: Any, where: str) -> Any:
    """Make a YAML value plain data: ``"dict(...)"`` / ``"{...}"`` strings parsed, ``"1e-3"`` -> float."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith(("dict(", "{")) and stripped.endswith((")", "}")):
            return _normalize_value(parse_python_literal(stripped, where), where)
        return coerce_scalar(value)
    if isinstance(value, Mapping):
        return {str(k): _normalize_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize_value(v, where) for v in value]
    return value


_SHORTHANDS = {
    "nn.": "torch.nn.",
    "th.nn.": "torch.nn.",
    "th.optim.": "torch.optim.",
    "optim.": "torch.optim.",
}
_BARE_NAMESPACES: dict[str, list[str]] = {
    "activation_fn": ["torch.nn"],
    "optimizer_class": ["torch.optim", "stable_baselines3.common.sb2_compat.rmsprop_tf_like"],
    "replay_buffer_class": ["stable_baselines3", "stable_baselines3.common.buffers"],
    "rollout_buffer_class": ["stable_baselines3.common.buffers"],
    "features_extractor_class": ["stable_baselines3.common.torch_layers"],
}


def resolve_object(ref: Any, key: str = "", kind: str | None = None) -> Any:
    """An import path (``torch.nn.ReLU``, ``pkg.mod:Class``), a registry name (``kind`` given) or a bare
    name in the usual namespace of ``key`` (``ReLU`` for ``activation_fn``) -> the object."""
    if not isinstance(ref, str):
        return ref
    from critwrap import registry

    text = ref.strip()
    for short, full in _SHORTHANDS.items():
        if text.startswith(short):
            text = full + text[len(short) :]
            break
    if (
        kind is not None
        and ":" not in text
        and "." not in text
        and registry.normalize_name(text) in registry.names(kind)
    ):
        return registry.load(kind, text)
    if ":" in text or "." in text:
        module_name, _, attr = text.partition(":") if ":" in text else text.rpartition(".")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        except (ImportError, AttributeError) as exc:
            raise HyperparamsError(f"{key or 'value'}: could not import {ref!r}: {exc}") from None
    for namespace in _BARE_NAMESPACES.get(key, []):
        module = importlib.import_module(namespace)
        if hasattr(module, text):
            return getattr(module, text)
    known = f" or a registered {kind[:-1]} name ({', '.join(registry.names(kind))})" if kind else ""
    raise HyperparamsError(
        f"{key or 'value'}: cannot resolve {ref!r}; give an import path such as torch.nn.ReLU{known}"
    )


def _convert_policy_kwargs(policy_kwargs: Any, where: str) -> dict[str, Any]:
    if not isinstance(policy_kwargs, Mapping):
        raise HyperparamsError(f"{where}: policy_kwargs must be a mapping, got {policy_kwargs!r}")
    out: dict[str, Any] = {}
    for key, value in policy_kwargs.items():
        if key == "features_extractor_class":
            try:
                out[key] = resolve_object(value, key, kind="extractors")
            except Exception as exc:
                raise HyperparamsError(f"{where}: policy_kwargs.{key}: {exc}") from None
        elif (key.endswith("_class") or key.endswith("_fn")) and isinstance(value, str):
            try:
                out[key] = resolve_object(value, key)
            except HyperparamsError as exc:
                raise HyperparamsError(f"{where}: policy_kwargs.{exc}") from None
        elif (
            key == "net_arch"
            and isinstance(value, list)
            and len(value) == 1
            and isinstance(value[0], Mapping)
        ):
            out[key] = dict(value[0])  # rl-zoo3's old [dict(pi=..., vf=...)] form
        else:
            out[key] = copy.deepcopy(value)
    return out


def _schedule(value: Any) -> Any:
    if isinstance(value, str):
        match = _LIN_RE.match(value.strip())
        if match:
            return LinearSchedule(float(match.group(1)))
    return value


def build_algo_kwargs(
    raw: Mapping[str, Any], algo_cls: Any, where: str = "hyperparameters"
) -> dict[str, Any]:
    """The constructor keyword arguments for ``algo_cls`` from a raw entry (zoo keys left out).

    ``lin_x`` strings become :class:`LinearSchedule`, ``policy_kwargs`` classes are resolved,
    ``train_freq: [1, episode]`` becomes a tuple, class-valued keys are imported.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ZOO_KEYS:
            continue
        if key == "policy_kwargs":
            out[key] = _convert_policy_kwargs(value, where)
        elif key == "train_freq" and isinstance(value, list):
            out[key] = tuple(value)
        elif key.endswith("_class") and isinstance(value, str):
            out[key] = resolve_object(value, key)
        else:
            out[key] = _schedule(copy.deepcopy(value))
    return out


def _check_zoo_values(raw: Mapping[str, Any], where: str) -> None:
    def positive_int(key: str) -> None:
        value = raw.get(key)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1 or int(value) != value:
            raise HyperparamsError(f"{where}: {key} must be a positive integer, got {value!r}")

    for key in ("n_timesteps", "n_envs", "frame_stack", "n_eval_episodes", "eval_max_steps"):
        positive_int(key)
    if "eval_freq" in raw and (not isinstance(raw["eval_freq"], int | float) or raw["eval_freq"] < 0):
        raise HyperparamsError(
            f"{where}: eval_freq must be an integer >= 0 (0 disables), got {raw['eval_freq']!r}"
        )
    if "normalize" in raw and not isinstance(raw["normalize"], bool | Mapping):
        raise HyperparamsError(
            f"{where}: normalize must be true/false or a mapping of VecNormalize arguments, got {raw['normalize']!r}"
        )
    if "env_kwargs" in raw and not isinstance(raw["env_kwargs"], Mapping):
        raise HyperparamsError(f"{where}: env_kwargs must be a mapping, got {raw['env_kwargs']!r}")
    if "policy_kwargs" in raw and not isinstance(raw["policy_kwargs"], Mapping):
        raise HyperparamsError(f"{where}: policy_kwargs must be a mapping, got {raw['policy_kwargs']!r}")
    if raw.get("noise_type") not in (None, "normal", "ornstein-uhlenbeck"):
        raise HyperparamsError(
            f"{where}: noise_type must be 'normal' or 'ornstein-uhlenbeck', got {raw['noise_type']!r}"
        )
    for key in ("env_wrapper", "callback"):
        if key in raw:
            try:
                normalize_specs(raw[key], where=f"{where}: {key}")
            except ValueError as exc:
                raise HyperparamsError(str(exc)) from None


# ------------------------------------------------------------------------------------- overrides


def parse_hp_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["learning_rate=1e-3", "policy_kwargs.net_arch=[64,64]"]`` -> nested dict (values parsed as YAML)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): _normalize_value(v, f"override {k}") for k, v in items.items()}
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key or not re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", key):
            raise HyperparamsError(
                f"--hp {item!r}: expected key=value (value in YAML), e.g. --hp learning_rate=1e-3, "
                "--hp policy_kwargs.net_arch=[64,64], --hp 'policy_kwargs={net_arch: [16]}'"
            )
        try:
            value = parse_value(text.strip()) if text.strip() else None
        except yaml.YAMLError as exc:
            raise HyperparamsError(
                f"--hp {item!r}: the value is not valid YAML: {str(exc).splitlines()[0]}"
            ) from None
        value = _normalize_value(value, f"--hp {key}")
        target = out
        *parents, last = key.split(".")
        for part in parents:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise HyperparamsError(f"--hp {item!r}: {part!r} is already set to a non-mapping value")
            target = node
        target[last] = value
    return out


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "normalize":
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------- entry


def load_hyperparams(
    algo: str,
    env: str,
    *,
    hyperparams: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    algo_cls: Any = None,
    resolve_env: Callable[[str], Any] | None = None,
    require_file: bool = False,
) -> Hyperparams:
    """Read ``<algo>.yml``, pick the entry for ``env``, apply ``overrides`` and validate every key.

    Args:
        algo: algorithm name (``dqn``, ``ppo`` ...).
        env: environment name as the user wrote it.
        hyperparams: a directory or a ``.yml`` file; default: see the module docstring.
        overrides: ``key=value`` strings (``--hp``) or a mapping, applied on top of the entry.
        algo_cls: the algorithm class (looked up from ``algo`` when ``None``).
        resolve_env: a function like :func:`critwrap.envs.resolve_env_id` (the default).
        require_file: raise when no file is found (otherwise the overrides alone are used).
    """
    from critwrap.zoo.algos import canonical_algo, get_algo_class

    algo = canonical_algo(algo)
    algo_cls = algo_cls if algo_cls is not None else get_algo_class(algo)
    if resolve_env is None:
        from critwrap.envs import resolve_env_id

        resolve_env = resolve_env_id
    resolved = resolve_env(env)
    over = parse_hp_overrides(overrides)
    try:
        path: Path | None = find_hyperparams_file(algo, hyperparams)
    except HyperparamsError:
        if require_file or hyperparams is not None or not over:
            raise
        path = None
    raw: dict[str, Any] = {}
    entry: str | None = None
    if path is not None:
        data = load_yaml_file(path)
        entry = select_entry(
            data, env, resolved.id, resolved.short_name, resolved.family, resolve=resolve_env
        )
        if entry is None:
            family_hint = f"'{resolved.family}', " if resolved.family in FAMILY_ENTRIES else ""
            raise HyperparamsError(
                f"{path} has no entry for {env!r} (looked for {env!r}, {resolved.id!r}, {family_hint}'default'). "
                f"Its entries: {', '.join(data) or '(none)'}. Add one, or pass --hyperparams DIR."
            )
        raw = _normalize_value(dict(data[entry]), f"{path} (entry {entry!r})")
        validate_keys(raw, algo_cls, f"{path} (entry {entry!r})")
        _check_zoo_values(raw, f"{path} (entry {entry!r})")
    validate_keys(over, algo_cls, "--hp override")
    merged = _merge(raw, over)
    hp = Hyperparams(
        algo=algo, env=env, raw=merged, source=str(path) if path else None, entry=entry, overrides=over
    )
    _check_zoo_values(merged, hp.where() + (" with --hp overrides" if over else ""))
    return hp
