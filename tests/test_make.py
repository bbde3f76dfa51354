"""critwrap.make: wrapper forms, specs that rebuild, short names, env checkers, every registered wrapper."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec, WrapperSpec
from gymnasium.utils.env_checker import check_env as gym_check_env

import critwrap
from critwrap import registry
from critwrap.attention.adapter import MaskAdapter
from critwrap.envs import UnknownEnvError, normalize_wrappers, resolve_env_id, spec_roundtrip
from critwrap.wrappers.base import IncompatibleSpaceError
from critwrap.wrappers.minigrid import MiniGridImage

MINIGRID_IMAGE = "critwrap.wrappers.minigrid:MiniGridImage"


def _names(env: gym.Env) -> list[str]:
    assert env.spec is not None
    return [w.name for w in env.spec.additional_wrappers]


def _rollout(env: gym.Env, seed: int, steps: int = 12) -> list[Any]:
    """Observations and rewards of a fixed action sequence (the same for two envs with the same spec)."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    out: list[Any] = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        out += [obs, float(reward)]
        if terminated or truncated:
            out.append(env.reset(seed=seed + 1)[0])
    return out


def _assert_same_rollout(a: gym.Env, b: gym.Env, seed: int = 3) -> None:
    for x, y in zip(_rollout(a, seed), _rollout(b, seed), strict=True):
        if isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                np.testing.assert_array_equal(x[key], y[key])
        else:
            np.testing.assert_array_equal(x, y)


# ---- the wrapper forms ----------------------------------------------------------------------------

KW = {"tile_size": 4, "fully_observed": True}
FORMS_NO_KWARGS = [
    MiniGridImage,
    "minigrid-image",
    "MiniGrid_Image",
    MiniGridImage.wrapper_spec(),
    (MiniGridImage, {}),
    ("minigrid-image", {}),
    MINIGRID_IMAGE,
    "critwrap.wrappers.minigrid.MiniGridImage",
    {"name": "minigrid-image"},
]
FORMS_KWARGS = [
    MiniGridImage.wrapper_spec(**KW),
    (MiniGridImage, KW),
    ("minigrid-image", KW),
    [MINIGRID_IMAGE, KW],
    {"name": "minigrid-image", "kwargs": KW},
]


@pytest.mark.parametrize("form", FORMS_NO_KWARGS, ids=repr)
def test_forms_without_kwargs_give_the_same_spec(form: Any) -> None:
    assert normalize_wrappers([form]) == [WrapperSpec("MiniGridImage", MINIGRID_IMAGE, {})]
    env = critwrap.make("MiniGrid-Empty-5x5-v0", preprocess=False, wrappers=[form])
    assert env.spec.additional_wrappers == (
        WrapperSpec("MiniGridImage", MINIGRID_IMAGE, {"tile_size": 8, "fully_observed": False}),
    )


@pytest.mark.parametrize("form", FORMS_KWARGS, ids=repr)
def test_forms_with_kwargs_give_the_same_spec(form: Any) -> None:
    assert normalize_wrappers([form]) == [WrapperSpec("MiniGridImage", MINIGRID_IMAGE, KW)]
    env = critwrap.make("MiniGrid-Empty-5x5-v0", preprocess=False, wrappers=[form])
    assert env.spec.additional_wrappers == (WrapperSpec("MiniGridImage", MINIGRID_IMAGE, KW),)
    assert env.observation_space.shape == (20, 20, 3)  # full 5x5 grid, 4 pixels a cell


def test_a_single_wrapper_need_not_be_in_a_list() -> None:
    assert normalize_wrappers("minigrid-image") == normalize_wrappers([MiniGridImage])
    assert normalize_wrappers(("minigrid-image", KW)) == normalize_wrappers(
        [MiniGridImage.wrapper_spec(**KW)]
    )


def test_bad_wrapper_forms_say_what_is_accepted() -> None:
    with pytest.raises(TypeError, match=r"(?s)does not accept.*tile_size, fully_observed"):
        normalize_wrappers([("minigrid-image", {"tile_sz": 4})])
    with pytest.raises(TypeError, match="class_or_name, kwargs"):
        normalize_wrappers([("minigrid-image", KW, "extra")])
    with pytest.raises(TypeError, match=r"not a gymnasium\.Wrapper subclass"):
        normalize_wrappers(["gymnasium.spaces:Box"])
    with pytest.raises(ValueError, match="kwargs=None"):
        normalize_wrappers([WrapperSpec("X", MINIGRID_IMAGE, None)])
    # a hand-written spec is checked when applied
    bad = WrapperSpec("MiniGridImage", MINIGRID_IMAGE, {"tile": 4})
    with pytest.raises(
        TypeError, match=r"could not apply wrapper MiniGridImage.*It accepts: tile_size, fully_observed"
    ):
        critwrap.make("MiniGrid-Empty-5x5-v0", preprocess=False, wrappers=[bad])


