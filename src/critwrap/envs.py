"""``critwrap.make``: environments by short name, with wrappers recorded in the spec.

Short names follow rl-zoo3 habits:

* ``Seaquest`` (any ALE game) -> ``ALE/Seaquest-v5`` with DQN-style preprocessing: no-op reset
  (up to 30), frame skip 4, 84x84 grayscale, fire on reset where the game needs it, and a stack of
  4 frames (observations ``(4, 84, 84)`` uint8). With ``training=True`` also episodic life and
  reward clipping to [-1, 1]; evaluation envs (the default) keep the true game and reward.
* ``KeyCorridor`` -> ``MiniGrid-KeyCorridorS6R3-v0`` (the Deep State Identifier's GridWorld layout);
  any MiniGrid id, with or without the ``MiniGrid-`` prefix and ``-v0`` suffix, gets the
  :class:`~critwrap.wrappers.minigrid.MiniGridImage` observation wrapper (RGB partial view).
* MuJoCo (``HalfCheetah-v5``) and dm_control (``dm_control/cartpole-balance-v0``, or
  ``cartpole-balance``) ids are passed through; so are MinAtar's (``MinAtar/Breakout-v1``, registered on
  first use when the ``minatar`` extra is installed; observations ``(10, 10, C)`` bool).

Every wrapper, preprocessing included, is recorded in ``env.spec.additional_wrappers``, so
``gymnasium.make(env.spec)`` rebuilds the same stack and ``env.spec.to_json()`` round-trips when the
wrapper arguments are JSON-able.

Example:
    >>> import critwrap, gymnasium as gym
    >>> env = critwrap.make("MiniGrid-Empty-5x5-v0", wrappers=[("record-episodes", {"store": "/tmp/eps"})])  # doctest: +SKIP
    >>> same = gym.make(env.spec)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, cast

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, WrapperSpec

from critwrap import registry

__all__ = [
    "ResolvedEnv",
    "UnknownEnvError",
    "WrapperLike",
    "apply_wrappers",
    "make",
    "normalize_wrappers",
    "register_namespace",
    "resolve_env_id",
]

NAMESPACE = "critwrap"
WrapperLike = Any  # class | registry name | import path | WrapperSpec | (class-or-name, kwargs)


class UnknownEnvError(gym.error.Error, ValueError):
    """No environment is known under that name."""


@dataclass
class ResolvedEnv:
    """What a name resolves to: the Gymnasium id, its family, and the preprocessing it gets."""

    id: str
    family: str  # "atari" | "minigrid" | "dm_control" | "gymnasium" | "critwrap"
    short_name: str | None = None
    preprocess: bool = False
    base_kwargs: dict[str, Any] = field(default_factory=dict)


@cache
def _known() -> dict[str, list[str]]:
    text = resources.files("critwrap").joinpath("data/known_envs.json").read_text()
    return dict(json.loads(text))


@cache
def _ale_games() -> dict[str, str]:
    return {g.lower(): g for g in _known()["ale_games"]}


@cache
def _minigrid_short() -> dict[str, str]:
    out: dict[str, str] = {}
    for full in _known()["minigrid_ids"]:
        short = full.removeprefix("MiniGrid-").rsplit("-v", 1)[0]
        out[short.lower()] = full
        out[full.lower()] = full
    out["keycorridor"] = "MiniGrid-KeyCorridorS6R3-v0"
    return out


# critwrap's own environments (added by later modules): short name -> gymnasium id
CRITWRAP_ENVS: dict[str, str] = {}


def _ensure_imported(env_id: str) -> None:
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        import ale_py

        gym.register_envs(ale_py)
    elif env_id.startswith(("MiniGrid-", "BabyAI-")):
        import minigrid

        gym.register_envs(minigrid)
    elif env_id.startswith("dm_control/"):
        import shimmy

        gym.register_envs(shimmy)
    elif env_id.startswith("MinAtar/") and env_id not in gym.registry:
        try:
            from minatar.gym import register_envs
        except ImportError as exc:
            raise UnknownEnvError(f"{env_id} needs MinAtar: pip install 'critwrap[minatar]'") from exc
        register_envs()


def _all_candidates() -> list[str]:
    names = list(gym.registry)
    names += list(_known()["ale_games"])
    names += [full.removeprefix("MiniGrid-").rsplit("-v", 1)[0] for full in _known()["minigrid_ids"]]
    names += ["KeyCorridor", *CRITWRAP_ENVS]
    return sorted(set(names))


def resolve_env_id(name: str) -> ResolvedEnv:
    """Resolve a short or full environment name (see the module docstring for the rules)."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownEnvError(f"an environment name must be a non-empty string, got {name!r}")
    name = name.strip()
    if name.startswith(f"{NAMESPACE}/"):
        name = name[len(NAMESPACE) + 1 :]
    low = name.lower()
    if low in CRITWRAP_ENVS or name in CRITWRAP_ENVS.values():
        env_id = CRITWRAP_ENVS.get(low, name)
        return ResolvedEnv(env_id, "critwrap", short_name=name)
    if low in _ale_games():
        game = _ale_games()[low]
        return ResolvedEnv(
            f"ALE/{game}-v5", "atari", short_name=game, preprocess=True, base_kwargs={"frameskip": 1}
        )
    if low in _minigrid_short():
        full = _minigrid_short()[low]
        return ResolvedEnv(full, "minigrid", short_name=name, preprocess=True)
    if name.startswith(("ALE/", "MiniGrid-", "BabyAI-", "dm_control/", "MinAtar/")) or "NoFrameskip" in name:
        _ensure_imported(name)
    if name not in gym.registry and "/" not in name and "-" in name:
        # dm_control short form: "cartpole-balance" -> "dm_control/cartpole-balance-v0"
        candidate = f"dm_control/{name}-v0"
        try:
            _ensure_imported(candidate)
        except ImportError:
            pass
        else:
            if candidate in gym.registry:
                name = candidate
    if name in gym.registry:
        if name.startswith("ALE/") or "NoFrameskip" in name:
            family = "atari"
        elif name.startswith(("MiniGrid-", "BabyAI-")):
            family = "minigrid"
        elif name.startswith("dm_control/"):
            family = "dm_control"
        else:
            family = "gymnasium"
        return ResolvedEnv(name, family, preprocess=family == "minigrid")
    candidates = _all_candidates()
    by_lower = {c.lower(): c for c in candidates}  # match case-insensitively, show the proper spelling
    close = [by_lower[c] for c in difflib.get_close_matches(low, list(by_lower), n=6, cutoff=0.6)]
    if not close:
        close = [c for c in candidates if low in c.lower()][:6]
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise UnknownEnvError(
        f"unknown environment {name!r}.{hint} Use an ALE game name (Seaquest), a MiniGrid id, or any id "
        "registered with Gymnasium (HalfCheetah-v5, dm_control/cartpole-balance-v0)."
    )


