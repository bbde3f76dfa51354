"""State-only GAIL (the Deep RLSP paper's GAIL baseline): buffer relabelling, discriminator, errors, learning."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.buffers import ReplayBuffer

from critwrap.rlsp.gail import GAILReplayBuffer, GAILUpdate, StateDiscriminator, train_gail


class Line(gym.Env[np.ndarray, np.ndarray]):
    """A point on a line: ``x <- clip(x + 0.1 a)``, obs ``[x]``, starts near 0, 20 steps, reward 0."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.05, 0.05))
        self.t = 0
        return np.array([self.x], np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.x = float(np.clip(self.x + 0.1 * float(np.asarray(action).reshape(-1)[0]), -1.0, 1.0))
        self.t += 1
        return np.array([self.x], np.float32), 0.0, False, self.t >= 20, {}


def test_buffer_relabels_rewards_with_the_current_discriminator() -> None:
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    buffer = GAILReplayBuffer(50, space, gym.spaces.Box(-1.0, 1.0, (1,), np.float32), device="cpu")
    rng = np.random.default_rng(0)
    for _ in range(20):
        buffer.add(
            rng.normal(size=(1, 2)).astype(np.float32),
            rng.normal(size=(1, 2)).astype(np.float32),
            np.zeros((1, 1), np.float32),
            np.array([5.0]),
            np.array([False]),
            [{}],
        )
    with pytest.raises(RuntimeError, match="GAILUpdate"):
        buffer.sample(4)
    torch.manual_seed(0)
    disc = StateDiscriminator(2, hidden=(8,))
    buffer.discriminator = disc
    batch = buffer.sample(16)
    expected = disc.reward_np(batch.next_observations.numpy())
    np.testing.assert_allclose(batch.rewards.numpy().ravel(), expected, rtol=1e-6)
    assert not np.allclose(batch.rewards.numpy(), 5.0)  # the stored env reward is not used
    with torch.no_grad():  # a new discriminator changes the rewards of the same transitions
        for param in disc.parameters():
            param.add_(1.0)
    again = buffer._get_samples(np.arange(5))
    np.testing.assert_allclose(
        again.rewards.numpy().ravel(), disc.reward_np(again.next_observations.numpy()), rtol=1e-6
    )


def test_callback_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        GAILUpdate(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        GAILUpdate(np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="size 4"):
        GAILUpdate(np.zeros((1, 3)), StateDiscriminator(4))
    env = Line()
    model = SAC("MlpPolicy", env, learning_starts=10, replay_buffer_class=GAILReplayBuffer, device="cpu")
    with pytest.raises(ValueError, match="size 3"):
        model.learn(20, callback=GAILUpdate(np.zeros((1, 3))))
    plain = SAC("MlpPolicy", env, learning_starts=10, replay_buffer_class=ReplayBuffer, device="cpu")
    with pytest.raises(TypeError, match="replay_buffer_class=GAILReplayBuffer"):
        plain.learn(20, callback=GAILUpdate(np.zeros((1, 1))))
    ppo = PPO("MlpPolicy", env, n_steps=16, batch_size=16, device="cpu")
    with pytest.raises(TypeError, match="off-policy"):
        ppo.learn(16, callback=GAILUpdate(np.zeros((1, 1))))


def test_gail_from_one_state_moves_the_policy_to_it() -> None:
    """One observed state at x = -0.5: the GAIL-trained policy ends its episodes near it (seeds 0-2:
    -0.51 / -0.52 / -0.51), and the discriminator pays more there than at the start. With a constant
    reward instead of the discriminator's, the same SAC ends at +1.0."""
    target = np.array([[-0.5]], np.float32)
    model, callback = train_gail(
        "unused",
        target,
        2500,
        sac_kwargs={
            "learning_starts": 200,
            "batch_size": 64,
            "learning_rate": 3e-3,
            "gamma": 0.9,
            "policy_kwargs": {"net_arch": [32, 32]},
        },
        seed=0,
        update_every=100,
        disc_updates=50,
        disc_batch_size=64,
        disc_learning_rate=1e-3,
        disc_hidden=(16,),
        env=Line(),
    )
    assert callback.history and callback.history[0]["timesteps"] == 200  # first round when learning starts
    env = Line()
    finals = []
    for i in range(10):
        obs, _ = env.reset(seed=100 + i)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        finals.append(float(obs[0]))
    assert abs(np.mean(finals) + 0.5) < 0.2, finals
    disc = callback.discriminator
    assert disc.reward_np(target)[0] > disc.reward_np(np.array([[0.0]]))[0]


def _logit_gap(grad_penalty: float) -> tuple[float, list[dict[str, float]]]:
    """Discriminator logit at the observed state x = -0.5 minus at x = +0.5, after a short GAIL run."""
    _, callback = train_gail(
        "unused",
        np.array([[-0.5]], np.float32),
        800,
        sac_kwargs={"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [16]}},
        seed=0,
        disc_updates=50,
        disc_batch_size=64,
        disc_learning_rate=1e-2,
        disc_hidden=(32, 32),
        grad_penalty=grad_penalty,
        env=Line(),
    )
    with torch.no_grad():
        logits = callback.discriminator(torch.tensor([[-0.5], [0.5]]))
    return float(logits[0] - logits[1]), callback.history


def test_gradient_penalty_keeps_the_discriminator_near_1_lipschitz() -> None:
    """DAC's penalty keeps |d logit / dx| near 1 between observed and policy states, so the logit gap
    between x = -0.5 and x = +0.5 (distance 1) stays near 1; without it the same run separates the
    one observed state far more sharply."""
    free, free_hist = _logit_gap(0.0)
    penalised, hist = _logit_gap(10.0)
    assert "grad_penalty" in hist[-1] and "grad_penalty" not in free_hist[-1]
    assert penalised < 2.0, penalised
    assert free > 2 * penalised, (free, penalised)
    with pytest.raises(ValueError, match="grad_penalty"):
        GAILUpdate(np.zeros((1, 1)), grad_penalty=-1.0)


def test_several_envs_feed_the_discriminator_the_last_steps_of_every_env() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([Line, Line])
    model = SAC(
        "MlpPolicy",
        venv,
        learning_starts=50,
        batch_size=16,
        policy_kwargs={"net_arch": [8]},
        replay_buffer_class=GAILReplayBuffer,
        device="cpu",
        seed=0,
    )
    callback = GAILUpdate(np.array([[-0.5]], np.float32), update_every=100, disc_updates=2, batch_size=8)
    model.learn(400, callback=callback)
    # rounds at 50 (learning starts), then every 100 steps of both envs together
    assert [h["timesteps"] for h in callback.history] == [50.0, 150.0, 250.0, 350.0]
    assert isinstance(model.replay_buffer, GAILReplayBuffer)
    recent = callback._policy_states(model.replay_buffer, 100)
    assert recent.shape == (100, 1)  # 50 rows of 2 envs
    last = model.replay_buffer.observations[(model.replay_buffer.pos - 1) % model.replay_buffer.buffer_size]
    np.testing.assert_array_equal(recent[:2], last.reshape(2, 1))


def test_running_norm_standardises_by_all_training_batches_and_is_fixed_in_eval() -> None:
    from critwrap.rlsp.gail import RunningNorm

    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 0.1, size=(n, 2)).astype(np.float32) for n in (5, 17, 40)]
    norm = RunningNorm(2)
    for b in batches:
        norm(torch.as_tensor(b))
    everything = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), everything.var(0), rtol=1e-3)
    norm.eval()
    before = norm.mean.clone()
    out = norm(torch.as_tensor(everything, dtype=torch.float32)).numpy()
    assert torch.equal(norm.mean, before)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-2)
    np.testing.assert_allclose(out.std(0), 1.0, atol=2e-2)