# ---- specs rebuild the same stack -----------------------------------------------------------------

REBUILD_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "seaquest-eval": ("Seaquest", {}),
    "seaquest-train": ("Seaquest", {"training": True}),
    "keycorridor": ("KeyCorridor", {"wrappers": [("minigrid-image", {"tile_size": 4})]}),
    "cartpole-sticky": ("CartPole-v1", {"wrappers": [("example-sticky-actions", {"p": 0.5, "seed": 1})]}),
    "breakout-fire": (
        "Breakout",
        {"preprocess": False, "wrappers": [("fire-reset", {"on_life_loss": True})]},
    ),
}


@pytest.mark.parametrize("case", list(REBUILD_CASES))
def test_gym_make_of_the_spec_rebuilds_the_same_stack(case: str) -> None:
    env_id, kwargs = REBUILD_CASES[case]
    env = critwrap.make(env_id, **kwargs)
    rebuilt = gym.make(env.spec)
    assert str(rebuilt) == str(env)  # the same wrappers in the same order
    assert rebuilt.spec.additional_wrappers == env.spec.additional_wrappers
    assert rebuilt.observation_space == env.observation_space
    assert rebuilt.action_space == env.action_space
    _assert_same_rollout(env, rebuilt)

    # and through JSON
    from_json = EnvSpec.from_json(env.spec.to_json())
    assert from_json == env.spec
    again = gym.make(from_json)
    assert again.spec.additional_wrappers == env.spec.additional_wrappers
    _assert_same_rollout(env, again)


def test_critwrap_namespace_keycorridor_with_wrappers() -> None:
    env = gym.make("critwrap/KeyCorridor", wrappers=[("example-sticky-actions", {"p": 0.2})])
    assert env.spec.id == "critwrap/KeyCorridor"
    assert env.observation_space == gym.spaces.Box(0, 255, (56, 56, 3), np.uint8)
    assert _names(env) == ["MiniGridImage", "StickyActions"]
    assert env.unwrapped.spec.kwargs["critwrap_env"] == "KeyCorridor"
    rebuilt = gym.make(env.spec)
    assert str(rebuilt) == str(env)
    assert rebuilt.spec.additional_wrappers == env.spec.additional_wrappers
    _assert_same_rollout(env, rebuilt)
    # the JSON form spells the (name, kwargs) pair as a list, which make() accepts as well
    from_json = EnvSpec.from_json(env.spec.to_json())
    assert from_json.to_json() == env.spec.to_json()
    assert gym.make(from_json).spec.additional_wrappers == env.spec.additional_wrappers


def test_critwrap_namespace_seaquest() -> None:
    env = gym.make("critwrap/Seaquest", training=True)
    assert env.spec.id == "critwrap/Seaquest"
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert "EpisodicLife" in _names(env) and "ClipReward" in _names(env)
    same = critwrap.make("Seaquest", training=True)
    assert env.spec.additional_wrappers == same.spec.additional_wrappers
    assert "EpisodicLife" not in _names(gym.make("critwrap/Seaquest"))


def test_specs_with_unjsonable_kwargs_still_rebuild() -> None:
    env = gym.make("critwrap/KeyCorridor", wrappers=[MiniGridImage])  # a class object in the env kwargs
    with pytest.raises(ValueError, match="JSON"):
        spec_roundtrip(env)
    assert gym.make(env.spec).spec.additional_wrappers == env.spec.additional_wrappers


# ---- short names ----------------------------------------------------------------------------------


def test_atari_short_name_eval_and_train() -> None:
    assert resolve_env_id("Seaquest").id == "ALE/Seaquest-v5"
    assert resolve_env_id("seaquest").id == "ALE/Seaquest-v5"
    env = critwrap.make("Seaquest")
    assert env.spec.id == "ALE/Seaquest-v5"
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert _names(env)[0] == "AtariPreprocessing" and _names(env)[-1] == "FrameStackObservation"
    assert "EpisodicLife" not in _names(env) and "ClipReward" not in _names(env)
    assert env.unwrapped.spec.kwargs["frameskip"] == 1  # skipping is AtariPreprocessing's job

    train = critwrap.make("Seaquest", training=True)
    assert "EpisodicLife" in _names(train) and "ClipReward" in _names(train)
    assert train.observation_space == env.observation_space


