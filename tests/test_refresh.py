"""DetectorRefresh: records episodes, refits / fine-tunes the detector, hot-swaps it, logs through SB3."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

import critwrap
from critwrap.buffers import CriticalNStepReplayBuffer
from critwrap.callbacks.refresh import DetectorRefresh
from critwrap.detectors.base import Detector
from critwrap.detectors.dsi import DSI

torch.set_num_threads(1)

ENV = "MiniGrid-Empty-5x5-v0"  # 56x56x3 RGB views through critwrap.make


def tiny_dsi(**kw: Any) -> DSI:
    kw.setdefault("task", "regression")
    return DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8, batch_size=8, num_threads=1, **kw)


class SwapRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """A wrapper with the hot-swap method of SubgoalReward, recording what it was given."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.swaps: list[tuple[Any, int]] = []

    def set_detector(self, detector: Any, episodes: Any = None) -> None:
        self.swaps.append((detector, len(episodes)))


class VecSwapRecorder(VecEnvWrapper):
    """A VecEnv twin with the same hot-swap method."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.swaps: list[tuple[Any, int]] = []

    def set_detector(self, detector: Any, episodes: Any = None) -> None:
        self.swaps.append((detector, len(episodes)))

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        return self.venv.step_wait()


def make_venv(n_envs: int = 2, wrap: bool = False) -> DummyVecEnv:
    def thunk() -> gym.Env[Any, Any]:
        env = critwrap.make(ENV)
        return SwapRecorder(env) if wrap else env

    venv = DummyVecEnv([thunk] * n_envs)
    venv.seed(0)
    return venv


def logged_keys(folder: Path) -> set[str]:
    with open(folder / "progress.csv") as fh:
        return set(next(csv.reader(fh)))


def test_ppo_refreshes_and_hot_swaps_env_wrappers(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    venv = VecSwapRecorder(make_venv(2, wrap=True))
    det = tiny_dsi()
    cb = DetectorRefresh(det, every=128, min_episodes=2, max_episodes=6, epochs=1, finetune_epochs=1)
    model = PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(512, callback=cb)
    assert cb.refreshes >= 2 and det.is_fitted
    assert cb.last_metrics["fine_tuned"] == 1.0  # later refreshes continue from the current weights
    assert 0.0 < cb.last_metrics["mean_score"] < 1.0 and cb.last_metrics["episodes"] >= 2
    assert "loss_predictor" in cb.last_metrics
    # every env's wrapper and the VecEnv twin got the same detector object and the recorded episodes
    for swaps in [*venv.venv.get_attr("swaps"), venv.swaps]:
        assert len(swaps) == cb.refreshes and all(d is det and n >= 2 for d, n in swaps)
    keys = logged_keys(tmp_path)
    assert {"detector/refreshes", "detector/mean_score", "detector/loss_predictor"} <= keys


@pytest.mark.skipif(
    "discounts"
    not in __import__("stable_baselines3.common.type_aliases", fromlist=["x"]).ReplayBufferSamples._fields,
    reason="CriticalNStepReplayBuffer needs stable-baselines3 >= 2.7 (see test_buffers_compat.py)",
)
def test_dqn_buffer_gets_the_detector_learned_online(tmp_path: Path) -> None:
    from stable_baselines3 import DQN

    det = tiny_dsi()
    model = DQN(
        "CnnPolicy",
        make_venv(2),
        buffer_size=600,
        learning_starts=100,
        batch_size=16,
        seed=0,
        device="cpu",
        policy_kwargs=dict(net_arch=[16]),
        replay_buffer_class=CriticalNStepReplayBuffer,
        replay_buffer_kwargs=dict(detector=None, n_max=4),
    )
    buf = model.replay_buffer
    assert isinstance(buf, CriticalNStepReplayBuffer) and buf.detector is None
    cb = DetectorRefresh(det, every=150, min_episodes=2, max_episodes=6, epochs=1, save_dir=tmp_path / "det")
    model.learn(400, callback=cb)
    assert cb.refreshes >= 1
    assert buf.detector is det and buf.scored_fraction() > 0
    assert cb.last_metrics["buffer_scored_fraction"] > 0
    shares = [cb.last_metrics[f"horizon_share_{n}"] for n in range(1, 5)]
    assert sum(shares) == pytest.approx(1.0) and 1.0 <= cb.last_metrics["horizon_mean"] <= 4.0
    assert Detector.load(tmp_path / "det" / "latest").score(np.zeros((3, 56, 56, 3), np.uint8)).shape == (3,)


class CountingDetector(Detector):
    """Learns nothing; counts fits and the episodes it saw."""

    def __init__(self) -> None:
        self.fits: list[list[Any]] = []

    def fit(self, episodes: Any, **kwargs: Any) -> CountingDetector:
        self.fits.append(list(episodes))
        return self

    def score(self, frames: np.ndarray) -> np.ndarray:
        return np.full(len(frames), 0.25, dtype=np.float32)


def test_windows_targets_and_recent_episodes_only() -> None:
    from stable_baselines3 import PPO

    det = CountingDetector()
    cb = DetectorRefresh(det, every=64, min_episodes=1, max_episodes=3, window=5, target="return")
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256, callback=cb)
    assert len(det.fits) == cb.refreshes >= 2
    last = det.fits[-1]
    # 3 most recent episodes cut into 5-step windows; CartPole pays 1 per step: return = window length
    assert all(len(ep) <= 5 and ep.episode_return == float(len(ep)) for ep in last)
    assert sum(len(ep) for ep in last) == sum(len(ep) for ep in cb._recent.episodes)  # type: ignore[union-attr]
    assert len(cb._recent.episodes) == 3  # type: ignore[union-attr]


def test_one_class_skips_the_refresh_and_training_goes_on() -> None:
    from stable_baselines3 import PPO

    det = tiny_dsi(task="classification")
    # success_above=1e9: every episode is a failure -> DSI cannot fit one class; the refresh is skipped
    cb = DetectorRefresh(det, every=64, min_episodes=1, max_episodes=4, epochs=1, success_above=1e9)
    model = PPO("CnnPolicy", make_venv(1), n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256, callback=cb)
    assert cb.refreshes == 0 and cb.skipped >= 1 and not det.is_fitted
    assert model.num_timesteps >= 256


def test_bad_input_fails_before_training() -> None:
    from stable_baselines3 import PPO

    with pytest.raises(ValueError, match="every"):
        DetectorRefresh(CountingDetector(), every=0)
    with pytest.raises(ValueError, match="target"):
        DetectorRefresh(CountingDetector(), target="best")
    with pytest.raises(TypeError, match=r"not arguments of DSI\.fit"):
        DetectorRefresh(tiny_dsi(), fit_kwargs={"learning_rate": 1.0})
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="image observations"):
        model.learn(64, callback=DetectorRefresh(tiny_dsi()))
    assert model.num_timesteps == 0


class ShapedReward(gym.Wrapper[Any, Any, Any, Any]):
    """Adds 10 to every reward and keeps the task's reward in info["original_reward"], like SubgoalReward."""

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["original_reward"] = float(reward)
        return obs, float(reward) + 10.0, terminated, truncated, info


