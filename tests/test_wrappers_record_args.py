"""Every registered wrapper records every constructor argument (``RecordConstructorArgs``).

That is what lets ``gymnasium.make(env.spec)`` rebuild a stack: an argument a wrapper forgets to
record silently falls back to its default in the rebuilt env. Each wrapper is built with a
non-default value for every argument and must record exactly those values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import critwrap
from critwrap import registry
from critwrap.attention.adapter import MaskAdapter

# name -> (env id and make() kwargs, factory of non-default constructor arguments given a tmp dir).
# Every name in the critwrap.wrappers group (critwrap's and plugins') needs an entry.
ARGS: dict[str, tuple[tuple[str, dict[str, Any]], Callable[[Path], dict[str, Any]]]] = {
    "minigrid-image": (
        ("KeyCorridor", {"preprocess": False}),
        lambda tmp: {"tile_size": 5, "fully_observed": True},
    ),
    "action-subset": (("KeyCorridor", {}), lambda tmp: {"actions": [2, 0]}),
    "resize": (("Breakout", {"preprocess": False}), lambda tmp: {"size": [40, 32]}),
    "episodic-life": (("Breakout", {"preprocess": False}), lambda tmp: {}),
    "fire-reset": (("Breakout", {"preprocess": False}), lambda tmp: {"on_life_loss": True}),
    "record-episodes": (
        ("CartPole-v1", {"render_mode": "rgb_array"}),
        lambda tmp: {
            "store": str(tmp / "store"),
            "record": "frames",
            "info_keys": ["tick"],
            "max_episodes": 3,
            "label_key": "is_success",
        },
    ),
    "example-sticky-actions": (("CartPole-v1", {}), lambda tmp: {"p": 0.4, "seed": 11}),
    "rlsp-reward": (
        ("CartPole-v1", {}),
        lambda tmp: {
            "path": _rlsp_reward_file(tmp),
            "ignore_termination": False,
            "check_env_id": False,
            "warn_unset": False,
        },
    ),
    "pixel-observation": (
        ("dm_control/cartpole-balance-v0", {}),
        lambda tmp: {
            "size": [24, 32],
            "camera": 1,
            "frame_stack": 2,
            "action_repeat": 2,
            "channels_first": False,
            "shadows": False,
        },
    ),
    "color-randomization": (
        ("dm_control/cartpole-balance-v0", {}),
        lambda tmp: {"level": "easy", "parts": ["sky", "body"], "seed": 3},
    ),
    "background-replacement": (
        ("Seaquest", {}),
        lambda tmp: {
            "source": "noise",
            "video": str(tmp / "unused.mp4"),
            "floor": True,
            "key_color": [0],
            "tolerance": 4,
            "frame_channels": 1,
            "seed": 5,
        },
    ),
    "overlay": (
        ("Seaquest", {}),
        lambda tmp: {
            "objects": 2,
            "size": 0.3,
            "alpha": 0.5,
            "mode": "noise",
            "frame_channels": 1,
            "seed": 2,
        },
    ),
    "attention-adapter": (
        ("KeyCorridor", {}),
        lambda tmp: {
            "checkpoint": str(MaskAdapter(2, (56, 56)).save(tmp / "adapter").parent),
            "device": "cpu:0",
            "threshold": 0.5,
            "output": "mask",
        },
    ),
    "subgoal-reward": (
        ("CartPole-v1", {}),
        lambda tmp: {
            "detector": _subgoal_detector(tmp),
            "episodes": _subgoal_store(tmp),
            "subgoals": [[0.0, 0.0, 0.0, 0.0]],
            "encoder": "critwrap.wrappers.subgoal:pixel_encoder",
            "threshold": 0.8,
            "bonus": 0.5,
            "weights": 2.0,
            "potential_based": False,
            "gamma": 0.9,
            "k": 2,
            "score_threshold": 0.1,
            "success_above": 0.5,
            "exclude_failed": True,
            "detector_device": "cpu",
        },
    ),
    "critical-attack": (
        ("CartPole-v1", {"render_mode": "rgb_array"}),
        lambda tmp: {
            "detector": "random",
            "k": 3,
            "threshold": 0.2,
            "perturbation": "fgsm",
            "epsilon": 0.05,
            "victim": _attack_victim(tmp),
            "victim_algo": "ppo",
            "frames": "render",
            "window": 4,
            "seed": 7,
            "min_gap": 2,
            "delay": 1,
        },
    ),
}


def _attack_victim(tmp: Path) -> str:
    """An untrained CartPole PPO saved as a zip (the victim of the critical-attack wrapper's FGSM)."""
    from stable_baselines3 import PPO

    path = tmp / "victim.zip"
    PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, device="cpu").save(path)
    return str(path)


