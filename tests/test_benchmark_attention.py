"""Fast checks of the attention benchmark's state-based experts (the DAgger teachers)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("dm_control")


@pytest.fixture(scope="module")
def bench() -> object:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attention
    finally:
        sys.path.pop(0)
    return attention


def test_swingup_expert_swings_the_pole_up_and_holds_it(bench: object, tmp_path: Path) -> None:
    import critwrap
    from critwrap.attention.pixels import mujoco_handles

    s = bench.Settings(out=tmp_path, task="swingup")  # type: ignore[attr-defined]
    env = critwrap.make(bench.env_id(s))  # type: ignore[attr-defined]
    gain = bench.lqr_gain(env, s.action_repeat)  # type: ignore[attr-defined]
    env.reset(seed=3)
    handles = mujoco_handles(env)
    assert handles is not None
    seen: list[float] = []

    def act() -> np.ndarray:
        seen.append(float(np.cos(handles.data.qpos[1])))
        action = bench.expert_action(env, gain, s)  # type: ignore[attr-defined]
        assert action.shape == (1,) and abs(float(action[0])) <= 1.0
        return action

    total = bench.state_episode(env, s, act, seed=3)  # type: ignore[attr-defined]
    assert seen[0] < -0.9  # swingup starts with the pole down
    upright, steps = sum(c > 0.95 for c in seen), len(seen)
    # measured ~865 on seeds 10000-10004; a random policy gets ~120; the sign-flipped pump stays at 2
    assert total > 700
    assert upright > 0.6 * steps
    # the balance expert (LQR alone) from the same start does not lift the pole
    balance = bench.Settings(out=tmp_path, task="balance")  # type: ignore[attr-defined]
    lqr_only = bench.state_episode(  # type: ignore[attr-defined]
        env,
        s,
        lambda: bench.expert_action(env, gain, balance),
        seed=3,  # type: ignore[attr-defined]
    )
    assert lqr_only < 0.5 * total, (lqr_only, total)


def test_unknown_task_is_refused(bench: object, tmp_path: Path) -> None:
    s = bench.Settings(out=tmp_path, task="walker")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="--task"):
        bench.env_id(s)  # type: ignore[attr-defined]


def test_perfect_mask_reference_keeps_only_the_moving_bodies(bench: object, tmp_path: Path) -> None:
    s = bench.Settings(out=tmp_path, size=32)  # type: ignore[attr-defined]
    seg = bench.SEGMENTATION  # type: ignore[attr-defined]
    plain = bench.agent_env(s, "color-hard", None, "masked")  # type: ignore[attr-defined]
    masked = bench.agent_env(s, "color-hard", seg, "masked")  # type: ignore[attr-defined]
    silhouette = bench.agent_env(s, "color-hard", seg, "mask")  # type: ignore[attr-defined]
    frames = [env.reset(seed=5)[0] for env in (plain, masked, silhouette)]
    for _ in range(2):
        action = np.array([0.5], dtype=np.float32)
        frames = [env.step(action)[0] for env in (plain, masked, silhouette)]
    full, kept, mask = frames
    assert full.shape == kept.shape == mask.shape == (9, 32, 32)
    on = mask > 0
    assert set(np.unique(mask)) <= {0, 255} and 0.002 < on.mean() < 0.2  # the cart and pole only
    np.testing.assert_array_equal(kept[on], full[on])  # same colours there (same seed, same distraction)
    assert not kept[~on].any()
    for env in (plain, masked, silhouette):
        env.close()


def test_random_tint_recolours_the_body_and_keeps_black_black(bench: object) -> None:
    import torch

    batch = torch.zeros(64, 9, 8, 8, dtype=torch.uint8)
    batch[:, :, 2:4, 2:4] = torch.tensor([200, 100, 50] * 3, dtype=torch.uint8).view(1, 9, 1, 1)
    rng = np.random.default_rng(0)
    torch.testing.assert_close(bench.random_tint(batch, 0.0, rng), batch)  # type: ignore[attr-defined]
    out = bench.random_tint(batch, 0.5, rng)  # type: ignore[attr-defined]
    assert out.shape == batch.shape and float(out.min()) >= 0 and float(out.max()) <= 255
    assert not out[:, :, 0, 0].any()  # the black background stays black
    changed = (out - batch.float()).abs().flatten(1).amax(1) > 1e-3
    assert 20 < int(changed.sum()) < 44
    body = out[changed][:, :, 2, 2]  # (n, 9): the same colour in every frame of the stack
    torch.testing.assert_close(body[:, :3], body[:, 3:6])
    assert body[:, :3].std(0).min() > 40  # colours spread over the RGB cube


def test_random_region_tint_gives_each_region_its_own_colour(bench: object) -> None:
    import torch

    batch = torch.zeros(32, 9, 16, 16, dtype=torch.uint8)
    batch[:, :, 2:4, 2:6] = torch.tensor([200, 100, 50] * 3, dtype=torch.uint8).view(1, 9, 1, 1)  # "cart"
    batch[:, :, 10:12, :] = torch.tensor([50, 60, 200] * 3, dtype=torch.uint8).view(1, 9, 1, 1)  # "rail"
    rng = np.random.default_rng(0)
    torch.testing.assert_close(bench.random_region_tint(batch, 0.0, rng), batch)  # type: ignore[attr-defined]
    out = bench.random_region_tint(batch, 1.0, rng, regions=3)  # type: ignore[attr-defined]
    assert not out[:, :, 0, 0].any()  # black stays black
    cart, rail = out[:, :3, 3, 3], out[:, :3, 10, 8]
    torch.testing.assert_close(out[:, :3, 2, 2], cart)  # a region stays uniform
    torch.testing.assert_close(out[:, 3:6, 3, 3], cart)  # the same colour in every stacked frame
    assert (cart - rail).abs().sum(1).min() > 1.0  # regions get different colours
    assert cart.std(0).min() > 30  # colours spread over the RGB cube


def test_augment_input_recolours_all_stacked_frames_alike(bench: object) -> None:
    import torch

    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.integers(0, 256, size=(3, 12, 12), dtype=np.uint8))
    batch = frame.repeat(8, 3, 1, 1)  # 8 samples of 3 identical stacked frames: (8, 9, 12, 12)
    same = bench.augment_raw_frames(batch, 0.0, torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
    assert torch.equal(same, batch)
    out = bench.augment_raw_frames(batch, 1.0, torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
    assert out.shape == batch.shape and out.dtype == torch.uint8
    for sample in out:  # one draw per sample: its stacked frames stay identical to each other
        assert torch.equal(sample[0:3], sample[3:6]) and torch.equal(sample[0:3], sample[6:9])
    assert sum(not torch.equal(sample, batch[0]) for sample in out) >= 6  # and they were recoloured
    # distinct frames keep their own content and order in the stack
    stack = torch.from_numpy(rng.integers(0, 256, size=(4, 9, 12, 12), dtype=np.uint8))
    kept = bench.augment_raw_frames(stack, 1e-9, torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
    assert torch.equal(kept, stack)


def test_input_masker_batch_matches_the_wrapper_it_stands_for(bench: object, tmp_path: Path) -> None:
    import gymnasium as gym
    import torch

    from critwrap.attention.adapter import MaskAdapter

    torch.manual_seed(0)
    MaskAdapter(4, (20, 20)).save(tmp_path)
    env = gym.make("CartPole-v1")
    env.observation_space = gym.spaces.Box(0, 255, (9, 20, 20), np.uint8)  # 3 stacked RGB frames
    obs = np.random.default_rng(1).integers(0, 256, size=(5, 9, 20, 20), dtype=np.uint8)
    for output, threshold in (("masked", None), ("mask", None), ("masked", 0.5)):
        masker = bench.InputMasker(env, str(tmp_path), output, threshold)  # type: ignore[attr-defined]
        batched = masker.batch(torch.from_numpy(obs)).numpy()
        one_by_one = np.stack([masker.observation(o) for o in obs])
        assert np.array_equal(batched, one_by_one), (output, threshold)