def test_fits_on_the_original_reward_of_shaped_envs() -> None:
    from stable_baselines3 import PPO

    det = CountingDetector()
    venv = DummyVecEnv([lambda: ShapedReward(gym.make("CartPole-v1"))] * 2)
    cb = DetectorRefresh(det, every=64, min_episodes=1, max_episodes=4, target="return")
    PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(
        192, callback=cb
    )
    assert det.fits and all(ep.episode_return == float(len(ep)) for ep in det.fits[-1])  # not 11 per step
    success = DetectorRefresh(CountingDetector(), target="success", success_above=20.0)
    assert success._label(25.0) == 1 and success._label(15.0) == 0


class RefusingWrapper(gym.Wrapper[Any, Any, Any, Any]):
    def set_detector(self, detector: Any, episodes: Any = None) -> None:
        raise ValueError("no successful episode to take subgoals from")


def test_a_wrapper_that_refuses_keeps_training_going() -> None:
    from stable_baselines3 import PPO

    venv = DummyVecEnv([lambda: RefusingWrapper(gym.make("CartPole-v1"))])
    cb = DetectorRefresh(CountingDetector(), every=64, min_episodes=1, target="return")
    with pytest.warns(UserWarning, match="kept their previous detector"):
        PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, device="cpu").learn(192, callback=cb)
    assert cb.refreshes >= 1 and cb.last_metrics["envs_updated"] == 0.0


def test_hot_swaps_the_subgoal_reward_vec_twin() -> None:
    from stable_baselines3 import PPO

    from critwrap.episodes import Episode

    subgoal = pytest.importorskip("critwrap.vec.subgoal")
    env = critwrap.make(ENV)
    env.action_space.seed(0)
    episodes = []
    for k in range(6):  # random episodes of the 5x5 room; several reach the goal
        obs, _ = env.reset(seed=k)
        frames, rewards, done = [obs], [], False
        while not done:
            obs, r, terminated, truncated, _ = env.step(env.action_space.sample())
            rewards.append(float(r))
            done = terminated or truncated
            if not done:
                frames.append(obs)
        episodes.append(Episode(np.stack(frames), rewards=np.array(rewards), label=int(sum(rewards) > 0)))
    assert len({ep.label for ep in episodes}) == 2
    det = tiny_dsi(task="classification").fit(episodes, epochs=1, progress=False)
    venv = subgoal.SubgoalRewardVecEnv(make_venv(2), detector=det, episodes=episodes)
    before = venv.subgoal_set
    cb = DetectorRefresh(det, every=128, min_episodes=2, max_episodes=6)
    PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(
        384, callback=cb
    )
    assert cb.refreshes >= 1 and cb.last_metrics["envs_updated"] == 1.0
    assert cb._reward_key == "original_reward"  # fitted on the task's reward, not the shaped one
    assert venv.subgoal_set is not before  # subgoals re-extracted from the recorded episodes


