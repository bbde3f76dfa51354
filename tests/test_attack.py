"""Tests of critwrap.attack: perturbations, the replay protocol, the evaluation and the online wrapper."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import critwrap
from critwrap.attack import (
    FGSM,
    PGD,
    CallablePerturbation,
    CriticalAttack,
    EpisodeTooShortError,
    RandomActionPerturbation,
    ReplayDivergenceError,
    UnsupportedVictimError,
    Victim,
    block_steps,
    choose_lead,
    detector_steps,
    evaluate_attack,
    format_table,
    importance_steps,
    make_perturbation,
    random_steps,
    replay_attack,
    run_episode,
    spaced_top_k,
)
from critwrap.detectors.base import Detector

T, CRITICAL = 8, 5


class CriticalCorridor(gym.Env[np.ndarray, int]):
    """``T`` steps; action 0 earns 1 per step. Any other action costs that step's reward, except at step
    ``critical`` (flagged in ``obs[1]``), where it ends the episode: attacking there costs
    ``T - critical`` instead of 1. ``noisy=True`` adds unseeded noise to the observations (not replayable)."""

    def __init__(self, length: int = T, critical: int = CRITICAL, noisy: bool = False) -> None:
        self.length, self.critical, self.noisy = length, critical, noisy
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.t = 0

    def _obs(self) -> np.ndarray:
        noise = float(np.random.default_rng().random()) if self.noisy else 0.5
        return np.array([self.t / self.length, float(self.t == self.critical), noise], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        ok = int(action) == 0
        if not ok and self.t == self.critical:
            return self._obs(), 0.0, True, False, {}
        self.t += 1
        return self._obs(), float(ok), self.t >= self.length, False, {}


class FlagDetector(Detector):
    """Scores frame ``t`` by its critical flag (``invert=True``: everything but the critical step)."""

    def __init__(self, invert: bool = False) -> None:
        self.invert = invert

    def score(self, frames: np.ndarray) -> np.ndarray:
        flag = np.asarray(frames, dtype=np.float64)[:, 1]
        return 1.0 - flag if self.invert else flag


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def always_zero(env: gym.Env[Any, Any]) -> Any:
    """A PPO policy whose greedy action is always 0 (its action head set by hand)."""
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.tensor([3.0, 0.0, 0.0]))
    return model


def behaviour_clone(model: Any, x: np.ndarray, y: np.ndarray, steps: int = 300) -> Victim:
    """Train the policy to map x -> y (class indices, or continuous targets) and return its Victim."""
    victim = Victim(model)
    opt = torch.optim.Adam(model.policy.parameters(), lr=1e-2)
    xt = torch.as_tensor(x).float()
    yt = torch.as_tensor(y)
    for _ in range(steps):
        out = victim.output(xt)
        if victim.discrete:
            loss = torch.nn.functional.cross_entropy(out, yt.long())
        else:
            loss = ((out - yt.float()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return victim


class VectorEnv(gym.Env[np.ndarray, Any]):
    def __init__(self, continuous: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = (
            gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else gym.spaces.Discrete(2)
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, np.float32), 0.0, True, False, {}


class ImageEnv(gym.Env[np.ndarray, int]):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        return np.zeros((8, 8, 3), np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros((8, 8, 3), np.uint8), 0.0, True, False, {}


# ---- the known critical step --------------------------------------------------------------------
def test_attack_at_the_known_critical_step_hurts_most() -> None:
    env = CriticalCorridor()
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    assert clean.episode_return == T and clean.length == T
    steps = detector_steps(clean, 1, FlagDetector())
    assert steps == [CRITICAL]
    hit = replay_attack(env, victim, clean, steps, RandomActionPerturbation(), rng=0)
    assert hit.perturbed_steps == [CRITICAL] and hit.action_changed == [True]
    assert hit.episode_return == CRITICAL
    for other in (0, 2, 7):
        miss = replay_attack(env, victim, clean, [other], RandomActionPerturbation(), rng=0)
        assert miss.episode_return == T - 1 > hit.episode_return


def test_evaluate_attack_detector_beats_random_and_a_wrong_detector() -> None:
    env = CriticalCorridor()
    model = always_zero(env)
    report = evaluate_attack(env, model, FlagDetector(), k=1, episodes=12, seed=0, win_threshold=T - 1.5)
    rows = {r["method"]: r for r in report.table()}
    assert rows["clean"]["mean_return"] == T and rows["clean"]["win_rate"] == 1.0
    assert rows["detector"]["drop"] == pytest.approx(T - CRITICAL)
    assert rows["detector"]["flipped_wins"] == 12
    assert rows["random"]["drop"] < rows["detector"]["drop"]
    assert rows["random"]["flipped_wins"] == int((report.returns["random"] == CRITICAL).sum())
    assert (report.n_perturbed["detector"] == 1).all() and (report.n_planned["detector"] == 1).all()
    wrong = evaluate_attack(env, model, FlagDetector(invert=True), k=1, episodes=4, methods=["detector"])
    assert wrong.table()[1]["drop"] == pytest.approx(1.0)
    text = format_table(report.table())
    assert "| detector | 1 |" in text and "| random | 1 |" in text


class NearlyFlatDetector(Detector):
    """Scores ~0.5 everywhere with a tiny (1e-4) bump at the critical flag: a detector that learned nothing
    useful but still has a strict top-1."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        return 0.5 + 1e-4 * np.asarray(frames, dtype=np.float64)[:, 1]