def test_minigrid_short_names() -> None:
    env = critwrap.make("KeyCorridor")
    assert env.spec.id == "MiniGrid-KeyCorridorS6R3-v0"
    assert env.observation_space == gym.spaces.Box(0, 255, (56, 56, 3), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (56, 56, 3) and obs.dtype == np.uint8 and obs.max() > 0
    assert resolve_env_id("Empty-5x5").id == "MiniGrid-Empty-5x5-v0"
    assert resolve_env_id("MiniGrid-DoorKey-5x5-v0").family == "minigrid"
    raw = critwrap.make("KeyCorridor", preprocess=False)
    assert isinstance(raw.observation_space, gym.spaces.Dict)


def test_mujoco_and_dm_control_pass_through() -> None:
    pytest.importorskip("mujoco")
    env = critwrap.make("HalfCheetah-v5")
    assert env.spec.id == "HalfCheetah-v5" and env.spec.additional_wrappers == ()
    assert env.observation_space.shape == (17,)
    pytest.importorskip("dm_control")
    for name in ("dm_control/cartpole-balance-v0", "cartpole-balance"):
        env = critwrap.make(name)
        assert env.spec.id == "dm_control/cartpole-balance-v0"
        assert env.spec.additional_wrappers == ()
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"position", "velocity"}


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Seaquset", "Seaquest"), ("KeyCoridor", "KeyCorridor"), ("HalfCheetah-v9", "HalfCheetah-v5")],
)
def test_unknown_names_give_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownEnvError, match=f"Close matches: {suggestion}"):
        critwrap.make(name)
    with pytest.raises(ValueError):  # UnknownEnvError is a ValueError too
        resolve_env_id(name)


def test_unknown_name_without_matches() -> None:
    with pytest.raises(UnknownEnvError, match="unknown environment 'qqqqzzzz'") as info:
        critwrap.make("qqqqzzzz")
    assert "Close matches" not in str(info.value)


# ---- EpisodicLife semantics -----------------------------------------------------------------------


def _play(env: gym.Env, episodes: int, seed: int) -> list[tuple[int, bool, int, int]]:
    """Per episode of a random policy: length, info['game_over'] at the end, lives at the end, and
    the lives lost on steps that did not end the episode."""
    rng = np.random.default_rng(seed)
    ale = env.unwrapped.ale
    out = []
    env.reset(seed=seed)
    for _ in range(episodes):
        lives_lost_inside = 0
        lives = ale.lives()
        for t in range(1, 5000):  # noqa: B007 (t is the episode length after the loop)
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            if ale.lives() < lives and not (terminated or truncated):
                lives_lost_inside += 1
            lives = ale.lives()
            if terminated or truncated:
                break
        out.append((t, bool(info.get("game_over", terminated)), ale.lives(), lives_lost_inside))
        env.reset()
    return out


def test_episodic_life_ends_episodes_at_life_loss_in_training_only() -> None:
    train = critwrap.make("Breakout", training=True)
    start_lives = 5
    episodes = _play(train, episodes=start_lives + 1, seed=0)
    # one training episode per life; the game is over only after the last one
    game_over = [g for _, g, _, _ in episodes]
    assert game_over == [False] * (start_lives - 1) + [True, False]
    assert [lives for _, _, lives, _ in episodes[:start_lives]] == list(range(start_lives - 1, -1, -1))
    assert all(inside == 0 for *_, inside in episodes)  # no life is lost without ending the episode
    assert episodes[-1][2] == start_lives - 1  # a new game started after the real end

    evaluation = critwrap.make("Breakout")
    _, _, lives, lost_inside = _play(evaluation, episodes=1, seed=0)[0]
    assert lives == 0 and lost_inside == start_lives - 1  # the evaluation episode is the whole game


# ---- env checkers on every registered wrapper -----------------------------------------------------


@dataclass
class WrapperCase:
    """How to test one registered wrapper: where it applies, with which arguments, where it must refuse."""

    envs: list[str]  # keys of BASE_ENVS the wrapper applies to
    kwargs: Callable[[Path], dict[str, Any]] = field(default=lambda tmp: {})
    rejects: dict[str, type[Exception]] = field(default_factory=dict)  # BASE_ENVS key -> error
    gym_checker: bool = True  # gymnasium's checker also checks determinism under reset(seed)


BASE_ENVS: dict[str, tuple[str, dict[str, Any]]] = {
    "seaquest-eval": ("Seaquest", {}),
    "seaquest-train": ("Seaquest", {"training": True}),
    "breakout-raw": ("Breakout", {"preprocess": False}),
    "keycorridor": ("KeyCorridor", {}),
    "keycorridor-raw": ("KeyCorridor", {"preprocess": False}),
    "cartpole": ("CartPole-v1", {}),
    "dmc-cartpole": ("dm_control/cartpole-balance-v0", {}),
}