def test_recent_episodes_are_bounded_in_frames() -> None:
    from stable_baselines3 import PPO

    cb = DetectorRefresh(CountingDetector(), every=10_000, min_episodes=1, max_episodes=100, max_frames=60)
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(
        256, callback=cb
    )
    recent = cb._recent
    assert recent is not None and cb.episodes_recorded > len(recent.episodes) >= 1
    assert recent.frames <= 60 or len(recent.episodes) == 1


class LoadingSwapRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """In another process the detector arrives as a saved directory: load it there and record it."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.swaps: list[tuple[str, int]] = []

    def set_detector(self, detector: Any, episodes: Any = None) -> None:
        from critwrap.detectors.base import load_detector

        loaded = load_detector(detector) if isinstance(detector, str) else detector
        self.swaps.append((type(loaded).__name__, len(episodes)))


def _subproc_env() -> gym.Env[Any, Any]:
    from stable_baselines3.common.monitor import Monitor

    return Monitor(LoadingSwapRecorder(critwrap.make(ENV)))  # the swap target is not the outermost wrapper


@pytest.mark.skipif(
    not hasattr(VecEnv, "has_attr"), reason="this SB3 cannot reach inner wrappers of subprocess envs (warns)"
)
def test_subproc_envs_get_a_saved_copy_of_the_detector(tmp_path: Path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([_subproc_env] * 2, start_method="fork")
    try:
        det = tiny_dsi()
        cb = DetectorRefresh(det, every=128, min_episodes=2, max_episodes=6, epochs=1, finetune_epochs=1)
        model = PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
        model.set_logger(configure(str(tmp_path), ["csv"]))
        model.learn(256, callback=cb)
        assert cb.refreshes >= 1
        for swaps in venv.env_method("get_wrapper_attr", "swaps"):
            assert len(swaps) == cb.refreshes and all(name == "DSI" and n >= 2 for name, n in swaps)
    finally:
        venv.close()


def test_detector_device_moves_the_refreshed_detector() -> None:
    cb = DetectorRefresh(detector="dsi", detector_kwargs={"channels": (4, 8, 8, 8, 8)}, detector_device="cpu")
    assert cb.detector.device == torch.device("cpu")
    with pytest.raises(ValueError, match="CPU only"):
        DetectorRefresh(detector="random", detector_device="cuda")


def test_windowed_detector_is_refreshed_with_the_callbacks_settings(tmp_path: Path) -> None:
    # a Windowed DSI fitted on clips (the attack benchmark's detector): DetectorRefresh must pass its
    # epochs / fine-tuning / progress settings through to the member, not fit it with the member's defaults
    from stable_baselines3 import PPO

    from critwrap.detectors.windowed import Windowed

    member = tiny_dsi(epochs=7)
    det = Windowed(member, 8, fit_on_windows=True)
    assert not det.is_fitted
    cb = DetectorRefresh(det, every=128, min_episodes=2, max_episodes=6, epochs=1, finetune_epochs=1)
    model = PPO("CnnPolicy", make_venv(2), n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(512, callback=cb)
    assert cb.refreshes >= 2 and det.is_fitted and member.is_fitted
    assert cb.last_metrics["fine_tuned"] == 1.0  # later refreshes continue the member's weights
    # the last fit ran one epoch (the callback's finetune_epochs), not the member's configured 7
    assert len(member.history) == 1
    scores = det.score(np.zeros((20, 56, 56, 3), np.uint8))
    assert scores.shape == (20,) and np.isfinite(scores).all()


def test_ensemble_members_get_distinct_seeds_and_the_callbacks_epochs() -> None:
    from critwrap.detectors.ensemble import MeanEnsemble

    members = [tiny_dsi(epochs=5), tiny_dsi(epochs=5)]
    ens = MeanEnsemble(members)
    assert not ens.is_fitted
    cb = DetectorRefresh(ens, every=10_000, epochs=1)
    eps = [
        critwrap.episodes.Episode(np.random.default_rng(i).integers(0, 255, (12, 56, 56, 3), np.uint8),
                                  rewards=np.full(12, float(i % 2)), episode_return=float(12 * (i % 2)))
        for i in range(6)
    ]  # fmt: skip
    warm, _ = cb._fit(eps)
    assert not warm and ens.is_fitted
    assert [len(m.history) for m in members] == [1, 1]
    # different seeds: the two members do not end up with the same weights
    a, b = (next(m.detector_net.parameters()).detach() for m in members)
    assert not torch.equal(a, b)
    warm, _ = cb._fit(eps)
    assert warm and [len(m.history) for m in members] == [1, 1]