def _preprocessing(resolved: ResolvedEnv, env: gym.Env[Any, Any], training: bool) -> list[WrapperSpec]:
    from critwrap.wrappers.atari import EpisodicLife, FireReset, has_fire
    from critwrap.wrappers.minigrid import MiniGridImage

    if resolved.family == "atari":
        specs = [
            WrapperSpec(
                "AtariPreprocessing",
                "gymnasium.wrappers:AtariPreprocessing",
                {
                    "noop_max": 30,
                    "frame_skip": 4,
                    "screen_size": 84,
                    "grayscale_obs": True,
                    "scale_obs": False,
                },
            )
        ]
        if training:
            specs.append(EpisodicLife.wrapper_spec())
        if has_fire(env):
            specs.append(FireReset.wrapper_spec(on_life_loss=not training))
        if training:
            specs.append(
                WrapperSpec(
                    "ClipReward", "gymnasium.wrappers:ClipReward", {"min_reward": -1.0, "max_reward": 1.0}
                )
            )
        specs.append(
            WrapperSpec(
                "FrameStackObservation", "gymnasium.wrappers:FrameStackObservation", {"stack_size": 4}
            )
        )
        return specs
    if resolved.family == "minigrid":
        return [MiniGridImage.wrapper_spec(tile_size=8)]
    return []


def _spec_from(cls: Any, kwargs: dict[str, Any], source: Any) -> WrapperSpec:
    if not (isinstance(cls, type) and issubclass(cls, gym.Wrapper)):
        raise TypeError(
            f"wrapper {source!r} resolved to {cls!r}, which is not a gymnasium.Wrapper subclass. Pass a "
            "wrapper class, a registry name (see `python -m critwrap plugins`), a WrapperSpec, or a "
            "(class_or_name, kwargs) pair."
        )
    wrapper_spec = getattr(cls, "wrapper_spec", None)
    if callable(wrapper_spec):
        return wrapper_spec(**kwargs)  # type: ignore[no-any-return]
    from critwrap.wrappers.base import wrapper_spec_for

    return wrapper_spec_for(cls, **kwargs)


def normalize_wrappers(wrappers: Iterable[WrapperLike] | None) -> list[WrapperSpec]:
    """Turn every accepted wrapper form into a :class:`WrapperSpec` (arguments checked now)."""
    if wrappers is None:
        return []
    if isinstance(wrappers, str | WrapperSpec | tuple) or (isinstance(wrappers, type)):
        wrappers = [wrappers]
    out: list[WrapperSpec] = []
    for item in wrappers:
        if isinstance(item, WrapperSpec):
            if item.kwargs is None:
                raise ValueError(f"WrapperSpec {item.name!r} has kwargs=None; it cannot be rebuilt")
            out.append(item)
        elif isinstance(item, Sequence) and not isinstance(item, str):
            if len(item) != 2 or not isinstance(item[1], dict):
                raise TypeError(f"a wrapper pair must be (class_or_name, kwargs_dict), got {item!r}")
            out.append(_spec_from(registry.resolve("wrappers", item[0]), dict(item[1]), item[0]))
        elif isinstance(item, dict) and "name" in item:
            kwargs = dict(item.get("kwargs") or {})
            out.append(_spec_from(registry.resolve("wrappers", item["name"]), kwargs, item["name"]))
        else:
            out.append(_spec_from(registry.resolve("wrappers", item), {}, item))
    return out


