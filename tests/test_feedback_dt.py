"""critwrap.feedback.dt / evaluate: a Decision Transformer that overfits a tiny dataset reaches the return
it is conditioned on in the environment; checkpoints reload; bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from critwrap.episodes import Episode
from critwrap.feedback.data import OfflineData
from critwrap.feedback.dt import DecisionTransformer, DTArgs, ObsSpec, load_policy, train
from critwrap.feedback.evaluate import TargetReturnError, rollout

ENV_ID = "CritwrapTestCounting-v0"
LENGTH = 4


class CountingEnv(gym.Env[np.ndarray, int]):
    """``LENGTH`` steps; the observation is the one-hot step index, the reward is the action (0 or 1).
    The observation says nothing about past rewards: only the return-to-go tells a policy what to do."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(LENGTH,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.eye(LENGTH, dtype=np.float32)[min(self.t, LENGTH - 1)]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self._obs(), float(action), self.t >= LENGTH, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=CountingEnv)


def _all_patterns() -> list[Episode]:
    eps = []
    for code in range(2**LENGTH):
        actions = np.array([(code >> i) & 1 for i in range(LENGTH)])
        eps.append(Episode(np.eye(LENGTH, dtype=np.float32), actions=actions, rewards=actions.astype(float)))
    return eps * 2


def _small(out: Path, **kw: Any) -> DTArgs:
    base = dict(
        data=_all_patterns(),
        out=str(out),
        epochs=1,
        max_steps=200,
        batch_size=32,
        context_length=LENGTH,
        n_layer=1,
        n_head=2,
        n_embd=32,
        dropout=0.0,
        lr=3e-3,
        lr_decay=False,
        weight_decay=0.0,
        progress=False,
        tensorboard=False,
        seed=0,
    )
    base.update(kw)
    return DTArgs(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained_dt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return train(_small(tmp_path_factory.mktemp("dt") / "run"))


def test_dt_overfits_tiny_dataset_and_reaches_its_target_return(trained_dt: Path) -> None:
    policy = load_policy(trained_dt)
    env = {"env": ENV_ID, "wrappers": [], "env_kwargs": {}}
    best = rollout(policy, target_return=4.0, episodes=3, env=env)
    assert best["returns"] == [4.0, 4.0, 4.0]
    worst = rollout(policy, target_return=0.0, episodes=2, env=env)
    assert worst["returns"] == [0.0, 0.0]
    assert best["lengths"] == [LENGTH] * 3


def test_trained_run_layout_and_errors(trained_dt: Path) -> None:
    cfg = load_policy(trained_dt).config
    assert cfg["algo"] == "dt" and cfg["model"]["use_returns"] is True
    assert cfg["data"]["return_max"] == 4.0 and cfg["rtg_scale"] == 4.0
    assert (trained_dt / "model.pt").is_file() and (trained_dt / "train_log.csv").is_file()
    env = {"env": ENV_ID}
    with pytest.raises(TargetReturnError, match="negative"):
        rollout(trained_dt, target_return=-4.0, episodes=1, env=env)
    with pytest.raises(ValueError, match="target return"):
        rollout(trained_dt, episodes=1, env=env)
    with pytest.raises(ValueError, match="does not know its environment"):
        rollout(trained_dt, target_return=4.0, episodes=1)
    with pytest.raises(FileExistsError, match="already holds"):
        train(_small(trained_dt))


def test_fdt_and_bc_train_and_bad_arguments(tmp_path: Path) -> None:
    from critwrap.feedback.bc import train_bc
    from critwrap.feedback.oracle import FeedbackOracle

    torch.set_num_threads(1)
    eps = _all_patterns()
    labels = FeedbackOracle(lambda o: np.ones(len(o), dtype=int), budget=40, occurrences="all").label(eps)
    path = labels.save(tmp_path / "feedback.npz")
    run = train(
        _small(tmp_path / "fdt", data=eps, algo="fdt", feedback=str(path), max_steps=20, feedback_lambda=0.1)
    )
    cfg = load_policy(run).config
    assert cfg["feedback"]["labels"] == len(labels) and cfg["algo"] == "fdt"
    bc = train_bc(_small(tmp_path / "bc", max_steps=5))
    pol = load_policy(bc)
    assert pol.algo == "bc" and pol.model.use_returns is False
    out = rollout(pol, episodes=2, env={"env": ENV_ID})  # BC needs no target return
    assert len(out["returns"]) == 2
    with pytest.raises(ValueError, match="fdt needs feedback"):
        train(_small(tmp_path / "x", algo="fdt"))
    with pytest.raises(ValueError, match="does not use feedback"):
        train(_small(tmp_path / "x", algo="dt", feedback=str(path)))
    with pytest.raises(ValueError, match="algo must be"):
        train(_small(tmp_path / "x", algo="cql"))


def test_image_observations_use_a_cnn_and_channel_layouts() -> None:
    hwc = np.random.default_rng(0).integers(0, 11, size=(5, 7, 7, 3), dtype=np.uint8)
    spec = ObsSpec.from_data(hwc)
    assert spec.kind == "image" and spec.channels_last and spec.input_shape == (3, 7, 7)
    assert spec.scale == float(hwc.max())
    x = spec.to_tensor(hwc[None])
    assert x.shape == (1, 5, 3, 7, 7) and float(x.max()) == 1.0
    model = DecisionTransformer(spec, 7, context_length=5, max_timestep=10, n_layer=1, n_head=1, n_embd=16)
    assert model.encoder_name == "small"
    logits = model(
        x, torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5), torch.zeros(1, dtype=torch.long)
    )
    assert logits.shape == (1, 5, 7)
    atari = ObsSpec("image", (4, 84, 84), scale=255.0)
    assert DecisionTransformer(atari, 4, 3, 5, n_layer=1, n_head=1, n_embd=16).encoder_name == "nature"
    with pytest.raises(ValueError, match="36x36"):
        DecisionTransformer(spec, 7, 5, 10, n_layer=1, n_head=1, n_embd=16, encoder="nature")


