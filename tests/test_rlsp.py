"""Deep RLSP: the gradient estimator on a problem with a known answer, models, curriculum, simulation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from critwrap.rlsp.deep_rlsp import (
    DeepRLSP,
    RLSPConfig,
    StatesError,
    collect_transitions,
    infer_reward,
    load_states,
    sample_states_from_policy,
    sb3_policy,
)
from critwrap.rlsp.gradient import (
    ForwardSimulator,
    HorizonCurriculum,
    MujocoStateSetter,
    UnsupportedEnvError,
    backward_rollouts,
    clip_by_norm,
    cosine_weights,
    forward_rollouts,
    policy_transitions,
    rlsp_gradient,
)
from critwrap.rlsp.inverse import InverseDynamics, InversePolicyMDN


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- a 2-D world where the answer is known ---------------------------------------------------------


class BoxWorld(gym.Env[np.ndarray, np.ndarray]):
    """``s' = clip(s + 0.1 a, -1, 1)`` in the square [-1, 1]^2, starting near the origin.

    With features ``f(s) = s`` and reward ``theta . s``, the optimal policy (actions in [-1, 1]^2) heads
    to the corner ``sign(theta)`` and stays there: an observed state in a corner says in which quadrant
    ``theta`` lies.
    """

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)
        self.s = np.zeros(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.s = self.np_random.uniform(-0.05, 0.05, 2)
        return self.s.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.s = np.clip(self.s + 0.1 * np.clip(action, -1, 1), -1, 1)
        return self.s.copy(), 0.0, False, False, {}


def _set_box_state(env: gym.Env, obs: np.ndarray) -> None:
    env.unwrapped.s = np.asarray(obs, dtype=np.float64).copy()  # type: ignore[attr-defined]


def _optimal_policy(theta: np.ndarray, rng: np.random.Generator, noise: float) -> Any:
    direction = np.clip(2 * theta / np.abs(theta).max(), -1, 1)
    return lambda obs: np.clip(direction + noise * rng.standard_normal((len(obs), 2)), -1, 1)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    ("planted", "start"),
    [((1.0, 1.0), (1.0, -1.0)), ((-1.0, 1.0), (1.0, 1.0)), ((1.0, -1.0), (-1.0, -1.0))],
    ids=["NE-from-SE", "NW-from-NE", "SE-from-SW"],
)
def test_gradient_ascent_recovers_the_planted_reward_direction(
    planted: tuple[float, float], start: tuple[float, float]
) -> None:
    """Learned inverse models + simulated pasts and futures move theta from 90 degrees off to the planted one."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    theta_star = np.array(planted)
    env = BoxWorld()
    env.reset(seed=0)
    expert = _optimal_policy(theta_star, rng, noise=0.0)
    for _ in range(30):
        env.step(expert(env.s[None])[0])
    observed = env.s[None].copy()  # the expert's corner

    data = collect_transitions(BoxWorld, 8, 50, seed=0)
    dynamics = InverseDynamics(2, 2, hidden_size=32, n_hidden=2)
    dynamics.fit(data.obs, data.actions, data.next_obs, epochs=20, batch_size=100, lr=3e-3, seed=0)
    inverse_policy = InversePolicyMDN(2, 2, -np.ones(2), np.ones(2), n_layers=2, layer_size=32)
    sim = ForwardSimulator(BoxWorld, 16, state_setter=_set_box_state, clip=1.0, seed=0)

    theta = np.array(start) / np.linalg.norm(start)
    assert _cos(theta, theta_star) <= 0.0 + 1e-9
    horizon = 5
    for _ in range(6):
        policy = _optimal_policy(theta, rng, noise=0.1)  # the policy that is optimal for the current theta
        next_obs, actions = policy_transitions(data.obs[rng.choice(len(data), 400)], policy, sim)
        inverse_policy.fit(next_obs, actions, epochs=5, batch_size=100, lr=3e-3)
        back = backward_rollouts(observed, 32, horizon, inverse_policy, dynamics, rng, clip=1.0)
        fwd = forward_rollouts(back.earliest, 32, horizon, policy, sim)
        grad = rlsp_gradient(back.observations, fwd, horizon)  # features = the state itself
        theta = theta + 1.0 * clip_by_norm(grad, 10.0)

    assert _cos(theta, theta_star) > 0.6, theta
    # the policy optimal for the inferred reward heads to the observed corner
    np.testing.assert_array_equal(np.sign(theta), np.sign(theta_star))