def test_flat_detector_is_flagged_and_a_sharp_one_is_not() -> None:
    env = CriticalCorridor()
    model = always_zero(env)
    with pytest.warns(RuntimeWarning, match="nearly constant"):
        flat = evaluate_attack(env, model, NearlyFlatDetector(), k=1, episodes=2, methods=["detector"])
    assert flat.settings["detector_flat"] is True
    assert flat.settings["detector_spread_median"] == pytest.approx(1e-4 / (0.5 + 1e-4))
    # the steps are still the top-1 (the check warns, it does not change the attack)
    assert flat.table()[1]["drop"] == pytest.approx(T - CRITICAL)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sharp = evaluate_attack(env, model, FlagDetector(), k=1, episodes=2, methods=["detector"])
    assert sharp.settings["detector_flat"] is False and sharp.settings["detector_spread_median"] == 1.0
    no_det = evaluate_attack(env, model, None, k=1, episodes=1, methods=["random"])
    assert "detector_flat" not in no_det.settings


def test_perturbed_steps_are_those_reached() -> None:
    env = CriticalCorridor()
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    # the attack at the critical step ends the episode: the later planned step is never reached
    rec = replay_attack(env, victim, clean, [CRITICAL, T - 1], RandomActionPerturbation(), rng=0)
    assert rec.planned_steps == [CRITICAL, T - 1]
    assert rec.perturbed_steps == [CRITICAL] and rec.n_perturbed == 1
    report = evaluate_attack(env, victim, FlagDetector(), k=2, episodes=2, methods=["detector"])
    assert report.n_planned["detector"].tolist() == [2, 2]
    assert report.n_perturbed["detector"].max() <= 2


def test_k_larger_than_the_episode() -> None:
    env = CriticalCorridor(length=4, critical=2)
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    with pytest.raises(EpisodeTooShortError, match="only 4 steps"):
        random_steps(clean, 5, rng=0)
    with pytest.raises(EpisodeTooShortError):
        evaluate_attack(env, victim, FlagDetector(), k=5, episodes=1)
    report = evaluate_attack(
        env, victim, FlagDetector(), k=5, episodes=2, allow_short=True, methods=["random"]
    )
    assert report.n_planned["random"].tolist() == [4, 4]
    assert (report.n_perturbed["random"] >= 1).all()
    with pytest.raises(ValueError, match="k must be >= 1"):
        random_steps(clean, 0)


def test_block_steps_are_consecutive_seeded_and_cover_every_offset() -> None:
    env = CriticalCorridor()
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    starts = set()
    for r in range(200):
        steps = block_steps(clean, 3, rng=r)
        assert steps == list(range(steps[0], steps[0] + 3)) and 0 <= steps[0] <= T - 3
        assert block_steps(clean, 3, rng=r) == steps  # seeded
        starts.add(steps[0])
    assert starts == set(range(T - 2))
    assert block_steps(clean, T, rng=0) == list(range(T))
    with pytest.raises(EpisodeTooShortError):
        block_steps(clean, T + 1, rng=0)
    assert block_steps(clean, T + 1, rng=0, allow_short=True) == list(range(T))
    # in evaluate_attack: a block of 2 ends the episode at the critical step when it covers it (start 4:
    # return 4, two steps perturbed; start 5: return 5, one step), else costs its two rewards (return 6)
    report = evaluate_attack(env, victim, None, k=2, episodes=40, methods=["block"])
    ret, n = report.returns["block"], report.n_perturbed["block"]
    assert set(ret.tolist()) <= {4.0, 5.0, 6.0} and {4.0, 6.0} <= set(ret.tolist())
    assert (n[ret == 5.0] == 1).all() and (n[ret != 5.0] == 2).all()
    assert (report.n_planned["block"] == 2).all()
    with pytest.raises(ValueError, match="block"):
        evaluate_attack(env, victim, None, k=2, episodes=1, methods=["blocks"])


def test_replay_of_a_nondeterministic_env_raises() -> None:
    env = CriticalCorridor(noisy=True)
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    with pytest.raises(ReplayDivergenceError, match="not deterministic"):
        replay_attack(env, victim, clean, [3], RandomActionPerturbation(), rng=0)
    with pytest.raises(ReplayDivergenceError):
        evaluate_attack(env, victim, FlagDetector(), k=1, episodes=1)


def test_victim_importance_and_steps() -> None:
    from stable_baselines3 import DQN

    env = CriticalCorridor()
    model = DQN("MlpPolicy", env, policy_kwargs={"net_arch": [8]}, learning_starts=0, seed=0, device="cpu")
    victim = Victim(model)
    assert victim.importance_method == "q-spread"
    clean = run_episode(env, victim, seed=0)
    obs = np.stack(clean.observations)
    with torch.no_grad():
        q = model.policy.q_net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(victim.importance(obs), q.max(1) - q.min(1), rtol=1e-5)
    steps = importance_steps(clean, 2, victim)
    assert steps == sorted(np.argsort(-(q.max(1) - q.min(1)), kind="stable")[:2].tolist())
    ppo = Victim(always_zero(env))
    assert ppo.importance_method == "entropy" and ppo.importance(obs).shape == (T,)


