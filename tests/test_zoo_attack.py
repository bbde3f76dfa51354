"""Tests of ``python -m critwrap.zoo attack`` (replay-protocol table, result files, bad input)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from critwrap.detectors.baselines import RandomDetector
from critwrap.zoo.__main__ import main

ENV_ID = "CritwrapTestCriticalCorridor-v0"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from test_attack import CriticalCorridor, always_zero

    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=CriticalCorridor)
    root = tmp_path_factory.mktemp("zoo_attack")
    model = always_zero(CriticalCorridor())
    model.save(root / "agent.zip")
    RandomDetector(seed=0).save(root / "det")
    return {"root": root, "model": root / "agent.zip", "det": root / "det"}


def test_attack_table_and_result_files(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "out"
    argv = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID]
    argv += ["--detector", str(setup["det"]), "--top-k", "2", "--episodes", "6", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| clean | 0 | 8.000" in text
    for method in ("detector", "random", "victim"):
        assert f"| {method} | 2 |" in text
    (json_path,) = out.glob("attack_*.json")
    data = json.loads(json_path.read_text())
    rows = {r["method"]: r for r in data["table"]}
    assert rows["clean"]["mean_return"] == 8.0 and rows["clean"]["win_rate"] == 1.0
    for method in ("detector", "random", "victim"):
        eps = data["episodes"][method]
        assert eps["n_planned"] == [2] * 6
        assert all(1 <= n <= 2 for n in eps["n_perturbed"])
        assert rows[method]["drop"] >= 1.0  # every attacked step costs at least its reward
    assert data["algo"] == "ppo" and data["env"] == ENV_ID and data["k"] == 2
    with json_path.with_suffix(".csv").open() as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [r["method"] for r in csv_rows] == ["clean", "detector", "random", "victim"]
    from PIL import Image

    with Image.open(json_path.with_suffix(".png")) as im:  # the table as a picture
        assert im.size[0] > 300 and im.size[1] > 200


def test_attack_bad_input(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["attack", "--model", str(setup["model"]), "--detector", str(setup["det"]), "--quiet"]
    assert main(base) == 1
    assert "--algo ALGO and --env ENV" in capsys.readouterr().err
    full = [*base, "--algo", "ppo", "--env", ENV_ID, "--episodes", "1"]
    assert main([*full, "--top-k", "20"]) == 1
    assert "only 8 steps" in capsys.readouterr().err
    assert main([*full, "--perturb", "fgsm"]) == 1
    assert "needs epsilon" in capsys.readouterr().err
    assert main([*full, "--top-k", "1", "--lead", "1.5"]) == 1
    assert "--lead takes an integer" in capsys.readouterr().err
    assert main([*full, "--top-k", "7", "--lead", "2"]) == 1
    assert "lead=2" in capsys.readouterr().err
    assert main([*full, "--top-k", "1", "--protocol", "online", "--methods", "random,block"]) == 1
    assert "'block' method applies to --protocol replay only" in capsys.readouterr().err
    assert main([*full, "--top-k", "1", "--methods", "random,sideways"]) == 1
    assert "sideways" in capsys.readouterr().err
    assert main([*full, "--top-k", "2", "--methods", "block"]) == 0
    assert "| block | 2 |" in capsys.readouterr().out
    assert main([*full, "--top-k", "2", "--min-gap", "1"]) == 1
    assert "--min-gap must be >= 2" in capsys.readouterr().err
    assert main([*full, "--top-k", "1", "--protocol", "online", "--methods", "random,detector-spaced"]) == 1
    assert "'detector-spaced' method applies to --protocol replay only" in capsys.readouterr().err
    assert main([*full, "--top-k", "2", "--methods", "random", "--min-gap", "3"]) == 0
    assert "| detector-spaced | 2 |" in capsys.readouterr().out
    assert main([*full, "--top-k", "2", "--methods", "random", "--detector-device", "same"]) == 0
    assert main([*full, "--top-k", "2", "--detector-device", "cuda"]) == 1
    assert "runs on the CPU only" in capsys.readouterr().err  # the random detector has no networks
    missing = ["attack", "--model", str(setup["root"] / "missing.zip"), "--detector", str(setup["det"])]
    assert main([*missing, "--quiet"]) == 1
    assert "no such run directory or model file" in capsys.readouterr().err
    no_det = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID, "--quiet"]
    assert main(no_det) == 1
    assert "--detector" in capsys.readouterr().err


def test_attack_a_run_with_vecenv_frame_stacking(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose model sees VecFrameStack observations: the attack plays the same stacked observations."""
    from stable_baselines3 import PPO

    from critwrap.zoo.common import make_vec_env, wrap_vec_env
    from critwrap.zoo.runs import write_json

    run = tmp_path / "run"
    config = {
        "algo": "ppo",
        "env": "CartPole-v1",
        "hyperparams": {"frame_stack": 2},
        "wrappers": [],
        "seed": 0,
    }
    write_json(run / "config.json", config)
    venv = wrap_vec_env(make_vec_env("CartPole-v1", training=True), frame_stack=2, training=True)
    PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [8]}, device="cpu").save(run / "model.zip")
    argv = ["attack", "--model", str(run), "--methods", "random,victim", "--top-k", "2", "--episodes", "3"]
    assert main([*argv, "--quiet"]) == 0
    assert "| victim | 2 |" in capsys.readouterr().out
    data = json.loads(next(run.glob("attack_*.json")).read_text())
    assert data["episodes"]["random"]["n_planned"] == [2, 2, 2]


