"""SubgoalReward and its VecEnv twin: bonus timing, shaping invariance on an MDP solved exactly, subgoal
extraction from a detector, make() forms, the batched VecEnv path, hot swap, bad input and the zoo."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import critwrap
from critwrap.detectors.base import Detector
from critwrap.episodes import Episode, EpisodeStore
from critwrap.wrappers.subgoal import SubgoalReward, extract_subgoals, pixel_encoder

GAMMA = 0.9


# ---- a corridor MDP with one-hot observations ------------------------------------------------------


class Corridor(gym.Env[np.ndarray, int]):
    """Cells 0..n-1, one-hot observations; action 0 left, 1 right; the goal cell ends the episode, reward 1."""

    def __init__(self, n: int = 7, start: int = 3, goal: int = 6, random_start: bool = False) -> None:
        self.n, self.start, self.goal, self.random_start = n, start, goal, random_start
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = start

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n, np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, self.goal)) if self.random_start else self.start
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos = int(np.clip(self.pos + (1 if int(action) == 1 else -1), 0, self.n - 1))
        terminated = self.pos == self.goal
        return self._obs(), float(terminated), terminated, False, {}


def one_hot(*cells: int, n: int = 7) -> np.ndarray:
    out = np.zeros((len(cells), n), np.float32)
    out[np.arange(len(cells)), list(cells)] = 1.0
    return out


class CountingEncoder:
    """The identity encoder, counting its calls and batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.batches.append(len(frames))
        return np.asarray(frames, np.float32).reshape(len(frames), -1)


def corridor_wrapper(**kwargs: Any) -> SubgoalReward:
    args: dict[str, Any] = {
        "subgoals": one_hot(0, 5),
        "encoder": pixel_encoder,
        "threshold": 0.99,
        "gamma": GAMMA,
    }
    args.update(kwargs)
    return SubgoalReward(Corridor(), **args)


# ---- bonus timing -------------------------------------------------------------------------------------


def test_plain_bonus_pays_once_at_the_step_the_subgoal_is_reached_and_again_after_reset() -> None:
    env = corridor_wrapper(potential_based=False, bonus=0.5, weights=[1.0, 2.0])
    env.reset(seed=0)
    assert env.reached.tolist() == [False, False]
    # start 3: left, left, left (reach 0), right, left (0 again: no pay), right x4 (reach 5), right (goal)
    actions = [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1]
    rewards, originals, new = [], [], []
    for a in actions:
        _obs, r, terminated, _truncated, info = env.step(a)
        rewards.append(r)
        originals.append(info["original_reward"])
        new.append(info["new_subgoals"])
    assert terminated
    assert new == [[], [], [0], [], [], [], [], [], [], [1], []]
    expected = [0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]  # goal's reward 1 at the end
    assert rewards == pytest.approx(expected)
    assert originals == [0.0] * 10 + [1.0]
    assert info["subgoals_reached"] == 2 and info["subgoal_bonus"] == 0.0
    # a new episode pays again
    env.reset()
    assert env.reached.tolist() == [False, False]
    for a in (0, 0):
        env.step(a)
    _, r, *_, info = env.step(0)
    assert r == pytest.approx(0.5) and info["new_subgoals"] == [0]


def test_potential_bonus_timing_and_phi_of_terminal_states_is_zero() -> None:
    env = corridor_wrapper(bonus=1.0, weights=[1.0, 2.0])
    env.reset(seed=0)
    actions = [0, 0, 0, 1, 1, 1, 1, 1, 1]  # reach 0 at step 2, 5 at step 7, goal at step 8
    bonuses, phis = [], [env.potential]
    for a in actions:
        _, _r, terminated, _, info = env.step(a)
        bonuses.append(info["subgoal_bonus"])
        phis.append(env.potential)
    assert terminated
    assert phis == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0]
    # gamma * phi(s') - phi(s), except at termination where phi(s') counts as 0
    expected = [GAMMA * phis[t + 1] - phis[t] for t in range(len(actions) - 1)] + [-phis[-2]]
    assert bonuses == pytest.approx(expected)
    assert bonuses[2] == pytest.approx(GAMMA * 1.0) and bonuses[7] == pytest.approx(GAMMA * 3.0 - 1.0)
    # the discounted bonuses of a terminated episode sum to -phi(s_0) = 0
    assert sum(GAMMA**t * b for t, b in enumerate(bonuses)) == pytest.approx(0.0, abs=1e-12)