def test_sampling_victim_is_replayable_and_follows_the_policy() -> None:
    from stable_baselines3 import DQN

    env = CriticalCorridor()
    model = always_zero(env)
    with torch.no_grad():
        model.policy.action_net.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
    victim = Victim(model, sample=True, sample_seed=3)
    obs, _ = env.reset(seed=0)
    probs = torch.softmax(victim.output(torch.as_tensor(obs[None])), dim=-1)[0].detach().numpy()
    draws = []
    for s in range(400):
        victim.start_episode(s)
        for t in range(5):
            victim.at_step(t)
            draws.append(int(victim.act(obs)))
    freq = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(freq, probs, atol=0.04)  # 2000 draws: ~4 standard errors
    victim.start_episode(7)
    victim.at_step(2)
    assert [int(victim.act(obs)) for _ in range(5)] == [int(victim.act(obs))] * 5  # keyed, not stateful
    # the same seed replays the same actions; other seeds give other action sequences
    a = run_episode(env, victim, seed=11)
    b = run_episode(env, victim, seed=11)
    assert [int(x) for x in a.actions] == [int(x) for x in b.actions]
    seqs = {tuple(int(x) for x in run_episode(env, victim, seed=s).actions) for s in range(10)}
    assert len(seqs) > 1
    greedy = Victim(model)
    assert {int(x) for x in run_episode(env, greedy, seed=11).actions} == {0}
    # the replay protocol accepts it (no divergence before the first attacked step)
    report = evaluate_attack(env, victim, FlagDetector(), k=1, episodes=5, allow_short=True)
    assert report.returns["clean"].shape == (5,)
    with pytest.raises(UnsupportedVictimError, match="sample=True"):
        Victim(DQN("MlpPolicy", env, learning_starts=0, device="cpu"), sample=True)
    with pytest.raises(UnsupportedVictimError, match="per step"):
        victim.act_batch(obs[None])


# ---- perturbations ----------------------------------------------------------------------------------
def test_random_action_is_always_different_and_uniform() -> None:
    p = RandomActionPerturbation()
    p.check(gym.spaces.Box(0, 1, (1,)), gym.spaces.Discrete(4, start=1), None)
    rng = np.random.default_rng(0)
    draws = [int(p.perturb_action(2, None, rng)) for _ in range(600)]
    assert 2 not in draws and set(draws) == {1, 3, 4}
    counts = np.bincount(draws)[[1, 3, 4]]
    assert counts.min() > 150
    with pytest.raises(UnsupportedVictimError, match="Discrete action space"):
        p.check(gym.spaces.Box(0, 1, (1,)), gym.spaces.Box(-1, 1, (2,)), None)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_gradient_attacks_change_a_trained_discrete_policy_within_budget(algo: str, attack: str) -> None:
    from stable_baselines3 import DQN, PPO

    env = VectorEnv()
    if algo == "ppo":
        model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    else:
        model = DQN(
            "MlpPolicy", env, policy_kwargs={"net_arch": [16]}, learning_starts=0, seed=0, device="cpu"
        )
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (512, 2)).astype(np.float32)
    victim = behaviour_clone(model, x, (x[:, 0] > 0).astype(np.int64))
    obs = np.array([0.08, 0.95], np.float32)
    assert int(victim.act(obs)) == 1
    pert = make_perturbation(attack, epsilon=0.25)
    pert.check(env.observation_space, env.action_space, victim)
    adv = pert.perturb_observation(obs, victim, np.random.default_rng(0), env.observation_space)
    assert np.abs(adv - obs).max() <= 0.25 + 1e-6
    assert (adv <= 1.0).all() and (adv >= -1.0).all()
    assert int(victim.act(adv)) == 0
    far = np.array([0.9, 0.0], np.float32)  # far from the boundary: the budget is too small to flip it
    assert (
        int(
            victim.act(pert.perturb_observation(far, victim, np.random.default_rng(0), env.observation_space))
        )
        == 1
    )


def test_gradient_attacks_on_uint8_images() -> None:
    from stable_baselines3 import PPO

    env = ImageEnv()
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    victim = Victim(model)
    assert victim.observation_space.shape == (3, 8, 8)  # SB3 transposed; the attack works in the env's layout
    rng = np.random.default_rng(0)
    x = rng.integers(60, 200, (512, 8, 8, 3)).astype(np.uint8)
    x = (x * rng.uniform(0.6, 1.3, (512, 1, 1, 1))).clip(0, 255).astype(np.uint8)
    y = (x.reshape(512, -1).mean(1) > 127).astype(np.int64)
    victim = behaviour_clone(model, x, y, steps=400)
    obs = np.full((8, 8, 3), 131, np.uint8)
    obs[0, 0] = 255  # at the bound: must stay within [0, 255]
    assert int(victim.act(obs)) == 1
    for pert in (FGSM(8), PGD(8, steps=5)):
        adv = pert.perturb_observation(obs, victim, np.random.default_rng(0), env.observation_space)
        assert adv.dtype == np.uint8 and adv.shape == obs.shape
        assert np.abs(adv.astype(int) - obs.astype(int)).max() <= 8
        assert int(victim.act(adv)) == 0
    with pytest.raises(ValueError, match="below one level"):
        FGSM(0.5).check(env.observation_space, env.action_space, victim)


def test_gradient_attacks_on_continuous_actions() -> None:
    from stable_baselines3 import PPO

    env = VectorEnv(continuous=True)
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (512, 2)).astype(np.float32)
    victim = behaviour_clone(model, x, x[:, :1] * 0.8)
    obs = np.array([0.2, -0.99], np.float32)
    clean = victim.output(torch.as_tensor(obs[None])).detach().numpy()
    for pert in (FGSM(0.2), PGD(0.2, steps=8)):
        pert.check(env.observation_space, env.action_space, victim)
        adv = pert.perturb_observation(obs, victim, np.random.default_rng(1), env.observation_space)
        assert np.abs(adv - obs).max() <= 0.2 + 1e-6 and adv.min() >= -1.0
        moved = victim.output(torch.as_tensor(adv[None])).detach().numpy()
        assert np.abs(moved - clean).max() > 0.08  # about 0.8 * 0.2 along obs[0]


def test_unsupported_inputs_raise_clear_errors() -> None:
    env = VectorEnv()
    victim = Victim(always_zero(CriticalCorridor()))
    dict_space = gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (2,))})
    with pytest.raises(UnsupportedVictimError, match="Box observations"):
        FGSM(0.1).check(dict_space, env.action_space, victim)
    with pytest.raises(ValueError, match="give victim="):
        FGSM(0.1).check(env.observation_space, env.action_space, None)
    with pytest.raises(ValueError, match="needs epsilon"):
        make_perturbation("pgd")
    with pytest.raises(ValueError, match="unknown perturbation"):
        make_perturbation("bogus")
    with pytest.raises(ValueError, match="positive"):
        FGSM(0.0)
    with pytest.raises(UnsupportedVictimError, match="Discrete action space"):
        evaluate_attack(VectorEnv(continuous=True), _continuous_ppo(), FlagDetector(), k=1, episodes=1)


