"""Inferred rewards: safe save / load with checks, the ablations, and the RLSPReward wrapper."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import critwrap
from critwrap.rlsp.baselines import average_features_reward, waypoints_reward
from critwrap.rlsp.features import StateVAE
from critwrap.rlsp.reward import (
    FORMAT_VERSION,
    InferredReward,
    RewardFileError,
    RewardMismatchError,
    load_reward,
    read_reward_config,
)
from critwrap.wrappers.base import IncompatibleSpaceError
from critwrap.wrappers.rlsp_reward import RLSPReward


def _reward(obs_dim: int = 4, env_id: str = "InvertedPendulum-v5", seed: int = 0) -> InferredReward:
    torch.manual_seed(seed)
    vae = StateVAE(obs_dim, latent_dim=3, layer_size=16)
    theta = np.random.default_rng(seed).normal(size=3)
    return InferredReward(vae, theta, env_id, info={"method": "test", "n_states": 1})


def test_save_load_round_trip(tmp_path: Path) -> None:
    reward = _reward()
    path = reward.save(tmp_path / "r.safetensors")
    loaded = load_reward(path, env_id="InvertedPendulum-v5", obs_dim=4)
    obs = np.random.default_rng(1).normal(size=(10, 4))
    np.testing.assert_array_equal(loaded.theta, reward.theta)
    np.testing.assert_allclose(loaded(obs), reward(obs), rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded(obs), reward.features(obs) @ reward.theta, atol=1e-12)
    assert isinstance(loaded(obs[0]), float)
    assert (
        loaded.kind == "linear" and loaded.env_id == "InvertedPendulum-v5" and loaded.info["method"] == "test"
    )
    cfg = read_reward_config(path)
    assert (
        cfg["format_version"] == FORMAT_VERSION and cfg["obs_dim"] == 4 and cfg["encoder"]["latent_dim"] == 3
    )
    assert not list(tmp_path.glob("*.tmp"))  # written under a temporary name, then renamed


def test_waypoints_and_average_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = StateVAE(4, latent_dim=3, layer_size=16)
    states = np.random.default_rng(0).normal(size=(3, 4))
    f = vae.encode(states)
    avg = average_features_reward(vae, states, "InvertedPendulum-v5")
    np.testing.assert_allclose(avg.theta, f.sum(0) / np.linalg.norm(f.sum(0)))
    way = waypoints_reward(vae, states, "InvertedPendulum-v5")
    obs = np.random.default_rng(1).normal(size=(6, 4))
    expected = (vae.encode(obs) @ (f / np.linalg.norm(f, axis=1, keepdims=True)).T).max(axis=1)
    np.testing.assert_allclose(way(obs), expected)
    loaded = load_reward(way.save(tmp_path / "w.safetensors"))
    assert loaded.kind == "waypoints"
    np.testing.assert_allclose(loaded(obs), expected, atol=1e-12)


def test_a_reward_from_another_env_is_refused(tmp_path: Path) -> None:
    path = _reward(17, "HalfCheetah-v5").save(tmp_path / "cheetah.safetensors")
    with pytest.raises(RewardMismatchError, match=r"HalfCheetah-v5.*InvertedPendulum-v5"):
        load_reward(path, env_id="InvertedPendulum-v5")
    with pytest.raises(RewardMismatchError, match="size 17"):
        load_reward(path, obs_dim=4)
    with pytest.raises(RewardMismatchError, match="HalfCheetah-v5"):
        critwrap.make("InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": str(path)})])
    # another id with the same observation size: refused unless asked
    pend = _reward(4, "InvertedPendulum-v4").save(tmp_path / "v4.safetensors")
    with pytest.raises(RewardMismatchError):
        critwrap.make("InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": str(pend)})])
    env = critwrap.make(
        "InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": str(pend), "check_env_id": False})]
    )
    env.reset(seed=0)
    with pytest.raises(RewardMismatchError, match="size 17"):  # the observation size is always checked
        critwrap.make(
            "InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": str(path), "check_env_id": False})]
        )


def test_bad_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"critwrap\.zoo rlsp"):
        load_reward(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RewardFileError, match="not a safetensors file"):
        load_reward(tmp_path / "junk.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(RewardFileError, match="not a critwrap inferred reward"):
        load_reward(tmp_path / "other.safetensors")
    # a newer format version
    path = _reward().save(tmp_path / "r.safetensors")
    cfg = read_reward_config(path)
    cfg["format_version"] = FORMAT_VERSION + 1
    save_file(
        load_file(str(path)), str(tmp_path / "new.safetensors"), metadata={"critwrap_rlsp": json.dumps(cfg)}
    )
    with pytest.raises(RewardFileError, match="format version"):
        load_reward(tmp_path / "new.safetensors")


def test_wrapper_rewards_theta_dot_features_and_keeps_the_true_reward(tmp_path: Path) -> None:
    reward = _reward()
    path = str(reward.save(tmp_path / "r.safetensors"))
    env = critwrap.make("InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": path})])
    obs, _ = env.reset(seed=0)
    terminated_seen = False
    for _t in range(60):
        obs, r, terminated, _truncated, info = env.step(np.array([3.0]))  # push hard: the pole falls
        assert r == pytest.approx(float(reward(np.asarray(obs, dtype=np.float64))))
        assert info["inferred_reward"] == r
        assert terminated is False  # the env's termination is ignored ...
        terminated_seen |= info["true_terminated"]  # ... and reported
        assert info["true_reward"] == (0.0 if info["true_terminated"] else 1.0)
    assert terminated_seen
    rebuilt = gym.make(env.spec)
    assert rebuilt.spec.additional_wrappers[-1].kwargs["path"] == path

    keep = critwrap.make(
        "InvertedPendulum-v5", wrappers=[("rlsp-reward", {"path": path, "ignore_termination": False})]
    )
    keep.reset(seed=0)
    for _ in range(60):
        *_, terminated, _, info = keep.step(np.array([3.0]))
        assert terminated == info["true_terminated"]
        if terminated:
            break
    assert terminated


def test_wrapper_without_a_path_waits_for_a_reward_and_start_states() -> None:
    env = critwrap.make("InvertedPendulum-v5", wrappers=["rlsp-reward"])
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="no inferred reward yet, so every reward it returns is 0"):
        assert env.step(np.zeros(1))[1] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per env
        assert env.step(np.zeros(1))[1] == 0.0
    wrapper = env
    while not isinstance(wrapper, RLSPReward):
        wrapper = wrapper.env
    reward = _reward()
    wrapper.set_inferred_reward(reward)
    obs, r, *_ = env.step(np.zeros(1))
    assert r == pytest.approx(float(reward(obs)))
    with pytest.raises(RewardMismatchError):
        wrapper.set_inferred_reward(_reward(17, "HalfCheetah-v5"))
    start = np.array([[0.3, 0.05, 0.1, -0.2]])
    wrapper.set_start_states(start, prob=1.0)
    obs, info = env.reset(seed=1)
    np.testing.assert_allclose(obs, start[0])
    assert info["rlsp_start_state"]
    np.testing.assert_allclose(env.unwrapped._get_obs(), start[0])  # the simulator is in that state
    with pytest.raises(ValueError, match="shape"):
        wrapper.set_start_states(np.zeros((2, 3)), prob=0.5)


def test_wrapper_refuses_image_observations(tmp_path: Path) -> None:
    with pytest.raises(IncompatibleSpaceError, match="flat vector observations"):
        critwrap.make("KeyCorridor", wrappers=["rlsp-reward"])