def test_backward_rollouts_follow_the_inverse_models() -> None:
    class ConstantInversePolicy:
        act_dim = 1

        def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return np.ones((len(obs), 1))

    class ExactInverse:
        def predict_previous(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
            return obs - 0.5 * actions

    back = backward_rollouts(
        np.array([[3.0], [10.0]]),
        4,
        3,
        ConstantInversePolicy(),
        ExactInverse(),
        np.random.default_rng(0),
        clip=9.0,  # type: ignore[arg-type]
    )
    assert back.observations.shape == (4, 4, 1) and back.actions.shape == (4, 3, 1)
    starts = back.observations[:, 0, 0]
    assert sorted(starts.tolist()) == [3.0, 3.0, 10.0, 10.0]  # both observed states, cycled
    for traj in back.observations[:, :, 0]:
        expected = np.clip(traj[0] - 0.5 * np.arange(4), -9, 9) if traj[0] == 3.0 else [10.0, 9.0, 8.5, 8.0]
        np.testing.assert_allclose(traj, expected)


# ---- the gradient formula, clipping, reweighting, curriculum ----------------------------------------


def test_rlsp_gradient_is_the_difference_of_mean_feature_sums_per_step() -> None:
    fb = np.zeros((2, 4, 3))
    fb[0, :, 0] = 1.0  # trajectory 0: feature 0 on at every step
    fb[1, :, 1] = 2.0
    ff = np.zeros((3, 4, 3))
    ff[:, :, 2] = 1.0
    np.testing.assert_allclose(rlsp_gradient(fb, ff, horizon=3), [4 / 6, 8 / 6, -4 / 3])
    # weights: only trajectory 1 counts on the backward side
    g = rlsp_gradient(fb, ff, 3, weights_backward=np.array([0.0, 2.0]), weights_forward=np.ones(3))
    np.testing.assert_allclose(g, [0.0, 8 / 3, -4 / 3])
    with pytest.raises(FloatingPointError, match="reweight_gradient=False"):
        rlsp_gradient(fb, ff, 3, weights_backward=np.array([1.0, -1.0]))


def test_clip_and_cosine_weights() -> None:
    np.testing.assert_allclose(clip_by_norm(np.array([3.0, 4.0]), 10.0), [3.0, 4.0])
    np.testing.assert_allclose(clip_by_norm(np.array([30.0, 40.0]), 10.0), [6.0, 8.0])
    w = cosine_weights(np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, 0.0]]), np.array([2.0, 0.0]))
    np.testing.assert_allclose(w, [1.0, 0.0, -1.0, 0.0])


def test_horizon_curriculum_advances_on_small_gradients_or_after_max_epochs() -> None:
    cur = HorizonCurriculum(3, threshold=1.0, max_epochs_per_horizon=2)
    assert cur.horizon == 1
    cur.record(np.array([5.0]))  # large gradient: stay
    assert cur.horizon == 1
    cur.record(np.array([5.0]))  # max epochs at this horizon: advance
    assert cur.horizon == 2 and cur.last_n_grad_norm == float("inf")
    assert cur.record(np.array([0.5])) == pytest.approx(0.5)  # small: advance at once
    assert cur.horizon == 3 and not cur.done
    cur.record(np.array([3.0]))
    cur.record(np.array([-3.0]))  # mean of the last gradients is 0, and max epochs anyway
    assert cur.done and cur.epoch == 5

    flat = HorizonCurriculum(30, enabled=False, epochs=3)
    for _ in range(3):
        assert flat.horizon == 30
        flat.record(np.array([0.0]))
    assert flat.done


