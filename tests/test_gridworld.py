"""The GridWorld generator: scripted KeyCorridor episodes, critical steps, determinism, stores, the zoo CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from critwrap.episodes import EpisodeStore
from critwrap.gridworld import (
    DROP,
    MAX_EPISODE_STEPS,
    PICKUP,
    TOGGLE,
    GridWorldPlanner,
    generate_gridworld,
    generate_gridworld_splits,
    gridworld_episode,
    make_gridworld_env,
    split_seed,
)


@pytest.fixture(scope="module")
def episodes() -> list:
    eps = generate_gridworld(12, seed=0, progress=False)
    assert isinstance(eps, list)
    return eps


def _replay(ep) -> tuple[np.ndarray, list[float], list[str]]:
    """Replay an episode's actions in a fresh env (MiniGridImage views); returns the views, rewards and,
    per step, the type of the object in front of the agent before the action."""
    env = make_gridworld_env(tile_size=4)
    obs, _ = env.reset(seed=ep.metadata["layout_seed"])
    frames, rewards, fronts = [obs], [], []
    for a in ep.actions:
        base = env.unwrapped
        cell = base.grid.get(*base.front_pos)
        fronts.append("empty" if cell is None else cell.type)
        obs, r, *_ = env.step(int(a))
        frames.append(obs)
        rewards.append(float(r))
    env.close()
    return np.stack(frames), rewards, fronts


def test_shapes_labels_and_kinds(episodes: list) -> None:
    assert [ep.metadata["kind"] for ep in episodes] == ["negative", "positive"] * 6
    for ep in episodes:
        assert ep.observations.shape[1:] == (28, 28, 3) and ep.observations.dtype == np.uint8
        assert (
            len(ep) <= MAX_EPISODE_STEPS and ep.actions.shape == (len(ep),) and ep.rewards.shape == (len(ep),)
        )
        assert ep.final_observation is not None and ep.final_observation.shape == (28, 28, 3)
        if ep.metadata["kind"] == "positive":
            assert ep.label == 1 and ep.episode_return > 0 and ep.metadata["success"]
            assert ep.rewards[-1] > 0 and int(ep.actions[-1]) == PICKUP
        else:
            assert ep.label == 0 and ep.episode_return == 0.0
    assert [ep.metadata["seed"] for ep in episodes] == list(range(12))


def test_replay_reproduces_views_rewards_and_critical_steps(episodes: list) -> None:
    for ep in episodes[:6]:
        frames, rewards, fronts = _replay(ep)
        np.testing.assert_array_equal(frames[: len(ep)], ep.observations)
        np.testing.assert_array_equal(frames[len(ep)], ep.final_observation)
        np.testing.assert_allclose(rewards, ep.rewards)
        crit = ep.metadata["critical_steps"]
        for t in crit:
            assert int(ep.actions[t]) in (PICKUP, TOGGLE, DROP)
            if int(ep.actions[t]) != DROP:
                assert fronts[t] in ("key", "door", "ball")
        # Non-critical steps never interact: no toggle of a door and no pickup.
        for t in set(range(len(ep))) - set(crit):
            assert not (int(ep.actions[t]) in (PICKUP, TOGGLE) and fronts[t] in ("key", "door", "ball"))


def test_positive_episode_structure(episodes: list) -> None:
    for ep in (e for e in episodes if e.metadata["kind"] == "positive"):
        crit = ep.metadata["critical_steps"]
        acts = [int(ep.actions[t]) for t in crit]
        # ... door toggles, pickup key, (door toggles), unlock the locked door, drop the key, ..., pickup ball.
        assert acts.count(PICKUP) == 2 and acts[-1] == PICKUP and acts.count(DROP) == 1
        assert acts.count(TOGGLE) >= 2  # at least one door on the way and the locked door
        assert acts[acts.index(DROP) - 1] == TOGGLE  # the key is dropped right after unlocking
        assert ep.metadata["variant"] == "scripted"


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate_gridworld(4, seed=7, progress=False)
    b = generate_gridworld(4, seed=7, progress=False)
    c = generate_gridworld(4, seed=8, progress=False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.observations, y.observations)
        np.testing.assert_array_equal(x.actions, y.actions)
        assert x.metadata == y.metadata
    assert (
        not np.array_equal(a[0].observations[:5], c[0].observations[:5])
        or a[0].actions.tolist() != c[0].actions.tolist()
    )
    # Episode i depends on its seed only: seed 8's first episode is seed 7's second one, replayed as the kind it gets.
    assert gridworld_episode(8, "positive").actions.tolist() == b[1].actions.tolist()


def test_negative_variants_and_lengths() -> None:
    eps = [gridworld_episode(s, "negative") for s in range(60)]
    variants = [ep.metadata["variant"] for ep in eps]
    assert set(variants) <= {"random", "key_wander", "key_door_wander"}
    assert 0.6 < variants.count("random") / 60 < 1.0  # 85% expected
    for ep in eps:
        assert ep.label == 0
        if ep.metadata["variant"] == "random":
            # 24 random moves; a move into a closed door adds a toggle step.
            assert 24 <= len(ep) <= 48


def test_length_matched_negatives() -> None:
    for s in range(6):
        neg = gridworld_episode(s, "negative", negative_length="matched")
        paper = gridworld_episode(s, "negative")  # the paper's move counts
        pos = gridworld_episode(s, "positive")
        assert neg.label == 0 and neg.metadata["negative_length"] == "matched"
        assert neg.metadata["variant"] == paper.metadata["variant"]  # the same variant draw as the paper's
        assert len(neg) == len(pos)  # the length says nothing about success
        if neg.metadata["variant"] == "random":
            assert not neg.metadata["critical_steps"] or set(neg.actions[neg.metadata["critical_steps"]]) == {
                TOGGLE
            }
    eps = generate_gridworld(2, seed=0, negative_length="matched", progress=False)
    assert len(eps[0]) == len(gridworld_episode(0, "positive"))
    with pytest.raises(ValueError, match="negative_length"):
        gridworld_episode(0, "negative", negative_length="short")


def test_positive_fraction() -> None:
    kinds = [
        ep.metadata["kind"] for ep in generate_gridworld(8, seed=0, positive_fraction=0.25, progress=False)
    ]
    assert kinds.count("positive") == 2
    assert all(ep.label == 0 for ep in generate_gridworld(3, positive_fraction=0.0, progress=False))
    with pytest.raises(ValueError, match="positive_fraction"):
        generate_gridworld(2, positive_fraction=1.5, progress=False)


def test_planner_turns_and_moves_on_an_empty_grid() -> None:
    import minigrid

    base = gym.make("MiniGrid-Empty-8x8-v0").unwrapped
    base.reset(seed=0)
    base.agent_pos, base.agent_dir = (1, 1), 0  # facing right (+x)
    planner = GridWorldPlanner(base)
    assert planner.plan_to_face((4, 1)) == [2, 2]  # two steps forward, then (4, 1) is in front
    assert planner.plan_to_face((1, 3)) == [1, 2]  # turn right (down), one step
    assert planner.plan_to_face((2, 1)) == []  # already facing it
    base.grid.set(2, 1, minigrid.core.world_object.Wall())
    assert len(planner.plan_to_face((3, 1))) == 6  # around the wall: R, F, L, F, F, L


def test_store_output_and_splits(tmp_path: Path) -> None:
    store = generate_gridworld(3, tmp_path / "gw", seed=5, progress=False)
    assert isinstance(store, EpisodeStore) and len(store) == 3
    assert store.metadata["env_id"] == "MiniGrid-KeyCorridorS6R3-v0" and store.metadata["seed"] == 5
    direct = generate_gridworld(3, seed=5, progress=False)
    for stored, ep in zip(store, direct):
        np.testing.assert_array_equal(stored.observations, ep.observations)
        assert stored.metadata["critical_steps"] == ep.metadata["critical_steps"]
        assert stored.label == ep.label
    with pytest.raises(FileExistsError):
        generate_gridworld(1, tmp_path / "gw", progress=False)
    splits = generate_gridworld_splits(None, n_train=2, n_val=1, n_test=0, seed=3, progress=False)
    assert sorted(splits) == ["train", "val"]
    assert [ep.metadata["seed"] for ep in splits["val"]] == [split_seed("val", 3)]
    assert split_seed("train", 3) == 3 and split_seed("test", 0) == 2_000_000
    with pytest.raises(ValueError, match="split"):
        split_seed("dev")


def test_zoo_record_gridworld(tmp_path: Path) -> None:
    from critwrap.zoo.record import main

    out = tmp_path / "data"
    args = [
        "gridworld",
        "--episodes",
        "2",
        "--val",
        "1",
        "--test",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--quiet",
    ]
    assert main(args) == 0
    assert [len(EpisodeStore(out / s, create=False)) for s in ("train", "val", "test")] == [2, 1, 1]
    assert EpisodeStore(out / "test")[0].metadata["seed"] == split_seed("test", 0)
    with pytest.raises(FileExistsError, match="already holds episodes"):
        main(args)
    # Through the zoo CLI: python -m critwrap.zoo record gridworld ...
    from critwrap.zoo.__main__ import main as zoo_main

    out2 = tmp_path / "cli"
    assert (
        zoo_main(
            [
                "record",
                "gridworld",
                "--episodes",
                "1",
                "--val",
                "0",
                "--test",
                "0",
                "--out",
                str(out2),
                "--no-progress",
                "--quiet",
            ]
        )
        == 0
    )
    assert len(EpisodeStore(out2 / "train", create=False)) == 1 and not (out2 / "val").exists()
    out3 = tmp_path / "matched"
    assert (
        main(
            [
                "gridworld",
                "--episodes",
                "1",
                "--val",
                "0",
                "--test",
                "0",
                "--out",
                str(out3),
                "--negative-length",
                "matched",
                "--no-progress",
                "--quiet",
            ]
        )
        == 0
    )
    ep = EpisodeStore(out3 / "train", create=False)[0]
    assert ep.metadata["negative_length"] == "matched" and len(ep) == len(gridworld_episode(0, "positive"))
    assert zoo_main(["record", "gridworld", "--episodes", "1", "--out", str(out2), "--no-progress"]) == 1


# ---- the original generator's style ------------------------------------------------------------------
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def test_original_style_positive_moves_doors_and_ball() -> None:
    env = make_gridworld_env(tile_size=4)
    for seed in range(6):
        ep = gridworld_episode(seed, "positive", env=env, style="original")
        assert ep.label == 1 and ep.actions is None and ep.metadata["style"] == "original"
        assert 2 <= len(ep) <= MAX_EPISODE_STEPS and ep.observations.shape[1:] == (28, 28, 3)
        # the layout, to check what the agent stood on in each frame
        env.reset(seed=ep.metadata["layout_seed"])
        grid = env.unwrapped.grid
        pos = [tuple(int(v) for v in p) for p in ep.infos["agent_pos"]]
        on_door = [t for t, p in enumerate(pos) if grid.get(*p) is not None and grid.get(*p).type == "door"]
        assert ep.metadata["critical_steps"] == on_door
        assert tuple(ep.metadata["locked_door_pos"]) in pos  # through the locked door to the ball
        assert len(on_door) >= 1
        # consecutive frames: one move apart (or the same cell: a blocked move / a new segment's frame)
        steps = [abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in itertools.pairwise(pos)]
        assert set(steps) <= {0, 1}
        # the episode ends facing the ball
        dx, dy = _DIRS[int(ep.infos["agent_dir"][-1])]
        assert (pos[-1][0] + dx, pos[-1][1] + dy) == tuple(ep.metadata["ball_pos"])
    env.close()


def test_original_style_negatives_determinism_and_bad_style() -> None:
    a = generate_gridworld(8, seed=3, progress=False, style="original", negative_length="matched")
    b = generate_gridworld(8, seed=3, progress=False, style="original", negative_length="matched")
    assert isinstance(a, list) and isinstance(b, list)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.observations, y.observations)
    for i, ep in enumerate(a):
        if ep.label == 0:  # as long as the positive episode of the same seed
            pos = gridworld_episode(3 + i, "positive", style="original")
            assert len(ep) == len(pos)
    paper = [gridworld_episode(s, "negative", style="original") for s in range(12)]
    for ep in paper:
        expected = {"random": 24}.get(ep.metadata["variant"])
        if expected is not None:  # 24 moves, a frame after each and none at the start, as the original
            assert len(ep) == expected
    assert {ep.metadata["variant"] for ep in paper} <= {"random", "key_wander", "key_door_wander"}
    with pytest.raises(ValueError, match="style"):
        gridworld_episode(0, "positive", style="gym")
    with pytest.raises(ValueError, match="style"):
        generate_gridworld(1, progress=False, style="gym")


def test_zoo_record_gridworld_original_style(tmp_path: Path) -> None:
    from critwrap.zoo.record import main

    out = tmp_path / "orig"
    argv = ["gridworld", "--episodes", "2", "--val", "0", "--test", "0", "--out", str(out)]
    assert main([*argv, "--style", "original", "--no-progress", "--quiet"]) == 0
    store = EpisodeStore(out / "train", create=False)
    assert store.metadata["style"] == "original"
    assert all(ep.metadata["style"] == "original" for ep in store)