def test_causality_last_action_never_changes_predictions() -> None:
    torch.manual_seed(0)
    spec = ObsSpec.from_data(np.eye(4, dtype=np.float32))
    model = DecisionTransformer(
        spec, 3, context_length=4, max_timestep=8, n_layer=2, n_head=2, n_embd=16
    ).eval()
    obs = torch.randn(2, 4, 4)
    rtg = torch.randn(2, 4)
    a = torch.randint(0, 3, (2, 4))
    b = a.clone()
    b[:, -1] = (a[:, -1] + 1) % 3
    t0 = torch.zeros(2, dtype=torch.long)
    torch.testing.assert_close(model(obs, a, rtg, t0), model(obs, b, rtg, t0))
    c = a.clone()
    c[:, 1] = (a[:, 1] + 1) % 3  # an earlier action changes the later predictions only
    out_a, out_c = model(obs, a, rtg, t0), model(obs, c, rtg, t0)
    torch.testing.assert_close(out_a[:, :2], out_c[:, :2])
    assert not torch.allclose(out_a[:, 2:], out_c[:, 2:])


def test_offline_data_n_actions_from_metadata() -> None:
    data = OfflineData.from_episodes(_all_patterns()[:1], metadata={"n_actions": 5})
    assert data.n_actions == 5


# --------------------------------------------------------------------------------------------------
# feedback modes of the FDT loss, on a hand-built batch
# --------------------------------------------------------------------------------------------------
def _p(row: list[float]) -> np.ndarray:
    e = np.exp(np.asarray(row) - max(row))
    return e / e.sum()


MODE_LOGITS = [
    [2.0, 0.0, -1.0],  # logged 0, positive
    [0.5, 1.5, 0.0],  # logged 1, negative, best action 2
    [0.0, 0.3, 0.0],  # logged 1, negative, no best action
    [1.0, -2.0, 0.5],  # logged 0, no feedback
    [0.1, 0.2, 2.5],  # logged 2, positive
    [5.0, 5.0, 5.0],  # padding (its positive label must be ignored)
]
MODE_ACTIONS = [0, 1, 1, 0, 2, 0]
MODE_FEEDBACK = [1, 0, 0, -1, 1, 1]
MODE_BEST = [-1, 2, -1, -1, -1, 1]
MODE_MASK = [True, True, True, True, True, False]