# Every name in the critwrap.wrappers group needs an entry here (critwrap's and the example plugin's);
# test_every_registered_wrapper_has_a_case fails otherwise, so a new wrapper gets checked.
WRAPPER_CASES: dict[str, WrapperCase] = {
    "minigrid-image": WrapperCase(
        envs=["keycorridor-raw"],
        kwargs=lambda tmp: {"tile_size": 4},
        rejects={"cartpole": IncompatibleSpaceError, "breakout-raw": IncompatibleSpaceError},
    ),
    "resize": WrapperCase(
        envs=["breakout-raw", "keycorridor"],
        kwargs=lambda tmp: {"size": [28, 20]},
        rejects={"cartpole": IncompatibleSpaceError, "seaquest-eval": IncompatibleSpaceError},
    ),
    "action-subset": WrapperCase(
        envs=["keycorridor", "seaquest-eval", "cartpole"],
        kwargs=lambda tmp: {"actions": [1, 0]},
        rejects={"dmc-cartpole": IncompatibleSpaceError},
    ),
    # the Seaquest base stacks already hold both Atari wrappers (and are checked on their own)
    "episodic-life": WrapperCase(envs=["breakout-raw"], rejects={"cartpole": TypeError}),
    "fire-reset": WrapperCase(
        envs=["breakout-raw"],
        kwargs=lambda tmp: {"on_life_loss": True},
        rejects={"cartpole": TypeError},
    ),
    "record-episodes": WrapperCase(
        envs=["seaquest-train", "keycorridor", "cartpole"],
        kwargs=lambda tmp: {"store": str(tmp / "store"), "info_keys": [], "max_episodes": 2},
    ),
    "example-sticky-actions": WrapperCase(
        envs=["seaquest-eval", "keycorridor", "cartpole"], kwargs=lambda tmp: {"p": 0.25, "seed": 0}
    ),
    "rlsp-reward": WrapperCase(
        envs=["cartpole"],
        kwargs=lambda tmp: {"path": _rlsp_reward_file(tmp, "CartPole-v1", 4)},
        rejects={"keycorridor": IncompatibleSpaceError, "seaquest-eval": IncompatibleSpaceError},
    ),
    "pixel-observation": WrapperCase(
        envs=["dmc-cartpole"],
        kwargs=lambda tmp: {"size": 32, "frame_stack": 2, "action_repeat": 2, "shadows": False},
        rejects={"cartpole": IncompatibleSpaceError, "seaquest-eval": IncompatibleSpaceError},
    ),
    "color-randomization": WrapperCase(
        envs=["dmc-cartpole"],
        kwargs=lambda tmp: {"level": "hard", "seed": 0},
        rejects={"cartpole": IncompatibleSpaceError, "seaquest-eval": IncompatibleSpaceError},
    ),
    "background-replacement": WrapperCase(
        envs=["seaquest-eval", "keycorridor"],
        kwargs=lambda tmp: {"source": "moving", "seed": 0},
        rejects={"cartpole": IncompatibleSpaceError, "dmc-cartpole": IncompatibleSpaceError},
    ),
    "overlay": WrapperCase(
        envs=["seaquest-train", "keycorridor"],
        kwargs=lambda tmp: {"objects": 2, "seed": 0},
        rejects={"cartpole": IncompatibleSpaceError, "keycorridor-raw": IncompatibleSpaceError},
    ),
    "attention-adapter": WrapperCase(
        envs=["keycorridor"],  # (56, 56, 3) RGB frames; an untrained adapter checkpoint at 56x56
        kwargs=lambda tmp: {"checkpoint": str(MaskAdapter(2, (56, 56)).save(tmp / "adapter").parent)},
        rejects={"cartpole": IncompatibleSpaceError, "seaquest-eval": IncompatibleSpaceError},
    ),
    "subgoal-reward": WrapperCase(
        envs=["cartpole"],  # subgoals from CartPole episodes, matched on the raw observation vectors
        kwargs=lambda tmp: _subgoal_kwargs(tmp),
        rejects={"keycorridor": ValueError, "seaquest-eval": ValueError},
    ),
    "critical-attack": WrapperCase(
        envs=["cartpole", "keycorridor"],  # online attack, random action at random-detector "critical" steps
        kwargs=lambda tmp: {"detector": "random", "k": 2, "threshold": 0.5, "seed": 0},
        rejects={"dmc-cartpole": TypeError},  # a random different action needs Discrete actions
    ),
}