def test_a_subgoal_matched_by_the_first_observation_is_reached_without_bonus() -> None:
    env = corridor_wrapper(subgoals=one_hot(3), potential_based=False)
    env.reset(seed=0)
    assert env.reached.tolist() == [True]
    _, r, *_, _info = env.step(0)
    _, r2, *_, info2 = env.step(1)  # back on the start cell: already reached
    assert (r, r2) == (0.0, 0.0) and info2["new_subgoals"] == []


# ---- shaping invariance on an MDP solved exactly --------------------------------------------------------


def _model(make_env: Any) -> tuple[list[Any], dict[Any, list[tuple[float, bool, Any]]]]:
    """Explore the wrapped env by replaying action paths from reset; states are (cell, reached subgoals).

    Returns the states and, per state, (reward, terminated, next state) for each action: the exact model
    of the (deterministic) wrapped env, as its step() computes it.
    """
    env = make_env()
    n_actions = env.action_space.n

    def key(e: SubgoalReward) -> Any:
        return (e.unwrapped.pos, tuple(e.reached.tolist()))

    env.reset(seed=0)
    start = key(env)
    paths = {start: []}
    model: dict[Any, list[tuple[float, bool, Any]]] = {}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        outcomes = []
        for a in range(n_actions):
            env.reset(seed=0)
            for b in paths[state]:
                env.step(b)
            assert key(env) == state
            _, r, terminated, _, _ = env.step(a)
            nxt = key(env)
            outcomes.append((float(r), bool(terminated), nxt))
            if not terminated and nxt not in paths:
                paths[nxt] = [*paths[state], a]
                queue.append(nxt)
        model[state] = outcomes
    return [start, *[s for s in paths if s != start]], model


def _q_values(model: dict[Any, list[tuple[float, bool, Any]]], gamma: float) -> dict[Any, np.ndarray]:
    v = dict.fromkeys(model, 0.0)
    for _ in range(2000):
        q = {s: np.array([r + gamma * (0.0 if t else v[n]) for r, t, n in outs]) for s, outs in model.items()}
        new_v = {s: float(q[s].max()) for s in model}
        if max(abs(new_v[s] - v[s]) for s in model) < 1e-13:
            return q
        v = new_v
    raise AssertionError("value iteration did not converge")


def _optimal_actions(q: np.ndarray) -> set[int]:
    return {int(a) for a in np.flatnonzero(q >= q.max() - 1e-9)}


def test_potential_based_shaping_keeps_the_optimal_policy_of_an_exactly_solved_mdp() -> None:
    kwargs = {"weights": [1.0, 2.0], "bonus": 1.0}
    states, original = _model(lambda: corridor_wrapper(bonus=0.0))  # bonus 0: the task's own reward
    shaped_states, shaped = _model(lambda: corridor_wrapper(**kwargs))
    assert set(states) == set(shaped_states) and len(states) > 10  # cells x reached subsets
    q0, q1 = _q_values(original, GAMMA), _q_values(shaped, GAMMA)
    env = corridor_wrapper(**kwargs)
    for s in states:
        assert _optimal_actions(q0[s]) == _optimal_actions(q1[s]), s
        # Ng et al.: Q_shaped(s, a) = Q(s, a) - phi(s)
        phi = 1.0 * np.dot(np.array(s[1], float), [1.0, 2.0])
        np.testing.assert_allclose(q1[s], q0[s] - phi, atol=1e-9)
    env.reset(seed=0)
    assert _optimal_actions(q0[states[0]]) == {1}  # go right, to the goal


def test_a_plain_bonus_can_change_the_optimal_policy() -> None:
    """The check above is not vacuous: without the potential form, the detour to subgoal 0 pays."""
    states, original = _model(lambda: corridor_wrapper(bonus=0.0))
    _, plain = _model(lambda: corridor_wrapper(potential_based=False, weights=[1.0, 0.0]))
    q0, q1 = _q_values(original, GAMMA), _q_values(plain, GAMMA)
    start = states[0]
    assert _optimal_actions(q0[start]) == {1}
    assert _optimal_actions(q1[start]) == {0}  # left, towards the bonus


