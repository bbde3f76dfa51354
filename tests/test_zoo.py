"""``python -m critwrap.zoo``: train / resume / evaluate / enjoy, the run directory layout, CLI errors.

Training runs are tiny (a few hundred steps, tiny networks, one torch thread) and run in-process
through :func:`critwrap.zoo.__main__.main`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from critwrap.zoo.__main__ import build_parser, main

TINY_PPO = [
    "--hp",
    "n_envs=2",
    "--hp",
    "n_steps=64",
    "--hp",
    "batch_size=64",
    "--hp",
    "n_epochs=1",
    "--hp",
    "policy_kwargs={net_arch: [8]}",
    "--num-threads",
    "1",
]
TINY_DQN_MINIGRID = [
    "--hp",
    "buffer_size=500",
    "--hp",
    "learning_starts=50",
    "--hp",
    "batch_size=16",
    "--hp",
    "train_freq=4",
    "--hp",
    "target_update_interval=50",
    "--hp",
    "policy_kwargs={features_extractor_class: nature-cnn, features_extractor_kwargs: {features_dim: 16}, net_arch: [8]}",
    "--num-threads",
    "1",
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# a short PPO run on CartPole (128 steps, no periodic evaluation)
TINY_CARTPOLE_RUN = [
    "train",
    "ppo",
    "CartPole-v1",
    "--timesteps",
    128,
    "--eval-freq",
    0,
    "--eval-episodes",
    1,
    *TINY_PPO,
]


def zoo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_path(algo: str, env: str, variant: str = "base", seed: int = 0, experiment: str = "default") -> Path:
    return Path("runs") / experiment / algo / env.replace("/", "-") / variant / f"seed_{seed}"


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def check_layout(run: Path, *, off_policy: bool) -> None:
    for name in (
        "config.json",
        "versions.json",
        "status.json",
        "evaluations.npz",
        "evaluations.csv",
        "model.zip",
        "best_model.zip",
        "final_eval.json",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("*/events.out.tfevents.*")), "no TensorBoard event file"
    ckpts = sorted((run / "checkpoints").glob("rl_model_*_steps.zip"))
    assert ckpts
    buffers = list((run / "checkpoints").glob("rl_model_replay_buffer_*_steps.pkl"))
    assert bool(buffers) == off_policy
    versions = read(run / "versions.json")
    for key in ("python", "critwrap", "gymnasium", "stable-baselines3", "sb3-contrib", "torch", "numpy"):
        assert versions[key], key
    status = read(run / "status.json")
    assert status["status"] == "finished" and status["error"] is None
    with np.load(run / "evaluations.npz") as data:
        timesteps, results, lengths = data["timesteps"], data["results"], data["ep_lengths"]
    assert results.shape == lengths.shape == (len(timesteps), read(run / "config.json")["n_eval_episodes"])
    rows = list(csv.DictReader((run / "evaluations.csv").open()))
    assert [int(r["timesteps"]) for r in rows] == list(timesteps)
    for row, res in zip(rows, results):
        assert json.loads(row["returns"]) == pytest.approx(list(res))
        assert float(row["mean_return"]) == pytest.approx(float(np.mean(res)))
        assert float(row["std_return"]) == pytest.approx(float(np.std(res)))


def test_train_ppo_writes_the_documented_layout(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = zoo(
        capsys,
        "train", "ppo", "CartPole-v1", "--timesteps", 256, "--seed", 3, "--eval-freq", 128,
        "--eval-episodes", 2, "--save-freq", 128, *TINY_PPO,
    )  # fmt: skip
    assert rc == 0, err
    run = run_path("ppo", "CartPole-v1", seed=3)
    assert str(run) in out and "+-" in out
    check_layout(run, off_policy=False)
    config = read(run / "config.json")
    assert config["algo"] == "ppo" and config["env"] == "CartPole-v1" and config["seed"] == 3
    assert config["hyperparams_entry"] == "CartPole-v1"
    hp = config["hyperparams"]
    assert hp["n_timesteps"] == 256 and hp["n_steps"] == 64 and hp["n_envs"] == 2
    assert hp["gamma"] == 0.98  # from the YAML entry, not overridden
    assert hp["learning_rate"] == "lin_0.001"  # schedules are recorded as written
    assert hp["policy"] == "MlpPolicy"
    assert config["command"][1:5] == ["-m", "critwrap.zoo", "train", "ppo"]
    final = read(run / "final_eval.json")
    assert len(final["returns"]) == len(final["lengths"]) == 2
    assert final["num_timesteps"] == 256
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("rl_model_*_steps.zip"))
    assert ckpts == ["rl_model_128_steps.zip", "rl_model_256_steps.zip"]
    # the saved model loads and has trained as long as asked
    from stable_baselines3 import PPO

    assert PPO.load(run / "model.zip").num_timesteps == 256


def test_eval_max_steps_caps_every_evaluation_and_slow_evaluations_are_noted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from critwrap.zoo.callbacks import ZooEvalCallback

    monkeypatch.setattr(ZooEvalCallback, "slow_seconds", -1.0)  # every evaluation counts as slow here
    rc, _, err = zoo(
        capsys,
        "train", "ppo", "CartPole-v1", "--timesteps", 256, "--eval-freq", 128, "--eval-episodes", 2,
        "--eval-max-steps", 7, "--save-freq", 0, *TINY_PPO,
    )  # fmt: skip
    assert rc == 0, err
    assert err.count("note: the evaluation at step") == 1 and "--eval-max-steps" in err  # once, with the fix
    run = run_path("ppo", "CartPole-v1")
    assert read(run / "config.json")["eval_max_steps"] == 7
    with np.load(run / "evaluations.npz") as data:
        lengths = data["ep_lengths"]
    assert lengths.shape == (2, 2) and lengths.max() == 7  # an untrained CartPole policy lasts longer than 7
    assert max(read(run / "final_eval.json")["lengths"]) == 7
    # each evaluation's time is logged at the evaluation's own step, beside eval/mean_reward
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("tb/*/events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in ("eval/seconds", "eval/mean_reward")}
    assert steps["eval/seconds"] == steps["eval/mean_reward"] == [128, 256]
    rc, out, err = zoo(capsys, "evaluate", "--run", run, "--episodes", 3)
    assert rc == 0, err
    assert "length 7.0 +- 0.0" in out  # the run's evaluation env keeps the cap
    rc, out, err = zoo(capsys, "evaluate", "--run", run, "--episodes", 2, "--max-steps", 5)
    assert rc == 0 and "length 5.0 +- 0.0" in out, err
    rc, out, err = zoo(capsys, "enjoy", "--run", run, "--episodes", 1, "--max-steps", 4, "--no-save")
    assert rc == 0 and "length 4" in out, err
    rc, _, err = zoo(
        capsys, "train", "ppo", "CartPole-v1", "-n", 512, "--resume", "--eval-max-steps", 9, *TINY_PPO
    )
    assert rc == 1 and "eval_max_steps cannot change when resuming (7" in err
    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "-n", 64, "--eval-max-steps", 0, "--overwrite")
    assert rc == 1 and "eval_max_steps" in err


def test_train_dqn_on_minigrid_then_resume_continues(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "train", "dqn", "MiniGrid-Empty-5x5-v0", "--eval-freq", 150, "--eval-episodes", 1, "--save-freq", 150,
        "--keep-checkpoints", 0, *TINY_DQN_MINIGRID,
    ]  # fmt: skip
    rc, _, err = zoo(capsys, *args, "--timesteps", 300)
    assert rc == 0, err
    run = run_path("dqn", "MiniGrid-Empty-5x5-v0")
    check_layout(run, off_policy=True)
    config = read(run / "config.json")
    assert config["hyperparams_entry"] == "minigrid"
    assert config["hyperparams"]["policy"] == "CnnPolicy"
    assert config["hyperparams"]["policy_kwargs"]["features_extractor_class"] == "nature-cnn"

    rc, out, err = zoo(capsys, *args, "--timesteps", 600, "--resume")
    assert rc == 0, err
    assert "Resuming" in out and "rl_model_300_steps.zip at 300 timesteps" in out
    from stable_baselines3 import DQN

    model = DQN.load(run / "model.zip")
    assert model.num_timesteps == 600
    assert read(run / "status.json")["status"] == "finished"
    assert read(run / "final_eval.json")["num_timesteps"] == 600
    steps = sorted(int(p.name.split("_")[2]) for p in (run / "checkpoints").glob("rl_model_*_steps.zip"))
    assert steps == [150, 300, 450, 600]
    assert (run / "checkpoints" / "rl_model_replay_buffer_600_steps.pkl").is_file()
    with np.load(run / "evaluations.npz") as data:
        assert list(data["timesteps"]) == [150, 300, 450, 600]  # the history goes on
    assert len(read(run / "config.json")["resumed"]) == 1

    # resuming a finished run trains nothing more
    rc, out, _ = zoo(capsys, *args, "--timesteps", 600, "--resume")
    assert rc == 0 and "nothing to train" in out


def test_resume_loads_replay_buffer_and_vecnormalize(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "train", "dqn", "CartPole-v1", "--eval-freq", 0, "--eval-episodes", 1, "--save-freq", 100,
        "--hp", "buffer_size=1000", "--hp", "learning_starts=50", "--hp", "normalize=true",
        "--hp", "policy_kwargs={net_arch: [8]}", "--hp", "train_freq=4", "--hp", "gradient_steps=1", "--hp", "batch_size=16",
    ]  # fmt: skip
    assert zoo(capsys, *args, "--timesteps", 200)[0] == 0
    run = run_path("dqn", "CartPole-v1")
    assert (run / "vecnormalize.pkl").is_file()
    assert (run / "checkpoints" / "rl_model_vecnormalize_200_steps.pkl").is_file()
    assert not (run / "evaluations.npz").exists()  # --eval-freq 0
    from stable_baselines3 import DQN

    buffer_path = run / "checkpoints" / "rl_model_replay_buffer_200_steps.pkl"
    model = DQN.load(run / "model.zip")
    model.load_replay_buffer(buffer_path)
    assert model.replay_buffer is not None and model.replay_buffer.size() == 200
    rc, _, err = zoo(capsys, *args, "--timesteps", 300, "--resume")
    assert rc == 0, err
    model = DQN.load(run / "checkpoints" / "rl_model_300_steps.zip")
    model.load_replay_buffer(run / "checkpoints" / "rl_model_replay_buffer_300_steps.pkl")
    assert model.num_timesteps == 300
    assert model.replay_buffer is not None and model.replay_buffer.size() == 300  # 200 loaded + 100 new


def test_evaluate_and_enjoy_report_returns_repeatably(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = zoo(
        capsys, "train", "ppo", "CartPole-v1", "--timesteps", 128, "--eval-freq", 0, "--eval-episodes", 1,
        "--hp", "normalize=true", "--hp", "frame_stack=2", *TINY_PPO,
    )  # fmt: skip
    assert rc == 0, err
    run = run_path("ppo", "CartPole-v1")
    from stable_baselines3 import PPO

    assert PPO.load(run / "model.zip").observation_space.shape == (8,)  # VecFrameStack(2) of CartPole's 4
    rc, out, err = zoo(capsys, "evaluate", "--run", run, "--episodes", 3, "--seed", 5, "--no-deterministic")
    assert rc == 0, err
    assert "return" in out and "+-" in out and "episode 3:" in out
    evals = sorted(run.glob("eval_*.json"))
    assert len(evals) == 1
    first = read(evals[0])
    assert first["n_episodes"] == 3 and len(first["returns"]) == 3 and first["seed"] == 5
    assert all(r == n for r, n in zip(first["returns"], first["lengths"]))  # CartPole: reward 1 per step
    assert first["mean_return"] == pytest.approx(np.mean(first["returns"]))
    rc, _, _ = zoo(capsys, "evaluate", "--run", run, "--episodes", 3, "--seed", 5, "--no-deterministic")
    second = read(sorted(run.glob("eval_*.json"))[-1])
    assert len(list(run.glob("eval_*.json"))) == 2
    assert second["returns"] == first["returns"]  # same seed, same episodes (stochastic policy)

    # the default seed and deterministic actions reproduce the final evaluation of training
    rc, out, _ = zoo(capsys, "evaluate", "--run", run, "--episodes", 1, "--quiet")
    written = Path(out.strip().splitlines()[-1].removeprefix("Wrote "))
    assert read(written)["returns"] == read(run / "final_eval.json")["returns"]
    assert read(written)["seed"] == read(run / "final_eval.json")["seed"] == 10_000

    rc, out, err = zoo(capsys, "enjoy", "--run", run, "--episodes", 2, "--seed", 1)
    assert rc == 0, err
    assert out.count("episode ") == 2 and "stochastic" in out and "+-" in out

    # another model of the run
    rc, out, err = zoo(capsys, "evaluate", "--run", run, "--model", run / "best_model.zip", "--episodes", 1)
    assert rc == 0, err
    assert "best_model.zip" in read(Path(out.strip().splitlines()[-1].removeprefix("Wrote ")))["model"]
    rc, _, err = zoo(capsys, "evaluate", "--model", run / "model.zip", "--episodes", 2)
    assert rc == 1 and "--algo" in err


def test_python_api(tmp_path: Path) -> None:
    from critwrap.zoo.train import train

    result = train(
        "ppo",
        "CartPole-v1",
        timesteps=64,
        hp={"n_envs": 1, "n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy_kwargs": {"net_arch": [4]}},
        log_dir=str(tmp_path / "store"),
        experiment="api",
        eval_freq=0,
        eval_episodes=1,
        save_freq=0,
    )
    assert result.run_dir == tmp_path / "store" / "api" / "ppo" / "CartPole-v1" / "base" / "seed_0"
    assert result.model.num_timesteps == 64 and result.final_eval["n_episodes"] == 1
    assert not (result.run_dir / "checkpoints").exists()  # save_freq=0
    assert read(result.run_dir / "status.json")["status"] == "finished"

    # a model file without its run directory
    model = tmp_path / "elsewhere" / "agent.zip"
    model.parent.mkdir()
    result.model.save(model)
    rc = main(["evaluate", "--model", str(model), "--algo", "ppo", "--env", "CartPole-v1", "--episodes", "2"])
    assert rc == 0
    (written,) = model.parent.glob("eval_*.json")  # next to the model
    assert read(written)["n_episodes"] == 2 and read(written)["model"] == str(model)


def test_failed_run_records_status(capsys: pytest.CaptureFixture[str]) -> None:
    # PPO rejects batch_size=1 with normalize_advantage only at training time: the run directory exists then
    rc, _, err = zoo(
        capsys, "train", "ppo", "CartPole-v1", "--timesteps", 64, "--eval-freq", 0, "--eval-episodes", 1,
        "--hp", "n_envs=1", "--hp", "n_steps=1", "--hp", "batch_size=1", *TINY_PPO[4:],
    )  # fmt: skip
    assert rc == 1 and "error:" in err
    status = read(run_path("ppo", "CartPole-v1") / "status.json")
    assert status["status"] == "failed" and status["error"] and "Traceback" in status["traceback"]
    # no checkpoint to resume from: the error says so with the run's own failure, and leaves its status
    rc, _, err = zoo(
        capsys, "train", "ppo", "CartPole-v1", "--resume", "--timesteps", 64, "--eval-freq", 0, "--eval-episodes",
        1, "--hp", "n_envs=1", "--hp", "n_steps=1", "--hp", "batch_size=1", *TINY_PPO[4:],
    )  # fmt: skip
    assert rc == 1 and "start it again with --overwrite" in err and status["error"].rstrip(".") in err
    assert read(run_path("ppo", "CartPole-v1") / "status.json") == status
    rc, _, err = zoo(capsys, "evaluate", "--run", run_path("ppo", "CartPole-v1"))
    assert rc == 1 and f"(status: failed: {status['error']})" in err and "Traceback" not in err


def test_cli_errors_are_clear_and_leave_no_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--wrapper", "record-episodes:store")
    assert rc == 1
    assert "malformed --wrapper spec 'record-episodes:store'" in err
    assert "NAME[:key=value,key=value,...]" in err and "e.g. 'record-episodes:store=" in err

    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--callback", "x:a=[1,2")
    assert rc == 1 and "malformed --callback spec" in err and "unclosed bracket" in err

    rc, _, err = zoo(capsys, "train", "dqm", "CartPole-v1")
    assert rc == 1 and "unknown algorithm 'dqm'" in err and "Did you mean: dqn" in err and "qrdqn" in err

    rc, _, err = zoo(capsys, "train", "ppo", "Seaquset")
    assert rc == 1 and "unknown environment 'Seaquset'" in err and "Seaquest" in err

    hp = tmp_path / "hp"
    hp.mkdir()
    (hp / "ppo.yml").write_text("CartPole-v1:\n  n_timesteps: 100\n  n_epoch: 3\n")
    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--hyperparams", hp)
    assert rc == 1
    assert str(hp / "ppo.yml") in err and "'CartPole-v1'" in err and "unknown key 'n_epoch'" in err
    assert "Did you mean: n_epochs" in err and "Allowed keys:" in err

    (hp / "ppo.yml").write_text("CartPole-v1:\n  n_timesteps: !!python/object/apply:os.getcwd []\n")
    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--hyperparams", hp)
    assert rc == 1 and "refusing to read" in err and "safe_load" in err

    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--hp", "n_step=3")
    assert rc == 1 and "unknown key 'n_step'" in err

    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--wrapper", "no-such-wrapper")
    assert rc == 1 and "no wrapper named 'no-such-wrapper'" in err

    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--wrapper", "record-episodes:stor=x")
    assert rc == 1 and "store" in err  # names the arguments RecordEpisodes accepts

    rc, _, err = zoo(capsys, "evaluate", "--run", tmp_path / "nope")
    assert rc == 1 and "does not exist" in err

    rc, _, err = zoo(capsys, "train", "ppo", "CartPole-v1", "--resume")
    assert rc == 1 and "nothing to resume" in err
    assert not Path("runs").exists()


def test_an_env_that_cannot_be_built_is_a_clear_error_also_with_subproc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # with SubprocVecEnv the workers used to die and the parent failed with ConnectionResetError
    for vec in ("dummy", "subproc"):
        rc, _, err = zoo(
            capsys, "train", "ppo", "CartPole-v1", "--wrapper", "action-subset:actions=[9]", "--n-envs", 2,
            "--vec-env", vec, "--timesteps", 64, "--overwrite",
        )  # fmt: skip
        assert rc == 1, vec
        assert "error: ActionSubset: actions [9] are outside the inner action space Discrete(2)" in err, vec
        assert "ConnectionResetError" not in err and "EOFError" not in err


def test_a_run_in_use_by_another_process_is_refused_and_the_lock_is_released(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from critwrap.zoo.runs import run_lock

    run = run_path("ppo", "CartPole-v1")
    args = TINY_CARTPOLE_RUN
    with run_lock(run):  # as another `zoo train` holds it (flock: a second open file conflicts)
        for extra in ([], ["--overwrite"]):
            rc, _, err = zoo(capsys, *args, *extra)
            assert rc == 1 and "is in use" in err and f"pid {os.getpid()}" in err
        assert not run.exists()  # nothing was written or deleted
    rc, out, _ = zoo(capsys, *args)
    assert rc == 0  # released: the run goes ahead
    # 128 asked, 2 envs x 64 steps per rollout: exactly one rollout, no note
    assert "Trained 128 timesteps ->" in out
    rc, out, _ = zoo(capsys, *args[:4], 100, *args[5:], "--experiment", "short")
    assert (
        rc == 0
        and "Trained 128 timesteps (asked for 100: PPO collects whole rollouts of n_steps x n_envs = 128 steps)"
        in out
    )
    assert zoo(capsys, *args, "--overwrite")[0] == 0  # and the finished run released it again
    with run_lock(run):
        rc, _, err = zoo(capsys, *args, "--resume")
        assert rc == 1 and "is in use" in err
    assert read(run / "status.json")["status"] == "finished"  # the refused resume did not touch the run
    assert {p.name for p in run.parent.iterdir()} == {"seed_0", ".seed_0.lock"}
    assert not Path(f"{run.parent}/.seed_0.lock").read_text().strip()  # no owner written after release


def test_a_filesystem_without_flock_trains_unlocked_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    from critwrap.zoo.runs import run_lock

    def no_flock(*args: Any) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    ran = False
    with (
        pytest.warns(UserWarning, match="training without the run lock"),
        run_lock(tmp_path / "run" / "seed_0"),
    ):
        ran = True
    assert ran


def test_existing_run_needs_resume_or_overwrite(capsys: pytest.CaptureFixture[str]) -> None:
    args = TINY_CARTPOLE_RUN
    assert zoo(capsys, *args)[0] == 0
    rc, _, err = zoo(capsys, *args)
    assert rc == 1 and "already holds a run (status: finished)" in err and "--resume" in err
    rc, _, err = zoo(capsys, *args, "--overwrite", "--seed", 0)
    assert rc == 0, err


class ScaleReward(gym.RewardWrapper[Any, Any]):
    """A wrapper registered at test time: multiplies rewards."""

    def __init__(self, env: gym.Env[Any, Any], scale: float = 1.0) -> None:
        super().__init__(env)
        self.scale = scale

    def reward(self, reward: Any) -> Any:
        return float(reward) * self.scale


def test_registered_wrapper_and_callback_from_cli(
    capsys: pytest.CaptureFixture[str], fresh_registry: None
) -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    from critwrap import registry

    class CountSteps(BaseCallback):
        def __init__(self, run_dir: str, tag: str = "x") -> None:
            super().__init__()
            self.run_dir = Path(run_dir)
            self.tag = tag

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            (self.run_dir / f"count_{self.tag}.txt").write_text(str(self.n_calls))

    registry.register("wrappers", "test-scale-reward", ScaleReward)
    registry.register("callbacks", "test-count-steps", CountSteps)
    rc, _, err = zoo(
        capsys, "train", "ppo", "CartPole-v1", "--timesteps", 128, "--eval-freq", 0, "--eval-episodes", 2,
        "--wrapper", "test-scale-reward:scale=2.5", "--callback", "test-count-steps:tag=abc", *TINY_PPO,
    )  # fmt: skip
    assert rc == 0, err
    runs = list(Path("runs/default/ppo/CartPole-v1").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("test-scale-reward+test-count-steps-")
    run = runs[0] / "seed_0"
    config = read(run / "config.json")
    assert config["wrappers"] == [{"name": "test-scale-reward", "kwargs": {"scale": 2.5}}]
    assert config["variant"] == runs[0].name
    final = read(run / "final_eval.json")  # evaluation envs get the wrapper too
    assert final["returns"] == pytest.approx([2.5 * n for n in final["lengths"]])
    assert int((run / "count_abc.txt").read_text()) == 64  # 128 steps / 2 envs; run_dir was injected


def test_record_episodes_wrapper_writes_episodes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from critwrap.episodes import EpisodeStore

    store = tmp_path / "eps"
    rc, _, err = zoo(
        capsys, "train", "ppo", "CartPole-v1", "--timesteps", 256, "--eval-freq", 0, "--eval-episodes", 1,
        "--wrapper", f"record-episodes:store={store},max_episodes=2", "--eval-skip-wrapper", "record-episodes",
        *TINY_PPO,
    )  # fmt: skip
    assert rc == 0, err
    episodes = EpisodeStore(store, create=False)
    assert len(episodes) == 4  # 2 training envs x max_episodes=2; the evaluation env records nothing
    ep = episodes[0]
    assert (
        ep.observations.shape[1:] == (4,)
        and len(ep.actions) == len(ep)
        and ep.metadata["env_id"] == "CartPole-v1"
    )
    config = read(next(Path("runs").rglob("config.json")))
    assert config["eval_skip_wrappers"] == ["record-episodes"]


def test_seaquest_dqn_starts_and_finishes(capsys: pytest.CaptureFixture[str]) -> None:
    """ALE ships its ROMs: nothing is downloaded. A 1000-transition buffer keeps it small."""
    rc, _, err = zoo(
        capsys, "train", "dqn", "Seaquest", "--timesteps", 200, "--hp", "buffer_size=1000",
        "--hp", "learning_starts=100", "--eval-freq", 0, "--eval-episodes", 1, "--save-freq", 0, "--num-threads", 1,
    )  # fmt: skip
    assert rc == 0, err
    run = run_path("dqn", "Seaquest")
    config = read(run / "config.json")
    assert config["env_id"] == "ALE/Seaquest-v5" and config["hyperparams_entry"] == "atari"
    assert config["hyperparams"]["buffer_size"] == 1000 and config["hyperparams"]["policy"] == "CnnPolicy"
    from stable_baselines3 import DQN

    assert DQN.load(run / "model.zip").num_timesteps == 200
    assert read(run / "final_eval.json")["lengths"][0] > 0


@pytest.mark.slow
def test_seaquest_dqn_2000_steps(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = zoo(
        capsys, "train", "dqn", "Seaquest", "--timesteps", 2000, "--hp", "buffer_size=1000",
        "--hp", "learning_starts=500", "--eval-freq", 1000, "--eval-episodes", 1, "--num-threads", 1,
    )  # fmt: skip
    assert rc == 0, err
    run = run_path("dqn", "Seaquest")
    check_layout(run, off_policy=True)
    assert read(run / "final_eval.json")["num_timesteps"] == 2000


def test_training_and_evaluation_envs() -> None:
    from critwrap.zoo.common import make_env_fn, make_vec_env

    def names(env: gym.Env[Any, Any]) -> list[str]:
        assert env.spec is not None
        return [w.name for w in env.spec.additional_wrappers]

    train_env = make_env_fn("Seaquest", training=True)()
    eval_env = make_env_fn("Seaquest", training=False)()
    assert "EpisodicLife" in names(train_env) and "ClipReward" in names(train_env)
    assert "EpisodicLife" not in names(eval_env) and "ClipReward" not in names(eval_env)
    assert names(train_env)[-1] == names(eval_env)[-1] == "Monitor"  # outermost
    train_env.close()
    eval_env.close()
    venv = make_vec_env("CartPole-v1", n_envs=3, seed=7, training=True)
    first = venv.reset()
    venv.seed(7)
    assert np.array_equal(first, venv.reset())  # env i is seeded with seed + i
    assert not np.array_equal(first[0], first[1])
    venv.close()


def test_subcommand_registry_isolates_broken_modules(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser(["critwrap.zoo.train", "critwrap.zoo.no_such_subcommand"])
    args = parser.parse_args(["no_such_subcommand", "--anything"])
    assert args._run(args) == 1
    assert "failed to import" in capsys.readouterr().err
    args = parser.parse_args(["train", "ppo", "CartPole-v1"])
    assert args.algo == "ppo"


def test_module_entry_point_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "critwrap.zoo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for sub in ("train", "enjoy", "evaluate"):
        assert sub in out
    out = subprocess.run(
        [sys.executable, "-m", "critwrap.zoo", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--timesteps", "--wrapper", "--callback", "--hp", "--resume", "--log-dir", "--experiment"):
        assert option in out
    # no subcommand: the help with the subcommands, not a bare usage error
    proc = subprocess.run([sys.executable, "-m", "critwrap.zoo"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train an agent" in proc.stdout and "attack" in proc.stdout
    for group, action in (
        ("detect", "fit"),
        ("offline", "feedback"),
        ("record", "gridworld"),
        ("adapter", "fit"),
    ):
        proc = subprocess.run([sys.executable, "-m", "critwrap.zoo", group], capture_output=True, text=True)
        assert proc.returncode == 0 and action in proc.stdout, (group, proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "critwrap.zoo", "train"], capture_output=True, text=True)
    assert proc.returncode == 2 and "required: algo, env" in proc.stderr  # missing arguments stay an error
    proc = subprocess.run([sys.executable, "-m", "critwrap"], capture_output=True, text=True)
    assert proc.returncode == 0 and "plugins" in proc.stdout and "info" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "critwrap", "plugins", "--kind", "buffer", "--no-check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "critical-nstep" in proc.stdout and "attack-eval" not in proc.stdout