def _continuous_ppo() -> Any:
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", VectorEnv(continuous=True), policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")


def test_user_function_perturbation() -> None:
    env = CriticalCorridor()
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    calls: list[int] = []

    def fn(obs: np.ndarray, action: Any, rng: np.random.Generator) -> int:
        calls.append(int(action))
        return 2

    rec = replay_attack(env, victim, clean, [CRITICAL], CallablePerturbation(fn), rng=0)
    assert calls == [0] and int(rec.actions[CRITICAL]) == 2 and rec.episode_return == CRITICAL
    obs_fn = CallablePerturbation(lambda obs, rng: obs * 0, target="observation")
    rec2 = replay_attack(env, victim, clean, [1], obs_fn, rng=0)
    assert rec2.max_obs_change > 0 and rec2.perturbed_steps == [1]


# ---- online protocol ----------------------------------------------------------------------------
def test_online_wrapper_attacks_above_threshold_within_budget() -> None:
    env = CriticalAttack(CriticalCorridor(), detector=FlagDetector(), k=1, threshold=0.5, seed=0)
    _, info = env.reset(seed=0)
    assert info["attack"]["attacked"] is False
    attacked_at = []
    total = 0.0
    for t in range(T):
        _, r, term, trunc, info = env.step(0)
        total += r
        if info["attack"]["attacked"]:
            attacked_at.append(t)
        if term or trunc:
            break
    assert attacked_at == [CRITICAL] and env.episode_attacked_steps == [CRITICAL]
    assert info["attack"]["n_attacked"] == 1 and info["attack"]["budget_left"] == 0
    assert total == CRITICAL  # the agent's action 0 was replaced at the critical step
    inverted = CriticalAttack(
        CriticalCorridor(), detector=FlagDetector(invert=True), k=3, threshold=0.5, seed=0
    )
    inverted.reset(seed=0)
    for _ in range(T):
        *_, term, trunc, info = inverted.step(0)
        if term or trunc:
            break
    assert inverted.n_attacked == 3 and inverted.episode_attacked_steps == [0, 1, 2]


def test_online_cooldown_keeps_attacks_min_gap_apart() -> None:
    # the inverted detector scores every step but the critical one above the threshold: without a
    # cooldown the budget goes to steps 0, 1, 2; with min_gap=3 to 0, 3 and 6 (5 scores 0)
    env = CriticalAttack(
        CriticalCorridor(), detector=FlagDetector(invert=True), k=3, threshold=0.5, seed=0, min_gap=3
    )
    env.reset(seed=0)
    for _ in range(T):
        *_, term, trunc, info = env.step(0)
        if term or trunc:
            break
    assert env.episode_attacked_steps == [0, 3, 6] and info["attack"]["budget_left"] == 0
    with pytest.raises(ValueError, match="min_gap must be an integer >= 1"):
        CriticalAttack(CriticalCorridor(), detector=FlagDetector(), min_gap=0)
    from critwrap.attack import evaluate_online_attack

    model = always_zero(CriticalCorridor())
    kw = dict(k=3, episodes=2, threshold=0.5, methods=["detector"])
    spaced = evaluate_online_attack(CriticalCorridor(), model, FlagDetector(invert=True), min_gap=3, **kw)
    dense = evaluate_online_attack(CriticalCorridor(), model, FlagDetector(invert=True), **kw)
    assert spaced.settings["min_gap"] == 3 and dense.settings["min_gap"] == 1
    assert (spaced.n_perturbed["detector"] == 3).all() and (dense.n_perturbed["detector"] == 3).all()
    # a gap of 4 leaves room for two attacks only (0 and 4; 8 is past the end): the budget is not filled
    sparse = evaluate_online_attack(CriticalCorridor(), model, FlagDetector(invert=True), min_gap=4, **kw)
    assert (sparse.n_perturbed["detector"] == 2).all()
    with pytest.raises(ValueError, match="min_gap must be an integer >= 1"):
        evaluate_online_attack(CriticalCorridor(), model, FlagDetector(), min_gap=0, **kw)


