"""CriticalNStepReplayBuffer: n-step targets against hand-computed episodes, SB3 integration, bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.type_aliases import ReplayBufferSamples

if "discounts" not in ReplayBufferSamples._fields:  # SB3 < 2.7 (tox -e oldest): see test_buffers_compat.py
    pytest.skip("the n-step tests need stable-baselines3 >= 2.7", allow_module_level=True)

from stable_baselines3.common.buffers import NStepReplayBuffer

from critwrap.buffers import CriticalNStepReplayBuffer, UnsupportedAlgorithmError
from critwrap.detectors.base import Detector

torch.set_num_threads(1)

OBS_SPACE = gym.spaces.Box(-1e6, 1e6, shape=(1,), dtype=np.float32)
ACT_SPACE = gym.spaces.Discrete(2)


class TableDetector(Detector):
    """Observations are ``[step id]``; the score of a step is ``table[step id]`` (a planted score vector)."""

    def __init__(self, table: dict[int, float]) -> None:
        self.table = table
        self.calls = 0

    def score(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] != 1:
            raise ValueError(f"TableDetector scores (T, 1) observations, got {frames.shape}")
        self.calls += 1
        return np.array([self.table.get(round(float(f[0])), 0.0) for f in frames], dtype=np.float32)


class ShapeDetector(Detector):
    """Accepts only frames of one shape, like a trained DSI."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def score(self, frames: np.ndarray) -> np.ndarray:
        if np.asarray(frames).shape[1:] != self.shape:
            raise ValueError(f"frames {np.asarray(frames).shape[1:]} do not match {self.shape}")
        return np.full(len(frames), 0.5, dtype=np.float32)


def make_buffer(
    detector: Detector | None, n_envs: int = 1, size: int = 50, **kw: Any
) -> CriticalNStepReplayBuffer:
    kw.setdefault("gamma", 0.9)
    kw.setdefault("n_max", 3)
    return CriticalNStepReplayBuffer(
        size, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=n_envs, detector=detector, **kw
    )


def add_step(
    buf: Any, ids: list[int], rewards: list[float], dones: list[bool], truncs: list[bool] | None = None
) -> None:
    """One vector step: env k at step id ids[k] (next observation id + 1), reward, done."""
    n = len(ids)
    truncs = truncs or [False] * n
    obs = np.array(ids, dtype=np.float32).reshape(n, 1)
    infos = [{"TimeLimit.truncated": t} for t in truncs]
    buf.add(obs, obs + 1, np.zeros((n, 1)), np.array(rewards, np.float32), np.array(dones, np.float32), infos)


def sample(
    buf: CriticalNStepReplayBuffer, inds: list[int], envs: list[int] | None = None
) -> dict[str, np.ndarray]:
    envs = envs if envs is not None else [0] * len(inds)
    s = buf._samples_at(np.array(inds), np.array(envs))
    return {
        "obs": s.observations.numpy()[:, 0],
        "next": s.next_observations.numpy()[:, 0],
        "ret": s.rewards.numpy()[:, 0],
        "disc": s.discounts.numpy()[:, 0],
        "done": s.dones.numpy()[:, 0],
        "n": buf.last_n_steps.copy(),
    }


# one episode of 8 steps (ids 0..7), rewards 1..8, then 2 steps (ids 100, 101) of an unfinished episode
SCORES = {0: 0.1, 1: 0.9, 2: 0.2, 3: 0.3, 4: 0.8, 5: 0.1, 6: 0.5, 7: 0.4}


def filled(detector: Detector | None, **kw: Any) -> CriticalNStepReplayBuffer:
    buf = make_buffer(detector, **kw)
    for t in range(8):
        add_step(buf, [t], [t + 1.0], [t == 7])
    add_step(buf, [100], [10.0], [False])
    add_step(buf, [101], [20.0], [False])
    return buf