# ---- subgoals from a detector -------------------------------------------------------------------------


class BrightnessDetector(Detector):
    """Scores frames by mean brightness; embeds them as pixels (deterministic, for tests)."""

    registry_name = ""

    def score(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, np.float64).reshape(len(frames), -1).mean(1)
        return f / max(float(f.max()), 1e-9)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return pixel_encoder(frames)


def _episodes(n: int = 4, shape: tuple[int, ...] = (6,), seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(rng.integers(0, 200, (8, *shape)).astype(np.uint8), label=i % 2, metadata={"i": i})
        for i in range(n)
    ]


def test_subgoals_are_the_top_k_steps_of_successful_episodes_with_duplicates_merged() -> None:
    eps = _episodes()
    det = BrightnessDetector()
    emb, center = extract_subgoals(det, eps, pixel_encoder, k=2, threshold=0.9999, center=False)
    assert center is None
    expected = [ep.frames[np.argsort(-det.score(ep.frames))[:2]] for ep in eps if ep.label == 1]
    want = pixel_encoder(np.concatenate(expected))
    assert len(emb) == 4
    assert {tuple(r) for r in emb} == {tuple(r) for r in want}
    # a successful episode repeated: its subgoals are merged, not doubled
    emb2, _ = extract_subgoals(det, [*eps, eps[1]], pixel_encoder, k=2, threshold=0.9999, center=False)
    assert len(emb2) == 4
    # centering: the mean embedding of every frame of every episode
    _, center = extract_subgoals(det, eps, pixel_encoder, k=2)
    np.testing.assert_allclose(
        center, pixel_encoder(np.concatenate([e.frames for e in eps])).mean(0), rtol=1e-5
    )


def test_states_that_failed_episodes_also_reach_are_not_subgoals() -> None:
    """Success visits cells 3, 4, 5 (4 and 5 scored highest); a failure also visits 4: only 5 is kept."""

    class CellScore(Detector):
        def score(self, frames: np.ndarray) -> np.ndarray:
            return np.argmax(frames, 1) / 10.0

        def embed(self, frames: np.ndarray) -> np.ndarray:
            return np.asarray(frames, np.float32)

    eps = [Episode(one_hot(3, 4, 5), label=1), Episode(one_hot(3, 4, 3), label=0)]
    emb, _ = extract_subgoals(
        CellScore(), eps, pixel_encoder, k=2, threshold=0.99, center=False, exclude_failed=True
    )
    np.testing.assert_array_equal(emb, one_hot(5))
    emb, _ = extract_subgoals(CellScore(), eps, pixel_encoder, k=2, threshold=0.99, center=False)
    np.testing.assert_array_equal(emb, one_hot(5, 4))  # in decreasing score
    with pytest.raises(ValueError, match="also reached in a failed episode"):
        extract_subgoals(
            CellScore(),
            [eps[1], Episode(one_hot(4, 3), label=1)],
            pixel_encoder,
            k=2,
            threshold=0.99,
            exclude_failed=True,
        )
    env = SubgoalReward(Corridor(), detector=CellScore(), episodes=eps, k=2, exclude_failed=True)
    assert len(env.subgoal_set) == 1


def test_wrapper_from_a_saved_detector_and_an_episode_store(tmp_path: Path) -> None:
    """Episodes recorded in the env, a (random) detector saved to disk, the pixel encoder by import path."""
    from critwrap.detectors.baselines import RandomDetector

    store = EpisodeStore(tmp_path / "eps")
    env = critwrap.make("MiniGrid-Empty-5x5-v0")
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for _ in range(4):
            obs, *_ = env.step(2)
            frames.append(obs)
        store.append(Episode(np.stack(frames), label=int(seed != 1)))
    RandomDetector(seed=0).save(tmp_path / "det")
    wrapped = critwrap.make(
        "MiniGrid-Empty-5x5-v0",
        wrappers=[
            (
                "subgoal-reward",
                {
                    "detector": str(tmp_path / "det"),
                    "episodes": str(tmp_path / "eps"),
                    "encoder": "critwrap.wrappers.subgoal:pixel_encoder",
                    "k": 2,
                    "threshold": 0.999,
                },
            )
        ],
    )
    assert isinstance(wrapped, SubgoalReward)
    assert 1 <= len(wrapped.subgoal_set) <= 4  # 2 successful episodes x top 2, duplicates merged
    obs, _ = wrapped.reset(seed=0)  # episode 0's first view is 1 of its 5 frames
    assert wrapped.subgoal_set.center is not None