def test_online_wrapper_observation_attack_and_make() -> None:
    from stable_baselines3 import PPO

    base = VectorEnv()
    model = PPO("MlpPolicy", base, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    env = CriticalAttack(
        base, detector="random", k=1, threshold=0.0, perturbation="fgsm", epsilon=0.1, victim=model
    )
    obs, info = env.reset(seed=0)
    assert info["attack"]["attacked"] is True and np.abs(obs).max() <= 0.1 + 1e-6
    with pytest.raises(TypeError, match="Stable-Baselines3"):
        CriticalAttack(VectorEnv(), detector="random", perturbation="pgd", epsilon=0.1).set_victim(object())
    made = critwrap.make(
        "CartPole-v1", wrappers=[("critical-attack", {"detector": "random", "k": 2, "threshold": 0.0})]
    )
    made.reset(seed=0)
    for _ in range(5):
        *_, info = made.step(0)
    assert info["attack"]["n_attacked"] == 2
    rebuilt = gym.make(made.spec)
    assert isinstance(rebuilt.unwrapped, type(made.unwrapped))


def test_online_wrapper_observation_attack_without_victim_raises() -> None:
    env = CriticalAttack(VectorEnv(), detector="random", k=1, threshold=0.0, perturbation="fgsm", epsilon=0.1)
    with pytest.raises(RuntimeError, match="needs a victim"):
        env.reset(seed=0)


# ---- lead: attacking before the top-scored frame -----------------------------------------------------
class LateFlagDetector(Detector):
    """Scores the frame two steps after the critical step highest (a detector that sees the outcome late)."""

    registry_name = ""

    def score(self, frames: np.ndarray) -> np.ndarray:
        t = np.round(np.asarray(frames)[:, 0] * T).astype(int)
        return (t == CRITICAL + 2).astype(np.float64)


def test_detector_lead_attacks_before_the_top_frame() -> None:
    env = CriticalCorridor()
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    assert detector_steps(clean, 1, LateFlagDetector()) == [CRITICAL + 2]
    assert detector_steps(clean, 1, LateFlagDetector(), lead=2) == [CRITICAL]
    # frames closer than `lead` to the start are never chosen; k is limited to the led frames
    assert detector_steps(clean, T - 3, LateFlagDetector(), lead=3) == list(range(T - 3))
    with pytest.raises(EpisodeTooShortError, match="lead=3"):
        detector_steps(clean, T - 2, LateFlagDetector(), lead=3)
    assert detector_steps(clean, T, LateFlagDetector(), lead=3, allow_short=True) == list(range(T - 3))
    with pytest.raises(ValueError, match="lead must be an integer"):
        detector_steps(clean, 1, LateFlagDetector(), lead=1.5)
    model = always_zero(env)
    late = evaluate_attack(env, model, LateFlagDetector(), k=1, episodes=3, methods=["detector"])
    led = evaluate_attack(
        env, model, LateFlagDetector(), k=1, episodes=3, methods=["detector"], detector_lead=2
    )
    assert late.table()[1]["drop"] == pytest.approx(1.0)
    assert led.table()[1]["drop"] == pytest.approx(T - CRITICAL)
    assert led.settings["detector_lead"] == 2
    with pytest.raises(ValueError, match="detector_lead"):
        evaluate_attack(env, model, LateFlagDetector(), k=1, episodes=1, detector_lead=0.5)


class EarlyFlagDetector(Detector):
    """Scores the frame two steps before the critical step highest (a detector that sees it coming)."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        t = np.round(np.asarray(frames)[:, 0] * T).astype(int)
        return (t == CRITICAL - 2).astype(np.float64)


def test_a_negative_lead_attacks_after_the_top_frame() -> None:
    env = CriticalCorridor()
    clean = run_episode(env, Victim(always_zero(env)), seed=0)
    assert detector_steps(clean, 1, EarlyFlagDetector()) == [CRITICAL - 2]
    assert detector_steps(clean, 1, EarlyFlagDetector(), lead=-2) == [CRITICAL]
    # frames closer than -lead to the end are never chosen: the attacked steps stay inside the episode
    assert detector_steps(clean, T - 3, EarlyFlagDetector(), lead=-3) == list(range(3, T))
    with pytest.raises(EpisodeTooShortError, match="lead=-3"):
        detector_steps(clean, T - 2, EarlyFlagDetector(), lead=-3)
    assert detector_steps(clean, T, EarlyFlagDetector(), lead=-3, allow_short=True) == list(range(3, T))
    model = always_zero(env)
    after = evaluate_attack(
        env, model, EarlyFlagDetector(), k=1, episodes=2, methods=["detector"], detector_lead=-2
    )
    assert after.table()[1]["drop"] == pytest.approx(T - CRITICAL)


def test_choose_lead_finds_the_offset_of_a_shifted_detector() -> None:
    env = CriticalCorridor()
    model = always_zero(env)
    for det, want in ((LateFlagDetector(), 2), (EarlyFlagDetector(), -2), (FlagDetector(), 0)):
        got = choose_lead(env, model, det, k=1, episodes=2, seed=100, leads=(-3, -2, -1, 0, 1, 2, 3))
        assert got.lead == want, (type(det).__name__, got.mean_drops())
        assert got.mean_drops()[want] == pytest.approx(T - CRITICAL)
        assert got.seeds == [100, 101] and set(got.drops) == {-3, -2, -1, 0, 1, 2, 3}
    # ties go to the first lead listed: a flat detector's top-1 is step 0 whatever the lead
    flat = choose_lead(env, model, FlagDetector(invert=True), k=1, episodes=1, leads=(1, 0))
    assert flat.to_dict()["lead"] == 1 and set(flat.to_dict()["mean_drops"]) == {"1", "0"}
    with pytest.raises(ValueError, match="distinct"):
        choose_lead(env, model, FlagDetector(), k=1, episodes=1, leads=(0, 0))


class ForgivingCorridor(CriticalCorridor):
    """Every action earns 1: no perturbation can lower the return."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {}


def test_choose_lead_warns_when_no_lead_lowers_the_return() -> None:
    env = ForgivingCorridor()
    with pytest.warns(RuntimeWarning, match="at no lead in \\[0, 1\\] did the detector's top-1 attack lower"):
        got = choose_lead(env, always_zero(env), FlagDetector(), k=1, episodes=2, leads=(0, 1))
    assert got.lead == 0 and got.mean_drops() == {0: 0.0, 1: 0.0}


def test_spaced_top_k_keeps_the_gap_and_fills_when_it_cannot() -> None:
    scores = np.array([0, 1, 2, 9, 8, 7, 1, 0, 5, 0], dtype=float)
    assert spaced_top_k(scores, 3) == [3, 4, 5]  # the plain top-3: one run of neighbours
    assert spaced_top_k(scores, 3, 1) == [3, 4, 5]
    # greedy by score: 3 (9); 4 and 5 are within 2; 8 (5); then 2, 1, 6 are blocked; 0 is 3 away from 3
    assert spaced_top_k(scores, 3, 3) == [0, 3, 8]
    assert spaced_top_k(scores, 2, 3) == [3, 8]
    # only two steps fit 3 apart in 5: the third is the next best by score regardless of the gap
    assert spaced_top_k(np.arange(5.0), 3, 3) == [1, 3, 4]
    with pytest.raises(ValueError, match="k must be between 1 and 5"):
        spaced_top_k(np.arange(5.0), 6, 2)


class BumpDetector(Detector):
    """Scores peak at the critical step and fall off linearly around it (a smooth detector: its plain top-k
    are the critical step's neighbours)."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        t = np.round(np.asarray(frames, dtype=np.float64)[:, 0] * T)
        return -np.abs(t - CRITICAL)


def test_detector_spaced_steps_and_evaluation() -> None:
    env = CriticalCorridor()
    victim = Victim(always_zero(env))
    clean = run_episode(env, victim, seed=0)
    assert detector_steps(clean, 3, BumpDetector()) == [4, 5, 6]
    assert detector_steps(clean, 2, BumpDetector(), min_gap=3) == [2, 5]  # 5; 3, 4, 6, 7 are within 2
    assert detector_steps(clean, 3, BumpDetector(), min_gap=3) == [2, 4, 5]  # no third fits: the next best
    assert detector_steps(clean, 2, BumpDetector(), min_gap=3, lead=2) == [0, 3]  # frames 5 and 2, led by 2
    with pytest.raises(ValueError, match="min_gap must be an integer >= 1"):
        detector_steps(clean, 2, BumpDetector(), min_gap=0)
    # plain top-2 = steps 4, 5: step 4 costs its reward, the attack at 5 ends the episode (return 4);
    # spaced 3 apart = steps 2, 5: the same cost here, but the steps are not neighbours
    report = evaluate_attack(
        env,
        victim,
        BumpDetector(),
        k=2,
        episodes=3,
        methods=["detector", "detector-spaced"],
        detector_min_gap=3,
    )
    assert report.returns["detector"].tolist() == [4.0] * 3
    assert report.returns["detector-spaced"].tolist() == [4.0] * 3
    assert (report.n_perturbed["detector-spaced"] == 2).all()
    assert report.settings["detector_min_gap"] == 3 and report.settings["detector_spaced_unmet"] == 0
    # k = 3 steps 5 apart do not fit in 8 steps: attacked anyway (next best), counted and warned about
    with pytest.warns(RuntimeWarning, match="3 of 3 episodes were too short"):
        short = evaluate_attack(env, victim, BumpDetector(), k=3, episodes=3, methods=["detector-spaced"])
    assert short.settings["detector_spaced_unmet"] == 3 and (short.n_planned["detector-spaced"] == 3).all()
    with pytest.raises(ValueError, match="detector_min_gap must be an integer >= 2"):
        evaluate_attack(
            env, victim, BumpDetector(), k=1, episodes=1, methods=["detector-spaced"], detector_min_gap=1
        )
    with pytest.raises(ValueError, match="'detector-spaced' method needs a detector"):
        evaluate_attack(env, victim, None, k=1, episodes=1, methods=["detector-spaced"])


# ---- online protocol: the evaluation routine --------------------------------------------------------
def test_online_delay_attacks_after_the_step_that_passed_the_threshold() -> None:
    from critwrap.attack import evaluate_online_attack

    # the early detector flags the frame two steps before the critical one: with delay=2 the online attack
    # hits the critical step (wrapper and evaluation alike), without it the step it flags
    for delay, step in ((0, CRITICAL - 2), (2, CRITICAL)):
        env = CriticalAttack(
            CriticalCorridor(), detector=EarlyFlagDetector(), k=1, threshold=0.5, seed=0, delay=delay
        )
        _, info = env.reset(seed=0)
        assert info["attack"]["score"] == (float("-inf") if delay else 0.0)  # no frame `delay` steps ago yet
        for _ in range(T):
            *_, term, trunc, info = env.step(0)
            if term or trunc:
                break
        assert env.episode_attacked_steps == [step]
    model = always_zero(CriticalCorridor())
    kw = dict(k=1, episodes=2, threshold=0.5, methods=["detector"])
    late = evaluate_online_attack(CriticalCorridor(), model, EarlyFlagDetector(), delay=2, **kw)
    early = evaluate_online_attack(CriticalCorridor(), model, EarlyFlagDetector(), **kw)
    assert late.table()[1]["drop"] == pytest.approx(T - CRITICAL) and late.settings["delay"] == 2
    assert early.table()[1]["drop"] == pytest.approx(1.0) and early.settings["delay"] == 0
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="delay must be an integer >= 0"):
            evaluate_online_attack(CriticalCorridor(), model, EarlyFlagDetector(), delay=bad, **kw)
        with pytest.raises(ValueError, match="delay must be an integer >= 0"):
            CriticalAttack(CriticalCorridor(), detector=EarlyFlagDetector(), delay=bad)


def test_evaluate_online_attack_detector_beats_random_at_the_same_count() -> None:
    from critwrap.attack import evaluate_online_attack

    env = CriticalCorridor()
    model = always_zero(env)
    report = evaluate_online_attack(
        env, model, FlagDetector(), k=1, episodes=12, threshold=0.5, methods=["detector", "random"]
    )
    rows = {r["method"]: r for r in report.table()}
    assert report.settings["protocol"] == "online" and report.settings["calibration_seeds"] == []
    assert rows["detector"]["drop"] == pytest.approx(T - CRITICAL)
    assert (report.n_perturbed["detector"] == 1).all() and rows["detector"]["attacked_episodes"] == 12
    # random attacks as many steps as the detector did in the same seed, at uninformed times
    assert (report.n_perturbed["random"] == report.n_perturbed["detector"]).all()
    assert rows["random"]["drop"] < rows["detector"]["drop"]


def test_evaluate_online_attack_calibrates_thresholds_on_disjoint_seeds() -> None:
    from critwrap.attack import calibrate_threshold, evaluate_online_attack

    env = CriticalCorridor()
    report = evaluate_online_attack(
        env, always_zero(env), FlagDetector(), k=1, episodes=3, seed=5, calibration_episodes=4
    )
    assert report.settings["calibration_seeds"] == [8, 9, 10, 11]
    assert 0.0 < report.settings["threshold"] <= 1.0  # only the flagged step passes
    assert report.settings["rate"] == pytest.approx(1 / T)
    assert report.table()[1]["drop"] == pytest.approx(T - CRITICAL)
    assert report.settings["victim_threshold"] is not None and report.n_perturbed["victim"].max() <= 1
    assert report.settings["detector_flat"] is False
    with pytest.warns(RuntimeWarning, match="nearly constant"):
        flat = evaluate_online_attack(
            env, always_zero(env), NearlyFlatDetector(), k=1, episodes=1, seed=5, methods=["detector"]
        )
    assert flat.settings["detector_flat"] is True
    given = evaluate_online_attack(env, always_zero(env), FlagDetector(), k=1, episodes=1, threshold=0.5)
    assert "detector_flat" not in given.settings  # nothing calibrated, nothing checked
    assert calibrate_threshold([np.zeros(3), np.ones(1)], rate=2.0) == float("-inf")
    with pytest.raises(ValueError, match="rate"):
        calibrate_threshold([np.zeros(3)], rate=0.0)


def test_evaluate_online_attack_counts_only_what_was_perturbed() -> None:
    from critwrap.attack import evaluate_online_attack

    env = CriticalCorridor()
    model = always_zero(env)
    never = evaluate_online_attack(
        env, model, FlagDetector(), k=2, episodes=3, threshold=2.0, methods=["detector", "random"]
    )
    rows = {r["method"]: r for r in never.table()}
    assert rows["detector"]["attacked_episodes"] == 0 and rows["detector"]["drop"] == 0.0
    assert rows["random"]["mean_perturbed_steps"] == 0.0  # matched to the detector's zero attacks
    # the budget holds, and the attacks follow the episode as it runs (everything but the flag passes)
    every = evaluate_online_attack(
        env, model, FlagDetector(invert=True), k=3, episodes=2, threshold=0.5, methods=["detector"]
    )
    assert every.n_perturbed["detector"].tolist() == [3, 3]
    # nothing is replayed, so a non-deterministic env is fine for the online protocol
    noisy = CriticalCorridor(noisy=True)
    ok = evaluate_online_attack(noisy, always_zero(noisy), FlagDetector(), k=1, episodes=2, threshold=0.5)
    assert ok.table()[1]["drop"] == pytest.approx(T - CRITICAL)


def test_evaluate_online_attack_bad_input_and_prefix_scores() -> None:
    from critwrap.attack import evaluate_online_attack, prefix_scores

    env = CriticalCorridor()
    model = always_zero(env)
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate_online_attack(env, model, FlagDetector(), k=0, episodes=1)
    with pytest.raises(ValueError, match="methods"):
        evaluate_online_attack(env, model, FlagDetector(), k=1, episodes=1, methods=["oracle"])
    with pytest.raises(ValueError, match="needs a detector"):
        evaluate_online_attack(env, model, None, k=1, episodes=1)
    with pytest.raises(ValueError, match="calibration_episodes"):
        evaluate_online_attack(env, model, FlagDetector(), k=1, episodes=1, calibration_episodes=0)

    class CountingDetector(Detector):
        registry_name = ""

        def score(self, frames: np.ndarray) -> np.ndarray:
            return np.full(len(frames), float(len(frames)))

    frames = [np.zeros(3, np.float32)] * 5
    assert prefix_scores(CountingDetector(), frames).tolist() == [1, 2, 3, 4, 5]  # never sees the future
    assert prefix_scores(CountingDetector(), frames, window=2).tolist() == [1, 2, 2, 2, 2]


class ImageOnlyDetector(Detector):
    """Refuses frames that are not (T, H, W, C) images, as a DSI trained on pixels does."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        if np.asarray(frames).ndim != 4:
            raise ValueError(f"expected (T, H, W, C) frames, got shape {np.asarray(frames).shape}")
        return np.zeros(len(frames))


class ColumnDetector(Detector):
    """Returns (T, 1) scores instead of (T,)."""

    def score(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros((len(frames), 1))


def test_a_detector_for_other_frames_fails_with_a_clear_error_in_every_protocol() -> None:
    from critwrap.attack import evaluate_online_attack

    env = CriticalCorridor()
    model = always_zero(env)
    msg = r"ImageOnlyDetector cannot score this env's frames \(\d+ frames of shape \(3,\), dtype float32\)"
    with pytest.raises(ValueError, match=msg):
        evaluate_attack(env, model, ImageOnlyDetector(), k=1, episodes=1)
    with pytest.raises(ValueError, match=msg):
        choose_lead(env, model, ImageOnlyDetector(), k=1, leads=[0, 1], episodes=1)
    with pytest.raises(ValueError, match=msg):
        evaluate_online_attack(env, model, ImageOnlyDetector(), k=1, episodes=1, threshold=0.5)
    wrapped = CriticalAttack(CriticalCorridor(), ImageOnlyDetector(), k=1, threshold=0.5, victim=model)
    with pytest.raises(ValueError, match=msg):  # the wrapper scores the first frame at reset
        wrapped.reset(seed=0)
    with pytest.raises(ValueError, match=r"returned scores of shape \(\d+, 1\)"):
        evaluate_attack(env, model, ColumnDetector(), k=1, episodes=1, methods=["detector"])


# ------------------------------------------------------------------------- AttackEvalCallback
def test_attack_eval_callback_logs_the_replay_attack_of_the_policy_in_training(tmp_path: Any) -> None:
    import csv
    import json

    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    from critwrap.callbacks.attack import AttackEvalCallback

    # learning rate 0: the policy stays "always 0", so the known answer holds at every evaluation
    model = PPO("MlpPolicy", CriticalCorridor(), policy_kwargs={"net_arch": [8]}, n_steps=64, batch_size=64,
                n_epochs=1, learning_rate=0.0, seed=0, device="cpu")  # fmt: skip
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.tensor([3.0, 0.0, 0.0]))
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    cb = AttackEvalCallback(
        FlagDetector(), env=CriticalCorridor(), k=1, episodes=6, eval_freq=64, log_path=tmp_path,
        win_threshold=T - 1.5,
    )  # fmt: skip
    model.learn(128, callback=cb)
    assert [h["timesteps"] for h in cb.history] == [64, 128]  # one env: one call per step
    for h in cb.history:
        rows = {r["method"]: r for r in h["table"]}
        assert rows["clean"]["mean_return"] == T
        assert (
            rows["detector"]["drop"] == pytest.approx(T - CRITICAL) and rows["detector"]["flipped_wins"] == 6
        )
        assert rows["random"]["drop"] < rows["detector"]["drop"]
        assert h["detector_to_random"] == pytest.approx(rows["detector"]["drop"] / rows["random"]["drop"])
    # the same numbers as evaluate_attack called directly on the same policy and seeds
    direct = evaluate_attack(
        CriticalCorridor(), model, FlagDetector(), k=1, episodes=6, seed=0, methods=["detector", "random"]
    )
    assert [r["mean_return"] for r in direct.table()] == [r["mean_return"] for r in cb.history[-1]["table"]]
    # a sampling victim: the same numbers as evaluate_attack with Victim(model, sample=True, sample_seed=seed)
    sampled = AttackEvalCallback(
        FlagDetector(), env=CriticalCorridor(), k=1, episodes=6, eval_freq=64, sample=True
    )
    model.learn(64, callback=sampled)
    ref = evaluate_attack(CriticalCorridor(), Victim(model, sample=True, sample_seed=0), FlagDetector(), k=1,
                          episodes=6, seed=0, methods=["detector", "random"])  # fmt: skip
    assert [r["mean_return"] for r in ref.table()] == [r["mean_return"] for r in sampled.history[-1]["table"]]
    assert ref.table()[0]["mean_return"] < T  # it did sample: some clean episodes lose a step
    lines = (tmp_path / "attack_eval.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["table"][0]["action_changed_rate"] is None  # strict JSON
    with open(tmp_path / "log" / "progress.csv") as fh:
        logged = list(csv.DictReader(fh))
    drops = [float(r["attack/detector_drop"]) for r in logged if r.get("attack/detector_drop")]
    assert drops[:2] == [pytest.approx(T - CRITICAL)] * 2  # (a third row: the sampling callback)
    assert {"attack/clean_return", "attack/random_drop", "attack/detector_to_random"} <= set(logged[0])


def test_attack_eval_callback_bad_input() -> None:
    from critwrap.callbacks.attack import AttackEvalCallback

    with pytest.raises(ValueError, match="needs a detector"):
        AttackEvalCallback(None, env="CartPole-v1")
    with pytest.raises(ValueError, match="needs env="):
        AttackEvalCallback(FlagDetector())
    with pytest.raises(ValueError, match="k must be a positive integer"):
        AttackEvalCallback(FlagDetector(), env="CartPole-v1", k=0)
    with pytest.raises(ValueError, match="methods must be"):
        AttackEvalCallback(FlagDetector(), env="CartPole-v1", methods=["detektor"])
    AttackEvalCallback(None, env="CartPole-v1", methods="random,victim")  # no detector needed
    with pytest.raises(ValueError, match="needs epsilon"):
        AttackEvalCallback(FlagDetector(), env="CartPole-v1", perturbation="pgd")
    with pytest.raises(ValueError, match="unknown perturbation"):
        AttackEvalCallback(FlagDetector(), env="CartPole-v1", perturbation="swap")

    class CorridorOnly(Detector):
        def score(self, frames: np.ndarray) -> np.ndarray:
            if np.asarray(frames).shape[1:] != (3,):
                raise ValueError(f"trained on (3,) observations, got {np.asarray(frames).shape[1:]}")
            return np.zeros(len(frames))

    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    cb = AttackEvalCallback(CorridorOnly(), env="CartPole-v1", eval_freq=10_000)
    with pytest.raises(ValueError, match="cannot score this env's frames"):
        model.learn(64, callback=cb)  # at the start of training, not at the first evaluation
    assert model.num_timesteps == 0


def test_rendered_frames_are_resized_and_parsed_from_the_cli_spelling() -> None:
    from critwrap.attack.protocols import RenderedFrames, parse_size
    from critwrap.zoo.attack import needs_render, parse_frames

    assert parse_size(84) == parse_size("84") == (84, 84) and parse_size("84x126") == (84, 126)
    for bad in ("x", "0", "84x", (1, 2, 3), True):
        with pytest.raises(ValueError, match="frame size"):
            parse_size(bad)  # type: ignore[arg-type]
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    src = parse_frames("render:42x63")
    assert isinstance(src, RenderedFrames) and needs_render(src) and needs_render("render")
    assert not needs_render("observations")
    frame = src(env, obs)
    assert frame.shape == (42, 63, 3) and frame.dtype == np.uint8
    assert RenderedFrames()(env, obs).shape == (400, 600, 3)
    plain = gym.make("CartPole-v1")
    plain.reset(seed=0)
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        RenderedFrames(84)(plain, obs)