def _mode_loss(mode: str, lam: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    from critwrap.feedback.dt import fdt_loss

    return fdt_loss(
        torch.tensor(MODE_LOGITS).reshape(2, 3, 3),
        torch.tensor(MODE_ACTIONS).reshape(2, 3),
        torch.tensor(MODE_MASK).reshape(2, 3),
        torch.tensor(MODE_FEEDBACK).reshape(2, 3),
        torch.tensor(MODE_BEST).reshape(2, 3),
        lam,
        mode=mode,
    )


def test_positive_only_mode_keeps_negatives_in_ce_and_averages_over_positives() -> None:
    p = [_p(r) for r in MODE_LOGITS]
    # the official ignore_negative_feedback_regularization: every real position in the cross-entropy
    ce = -np.mean([np.log(p[i][MODE_ACTIONS[i]]) for i in range(5)])
    reg = -(np.log(p[0][0]) + np.log(p[4][2])) / 2  # positives only, divided by their number
    loss, parts = _mode_loss("positive-only")
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["feedback_term"] == pytest.approx(reg, rel=1e-5)
    assert parts["n_feedback"] == 2
    assert float(loss) == pytest.approx(ce + 0.5 * reg, rel=1e-5)


def test_fallback_mode_ignores_best_actions() -> None:
    p = [_p(r) for r in MODE_LOGITS]
    ce = -(np.log(p[0][0]) + np.log(p[3][0]) + np.log(p[4][2])) / 3  # negatives left out
    reg = (-np.log(p[0][0]) - np.log(1 - p[1][1]) - np.log(1 - p[2][1]) - np.log(p[4][2])) / 4
    loss, parts = _mode_loss("fallback")
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["feedback_term"] == pytest.approx(reg, rel=1e-5)
    assert parts["n_feedback"] == 4
    assert float(loss) == pytest.approx(ce + 0.5 * reg, rel=1e-5)
    # the default mode differs exactly at position 1, where a usable best action exists
    _, best = _mode_loss("best-action")
    expected_best = reg + (np.log(1 - p[1][1]) - np.log(p[1][2])) / 4
    assert best["feedback_term"] == pytest.approx(expected_best, rel=1e-5)
    assert best["ce"] == pytest.approx(ce, rel=1e-5)


def test_feedback_mode_gradients_on_one_negative_label() -> None:
    from critwrap.feedback.dt import fdt_loss

    def grad(mode: str) -> torch.Tensor:
        logits = torch.zeros(1, 1, 3, requires_grad=True)
        loss, _ = fdt_loss(
            logits, torch.tensor([[1]]), torch.tensor([[True]]), torch.tensor([[0]]), torch.tensor([[2]]), 1.0,
            mode=mode,
        )  # fmt: skip
        loss.backward()  # type: ignore[no-untyped-call]
        assert logits.grad is not None
        return logits.grad[0, 0]

    g = grad("fallback")  # descent lowers the logged action and raises the others equally
    assert g[1] > 0 and g[0] < 0 and g[2] < 0 and float(g[0]) == pytest.approx(float(g[2]))
    g = grad("best-action")  # descent raises the best action only
    assert g[2] < 0 and g[0] > 0 and g[1] > 0
    g = grad("positive-only")  # the negative label is plain cross-entropy toward the logged action
    assert g[1] < 0 and g[0] > 0 and g[2] > 0


def test_positive_only_without_positives_is_dt_cross_entropy() -> None:
    from critwrap.feedback.dt import fdt_loss

    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    actions = torch.tensor([[0, 0]])
    loss, parts = fdt_loss(
        logits, actions, torch.tensor([[True, True]]), torch.tensor([[0, -1]]), torch.tensor([[1, -1]]), 1.0,
        mode="positive-only",
    )  # fmt: skip
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(logits[0], actions[0])))
    assert parts["n_feedback"] == 0 and parts["feedback_term"] == 0.0


def test_feedback_mode_bad_values_and_run_config(tmp_path: Path) -> None:
    from critwrap.feedback.dt import FEEDBACK_MODES
    from critwrap.feedback.oracle import FeedbackOracle
    from critwrap.zoo.offline import add_parser

    with pytest.raises(ValueError, match="feedback mode must be one of"):
        _mode_loss("negative-only")
    with pytest.raises(ValueError, match="only applies to fdt"):
        train(_small(tmp_path / "x", algo="dt", feedback_mode="positive-only"))
    eps = _all_patterns()
    path = (
        FeedbackOracle(lambda o: np.ones(len(o), dtype=int), budget=40, occurrences="all")
        .label(eps)
        .save(tmp_path / "fb.npz")
    )
    with pytest.raises(ValueError, match="feedback_mode must be one of"):
        train(_small(tmp_path / "y", algo="fdt", feedback=str(path), feedback_mode="ignore"))
    torch.set_num_threads(1)
    run = train(
        _small(tmp_path / "f", algo="fdt", feedback=str(path), max_steps=3, feedback_mode="positive-only")
    )
    cfg = load_policy(run).config
    assert cfg["args"]["feedback_mode"] == "positive-only" and cfg["feedback"]["mode"] == "positive-only"
    # the CLI offers exactly the library's modes
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    offline = add_parser(sub)
    train_parser = offline._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    action = next(a for a in train_parser._actions if a.dest == "feedback_mode")
    assert tuple(action.choices) == FEEDBACK_MODES  # type: ignore[arg-type]