def test_dsi_detector_embeds_and_pays_in_keycorridor(tiny_dsi: tuple[Path, Path]) -> None:
    """A tiny DSI fitted on GridWorld episodes at the env's own view size gives subgoals and rewards."""
    det, store = tiny_dsi
    env = critwrap.make(
        "KeyCorridor", wrappers=[(SubgoalReward, {"detector": det, "episodes": store, "k": 2})]
    )
    assert env.subgoal_set.dim == 8 and len(env.subgoal_set) >= 1
    env.reset(seed=0)
    total = 0.0
    for _ in range(5):
        _obs, r, _term, _trunc, info = env.step(env.action_space.sample())
        assert r == pytest.approx(info["original_reward"] + info["subgoal_bonus"])
        total += info["subgoal_bonus"]
    assert np.isfinite(total)


@pytest.fixture(scope="module")
def tiny_dsi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny DSI fitted (1 epoch) on 4 GridWorld episodes rendered at KeyCorridor's 56x56 view; its store."""
    from critwrap.detectors.dsi import DSI
    from critwrap.gridworld import generate_gridworld

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("tiny_dsi")
    store = generate_gridworld(4, tmp / "gw", seed=0, tile_size=8, progress=False)
    det = DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8, batch_size=4, num_threads=1)
    det.fit(store, epochs=1, progress=False, seed=0)
    return det.save(tmp / "dsi"), tmp / "gw"


# ---- bad input --------------------------------------------------------------------------------------------


def test_a_detector_for_other_frames_is_refused_at_construction(tmp_path: Path) -> None:
    from critwrap.detectors.dsi import DSI
    from critwrap.gridworld import generate_gridworld

    torch.set_num_threads(1)
    eps = generate_gridworld(2, seed=0, tile_size=4, progress=False)  # 28x28 frames
    det = DSI(channels=(4, 8, 8, 8, 8), lstm_hidden=8, num_threads=1).fit(eps, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"cannot embed this env's observations of shape \(56, 56, 3\)"):
        critwrap.make("KeyCorridor", wrappers=[(SubgoalReward, {"detector": det, "episodes": eps})])
    # the episodes' frames must have the env's shape too
    with pytest.raises(ValueError, match=r"frames of shape \(28, 28, 3\) but the env's observations"):
        critwrap.make(
            "KeyCorridor",
            wrappers=[(SubgoalReward, {"detector": det, "episodes": eps, "encoder": pixel_encoder})],
        )


def test_empty_subgoal_sets_and_missing_pieces_are_refused() -> None:
    with pytest.raises(ValueError, match="subgoal set is empty"):
        corridor_wrapper(subgoals=np.zeros((0, 7), np.float32))
    with pytest.raises(ValueError, match="subgoal set is empty"):
        corridor_wrapper(subgoals=None)
    with pytest.raises(ValueError, match="none of the 2 episodes is successful"):
        corridor_wrapper(
            subgoals=None, detector=BrightnessDetector(), episodes=[Episode(one_hot(1, 2), label=0)] * 2
        )
    with pytest.raises(ValueError, match="no detector"):
        corridor_wrapper(episodes=[Episode(one_hot(1, 2), label=1)])
    with pytest.raises(ValueError, match=r"a detector .* or an encoder"):
        SubgoalReward(Corridor(), subgoals=one_hot(1))
    with pytest.raises(ValueError, match=r"embeddings \(K, 7\)"):
        corridor_wrapper(subgoals=np.ones((2, 3)))
    with pytest.raises(ValueError, match="Box"):
        SubgoalReward(critwrap.make("KeyCorridor", preprocess=False), subgoals=[[1.0]], encoder=pixel_encoder)
    with pytest.raises(ValueError, match="threshold"):
        corridor_wrapper(threshold=1.5)