def apply_wrappers(env: gym.Env[Any, Any], specs: Sequence[WrapperSpec]) -> gym.Env[Any, Any]:
    """Apply wrapper specs in order (innermost first)."""
    from gymnasium.envs.registration import load_env_creator

    for spec in specs:
        creator = cast(Callable[..., gym.Env[Any, Any]], load_env_creator(spec.entry_point))
        kwargs = dict(spec.kwargs or {})
        try:
            signature = inspect.signature(creator)
        except (TypeError, ValueError):  # a callable without a signature: let the call speak
            signature = None
        if signature is not None:
            try:
                signature.bind(env, **kwargs)
            except TypeError as exc:
                params = list(signature.parameters)[1:]
                raise TypeError(
                    f"could not apply wrapper {spec.name}: {exc}. It accepts: {', '.join(params) or '(nothing)'}"
                ) from exc
        # errors raised by the wrapper itself (e.g. IncompatibleSpaceError) reach the caller unchanged
        env = creator(env, **kwargs)
    return env


def make(
    env_id: str,
    wrappers: Iterable[WrapperLike] | None = None,
    *,
    training: bool = False,
    preprocess: bool | None = None,
    **kwargs: Any,
) -> gym.Env[Any, Any]:
    """Make an environment by short or full name, with critwrap's preprocessing and your wrappers.

    Args:
        env_id: short name (``Seaquest``, ``KeyCorridor``) or any Gymnasium id.
        wrappers: applied after preprocessing, innermost first. Each is a wrapper class, a registry
            name (``"record-episodes"``), an import path (``"pkg.mod:Wrapper"``), a
            ``Wrapper.wrapper_spec(**kwargs)`` or a ``(class_or_name, kwargs)`` pair.
        training: Atari only: add episodic life and reward clipping (for training envs).
        preprocess: force the family's preprocessing on (True) or off (False); default: on for short
            Atari names and for MiniGrid.
        **kwargs: passed to ``gymnasium.make`` (``render_mode``, ``max_episode_steps``, env arguments).

    Returns:
        The environment; ``env.spec.additional_wrappers`` lists every wrapper so that
        ``gymnasium.make(env.spec)`` rebuilds it.
    """
    resolved = resolve_env_id(env_id)
    user_specs = normalize_wrappers(wrappers)
    base_kwargs = dict(resolved.base_kwargs)
    base_kwargs.update(kwargs)
    do_pre = resolved.preprocess if preprocess is None else preprocess
    if not do_pre:
        base_kwargs = dict(kwargs)
    _ensure_imported(resolved.id)
    env = gym.make(resolved.id, **base_kwargs)
    specs = _preprocessing(resolved, env, training) if do_pre else []
    return apply_wrappers(env, [*specs, *user_specs])


def _namespace_entry(critwrap_env: str, wrappers: Any = None, **kwargs: Any) -> gym.Env[Any, Any]:
    # The outer gymnasium.make of "critwrap/<Name>" adds the env checker around the whole stack, so the
    # inner make skips it: the stack is then the same when gymnasium.make(env.spec) rebuilds it.
    return make(critwrap_env, wrappers=wrappers, disable_env_checker=True, **kwargs)


def register_namespace() -> None:
    """Register ``critwrap/<Name>`` for the envs critwrap knows (ALE games, MiniGrid, critwrap's own).

    ``gymnasium.make("critwrap/Seaquest", wrappers=[...], training=True)`` then equals
    ``critwrap.make("Seaquest", wrappers=[...], training=True)``. Registration imports nothing heavy.
    """
    names = list(_known()["ale_games"])
    names += sorted({full.removeprefix("MiniGrid-").rsplit("-v", 1)[0] for full in _known()["minigrid_ids"]})
    names += ["KeyCorridor", *CRITWRAP_ENVS]
    for short in names:
        env_id = f"{NAMESPACE}/{short}"
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="critwrap.envs:_namespace_entry",
            kwargs={"critwrap_env": short},
            order_enforce=True,
            disable_env_checker=False,
        )


def spec_roundtrip(env: gym.Env[Any, Any]) -> EnvSpec:
    """``EnvSpec.from_json(env.spec.to_json())`` with a clear error when kwargs are not JSON-able."""
    if env.spec is None:
        raise ValueError("this environment has no spec (was it made with gymnasium.make or critwrap.make?)")
    try:
        return EnvSpec.from_json(env.spec.to_json())
    except Exception as exc:
        raise ValueError(
            f"the spec of this env is not JSON-serialisable ({exc}); give wrappers JSON-able arguments "
            "(paths instead of objects) to save the spec as JSON. gymnasium.make(env.spec) still works."
        ) from exc