@pytest.mark.parametrize("frame_stack", [None, 2])
def test_attack_keeps_the_runs_eval_max_steps(tmp_path: Path, frame_stack: int | None) -> None:
    """A run trained with eval_max_steps is attacked with the same cap, with or without VecEnv stacking."""
    from stable_baselines3 import PPO

    from critwrap.zoo.common import make_vec_env, wrap_vec_env
    from critwrap.zoo.runs import write_json

    run = tmp_path / "run"
    hp = {"frame_stack": frame_stack} if frame_stack else {}
    write_json(run / "config.json", {"algo": "ppo", "env": "CartPole-v1", "hyperparams": hp, "wrappers": [],
                                     "seed": 0, "eval_max_steps": 5})  # fmt: skip
    venv = wrap_vec_env(make_vec_env("CartPole-v1", training=True), frame_stack=frame_stack, training=True)
    PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [8]}, device="cpu").save(run / "model.zip")
    argv = [
        "attack",
        "--model",
        str(run),
        "--methods",
        "random",
        "--top-k",
        "2",
        "--episodes",
        "3",
        "--quiet",
    ]
    assert main(argv) == 0
    data = json.loads(next(run.glob("attack_*.json")).read_text())
    assert max(data["episodes"]["clean"]["lengths"]) <= 5  # an untrained CartPole policy lasts longer
    assert all(1 <= n <= 2 for n in data["episodes"]["random"]["n_perturbed"])