# ---- make() forms ------------------------------------------------------------------------------------------


def _rewards(env: gym.Env, seed: int, actions: list[int]) -> list[float]:
    env.reset(seed=seed)
    out = []
    for a in actions:
        _, r, terminated, truncated, _ = env.step(a)
        out.append(float(r))
        if terminated or truncated:
            env.reset()
    return out


def test_make_forms_and_spec_rebuild() -> None:
    probe = critwrap.make("MiniGrid-Empty-5x5-v0")
    probe.reset(seed=0)
    views = [probe.step(a)[0] for a in (1, 2, 2)]
    kwargs = {
        "subgoals": np.stack(views),
        "encoder": pixel_encoder,
        "threshold": 0.999,
        "potential_based": False,
    }
    a = critwrap.make("MiniGrid-Empty-5x5-v0", wrappers=[SubgoalReward.wrapper_spec(**kwargs)])
    b = gym.make("critwrap/Empty-5x5", wrappers=[(SubgoalReward, kwargs)])
    c = gym.make(a.spec)
    assert a.spec.additional_wrappers[-1].name == "SubgoalReward"
    actions = [1, 2, 2, 0, 0, 2, 1, 1, 2, 2]
    ra = _rewards(a, 0, actions)
    assert ra[:3] == [1.0, 1.0, 1.0]  # the three recorded views, in order, one bonus each
    assert ra == _rewards(b, 0, actions) == _rewards(c, 0, actions)


# ---- the VecEnv twin -------------------------------------------------------------------------------------


def _corridor_fn(seed_env: bool = True) -> Any:
    def make() -> gym.Env:
        return gym.wrappers.TimeLimit(Corridor(random_start=True), max_episode_steps=6)

    return make


@pytest.mark.parametrize("potential_based", [True, False])
def test_vec_twin_matches_per_env_wrappers_with_one_encoder_call_per_step(potential_based: bool) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.vec import SubgoalRewardVecEnv

    n, steps = 3, 60
    kwargs = {"subgoals": one_hot(0, 2, 5), "threshold": 0.99, "gamma": GAMMA, "weights": [1.0, 0.5, 2.0]}
    kwargs["potential_based"] = potential_based
    per_env_encoders = [CountingEncoder() for _ in range(n)]
    per_env = DummyVecEnv(
        [lambda e=e: SubgoalReward(_corridor_fn()(), encoder=e, **kwargs) for e in per_env_encoders]
    )
    vec_encoder = CountingEncoder()
    batched = SubgoalRewardVecEnv(DummyVecEnv([_corridor_fn()] * n), encoder=vec_encoder, **kwargs)
    per_env.seed(5)
    batched.seed(5)
    for e in per_env_encoders:
        e.batches.clear()  # construction embeds a probe observation and the subgoals
    obs_a, obs_b = per_env.reset(), batched.reset()
    np.testing.assert_array_equal(obs_a, obs_b)
    vec_encoder.batches.clear()
    rng = np.random.default_rng(0)
    n_done = n_trunc = n_term = 0
    paid = 0.0
    for _ in range(steps):
        actions = rng.integers(0, 2, n)
        obs_a, rew_a, done_a, info_a = per_env.step(actions)
        obs_b, rew_b, done_b, info_b = batched.step(actions)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(done_a, done_b)
        np.testing.assert_allclose(rew_a, rew_b, rtol=0, atol=1e-6)
        for ia, ib in zip(info_a, info_b, strict=True):
            for key in ("original_reward", "subgoals_reached", "new_subgoals"):
                assert ia[key] == ib[key]
            assert ia["subgoal_bonus"] == pytest.approx(ib["subgoal_bonus"])
            paid += abs(ib["subgoal_bonus"])
            if "terminal_observation" in ib:
                n_done += 1
                n_trunc += bool(ib.get("TimeLimit.truncated"))
                n_term += not ib.get("TimeLimit.truncated")
        np.testing.assert_array_equal(batched.reached, np.stack(per_env.get_attr("reached")))
    assert n_term > 0 and n_trunc > 0 and paid > 0  # both kinds of episode end, and bonuses, were exercised
    # one encoder call per step, for the n observations plus the first observation of each new episode
    assert len(vec_encoder.batches) == steps
    assert sum(vec_encoder.batches) == steps * n + n_done
    # per-env wrappers: one call per env per step (and one per reset)
    assert sum(len(e.batches) for e in per_env_encoders) == steps * n + n + n_done