# ---- models ------------------------------------------------------------------------------------------


def test_inverse_dynamics_learns_a_linear_inverse() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2000, 3))
    a = rng.uniform(-1, 1, size=(2000, 1))
    s2 = s + 0.3 * a  # previous state = next - 0.3 a
    model = InverseDynamics(3, 1, hidden_size=64, n_hidden=2)
    first, last = model.fit(s, a, s2, epochs=30, batch_size=200, lr=3e-3, seed=0)
    assert last < 0.2 * first
    pred = model.predict_previous(s2[:200], a[:200])
    assert np.abs(pred - s[:200]).mean() < 0.05


def test_mixture_density_inverse_policy_fits_two_modes() -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(1500, 2))
    actions = np.where(rng.random((1500, 1)) < 0.5, -0.6, 0.6) + 0.02 * rng.standard_normal((1500, 1))
    mdn = InversePolicyMDN(2, 1, np.array([-1.0]), np.array([1.0]), n_layers=2, layer_size=32)
    first, last = mdn.fit(obs, actions, epochs=30, batch_size=150, lr=3e-3, seed=0)
    assert last < first
    samples = mdn.sample(obs[:400], rng)
    assert np.all(np.abs(samples) <= 1.0)
    near = np.minimum(np.abs(samples + 0.6), np.abs(samples - 0.6))
    assert np.mean(near < 0.2) > 0.8  # both modes, nothing in between
    assert 0.2 < np.mean(samples > 0) < 0.8


# ---- simulators: which envs can be set to a state ---------------------------------------------------


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "HalfCheetah-v5", "Hopper-v5"])
def test_mujoco_state_setter_restores_the_observed_state(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    for _ in range(5):
        obs = env.step(env.action_space.sample())[0]
    action = env.action_space.sample()
    expected_next = env.unwrapped.step(action)[0]

    other = gym.make(env_id)
    other.reset(seed=123)
    setter = MujocoStateSetter(other)
    setter(other, obs)
    np.testing.assert_allclose(setter.observation(other), obs, atol=1e-10)
    np.testing.assert_allclose(other.unwrapped.step(action)[0], expected_next, atol=1e-8)


@pytest.mark.parametrize(
    ("env_id", "match"),
    [("Pendulum-v1", "cannot do so"), ("InvertedDoublePendulum-v5", "InvertedDoublePendulum")],
)
def test_envs_whose_state_cannot_be_set_are_refused(env_id: str, match: str) -> None:
    with pytest.raises(UnsupportedEnvError, match=match) as info:
        MujocoStateSetter(gym.make(env_id))
    assert "state_setter" in str(info.value)  # says what to do
    with pytest.raises(UnsupportedEnvError):
        DeepRLSP(env_id, np.zeros((1, gym.make(env_id).observation_space.shape[0])), RLSPConfig.small())


def test_states_of_the_wrong_dimension_are_refused(tmp_path: Any) -> None:
    with pytest.raises(StatesError, match=r"dimension 5.*dimension 4"):
        DeepRLSP("InvertedPendulum-v5", np.zeros((2, 5)), RLSPConfig.small())
    np.save(tmp_path / "s.npy", np.zeros((3, 17)))
    with pytest.raises(StatesError, match="another environment"):
        load_states(tmp_path / "s.npy", obs_dim=4)
    np.save(tmp_path / "bad.npy", np.full((1, 4), np.nan))
    with pytest.raises(StatesError, match="NaN"):
        load_states(tmp_path / "bad.npy", obs_dim=4)
    with pytest.raises(FileNotFoundError):
        load_states(tmp_path / "missing.npy", obs_dim=4)
    assert load_states(tmp_path / "s.npy").shape == (3, 17)


def test_observed_states_from_a_stochastic_policy_depend_only_on_the_seed() -> None:
    """A stochastic SB3 policy samples from torch's global generator: the states must not depend on
    what ran before (the benchmark's per-seed states did, before this was fixed), and the global
    generator is left as it was."""
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", "InvertedPendulum-v5", seed=0, device="cpu", learning_starts=0)
    policy = sb3_policy(model)

    def sample(seed: int) -> np.ndarray:
        return sample_states_from_policy(lambda: gym.make("InvertedPendulum-v5"), policy, 3, seed=seed)[0]

    torch.manual_seed(1)
    first = sample(5)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after)  # the global generator was restored
    torch.manual_seed(123)  # another history of torch's generator: same states
    np.testing.assert_array_equal(sample(5), first)
    assert not np.array_equal(sample(6), first)


