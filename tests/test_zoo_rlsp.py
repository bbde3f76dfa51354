"""``python -m critwrap.zoo rlsp``, then ``train`` on the inferred reward through the ``rlsp-reward`` wrapper."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from critwrap.rlsp.reward import load_reward
from critwrap.zoo.__main__ import main

SMALL = [
    "--preset",
    "small",
    "--set",
    "horizon=2",
    "--set",
    "solver_iterations=100",
    "--set",
    "n_rollouts_init=2",
]
SMALL += ["--set", "rollout_length=50", "--set", "n_trajectories=8"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def zoo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_rlsp_from_a_states_file_then_train_on_the_reward(capsys: pytest.CaptureFixture[str]) -> None:
    np.save("states.npy", np.array([[0.0, 0.01, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]]))
    rc, out, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "states.npy", "--n-states", "1",
                       "--out", "r.safetensors", "--tensorboard", "tb", *SMALL)  # fmt: skip
    assert rc == 0, err
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["n_states"] == 1 and summary["epochs"] == 2 and summary["method"] == "deep-rlsp"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator("tb")
    acc.Reload()
    grad = acc.Scalars("rlsp/grad_norm")
    assert [e.step for e in grad] == [1, 2] and [e.step for e in acc.Scalars("rlsp/horizon")] == [1, 2]
    assert list(Path("tb/sac").glob("SAC_*/events.out.tfevents.*"))  # the SAC's own metrics
    reward = load_reward("r.safetensors", env_id="InvertedPendulum-v5", obs_dim=4)
    assert reward.info["method"] == "deep-rlsp" and len(reward.info["history"]) == 2
    # the logged gradient norms are the iterations' own
    assert [e.value for e in grad] == pytest.approx(
        [h["grad_norm"] for h in reward.info["history"]], rel=1e-6
    )
    assert "--wrapper rlsp-reward:path=r.safetensors" in out
    # progress bars on stderr: the three setup stages, then the iterations (2 of at most 2 * 10)
    assert "Deep RLSP setup" in err and "3/3" in err
    assert "Deep RLSP:" in err and "horizon=2" in err

    rc, out, err = zoo(capsys, "train", "sac", "InvertedPendulum-v5", "--timesteps", "300",
                       "--wrapper", "rlsp-reward:path=r.safetensors", "--eval-skip-wrapper", "rlsp-reward",
                       "--hp", "learning_starts=100", "--hp", "batch_size=16", "--hp", "policy_kwargs={net_arch: [8]}",
                       "--eval-episodes", "2", "--num-threads", "1")  # fmt: skip
    assert rc == 0, err
    assert "Final evaluation (2 episodes)" in out
    final = json.loads(next(Path("runs").rglob("final_eval.json")).read_text())
    # evaluated on the true reward (the wrapper is left out): 1 per step, 0 for the step where the pole falls
    assert all(r in (length, length - 1) for r, length in zip(final["returns"], final["lengths"]))


def test_rlsp_ablation_with_states_sampled_from_a_policy(capsys: pytest.CaptureFixture[str]) -> None:
    import gymnasium as gym
    from stable_baselines3 import SAC

    SAC("MlpPolicy", gym.make("InvertedPendulum-v5"), policy_kwargs={"net_arch": [8]}, seed=0).save(
        "expert.zip"
    )
    rc, out, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "expert.zip", "--n-states", "2",
                       "--method", "waypoints", "--out", "w.safetensors", "--save-states", "used.npy", *SMALL,
                       "--no-progress")  # fmt: skip
    assert rc == 0, err
    assert "Deep RLSP" not in err
    used = np.load("used.npy")
    assert used.shape == (2, 4)
    reward = load_reward("w.safetensors")
    assert reward.kind == "waypoints" and reward.waypoints is not None and reward.waypoints.shape[0] == 2
    assert json.loads(out[: out.rindex("}") + 1])["states_from"]["source"] == "policy"


def test_rlsp_bad_input_gives_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "s.npy", "--out", "x",
                     "--method", "average-features", "--tensorboard", "tb")  # fmt: skip
    assert rc == 1 and "--method average-features has none to log" in err
    np.save("wrong.npy", np.zeros((3, 17)))
    rc, _, err = zoo(
        capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "wrong.npy", "--out", "x", *SMALL
    )
    assert rc == 1 and "dimension 17" in err and "dimension 4" in err
    np.save("pendulum.npy", np.zeros((1, 3)))
    rc, _, err = zoo(capsys, "rlsp", "--env", "Pendulum-v1", "--states", "pendulum.npy", "--out", "x", *SMALL)
    assert rc == 1 and "cannot do so" in err and "state_setter" in err
    rc, _, err = zoo(
        capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "missing.npy", "--out", "x", *SMALL
    )
    assert rc == 1 and "missing.npy" in err
    rc, _, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "wrong.npy", "--out", "x",
                     "--set", "no_such_setting=1")  # fmt: skip
    assert rc == 1 and "no_such_setting" in err
    np.save("three.npy", np.zeros((3, 4)))  # fewer states than asked for: not silently fewer
    rc, _, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "three.npy", "--n-states", "10",
                     "--out", "x", *SMALL)  # fmt: skip
    assert rc == 1 and "--n-states 10" in err and "only 3 states" in err
    assert not Path("x").exists()


def test_train_refuses_a_reward_from_another_env(capsys: pytest.CaptureFixture[str]) -> None:
    from critwrap.rlsp.features import StateVAE
    from critwrap.rlsp.reward import InferredReward

    InferredReward(StateVAE(17, latent_dim=2, layer_size=4), np.ones(2), "HalfCheetah-v5").save("cheetah.st")
    rc, _, err = zoo(capsys, "train", "sac", "InvertedPendulum-v5", "--timesteps", "100",
                     "--wrapper", "rlsp-reward:path=cheetah.st")  # fmt: skip
    assert rc == 1 and "HalfCheetah-v5" in err and "InvertedPendulum-v5" in err
    # no path and no rlsp-update callback: a reward of 0 everywhere, refused before the run starts
    rc, _, err = zoo(capsys, "train", "sac", "InvertedPendulum-v5", "--timesteps", "100", "--experiment", "bare",
                     "--wrapper", "rlsp-reward")  # fmt: skip
    assert rc == 1 and "would be trained on a reward of 0" in err and "rlsp-update" in err
    assert not Path("runs/bare").exists()


def test_rlsp_update_callback_from_the_train_command(capsys: pytest.CaptureFixture[str]) -> None:
    np.save("states.npy", np.array([[0.0, 0.01, 0.0, 0.0]]))
    config = "{horizon: 2, n_rollouts_init: 2, rollout_length: 50, n_trajectories: 8}"
    rc, _, err = zoo(capsys, "train", "sac", "InvertedPendulum-v5", "--timesteps", "400", "--wrapper", "rlsp-reward",
                     "--callback", f"rlsp-update:states=states.npy,save_path=cb.safetensors,update_every=100,"
                     f"preset=small,config={config}",
                     "--eval-skip-wrapper", "rlsp-reward", "--hp", "learning_starts=0", "--hp", "batch_size=16",
                     "--hp", "policy_kwargs={net_arch: [8]}", "--eval-episodes", "1", "--num-threads", "1")  # fmt: skip
    assert rc == 0, err
    reward = load_reward("cb.safetensors", env_id="InvertedPendulum-v5")
    assert reward.info["epochs"] == 2 and reward.info["horizon"] == 2  # the curriculum ran to its end
    # without the wrapper on the training envs the callback says what is missing
    rc, _, err = zoo(capsys, "train", "sac", "InvertedPendulum-v5", "--timesteps", "200", "--experiment", "x",
                     "--callback", "rlsp-update:states=states.npy,preset=small,config={horizon: 1, n_rollouts_init: 2, "
                     "rollout_length: 20}", "--hp", "learning_starts=0", "--num-threads", "1")  # fmt: skip
    assert rc == 1 and "rlsp-reward" in err


def test_rlsp_gail_writes_a_policy_and_reports_its_true_return(capsys: pytest.CaptureFixture[str]) -> None:
    np.save("states.npy", np.array([[0.0, 0.01, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]]))
    rc, out, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "states.npy", "--n-states", "2",
                       "--method", "gail", "--out", "gail", "--gail-steps", "300", "--gail-episode-steps", "50",
                       "--hp", "learning_starts=100", "--hp", "batch_size=16", "--hp", "policy_kwargs={net_arch: [8]}",
                       "--eval-episodes", "2", "--gail-grad-penalty", "10", "--gail-normalize")  # fmt: skip
    assert rc == 0, err
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["normalize_input"] is True
    assert "GAIL" in err and "300/300" in err  # the progress bar, on stderr (stdout holds only the summary)
    assert summary["grad_penalty"] == 10 and "grad_penalty" in summary["discriminator"]
    assert summary["method"] == "gail" and summary["n_states"] == 2 and summary["steps"] == 300
    assert summary["out"] == "gail.zip" and Path("gail.zip").is_file()
    assert len(summary["true_returns"]) == 2 and summary["true_return_mean"] >= 1
    assert {"disc_loss", "reward_expert", "reward_policy"} <= set(summary["discriminator"])
    rc, _, err = zoo(capsys, "rlsp", "--env", "InvertedPendulum-v5", "--states", "states.npy", "--method", "gail",
                     "--out", "g2", "--hp", "learning_rate")  # fmt: skip
    assert rc == 1 and "KEY=VALUE" in err


def test_rlsp_set_reads_scientific_notation_as_a_number() -> None:
    # YAML 1.1 reads "1e-5" as a string; the zoo's --set must give RLSPConfig a float, not crash mid-run
    import argparse

    from critwrap.zoo.rlsp import _config

    args = argparse.Namespace(set=["vae_lr=1e-5", "horizon=5", "reset_solver=false"], seed=3, verbose=0,
                              preset="fast")  # fmt: skip
    cfg = _config(args)
    assert cfg.vae_lr == pytest.approx(1e-5) and isinstance(cfg.vae_lr, float)
    assert cfg.horizon == 5 and cfg.reset_solver is False and cfg.seed == 3


def test_rlsp_config_rejects_settings_of_the_wrong_type() -> None:
    from critwrap.rlsp.deep_rlsp import RLSPConfig

    with pytest.raises(TypeError, match="vae_lr must be float, got '1e-5'"):
        RLSPConfig(vae_lr="1e-5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="horizon must be int"):
        RLSPConfig(horizon=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reset_solver must be bool"):
        RLSPConfig(reset_solver=1)  # type: ignore[arg-type]
    cfg = RLSPConfig(learning_rate=1, mdn_stdev=None, sac_kwargs={"batch_size": 8})
    assert isinstance(cfg.learning_rate, float) and cfg.mdn_stdev is None