def test_vec_twin_with_a_real_dsi_gives_the_wrapper_rewards(tiny_dsi: tuple[Path, Path]) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.vec import SubgoalRewardVecEnv

    det, store = tiny_dsi
    kwargs = {"detector": str(det), "episodes": str(store), "k": 3, "threshold": 0.5}

    def base() -> gym.Env:
        return critwrap.make("KeyCorridor")

    per_env = DummyVecEnv([lambda: SubgoalReward(base(), **kwargs)] * 2)
    batched = SubgoalRewardVecEnv(DummyVecEnv([base] * 2), **kwargs)
    per_env.seed(1)
    batched.seed(1)
    per_env.reset()
    batched.reset()
    rng = np.random.default_rng(1)
    for _ in range(8):
        actions = rng.integers(0, 3, 2)
        _, ra, _, _ = per_env.step(actions)
        _, rb, _, _ = batched.step(actions)
        np.testing.assert_allclose(ra, rb, atol=1e-5)
    assert batched.encoder_calls == 9


# ---- hot swap ----------------------------------------------------------------------------------------------


def test_set_subgoals_and_set_detector_on_wrapper_and_vec_twin() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.vec import SubgoalRewardVecEnv

    eps = [Episode(one_hot(3, 4, 5), label=1), Episode(one_hot(3, 2, 1), label=0)]

    class CellDetector(Detector):
        """Scores the step on cell ``cell`` 1, the others 0."""

        def __init__(self, cell: int) -> None:
            self.cell = cell

        def score(self, frames: np.ndarray) -> np.ndarray:
            return (np.argmax(frames, 1) == self.cell).astype(float)

        def embed(self, frames: np.ndarray) -> np.ndarray:
            return np.asarray(frames, np.float32)

    env = SubgoalReward(
        Corridor(), detector=CellDetector(4), episodes=eps, k=1, threshold=0.5, potential_based=False
    )
    venv = SubgoalRewardVecEnv(
        DummyVecEnv([Corridor]),
        detector=CellDetector(4),
        episodes=eps,
        k=1,
        threshold=0.5,
        potential_based=False,
    )
    for e in (env, venv):
        assert len(e.subgoal_set) == 1
    env.reset(seed=0)
    venv.reset()
    assert env.step(1)[1] == 1.0 and venv.step(np.array([1]))[1][0] == 1.0  # cell 4 is the subgoal
    # another detector, same episodes: cell 5
    env.set_detector(CellDetector(5))
    venv.set_detector(CellDetector(5))
    assert env.step(1)[1] == 1.0 and venv.step(np.array([1]))[1][0] == 1.0
    # explicit embeddings: cell 2, weight 3
    env.set_subgoals(one_hot(2), weights=[3.0])
    venv.set_subgoals(one_hot(2), weights=[3.0])
    env.reset(seed=0)
    venv.reset()
    assert env.step(0)[1] == 3.0 and venv.step(np.array([0]))[1][0] == 3.0
    for e in (env, venv):
        with pytest.raises(ValueError, match="empty"):
            e.set_subgoals(np.zeros((0, 7)))
        with pytest.raises(ValueError, match="none of the 1 episodes is successful"):
            e.set_detector(CellDetector(4), episodes=[eps[1]])
        assert len(e.subgoal_set) == 1  # a failed swap leaves the subgoals as they were


# ---- the zoo -----------------------------------------------------------------------------------------------