def test_attack_online_protocol(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "out_online"
    argv = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID, "--quiet"]
    argv += ["--detector", str(setup["det"]), "--top-k", "2", "--episodes", "4", "--out", str(out)]
    assert main([*argv, "--protocol", "online", "--calibration-episodes", "3"]) == 0
    text = capsys.readouterr().out
    assert "online protocol" in text and "calibrated on seeds 4..6" in text
    (json_path,) = out.glob("attack_*.json")
    data = json.loads(json_path.read_text())
    assert data["settings"]["protocol"] == "online"
    for method in ("detector", "random", "victim"):
        assert all(0 <= n <= 2 for n in data["episodes"][method]["n_perturbed"])
    cool = setup["root"] / "out_online_gap"
    argv_gap = [
        *argv[:-1],
        str(cool),
        "--protocol",
        "online",
        "--calibration-episodes",
        "3",
        "--min-gap",
        "3",
    ]
    assert main(argv_gap) == 0
    capsys.readouterr()
    (gap_path,) = cool.glob("attack_*.json")
    gap_data = json.loads(gap_path.read_text())
    assert gap_data["settings"]["min_gap"] == 3 and "detector-spaced" not in gap_data["episodes"]
    assert main([*argv, "--threshold", "0.5"]) == 1
    assert "apply to --protocol online only" in capsys.readouterr().err
    assert main([*argv, "--protocol", "online", "--lead", "2"]) == 1
    assert "apply to --protocol replay only" in capsys.readouterr().err
    assert main([*argv, "--protocol", "online", "--lead", "auto"]) == 1
    assert "apply to --protocol replay only" in capsys.readouterr().err
    late = setup["root"] / "out_online_delay"
    assert (
        main([*argv[:-1], str(late), "--protocol", "online", "--calibration-episodes", "3", "--lead", "-2"])
        == 0
    )
    capsys.readouterr()
    (late_path,) = late.glob("attack_*.json")
    assert json.loads(late_path.read_text())["settings"]["delay"] == 2  # a negative lead delays the attack


def test_attack_sampling_victim(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "out_sample"
    argv = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID, "--sample"]
    argv += ["--detector", str(setup["det"]), "--top-k", "1", "--episodes", "3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    (json_path,) = out.glob("attack_*.json")
    data = json.loads(json_path.read_text())
    assert data["settings"]["victim_sample"] is True
    assert len(data["episodes"]["clean"]["returns"]) == 3
    argv = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID]
    argv += ["--detector", str(setup["det"]), "--top-k", "1", "--episodes", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert any(
        json.loads(p.read_text())["settings"]["victim_sample"] is False for p in out.glob("attack_*.json")
    )


def test_attack_scores_with_sliding_windows(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID, "--quiet"]
    base += ["--detector", str(setup["det"]), "--top-k", "2", "--episodes", "3", "--methods", "detector"]
    returns = {}
    for name, extra in (("whole", []), ("windows", ["--score-windows", "4:2"])):
        out = setup["root"] / f"win_{name}"
        assert main([*base, "--out", str(out), *extra]) == 0
        (path,) = out.glob("attack_*.json")
        data = json.loads(path.read_text())
        returns[name] = data["episodes"]["detector"]["returns"]
        assert data["score_windows"] == ("4:2" if extra else None)
    capsys.readouterr()
    # the random detector's scores of 4-frame windows, averaged, rank other steps than its whole-episode scores
    assert returns["whole"] != returns["windows"]
    for bad, msg in (("0", "W >= 1"), ("4:5", "1 <= S <= W"), ("a:b", "W or W:S"), ("4:2:1", "W or W:S")):
        assert main([*base, "--score-windows", bad]) == 1
        assert msg in capsys.readouterr().err
    no_det = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID, "--quiet"]
    assert main([*no_det, "--methods", "random", "--top-k", "1", "--score-windows", "4"]) == 1
    assert "--score-windows needs --detector" in capsys.readouterr().err