def _rlsp_reward_file(tmp: Path) -> str:
    """A small inferred reward (random features) for CartPole-v1's 4-dimensional observations."""
    import numpy as np
    import torch

    from critwrap.rlsp.features import StateVAE
    from critwrap.rlsp.reward import InferredReward

    torch.manual_seed(0)
    reward = InferredReward(StateVAE(4, latent_dim=3, layer_size=8), np.ones(3), "CartPole-v1")
    return str(reward.save(tmp / "rlsp_reward.safetensors"))


def test_every_registered_wrapper_has_arguments() -> None:
    missing = sorted(set(registry.names("wrappers")) - set(ARGS))
    assert not missing, f"add non-default constructor arguments for {missing} to ARGS in {__file__}"


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls).parameters)
    params.pop("env", None)
    return {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize("name", registry.names("wrappers"))
def test_wrapper_records_every_constructor_argument(name: str, tmp_path: Path) -> None:
    if name not in ARGS:
        pytest.fail(f"wrapper {name!r} has no entry in ARGS ({__file__})")
    cls = registry.load("wrappers", name)
    assert issubclass(cls, gym.utils.RecordConstructorArgs), f"{cls.__name__} does not record its arguments"
    (env_id, make_kwargs), factory = ARGS[name]
    kwargs = factory(tmp_path)
    params = _parameters(cls)

    # the table must give every argument, each different from its default
    assert set(kwargs) == set(params), (
        f"ARGS[{name!r}] must give exactly the constructor arguments {sorted(params)}, got {sorted(kwargs)}"
    )
    for arg, value in kwargs.items():
        default = params[arg].default
        assert default is inspect.Parameter.empty or value != default, (
            f"ARGS[{name!r}][{arg!r}] equals the default {default!r}; use another value so that forgetting "
            "to record it is caught"
        )

    env = critwrap.make(env_id, wrappers=[(name, kwargs)], **make_kwargs)
    wrapper = env
    while not isinstance(wrapper, cls):  # critwrap.make puts it outermost, but be explicit
        wrapper = wrapper.env
    saved = wrapper._saved_kwargs
    assert set(saved) == set(params), (
        f"{cls.__name__} records {sorted(saved)}, its arguments are {sorted(params)}"
    )
    assert saved == kwargs
    assert env.spec.additional_wrappers[-1].kwargs == kwargs
    assert env.spec.additional_wrappers[-1].entry_point == f"{cls.__module__}:{cls.__qualname__}"
    rebuilt = gym.make(env.spec)
    assert rebuilt.spec.additional_wrappers[-1].kwargs == kwargs


def test_the_check_catches_a_wrapper_that_forgets_an_argument() -> None:
    """The check above can fail: a wrapper recording only some of its arguments is caught."""
    from critwrap.wrappers.base import CritwrapWrapper

    class Forgetful(CritwrapWrapper, gym.Wrapper):
        def __init__(self, env: gym.Env, scale: float = 1.0, offset: float = 0.0) -> None:
            CritwrapWrapper.__init__(self, scale=scale)  # offset forgotten
            gym.Wrapper.__init__(self, env)

    env = Forgetful(gym.make("CartPole-v1"), scale=2.0, offset=3.0)
    assert set(env._saved_kwargs) != set(_parameters(Forgetful))


def _subgoal_detector(tmp: Path) -> str:
    from critwrap.detectors.baselines import RandomDetector

    return str(RandomDetector(seed=0).save(tmp / "subgoal_det"))


def _subgoal_store(tmp: Path) -> str:
    """Two successful (label 1 > success_above 0.5) CartPole-shaped episodes."""
    import numpy as np

    from critwrap.episodes import Episode, EpisodeStore

    store = EpisodeStore(tmp / "subgoal_eps")
    rng = np.random.default_rng(0)
    for _ in range(2):
        store.append(Episode(rng.normal(0, 0.05, (6, 4)).astype(np.float32), label=1))
    return str(tmp / "subgoal_eps")