def _rlsp_reward_file(tmp: Path, env_id: str, obs_dim: int) -> str:
    """A small inferred reward (random features) saved for ``env_id``."""
    import torch

    from critwrap.rlsp.features import StateVAE
    from critwrap.rlsp.reward import InferredReward

    torch.manual_seed(0)
    reward = InferredReward(StateVAE(obs_dim, latent_dim=3, layer_size=8), np.ones(3) / np.sqrt(3), env_id)
    return str(reward.save(tmp / "rlsp_reward.safetensors"))


def _check_both(env: gym.Env, gym_checker: bool = True) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings (e.g. "env is wrapped") are not failures
        if gym_checker:
            gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)


@pytest.mark.parametrize("base", [b for b in BASE_ENVS if b != "keycorridor-raw"])  # SB3 has no Text space
def test_env_checkers_pass_on_base_stacks(base: str) -> None:
    env_id, kwargs = BASE_ENVS[base]
    _check_both(critwrap.make(env_id, **kwargs))


def test_every_registered_wrapper_has_a_case() -> None:
    missing = sorted(set(registry.names("wrappers")) - set(WRAPPER_CASES))
    assert not missing, (
        f"registered wrappers without a case in tests/test_make.py WRAPPER_CASES: {missing}; add one "
        "(the envs it applies to, test kwargs, and the observation spaces it must refuse)"
    )


@pytest.mark.parametrize("name", registry.names("wrappers"))
def test_env_checkers_pass_with_every_registered_wrapper(name: str, tmp_path: Path) -> None:
    if name not in WRAPPER_CASES:
        pytest.fail(f"wrapper {name!r} has no entry in WRAPPER_CASES (tests/test_make.py)")
    case = WRAPPER_CASES[name]
    assert case.envs, f"WRAPPER_CASES[{name!r}] lists no env"
    for base in case.envs:
        env_id, make_kwargs = BASE_ENVS[base]
        env = critwrap.make(env_id, wrappers=[(name, case.kwargs(tmp_path / base))], **make_kwargs)
        assert env.spec.additional_wrappers[-1].entry_point == registry.get_info("wrappers", name).value
        _check_both(env, case.gym_checker)
        rebuilt = gym.make(env.spec)
        assert rebuilt.spec.additional_wrappers == env.spec.additional_wrappers
        assert rebuilt.observation_space == env.observation_space


@pytest.mark.parametrize(
    ("name", "base"), [(n, b) for n, case in WRAPPER_CASES.items() for b in case.rejects], ids=str
)
def test_wrappers_refuse_spaces_they_cannot_handle(name: str, base: str, tmp_path: Path) -> None:
    env_id, make_kwargs = BASE_ENVS[base]
    error = WRAPPER_CASES[name].rejects[base]
    with pytest.raises(error) as info:
        critwrap.make(env_id, wrappers=[(name, WRAPPER_CASES[name].kwargs(tmp_path))], **make_kwargs)
    assert len(str(info.value)) > 30  # a sentence that says what is wrong, not a bare KeyError


def test_minigrid_image_on_cartpole_says_what_to_do() -> None:
    with pytest.raises(IncompatibleSpaceError, match="MiniGrid") as info:
        critwrap.make("CartPole-v1", wrappers=["minigrid-image"])
    assert "CartPole" in str(info.value)


def _subgoal_kwargs(tmp: Path) -> dict[str, Any]:
    """A saved random detector and two successful CartPole episodes: subgoals for SubgoalReward."""
    from critwrap.detectors.baselines import RandomDetector
    from critwrap.episodes import Episode, EpisodeStore

    store = EpisodeStore(tmp / "subgoal_eps")
    if len(store) == 0:
        rng = np.random.default_rng(0)
        for _ in range(2):
            store.append(Episode(rng.normal(0, 0.05, (6, 4)).astype(np.float32), label=1))
    det = RandomDetector(seed=0).save(tmp / "subgoal_det")
    return {
        "detector": str(det),
        "episodes": str(store.root),
        "encoder": "critwrap.wrappers.subgoal:pixel_encoder",
        "threshold": 0.95,
    }


def test_minatar_ids_are_registered_on_first_use() -> None:
    pytest.importorskip("minatar")
    from critwrap.envs import resolve_env_id

    assert resolve_env_id("MinAtar/Freeway-v1").id == "MinAtar/Freeway-v1"
    env = critwrap.make("MinAtar/Breakout-v1", sticky_action_prob=0.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10, 10, 4) and obs.dtype == bool
    assert gym.make(env.spec).spec.kwargs["sticky_action_prob"] == 0.0