def test_discrete_action_envs_are_refused() -> None:
    with pytest.raises(TypeError, match="continuous"):
        DeepRLSP("CartPole-v1", np.zeros((1, 4)), RLSPConfig.small())


# ---- the whole loop, small ---------------------------------------------------------------------------


def test_infer_reward_with_reset_solver_trains_a_new_sac_per_iteration() -> None:
    cfg = RLSPConfig.small(
        horizon=2,
        solver_iterations=60,
        n_rollouts_init=2,
        rollout_length=50,
        n_trajectories=8,
        reset_solver=True,
    )
    states = np.array([[0.0, 0.01, 0.0, 0.0]])
    result = infer_reward("InvertedPendulum-v5", states, cfg)
    assert [h["horizon"] for h in result.history] == [1, 2]
    assert result.rlsp.done
    # the returned model is the last fresh SAC: it has seen one iteration's steps, not the sum
    assert result.model.num_timesteps == cfg.solver_iterations
    assert not np.allclose(result.rlsp.theta, result.rlsp.initial_theta())


def test_rlsp_update_refuses_reset_solver() -> None:
    from stable_baselines3 import SAC

    from critwrap.rlsp.callback import RLSPUpdate
    from critwrap.rlsp.deep_rlsp import make_policy_env

    cfg = RLSPConfig.small(n_rollouts_init=2, rollout_length=20, reset_solver=True)
    rlsp = DeepRLSP("InvertedPendulum-v5", np.zeros((1, 4)), cfg)
    model = SAC("MlpPolicy", make_policy_env(rlsp), learning_starts=0, device="cpu")
    with pytest.raises(ValueError, match="reset_solver"):
        model.learn(10, callback=RLSPUpdate(rlsp, update_every=5))


def test_infer_reward_runs_the_curriculum_with_sac(tmp_path: Any) -> None:
    cfg = RLSPConfig.small(
        horizon=2, solver_iterations=100, n_rollouts_init=2, rollout_length=50, n_trajectories=8
    )
    states = np.array([[0.0, 0.01, 0.0, 0.0]])
    result = infer_reward("InvertedPendulum-v5", states, cfg, save_path=tmp_path / "r.safetensors")
    assert [h["horizon"] for h in result.history] == [
        1,
        2,
    ]  # one epoch per horizon (max_epochs_per_horizon=1)
    assert result.rlsp.done
    # theta moved from its start (the normalised feature sum) by lr * clipped gradients
    start = result.rlsp.initial_theta()
    assert np.isclose(np.linalg.norm(start), 1.0)
    assert np.isclose(np.linalg.norm(result.reward.theta), 1.0)  # the returned reward is normalised
    np.testing.assert_allclose(result.reward.theta, result.rlsp.theta / np.linalg.norm(result.rlsp.theta))
    moved = np.linalg.norm(result.rlsp.theta - start)
    assert 0 < moved <= cfg.learning_rate * cfg.max_grad_norm * 2 + 1e-12
    assert (tmp_path / "r.safetensors").is_file()
    assert result.model.num_timesteps >= 2 * cfg.solver_iterations