def test_normalised_discriminator_learns_at_any_observation_scale() -> None:
    """With standardised inputs the gradient penalty acts in standard units: the same run on a line
    scaled down 100x separates the observed state as well as on the original line; without
    normalisation the penalty leaves the discriminator flat at the small scale."""

    class Small(Line):
        observation_space = gym.spaces.Box(-0.01, 0.01, (1,), np.float32)

        def reset(self, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
            obs, info = super().reset(**kw)
            return obs / 100, info

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
            obs, *rest = super().step(action)
            return (obs / 100, *rest)  # type: ignore[return-value]

    def gap(env: gym.Env[Any, Any], scale: float, normalize: bool) -> float:
        _, callback = train_gail(
            "unused",
            np.array([[-0.5 * scale]], np.float32),
            800,
            sac_kwargs={"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [16]}},
            seed=0,
            disc_batch_size=64,
            disc_learning_rate=1e-2,
            disc_hidden=(32, 32),
            grad_penalty=10.0,
            normalize_input=normalize,
            env=env,
        )
        disc = callback.discriminator
        assert not disc.training  # left in eval mode: sampling rewards does not move the statistics
        with torch.no_grad():
            logits = disc(torch.tensor([[-0.5 * scale], [0.0]]))
        return float(logits[0] - logits[1])

    flat = gap(Small(), 0.01, normalize=False)
    small = gap(Small(), 0.01, normalize=True)
    assert abs(flat) < 0.1, flat
    assert small > 0.5, small  # measured: 1.17 (flat: -0.005)
