"""``python -m critwrap.zoo record agent`` and ``offline feedback / train / evaluate`` end to end on CartPole
with an untrained SB3 agent (seconds), and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from critwrap.episodes import EpisodeStore
from critwrap.zoo.__main__ import main


@pytest.fixture(scope="module")
def agent_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, seed=0, policy_kwargs={"net_arch": [8]})
    path = tmp_path_factory.mktemp("agent") / "ppo_cartpole.zip"
    model.save(path)
    return path


def test_record_agent_greedy_and_epsilon(agent_zip: Path, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    out = tmp_path / "data"
    common = [
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
        "--episodes",
        "3",
        "--n-envs",
        "2",
        "--no-progress",
        "--quiet",
    ]
    argv = ["record", "agent", "--model", str(agent_zip), "--model", str(agent_zip), *common]
    assert main([*argv, "--epsilon", "0.0", "--epsilon", "1.0", "--out", str(out)]) == 0
    store = EpisodeStore(out, create=False)
    assert len(store) == 6
    meta = store.metadata
    assert [a["epsilon"] for a in meta["agents"]] == [0.0, 1.0]
    assert meta["env"]["env"] == "CartPole-v1" and meta["n_actions"] == 2
    model = PPO.load(agent_zip, device="cpu")
    greedy = [ep for ep in store if ep.metadata["epsilon"] == 0.0]
    random = [ep for ep in store if ep.metadata["epsilon"] == 1.0]
    assert len(greedy) == len(random) == 3
    for ep in greedy:  # epsilon 0: every logged action is the agent's greedy action
        assert ep.metadata["agent"] == "agent-0" and ep.metadata["random_actions"] == 0
        expected, _ = model.predict(ep.observations, deterministic=True)
        np.testing.assert_array_equal(ep.actions, expected)
        assert ep.rewards is not None and ep.final_observation is not None
    for ep in random:
        assert ep.metadata["agent"] == "agent-1" and ep.metadata["random_actions"] == len(ep)
    # the same again is refused; --append adds
    assert main([*argv, "--epsilon", "0.1", "--out", str(out)]) == 1
    assert main([*argv[:4], *common, "--epsilon", "0.1", "--out", str(out), "--append"]) == 0
    assert len(EpisodeStore(out, create=False)) == 9


def test_record_agent_frames_are_the_rendered_states_of_the_same_episodes(
    agent_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gymnasium as gym

    common = ["record", "agent", "--model", str(agent_zip), "--algo", "ppo", "--env", "CartPole-v1",
              "--episodes", "2", "--n-envs", "1", "--epsilon", "0", "--no-progress", "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "obs")]) == 0
    assert main([*common, "--out", str(tmp_path / "frames"), "--record", "frames"]) == 0
    obs_eps, frame_eps = list(EpisodeStore(tmp_path / "obs")), list(EpisodeStore(tmp_path / "frames"))
    assert EpisodeStore(tmp_path / "frames").metadata["record"] == "frames"
    for a, b in zip(obs_eps, frame_eps, strict=True):  # the same episodes (seeds), one frame per state
        np.testing.assert_array_equal(a.actions, b.actions)
        assert b.observations.shape == (len(a), 400, 600, 3) and b.observations.dtype == np.uint8
        assert b.final_observation is None
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)  # env 0 of agent 0 starts from seed 0
    np.testing.assert_array_equal(frame_eps[0].observations[0], env.render())
    # a frames store is not offline RL data, and the two kinds do not mix
    capsys.readouterr()
    assert (
        main(["offline", "train", "bc", "--data", str(tmp_path / "frames"), "--out", str(tmp_path / "bc")])
        == 1
    )
    assert "holds rendered frames" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "obs"), "--append", "--record", "frames"]) == 1
    assert "--append would add frames" in capsys.readouterr().err
    # resized frames, the size kept in the store's metadata
    assert (
        main([*common, "--out", str(tmp_path / "small"), "--record", "frames", "--frame-size", "42x63"]) == 0
    )
    small = EpisodeStore(tmp_path / "small")
    assert small[0].observations.shape[1:] == (42, 63, 3) and small.metadata["frame_size"] == [42, 63]
    assert (
        main([*common, "--out", str(tmp_path / "bad"), "--frame-size", "42"]) == 1
    )  # without --record frames
    assert "use it with record='frames'" in capsys.readouterr().err


def test_offline_cli_end_to_end(agent_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    rec = ["record", "agent", "--model", str(agent_zip), "--algo", "ppo", "--env", "CartPole-v1"]
    assert (
        main([*rec, "--episodes", "4", "--epsilon", "0.5", "--out", str(data), "--no-progress", "--quiet"])
        == 0
    )
    fb = [
        "offline",
        "feedback",
        "--data",
        str(data),
        "--oracle",
        str(agent_zip),
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
    ]
    # CartPole states never repeat exactly at 2 decimals: the CLI says so (a note, not a silent shortfall)
    capsys.readouterr()
    assert main([*fb, "--budget", "30", "--out", str(tmp_path / "fine.npz"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (
        "note: only" in err
        and "of the budget of 30 steps could be labelled" in err
        and "--round-decimals" in err
    )
    # round to 0 decimals so that RTGGap finds some
    assert main([*fb, "--budget", "30", "--round-decimals", "0", "--quiet"]) == 0
    from critwrap.feedback.oracle import FeedbackLabels

    labels = FeedbackLabels.load(data / "feedback.npz")
    assert 0 < len(labels) <= 30 and labels.metadata["selector_config"]["round_decimals"] == 0
    small = ["--seed", "0", "--max-steps", "3", "--batch-size", "8", "--context-length", "4", "--n-layer", "1",
             "--n-head", "1", "--n-embd", "8", "--no-progress", "--no-tensorboard"]  # fmt: skip
    runs = []
    for algo in ("dt", "bc"):
        runs.append(tmp_path / algo)
        assert main(["offline", "train", algo, "--data", str(data), "--out", str(runs[-1]), *small]) == 0
    capsys.readouterr()
    ev = [
        "offline",
        "evaluate",
        "--run",
        str(runs[0]),
        "--run",
        str(runs[1]),
        "--episodes",
        "2",
        "--no-progress",
    ]
    assert main([*ev, "--target-return", "50", "--json", str(tmp_path / "eval.json")]) == 0
    printed = capsys.readouterr().out
    assert "IQM" in printed and "P(dt > bc)" in printed
    assert (runs[0] / "eval_target_50.json").is_file() and (tmp_path / "eval.json").is_file()
    # bad input: wrong-sign target, fdt without labels, missing data
    assert main([*ev, "--target-return", "-5"]) == 1
    assert "is negative" in capsys.readouterr().err
    assert main(["offline", "train", "fdt", "--data", str(data), "--out", str(tmp_path / "f"), *small]) == 1
    assert "needs feedback labels" in capsys.readouterr().err
    fdt = ["offline", "train", "fdt", "--data", str(data), "--feedback", str(data / "feedback.npz")]
    assert main([*fdt, "--feedback-mode", "fallback", "--out", str(tmp_path / "fb"), *small]) == 0
    assert json.loads((tmp_path / "fb" / "config.json").read_text())["args"]["feedback_mode"] == "fallback"
    assert main(["offline", "train", "dt", "--data", str(data), "--feedback-mode", "positive-only",
                 "--out", str(tmp_path / "d2"), *small]) == 1  # fmt: skip
    assert "only applies to fdt" in capsys.readouterr().err
    assert (
        main(
            ["offline", "train", "dt", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "g"), *small]
        )
        == 1
    )
    assert "no dataset" in capsys.readouterr().err