def test_attack_lead_auto_and_negative(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from critwrap.attack import choose_lead, evaluate_attack
    from test_attack import EarlyFlagDetector

    det = EarlyFlagDetector()
    base = ["attack", "--model", str(setup["model"]), "--algo", "ppo", "--env", ENV_ID, "--quiet"]
    base += ["--top-k", "1", "--episodes", "2", "--methods", "detector"]
    det_dir = setup["det"]
    out = tmp_path / "auto"
    assert main([*base, "--detector", str(det_dir), "--lead", "auto", "--leads=-2:1", "--out", str(out)]) == 0
    (path,) = out.glob("attack_*.json")
    data = json.loads(path.read_text())
    choice = data["lead_choice"]
    assert choice["seeds"] == list(range(2, 22))  # the 20 seeds after the evaluated ones
    assert set(choice["mean_drops"]) == {"-2", "-1", "0", "1"}
    assert data["settings"]["detector_lead"] == choice["lead"]
    best = max(choice["mean_drops"].values())
    assert choice["mean_drops"][str(choice["lead"])] == best
    assert main([*base, "--detector", str(det_dir), "--lead", "-1", "--out", str(tmp_path / "neg")]) == 0
    (path,) = (tmp_path / "neg").glob("attack_*.json")
    assert json.loads(path.read_text())["settings"]["detector_lead"] == -1
    capsys.readouterr()
    for bad, msg in (
        (["--lead", "x"], "integer number of steps or 'auto'"),
        (["--lead", "auto", "--leads", "2:1"], "A <= B"),
    ):
        assert main([*base, "--detector", str(det_dir), *bad]) == 1
        assert msg in capsys.readouterr().err
    assert main([*base, "--detector", str(det_dir), "--lead", "auto", "--methods", "random"]) == 1
    assert "--lead auto needs the detector" in capsys.readouterr().err
    # the library picks the shifted detector's true offset (the CLI runs the same function)
    env = gym.make(ENV_ID)
    from stable_baselines3 import PPO

    model = PPO.load(setup["model"], device="cpu")
    assert choose_lead(env, model, det, k=1, episodes=2, seed=50, leads=(-3, -2, 0)).lead == -2
    rep = evaluate_attack(env, model, det, k=1, episodes=2, seed=0, methods=["detector"], detector_lead=-2)
    assert rep.settings["detector_lead"] == -2


def test_attack_eval_callback_in_a_zoo_run(setup: dict[str, Path], tmp_path: Path) -> None:
    """`--callback attack-eval:detector=DIR`: the run's own evaluation env (frame stacking from the
    hyperparameters) is attacked during training and the results land in the run directory."""
    cb = f"attack-eval:detector={setup['det']},k=2,episodes=3,eval_freq=32,methods=[detector,random,victim]"
    args = ["train", "ppo", ENV_ID, "--timesteps", "64", "--log-dir", str(tmp_path), "--eval-freq", "0",
            "--hp", "n_envs=1", "--hp", "n_steps=32", "--hp", "batch_size=32", "--hp", "frame_stack=2",
            "--callback", cb, "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (log,) = tmp_path.glob("default/ppo/*/*/seed_0/attack_eval.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["timesteps"] for r in records] == [32, 64]
    for r in records:
        assert [row["method"] for row in r["table"]] == ["clean", "detector", "random", "victim"]
        assert all(row["episodes"] == 3 for row in r["table"])
        # every episode attacked; a second planned step may not be reached when the first ends the episode
        assert all(row["attacked_episodes"] == 3 for row in r["table"][1:])
        assert all(1 <= row["mean_perturbed_steps"] <= 2 for row in r["table"][1:])


def test_attack_eval_in_a_minigrid_zoo_run_scores_the_agents_view(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    """frames=minigrid-pov reads the env itself, so the run's evaluation env must be the plain env (no
    frame stack: not a VecEnv adapter)."""
    cb = f"attack-eval:detector={setup['det']},k=2,episodes=2,eval_freq=64,frames=minigrid-pov:4"
    args = ["train", "ppo", "MiniGrid-Empty-5x5-v0", "--timesteps", "64", "--log-dir", str(tmp_path),
            "--eval-freq", "0", "--eval-episodes", "1", "--eval-max-steps", "20", "--hp", "n_envs=1",
            "--hp", "n_steps=64", "--hp", "batch_size=32", "--hp", "n_epochs=1", "--callback", cb,
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (log,) = tmp_path.glob("default/ppo/*/*/seed_0/attack_eval.jsonl")
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["timesteps"] == 64 and record["table"][0]["episodes"] == 2