def _tiny_keycorridor_ppo(wrapper: str) -> list[str]:
    """`zoo train ppo KeyCorridor` for 64 steps with a tiny network and the given --wrapper."""
    return [
        "train", "ppo", "KeyCorridor", "--timesteps", "64", "--eval-freq", "0", "--eval-episodes", "1",
        "--wrapper", wrapper, "--eval-skip-wrapper", "subgoal-reward",
        "--hp", "n_envs=1", "--hp", "n_steps=64", "--hp", "batch_size=32", "--hp", "n_epochs=1",
        "--hp", "policy_kwargs={net_arch: [8], features_extractor_kwargs: {features_dim: 8}}",
        "--num-threads", "1",
    ]  # fmt: skip


def test_zoo_train_ppo_keycorridor_with_subgoal_reward(
    tiny_dsi: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from critwrap.zoo.__main__ import main

    torch.set_num_threads(1)
    det, store = tiny_dsi
    monkeypatch.chdir(tmp_path)
    rc = main(_tiny_keycorridor_ppo(f"subgoal-reward:detector={det},episodes={store},k=2"))
    _, err = capsys.readouterr()
    assert rc == 0, err
    config = next(Path("runs").rglob("config.json"))
    import json

    cfg = json.loads(config.read_text())
    assert cfg["wrappers"][0]["name"] == "subgoal-reward"
    assert cfg["wrappers"][0]["kwargs"] == {"detector": str(det), "episodes": str(store), "k": 2}
    assert json.loads((config.parent / "status.json").read_text())["status"] == "finished"


def test_the_issue_command_detector_only_uses_the_episodes_the_detector_was_fitted_on(
    tiny_dsi: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`zoo train ppo KeyCorridor --wrapper subgoal-reward:detector=PATH`: `zoo detect fit` records its
    episodes in fit.json, and the wrapper extracts its subgoals from them (saying so)."""
    from critwrap.detectors.base import fitted_on
    from critwrap.zoo.__main__ import main

    torch.set_num_threads(1)
    _, store = tiny_dsi
    monkeypatch.chdir(tmp_path)
    fit = ["detect", "fit", "--data", str(store), "--out", "det", "--epochs", "1", "--batch-size", "4",
           "--threads", "1", "--set", "channels=[4,8,8,8,8]", "--set", "lstm_hidden=8", "--no-progress"]  # fmt: skip
    assert main(fit) == 0
    assert fitted_on("det") == str(Path(store).resolve())
    assert json.loads(Path("det/fit.json").read_text())["data"] == str(store)
    capsys.readouterr()
    rc = main(_tiny_keycorridor_ppo("subgoal-reward:detector=det,k=2"))
    _, err = capsys.readouterr()
    assert rc == 0, err
    # a detector folder without fit.json (saved from Python) still needs episodes=, and says so
    Path("det/fit.json").unlink()
    with pytest.raises(ValueError, match=r"subgoal set is empty.*fit\.json"):
        critwrap.make("KeyCorridor", wrappers=[(SubgoalReward, {"detector": "det", "k": 2})])
    with pytest.warns(UserWarning, match="the episodes the detector was fitted on"):
        from critwrap.detectors.base import write_fit_info

        write_fit_info("det", store)
        env = critwrap.make("KeyCorridor", wrappers=[(SubgoalReward, {"detector": "det", "k": 2})])
    assert len(env.subgoal_set) >= 1


# ---- detector device ---------------------------------------------------------------------------------------


def test_detector_device_moves_the_detector_and_bad_devices_are_refused(tiny_dsi: tuple[Path, Path]) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.detectors.baselines import RandomDetector
    from critwrap.vec import SubgoalRewardVecEnv

    det, store = tiny_dsi
    kwargs = {"detector": str(det), "episodes": str(store), "k": 3, "threshold": 0.5}
    env = critwrap.make("KeyCorridor", wrappers=[(SubgoalReward, {**kwargs, "detector_device": "cpu"})])
    assert env.detector.device == torch.device("cpu")
    assert env.spec is not None and "detector_device" in str(env.spec.additional_wrappers)
    venv = SubgoalRewardVecEnv(
        DummyVecEnv([lambda: critwrap.make("KeyCorridor")]), **kwargs, detector_device="cpu"
    )
    assert venv.detector is not None and venv.detector.device == torch.device("cpu")
    with pytest.raises(ValueError, match="CPU only"):  # a detector without networks cannot move
        SubgoalReward(
            critwrap.make("KeyCorridor"),
            detector=RandomDetector(),
            subgoals=np.zeros((1, 4)),
            encoder=pixel_encoder,
            detector_device="cuda",
        )
    with pytest.raises(ValueError, match="without a detector"):
        SubgoalReward(
            critwrap.make("KeyCorridor"),
            subgoals=np.zeros((1, 4)),
            encoder=pixel_encoder,
            detector_device="cpu",
        )
    with pytest.raises(ValueError, match="device"):
        SubgoalReward(critwrap.make("KeyCorridor"), **kwargs, detector_device="tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vec_twin_on_cuda_gives_the_cpu_rewards(tiny_dsi: tuple[Path, Path]) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.vec import SubgoalRewardVecEnv

    det, store = tiny_dsi
    kwargs = {"detector": str(det), "episodes": str(store), "k": 3, "threshold": 0.5}

    def base() -> gym.Env:
        return critwrap.make("KeyCorridor")

    cpu = SubgoalRewardVecEnv(DummyVecEnv([base] * 2), **kwargs)
    gpu = SubgoalRewardVecEnv(DummyVecEnv([base] * 2), **kwargs, detector_device="cuda")
    for v in (cpu, gpu):
        v.seed(1)
        v.reset()
    rng = np.random.default_rng(1)
    for _ in range(8):
        actions = rng.integers(0, 3, 2)
        np.testing.assert_allclose(cpu.step(actions)[1], gpu.step(actions)[1], atol=1e-4)


def test_subgoal_coverage_tells_selective_subgoals_from_start_views() -> None:
    """Successes go 0 -> 1 -> 2 -> 5, failures 0 -> 1 -> 3; a detector scoring the cell index. With k = 1
    the subgoal is cell 5: every held-out success reaches it, at its end, no failure does. With k = 3
    cell 1, which failures visit too, joins unless exclude_failed drops it."""
    from critwrap.wrappers.subgoal import format_coverage, subgoal_coverage

    class CellScore(Detector):
        def score(self, frames: np.ndarray) -> np.ndarray:
            return np.argmax(frames, 1) / 10.0

        def embed(self, frames: np.ndarray) -> np.ndarray:
            return np.asarray(frames, np.float32)

    train = [Episode(one_hot(0, 1, 2, 5), label=1), Episode(one_hot(0, 1, 3), label=0)]
    held = [
        Episode(one_hot(0, 2, 5), label=1),
        Episode(one_hot(0, 1, 2, 5), label=1),
        Episode(one_hot(0, 1, 3), label=0),
    ]
    (row,) = subgoal_coverage(CellScore(), train, held, k=1, thresholds=[0.99], exclude_failed=[False])
    assert row["subgoals"] == 1 and row["success_reach"] == 1.0 and row["failed_reach"] == 0.0
    assert row["first_hit"] == 1.0 and row["mean_reached"] == 1.0 and row["failed_frames"] == 0.0
    assert row["success_frames"] == pytest.approx(2 / 7)
    assert row["per_subgoal_success"] == [1.0] and row["per_subgoal_failed"] == [0.0] and "frames" not in row
    (shown,) = subgoal_coverage(
        CellScore(), train, held, k=1, thresholds=[0.99], exclude_failed=[False], keep_frames=True
    )
    np.testing.assert_array_equal(shown["frames"], one_hot(5))  # the subgoal's observation
    keep, drop = subgoal_coverage(
        CellScore(), train, held, k=3, thresholds=[0.99], exclude_failed=[False, True]
    )
    assert keep["subgoals"] == 3 and keep["failed_reach"] == 1.0 and keep["first_hit"] < 1.0
    assert drop["subgoals"] == 2 and drop["failed_reach"] == 0.0
    # no subgoal survives: reported as a row, not raised
    (err,) = subgoal_coverage(
        CellScore(),
        [Episode(one_hot(0, 1), label=1), train[1]],
        held,
        k=1,
        thresholds=[0.99],
        exclude_failed=[True],
    )
    assert "also reached in a failed episode" in err["error"]
    table = format_coverage([row, err])
    assert "succ reach" in table and "no subgoals" in table
    with pytest.raises(ValueError, match="no held-out episodes"):
        subgoal_coverage(CellScore(), train, [], k=1)