def test_targets_match_hand_computed_episode() -> None:
    det = TableDetector(SCORES)
    buf = filled(det)
    assert det.calls == 2  # a shape check at construction, then the episode once, when it ended
    np.testing.assert_allclose(buf.scores[:8, 0], [SCORES[t] for t in range(8)])
    assert buf.scored[:8, 0].all() and not buf.scored[8:10, 0].any()
    s = sample(buf, [0, 1, 3, 5, 6, 7])
    # t=0: scores[0:3] = .1 .9 .2 -> n=2: 1 + .9*2, discount .81, bootstrap at s_2
    # t=1: scores[1:4] = .9 .2 .3 -> n=1: 2, discount .9, bootstrap at s_2
    # t=3: scores[3:6] = .3 .8 .1 -> n=2: 4 + .9*5 = 8.5, bootstrap at s_5
    # t=5: scores[5:8] = .1 .5 .4 -> n=2: 6 + .9*7 = 12.3, bootstrap at s_7
    # t=6: window cut at the episode end: scores[6:8] = .5 .4 -> n=1: 7, bootstrap at s_7
    # t=7: last step, terminal: n=1, reward 8, done
    np.testing.assert_array_equal(s["n"], [2, 1, 2, 2, 1, 1])
    np.testing.assert_allclose(s["ret"], [2.8, 2.0, 8.5, 12.3, 7.0, 8.0], rtol=1e-6)
    np.testing.assert_allclose(s["disc"], [0.81, 0.9, 0.81, 0.81, 0.9, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(s["next"], [2, 2, 5, 7, 7, 8])
    np.testing.assert_array_equal(s["done"], [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(s["obs"], [0, 1, 3, 5, 6, 7])


def test_horizon_histogram_counts_the_scored_transitions_horizons() -> None:
    """The hand-computed episode above, by hand again: the argmax of scores[t : t + 3] within the episode
    gives n = 2 1 3 2 1 2 1 1 for t = 0..7 (t = 2: .2 .3 .8; t = 4: .8 .1 .5); the unfinished episode
    is not counted."""
    buf = filled(TableDetector(SCORES))
    np.testing.assert_array_equal(buf.horizons(np.arange(8), np.zeros(8, int)), [2, 1, 3, 2, 1, 2, 1, 1])
    hist = buf.horizon_histogram()
    assert hist["transitions"] == 8 and hist["counts"] == [4, 3, 1]
    np.testing.assert_allclose(hist["shares"], [4 / 8, 3 / 8, 1 / 8])
    assert hist["mean"] == pytest.approx(13 / 8)
    empty = make_buffer(None).horizon_histogram()
    assert empty["transitions"] == 0 and empty["counts"] == [0, 0, 0]


def test_unscored_transitions_fall_back_to_nstep_or_one_step() -> None:
    buf = filled(TableDetector(SCORES))
    # the unfinished episode (buffer slots 8, 9): plain n-step, cut at the newest transition
    s = sample(buf, [8, 9])
    np.testing.assert_array_equal(s["n"], [2, 1])
    np.testing.assert_allclose(s["ret"], [10 + 0.9 * 20, 20], rtol=1e-6)
    np.testing.assert_array_equal(s["next"], [102, 102])
    np.testing.assert_array_equal(s["done"], [0, 0])
    one = filled(TableDetector(SCORES), unscored="one_step")
    np.testing.assert_array_equal(sample(one, [8, 9])["n"], [1, 1])


def test_unscored_targets_equal_sb3_nstep_buffer() -> None:
    ours = filled(None, n_max=4)
    sb3 = NStepReplayBuffer(50, OBS_SPACE, ACT_SPACE, device="cpu", n_steps=4, gamma=0.9)
    for t in range(8):
        add_step(sb3, [t], [t + 1.0], [t == 7])
    add_step(sb3, [100], [10.0], [False])
    add_step(sb3, [101], [20.0], [False])
    inds = np.arange(10)
    np.random.seed(0)
    a = ours._get_samples(inds)
    np.random.seed(0)
    b = sb3._get_samples(inds)
    for field in ("observations", "next_observations", "rewards", "discounts", "dones"):
        np.testing.assert_allclose(
            getattr(a, field).numpy(), getattr(b, field).numpy(), rtol=1e-6, err_msg=field
        )


def test_timeout_bootstraps_and_termination_does_not() -> None:
    buf = make_buffer(TableDetector({0: 0.1, 1: 0.2, 2: 0.9}), n_max=5)
    for t in range(3):
        add_step(buf, [t], [1.0], [t == 2], [t == 2])  # truncated by a time limit
    add_step(buf, [50], [1.0], [False])
    s = sample(buf, [0, 2])
    np.testing.assert_array_equal(s["n"], [3, 1])
    np.testing.assert_array_equal(s["done"], [0, 0])  # a timeout is bootstrapped
    np.testing.assert_allclose(s["disc"], [0.729, 0.9], rtol=1e-6)
    buf2 = make_buffer(TableDetector({0: 0.1, 1: 0.2, 2: 0.9}), n_max=5, handle_timeout_termination=False)
    for t in range(3):
        add_step(buf2, [t], [1.0], [t == 2], [t == 2])
    add_step(buf2, [50], [1.0], [False])
    np.testing.assert_array_equal(sample(buf2, [0, 2])["done"], [1, 1])


def test_circular_wrap_and_several_envs() -> None:
    table = {i: float(i % 7) / 10 for i in range(1000)}
    buf = make_buffer(TableDetector(table), n_envs=2, size=12, n_max=3)  # 6 slots per env
    # env 0: one 9-step episode (ids 200..208, longer than the buffer) ending at step 8, then ids 300, 301
    # env 1: episodes of 2 steps (ids 10k..), always finished
    for step in range(11):
        ids = [200 + step if step < 9 else 300 + step - 9, 10 * step]
        add_step(buf, ids, [1.0, 1.0], [step == 8, step % 2 == 1])
    assert buf.full and buf.pos == 5
    # env 0: slots hold ids 206, 207, 208 (scored, its start overwritten) and 300, 301 (unscored)
    order = buf._chronological()
    np.testing.assert_array_equal(buf.observations[order, 0, 0], [205, 206, 207, 208, 300, 301])
    np.testing.assert_array_equal(buf.scored[order, 0], [True, True, True, True, False, False])
    np.testing.assert_allclose(buf.scores[order[:4], 0], [table[i] for i in (205, 206, 207, 208)])
    # id 205: scores .2 .3 .4 -> n=3, next obs 208; nothing crosses into the next episode or older data
    slot = int(order[0])
    s = sample(buf, [slot, int(order[3]), int(order[4]), int(order[5])], [0, 0, 0, 0])
    np.testing.assert_array_equal(s["n"], [3, 1, 2, 1])
    np.testing.assert_array_equal(s["next"], [208, 209, 302, 302])
    np.testing.assert_array_equal(s["done"], [0, 1, 0, 0])
    # env 1 in the same batch: 2-step episodes, never longer than 2
    s1 = sample(buf, list(order), [1] * 6)
    assert (s1["n"] <= 2).all()
    assert s1["done"].sum() >= 2


def test_set_detector_rescores_finished_episodes() -> None:
    buf = filled(None)
    assert buf.scored_fraction() == 0.0
    np.testing.assert_array_equal(sample(buf, [0])["n"], [3])
    buf.set_detector(TableDetector(SCORES))
    assert buf.scored_fraction() == pytest.approx(0.8)  # 8 of 10 stored transitions are finished
    np.testing.assert_array_equal(sample(buf, [0, 1])["n"], [2, 1])
    buf.set_detector(None)
    assert buf.scored_fraction() == 0.0


def test_score_window_scores_in_chunks() -> None:
    det = TableDetector(SCORES)
    buf = filled(det, score_window=3)
    assert det.calls == 1 + 3  # shape check; 8 steps in windows of 3, 3, 2 (one score() call each)
    np.testing.assert_allclose(buf.scores[:8, 0], [SCORES[t] for t in range(8)])


def test_pickle_drops_the_detector() -> None:
    buf = filled(TableDetector(SCORES))
    clone = pickle.loads(pickle.dumps(buf))
    assert clone.detector is None
    np.testing.assert_array_equal(clone.scores, buf.scores)


def test_bad_input_is_reported_at_construction() -> None:
    with pytest.raises(ValueError, match="does not accept this env's observations"):
        make_buffer(ShapeDetector((3, 28, 28)))
    with pytest.raises(ValueError, match="n_max"):
        make_buffer(None, n_max=0)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        make_buffer(None, optimize_memory_usage=True, handle_timeout_termination=False)
    with pytest.raises(TypeError, match="Dict"):
        CriticalNStepReplayBuffer(10, gym.spaces.Dict({"a": OBS_SPACE}), ACT_SPACE, detector=None)
    from critwrap.detectors.dsi import DSI

    with pytest.raises(ValueError, match="not trained"):
        make_buffer(DSI())


def test_image_layout_is_converted_for_the_detector() -> None:
    space = gym.spaces.Box(0, 255, shape=(4, 30, 30), dtype=np.uint8)
    buf = CriticalNStepReplayBuffer(10, space, ACT_SPACE, device="cpu", detector=ShapeDetector((30, 30, 4)))
    assert buf.frame_layout == "chw_to_hwc"


def _algo_kwargs(detector: Detector) -> dict[str, Any]:
    return dict(
        learning_starts=64,
        buffer_size=400,
        batch_size=32,
        train_freq=4,
        seed=0,
        device="cpu",
        replay_buffer_class=CriticalNStepReplayBuffer,
        replay_buffer_kwargs=dict(detector=detector, n_max=5),
        policy_kwargs=dict(net_arch=[16]),
    )


class AngleDetector(Detector):
    """CartPole: the larger the pole angle, the more critical."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        return np.clip(np.abs(np.asarray(frames)[:, 2]) / 0.21, 0, 1).astype(np.float32)


def test_dqn_and_qrdqn_learn_with_the_buffer() -> None:
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env

    for algo_cls in (DQN, QRDQN):
        env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
        model = algo_cls("MlpPolicy", env, gamma=0.95, **_algo_kwargs(AngleDetector()))
        buf = model.replay_buffer
        assert isinstance(buf, CriticalNStepReplayBuffer) and buf.gamma == 0.95  # taken from the algorithm
        model.learn(300)
        assert buf.episodes_scored > 0 and buf.scored_fraction() > 0
        assert len(buf.last_n_steps) == 32 and buf.last_n_steps.min() >= 1 and buf.last_n_steps.max() <= 5
        assert len(set(buf.last_n_steps.tolist())) > 1  # the detector chose different horizons


def test_unsupported_algorithms_fail_at_construction() -> None:
    from stable_baselines3 import DQN, PPO, SAC

    with pytest.raises(UnsupportedAlgorithmError, match="supports DQN, QRDQN"):
        SAC(
            "MlpPolicy",
            "Pendulum-v1",
            replay_buffer_class=CriticalNStepReplayBuffer,
            replay_buffer_kwargs=dict(detector=None),
            device="cpu",
        )
    with pytest.raises(TypeError):  # on-policy algorithms have no replay buffer at all
        PPO("MlpPolicy", "CartPole-v1", replay_buffer_class=CriticalNStepReplayBuffer)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="differs from DQN's gamma"):
        DQN(
            "MlpPolicy",
            "CartPole-v1",
            replay_buffer_class=CriticalNStepReplayBuffer,
            replay_buffer_kwargs=dict(detector=None, gamma=0.5),
            device="cpu",
        )
    with pytest.raises(ValueError, match="does not accept"):
        DQN(
            "MlpPolicy",
            "CartPole-v1",
            replay_buffer_class=CriticalNStepReplayBuffer,
            replay_buffer_kwargs=dict(detector=ShapeDetector((84, 84, 4))),
            device="cpu",
        )


# ---- zoo: python -m critwrap.zoo train dqn Seaquest --buffer critical-nstep [--detector DIR] ----------------------

ZOO_DQN = [
    "--hp", "buffer_size=1000", "--hp", "learning_starts=500", "--hp", "batch_size=8",
    "--eval-freq", "0", "--eval-episodes", "1", "--save-freq", "0", "--num-threads", "1",
]  # fmt: skip
TINY_DSI = {"channels": [4, 8, 8, 8, 8], "lstm_hidden": 8, "batch_size": 4, "num_threads": 1}


def _zoo(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    from critwrap.zoo.__main__ import main

    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _seaquest_dsi(path: Path) -> Path:
    from critwrap.detectors.dsi import DSI
    from critwrap.episodes import Episode

    rng = np.random.default_rng(0)
    eps = [
        Episode(
            rng.integers(0, 255, (8, 4, 84, 84), dtype=np.uint8), rewards=rng.integers(0, 2, 8).astype(float)
        )
        for _ in range(4)
    ]
    DSI(task="regression", **TINY_DSI).fit(eps, epochs=1, progress=False).save(path)
    return path


TINY_DQN_MINIGRID = [
    "--hp", "buffer_size=500", "--hp", "learning_starts=50", "--hp", "batch_size=16", "--hp", "train_freq=4",
    "--hp", "target_update_interval=50",
    "--hp", "policy_kwargs={features_extractor_class: nature-cnn, features_extractor_kwargs: {features_dim: 16}, "
    "net_arch: [8]}",
    "--eval-freq", "0", "--eval-episodes", "1", "--save-freq", "0", "--num-threads", "1",
]  # fmt: skip


def test_zoo_trains_dqn_with_a_saved_detector(in_tmp: Path) -> None:
    from critwrap.detectors.baselines import RandomDetector
    from critwrap.zoo.train import train

    det = RandomDetector(seed=0).save(in_tmp / "random_det")
    result = train(
        "dqn",
        "CartPole-v1",
        timesteps=300,
        buffer="critical-nstep:n_max=3,detector_device=same",
        detector=str(det),
        hp=[
            "buffer_size=1000",
            "learning_starts=100",
            "batch_size=8",
            "train_freq=4",
            "gradient_steps=1",
            "policy_kwargs={net_arch: [8]}",
        ],
        eval_freq=0,
        eval_episodes=1,
        save_freq=100,
        num_threads=1,
    )
    buf = result.model.replay_buffer
    assert isinstance(buf, CriticalNStepReplayBuffer) and buf.n_max == 3 and buf.detector is not None
    assert buf.detector_device == str(buf.device)  # "same": the algorithm's device (the CPU here)
    assert buf.episodes_scored >= 1 and buf.scored_fraction() > 0
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["buffer"] == {
        "name": "critical-nstep",
        "kwargs": {"n_max": 3, "detector_device": "same", "detector": str(det.resolve())},
    }
    assert result.run_dir.parent.name.startswith("buffer-critical-nstep")
    assert not any(c["name"] == "detector-refresh" for c in config["callbacks"])
    # checkpoints hold the replay buffer without its detector; --resume reattaches the saved one
    assert list((result.run_dir / "checkpoints").glob("rl_model_replay_buffer_*_steps.pkl"))
    resumed = train(
        "dqn",
        "CartPole-v1",
        timesteps=400,
        buffer="critical-nstep:n_max=3,detector_device=same",
        detector=str(det),
        resume=True,
        eval_episodes=1,
        num_threads=1,
    )
    assert resumed.model.replay_buffer.detector is not None and resumed.num_timesteps == 400


@pytest.mark.slow
def test_zoo_trains_dqn_seaquest_with_a_saved_dsi(in_tmp: Path) -> None:
    from critwrap.zoo.train import train

    det = _seaquest_dsi(in_tmp / "dsi")
    result = train(
        "dqn",
        "Seaquest",
        timesteps=700,
        buffer="critical-nstep",
        detector=str(det),
        hp=["buffer_size=1000", "learning_starts=500", "batch_size=8"],
        eval_freq=0,
        eval_episodes=1,
        save_freq=0,
        num_threads=1,
    )
    buf = result.model.replay_buffer
    assert isinstance(buf, CriticalNStepReplayBuffer) and buf.frame_layout == "as_is"
    assert buf.episodes_scored >= 1 and buf.scored_fraction() > 0  # lives lost in 700 steps


def test_zoo_without_detector_adds_detector_refresh(in_tmp: Path) -> None:
    from critwrap.zoo.train import TrainOptions, _new_config

    config = _new_config(TrainOptions("dqn", "Seaquest", timesteps=1000, buffer="critical-nstep"))
    refresh = [c["kwargs"] for c in config["callbacks"] if c["name"] == "detector-refresh"]
    assert len(refresh) == 1 and refresh[0]["window"] == 200 and refresh[0]["every"] == 200
    assert refresh[0]["detector_kwargs"]["task"] == "regression"
    given = _new_config(
        TrainOptions(
            "dqn", "Seaquest", timesteps=1000, buffer="critical-nstep", callbacks=["detector-refresh:every=5"]
        )
    )
    assert [c["kwargs"] for c in given["callbacks"] if c["name"] == "detector-refresh"] == [{"every": 5}]


def test_zoo_learns_the_detector_online(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refresh = (
        "detector-refresh:every=100,min_episodes=1,max_episodes=4,epochs=1,detector=dsi,"
        "detector_kwargs={task: regression, channels: [4, 8, 8, 8, 8], lstm_hidden: 8, batch_size: 4}"
    )
    rc, err = _zoo(capsys, "train", "dqn", "MiniGrid-Empty-5x5-v0", "--timesteps", 300, "--buffer", "critical-nstep",
                   "--callback", refresh, *TINY_DQN_MINIGRID)  # fmt: skip
    assert rc == 0, err
    run = next(Path("runs").rglob("config.json")).parent
    config = json.loads((run / "config.json").read_text())
    assert [c["name"] for c in config["callbacks"]] == ["detector-refresh"]
    assert (run / "detector" / "latest" / "config.json").is_file()  # saved into the run directory


@pytest.mark.slow
def test_zoo_seaquest_learns_the_detector_online(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refresh = (
        "detector-refresh:every=100,min_episodes=1,epochs=1,window=50,detector=dsi,"
        "detector_kwargs={task: regression, channels: [4, 8, 8, 8, 8], lstm_hidden: 8, batch_size: 4}"
    )
    rc, err = _zoo(capsys, "train", "dqn", "Seaquest", "--timesteps", 700, "--buffer", "critical-nstep",
                   "--callback", refresh, *ZOO_DQN)  # fmt: skip
    assert rc == 0, err
    run = next(Path("runs").rglob("config.json")).parent
    assert (run / "detector" / "latest" / "config.json").is_file()


def test_zoo_buffer_errors_are_clear(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _zoo(capsys, "train", "ppo", "CartPole-v1", "--buffer", "critical-nstep", "--timesteps", 64)
    assert rc == 1 and "on-policy" in err
    rc, err = _zoo(capsys, "train", "dqn", "CartPole-v1", "--detector", "somewhere", "--timesteps", 64)
    assert rc == 1 and "give --buffer too" in err
    rc, err = _zoo(capsys, "train", "dqn", "Seaquest", "--buffer", "critical-nstep", "--detector", "nowhere")
    assert rc == 1 and "not a saved detector" in err
    rc, err = _zoo(
        capsys, "train", "dqn", "Seaquest", "--buffer", "critical-nstep:n_steps=3", "--timesteps", 64
    )
    assert rc == 1 and "does not take ['n_steps']" in err
    assert not Path("runs").exists() or not list(Path("runs").rglob("model.zip"))


def test_detector_device_is_applied_and_checked(tmp_path: Path) -> None:
    from critwrap.detectors.baselines import RandomDetector

    det = RandomDetector(seed=0)
    det.save(tmp_path / "rand")
    buf = make_buffer(None, detector_device=None)
    assert buf.detector_device is None
    buf = make_buffer(str(tmp_path / "rand"), detector_device="same")  # the buffer's device: cpu here
    assert buf.detector_device == "cpu" and isinstance(buf.detector, RandomDetector)
    with pytest.raises(ValueError, match="CPU only"):
        make_buffer(str(tmp_path / "rand"), detector_device="cuda")
    with pytest.raises(ValueError, match="without a detector"):
        make_buffer(None, detector_device="cpu")


def test_a_windowed_detector_scores_the_buffers_episodes_by_windows() -> None:
    from critwrap.detectors.windowed import Windowed

    class PerClip(TableDetector):
        """Scores relative to the best step of the clip it is given (so the window changes the scores)."""

        def score(self, frames: np.ndarray) -> np.ndarray:
            s = super().score(frames)
            return s / s.max()

    det = Windowed(PerClip(SCORES), 4, 2)
    buf = filled(det)
    want = det.score(np.arange(8, dtype=np.float32)[:, None])
    np.testing.assert_allclose(buf.scores[:8, 0], want, rtol=1e-6)
    assert not np.allclose(want, [SCORES[t] for t in range(8)])  # not the whole-episode scores
