"""VAI: Transporter keypoints, the mask adapter (augmentation, loss, separation), AttentionAdapter, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import critwrap
from critwrap.attention.adapter import (
    AdapterConfig,
    AdapterShapeError,
    MaskAdapter,
    augment,
    fit_adapter,
    mask_loss,
    procedural_images,
)
from critwrap.attention.checkpoints import CheckpointError
from critwrap.attention.transporter import (
    Transporter,
    TransporterConfig,
    fit_transporter,
    foreground_masks,
    gaussian_map,
    keypoint_means,
    spatial_softmax,
    transport,
)
from critwrap.wrappers.attention import AttentionAdapter
from critwrap.wrappers.base import IncompatibleSpaceError

torch.set_num_threads(1)
ORANGE = (230, 140, 40)


def planted(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Frames of uniform noise with one orange rectangle each, and the rectangles' masks."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        h, w = rng.integers(6, 12, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        frames[i, y : y + h, x : x + w] = ORANGE
        masks[i, y : y + h, x : x + w] = True
    return frames, masks


# ---- stage 1 --------------------------------------------------------------------------------------


def test_keypoint_maths() -> None:
    logits = torch.full((1, 1, 9, 9), -50.0)
    logits[0, 0, 2, 6] = 50.0  # a peak at row 2, col 6
    probs = spatial_softmax(logits)
    assert torch.allclose(probs.sum((2, 3)), torch.ones(1, 1))
    mu = keypoint_means(probs)[0, 0]
    assert torch.allclose(mu, torch.tensor([-0.5, 0.5]), atol=1e-4)  # linspace(-1, 1, 9)[2], [6]
    heat = gaussian_map(probs, std=0.1)[0, 0]
    assert heat.argmax().item() == 2 * 9 + 6 and heat.max() == pytest.approx(1.0, abs=1e-4)
    assert heat[8, 0] < 1e-3
    # transport: where the target keypoint is, the target's features replace the source's
    source, target = torch.zeros(1, 1, 9, 9), torch.ones(1, 1, 9, 9)
    moved = transport(torch.zeros(1, 1, 9, 9), gaussian_map(probs, 0.1), source, target)
    assert moved[0, 0, 2, 6] == pytest.approx(1.0, abs=1e-4) and moved[0, 0, 8, 0] < 1e-3


def test_transporter_trains_saves_and_loads(tmp_path: Path) -> None:
    frames, _ = planted(12, 0, size=16)
    cfg = TransporterConfig(keypoints=3, width=4, iterations=3, batch_size=4)
    losses: list[float] = []
    model = fit_transporter([frames[:6], frames[6:]], cfg, progress=lambda it, loss: losses.append(loss))
    assert len(losses) == 3 and all(np.isfinite(losses))
    model.save(tmp_path, (3, 16, 16), cfg)
    loaded, shape = Transporter.load(tmp_path)
    assert shape == (3, 16, 16)
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.keypoints_xy(x), model.eval().keypoints_xy(x))
    masks = foreground_masks(loaded, frames[:5], threshold=-1e9)
    assert masks.shape == (5, 16, 16) and masks.dtype == bool and masks.all()
    assert not foreground_masks(loaded, frames[:5], threshold=1e9).any()
    with pytest.raises(ValueError, match="multiples of 4"):
        fit_transporter([np.zeros((4, 18, 18, 3), np.uint8)], cfg)


# ---- stage 2 --------------------------------------------------------------------------------------


def test_augment_keeps_the_foreground_and_replaces_the_background() -> None:
    frames, masks = planted(8, 1)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(masks).float().unsqueeze(1)
    cfg = AdapterConfig(crop_pad=0)
    masked, noisy, cropped = augment(x, m, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(cropped, m)  # no crop: masks unchanged
    torch.testing.assert_close(masked, x * m)
    assert ((noisy - x).abs() * (1 - m)).sum() > 0.1 * (1 - m).sum()  # background replaced
    inside = (noisy - x).abs()[m.expand_as(x) > 0]
    assert inside.mean() < 0.15  # foreground only colour-jittered
    shifted = augment(x, m, AdapterConfig(crop_pad=4), torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted[0], x_crop_of(x, m, shifted[2]))
    images = procedural_images(6, 20, 24, torch.Generator().manual_seed(1))
    assert images.shape == (6, 3, 20, 24) and images.min() >= 0 and images.max() <= 1 and images.std() > 0.05


def test_recolor_changes_the_hue_of_the_chosen_frames_only() -> None:
    from critwrap.attention.adapter import _rgb_to_hsv, recolor

    x = torch.zeros(64, 3, 4, 4)
    x[:, 0], x[:, 1] = 0.9, 0.5  # one orange
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(recolor(x, 0.0, g), x)
    out = recolor(x, 0.5, torch.Generator().manual_seed(0))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-3
    assert 15 < int(changed.sum()) < 49  # about half of the frames
    hue = _rgb_to_hsv(out[changed])[:, 0, 0, 0]
    assert hue.std() > 0.2  # spread over the colour wheel, not VAI's +-0.015
    assert torch.all(out >= 0) and torch.all(out <= 1)
    uniform = out[changed].flatten(2)  # shading kept: one colour per frame here
    assert torch.allclose(uniform, uniform[..., :1].expand_as(uniform), atol=1e-5)
    cfg = AdapterConfig(crop_pad=0, recolor_prob=1.0)
    frames, masks = planted(8, 1)
    xs = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(masks).float().unsqueeze(1)
    _, noisy, _ = augment(xs, m, cfg, torch.Generator().manual_seed(0))
    assert (noisy - xs).abs()[m.expand_as(xs) > 0].mean() > 0.15  # foreground recoloured


def test_recolor_rgb_mode_draws_uniform_colours_and_keeps_shading() -> None:
    from critwrap.attention.adapter import recolor

    x = torch.zeros(200, 3, 4, 4)
    x[:, 0], x[:, 1] = 0.9, 0.5
    x[:, :, :, 2:] *= 0.5  # right half shaded
    out = recolor(x, 1.0, torch.Generator().manual_seed(0), mode="rgb")
    left, right = out[:, :, :, :2], out[:, :, :, 2:]
    unclipped = left.amax((1, 2, 3)) < 1.0
    torch.testing.assert_close(right[unclipped] * 2, left[unclipped], atol=1e-5, rtol=1e-4)
    assert out[:, :, 0, 0].std(0).min() > 0.2  # colours spread over the RGB cube (uniform: std 0.29)
    assert out[:, :, 0, 0].min() < 0.1  # dark colours occur (the hsv mode keeps value >= 0.5 x original)
    with pytest.raises(ValueError, match="recolor mode"):
        recolor(x, 1.0, torch.Generator(), mode="lab")


def test_transform_colors_remaps_colours_but_keeps_the_layout() -> None:
    from critwrap.attention.adapter import transform_colors

    frames, masks = planted(32, 2)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(transform_colors(x, 0.0, torch.Generator()), x)
    a = transform_colors(x, 1.0, torch.Generator().manual_seed(3))
    b = transform_colors(x, 1.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)  # seeded
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().flatten(1).amax(1).gt(0.05).float().mean() > 0.8  # nearly every frame changed
    # a pointwise colour map: pixels of equal colour stay equal, so the foreground's outline is kept
    m = torch.from_numpy(masks).bool()
    for i in range(4):
        assert a[i][:, m[i]].std(1).max() < 1e-5  # the uniform orange rectangle stays uniform
    half = transform_colors(x, 0.5, torch.Generator().manual_seed(0))
    changed = (half - x).abs().flatten(1).amax(1) > 1e-6
    assert 6 < int(changed.sum()) < 26


def test_recolor_regions_gives_each_flat_region_its_own_colour() -> None:
    from critwrap.attention.adapter import recolor_regions

    x = torch.zeros(16, 3, 8, 8)
    x[:, :, :4] = torch.tensor([0.2, 0.3, 0.6]).view(1, 3, 1, 1)  # "sky"
    x[:, :, 4:] = torch.tensor([0.5, 0.4, 0.1]).view(1, 3, 1, 1)  # "floor"
    torch.testing.assert_close(recolor_regions(x, 0.0, torch.Generator()), x)
    out = recolor_regions(x, 1.0, torch.Generator().manual_seed(0), regions=2)
    top, bottom = out[:, :, :4].flatten(2), out[:, :, 4:].flatten(2)
    assert top.std(2).max() < 1e-5 and bottom.std(2).max() < 1e-5  # each region stays flat
    assert (top[..., 0] - bottom[..., 0]).abs().sum(1).min() > 1e-3  # with its own colour
    assert top[..., 0].std(0).min() > 0.1  # new colours per frame
    again = recolor_regions(x, 1.0, torch.Generator().manual_seed(0), regions=2)
    torch.testing.assert_close(out, again)  # seeded


def x_crop_of(x: torch.Tensor, m: torch.Tensor, cropped_masks: torch.Tensor) -> torch.Tensor:
    """The clean masked frames must be cropped exactly like the masks: recover the crop from the masks."""
    out = []
    pad = 4
    for i in range(len(x)):
        padded_x = torch.nn.functional.pad(x[i : i + 1], (pad,) * 4, mode="replicate")
        padded_m = torch.nn.functional.pad(m[i : i + 1], (pad,) * 4, mode="replicate")
        for y in range(2 * pad + 1):
            for z in range(2 * pad + 1):
                window = padded_m[0, :, y : y + x.shape[2], z : z + x.shape[3]]
                if torch.equal(window, cropped_masks[i]):
                    out.append(padded_x[0, :, y : y + x.shape[2], z : z + x.shape[3]] * window)
                    break
            else:
                continue
            break
    return torch.stack(out)


def test_mask_loss_weighs_missing_foreground() -> None:
    target = torch.tensor([1.0, 0.0])
    miss = mask_loss(torch.tensor([0.0, 0.0]), target)  # foreground missed
    extra = mask_loss(torch.tensor([1.0, 1.0]), target)  # background kept
    assert miss == pytest.approx(15 * extra.item())
    assert mask_loss(target, target) == 0


def test_adapter_separates_a_planted_foreground_from_noise(tmp_path: Path) -> None:
    frames, masks = planted(64, 0)
    adapter = fit_adapter(frames, masks, AdapterConfig(width=8, iterations=60, batch_size=16, lr=3e-3))
    test_frames, test_masks = planted(32, 1)  # new frames, new noise
    predicted = adapter.predict(test_frames)
    assert predicted.shape == (32, 32, 32) and predicted.min() >= 0 and predicted.max() <= 1
    assert predicted[test_masks].mean() > 0.7
    assert predicted[~test_masks].mean() < 0.3
    # checkpoint round trip: the same masks
    adapter.save(tmp_path, AdapterConfig(width=8))
    loaded = MaskAdapter.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(test_frames), predicted, atol=1e-5)
    assert all(not p.requires_grad for p in loaded.parameters())


def test_adapter_checkpoint_errors(tmp_path: Path) -> None:
    MaskAdapter(2, (16, 16)).save(tmp_path / "ok")
    with pytest.raises(CheckpointError, match=r"expected adapter\.json and adapter\.safetensors"):
        MaskAdapter.load(tmp_path / "missing")
    meta = json.loads((tmp_path / "ok" / "adapter.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "ok" / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version 99"):
        MaskAdapter.load(tmp_path / "ok")
    Transporter(3, 2, 2).save(tmp_path / "tp", (3, 16, 16))
    (tmp_path / "tp" / "adapter.json").write_text((tmp_path / "tp" / "transporter.json").read_text())
    (tmp_path / "tp" / "adapter.safetensors").write_bytes(
        (tmp_path / "tp" / "transporter.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="'vai-transporter' checkpoint, expected 'vai-adapter'"):
        MaskAdapter.load(tmp_path / "tp")
    with pytest.raises(AdapterShapeError, match=r"\(3, 16, 16\)"):
        MaskAdapter(2, (16, 16)).predict(np.zeros((2, 20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="multiples of 4"):
        MaskAdapter(2, (18, 18))


# ---- the wrapper ----------------------------------------------------------------------------------


class RGBStack(gym.Env[np.ndarray, int]):
    """k stacked 20x20 RGB frames: planted frames, one per step."""

    def __init__(self, k: int = 2, size: int = 20, channels_first: bool = True) -> None:
        self.k, self.size, self.channels_first = k, size, channels_first
        shape = (3 * k, size, size) if channels_first else (size, size, 3 * k)
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.frames, _ = planted(40, 3, size)
        self.t = 0

    def _obs(self) -> np.ndarray:
        stack = np.concatenate([self.frames[max(0, self.t - self.k + 1 + i)] for i in range(self.k)], axis=-1)
        return stack.transpose(2, 0, 1).copy() if self.channels_first else stack

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), 1.0, self.t >= 30, False, {}


@pytest.mark.parametrize("channels_first", [True, False])
def test_attention_adapter_masks_every_frame(tmp_path: Path, channels_first: bool) -> None:
    torch.manual_seed(0)
    adapter = MaskAdapter(4, (20, 20))
    with torch.no_grad():  # a mask mostly inside (0, 1)
        adapter.decoder[4][1].bias.fill_(0.5)  # the BatchNorm of the last block
    adapter.save(tmp_path)
    env = AttentionAdapter(RGBStack(k=2, channels_first=channels_first), checkpoint=str(tmp_path))
    assert env.observation_space == env.env.observation_space
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(0)
    raw = env.env._obs()
    frames = np.stack([env.env.frames[0], env.env.frames[1]])
    expected_masks = MaskAdapter.load(tmp_path).predict(frames)
    np.testing.assert_allclose(env.last_mask, expected_masks, atol=1e-5)
    assert 0 < expected_masks.mean() < 1
    expected = np.round(frames * expected_masks[..., None]).astype(np.uint8)
    stacked = np.concatenate(list(expected), axis=-1)
    np.testing.assert_array_equal(obs, stacked.transpose(2, 0, 1) if channels_first else stacked)
    assert reward == 1.0 and not np.array_equal(obs, raw)
    np.testing.assert_allclose(env.masks(raw), expected_masks, atol=1e-5)
    binary = AttentionAdapter(
        RGBStack(k=2, channels_first=channels_first), checkpoint=str(tmp_path), threshold=0.5
    )
    binary.reset(seed=0)
    binary.step(0)
    assert set(np.unique(binary.last_mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(binary.last_mask, (expected_masks > 0.5).astype(np.float32))


@pytest.mark.parametrize("channels_first", [True, False])
def test_attention_adapter_mask_output_is_the_grey_mask(tmp_path: Path, channels_first: bool) -> None:
    torch.manual_seed(0)
    adapter = MaskAdapter(4, (20, 20))
    with torch.no_grad():
        adapter.decoder[4][1].bias.fill_(0.5)
    adapter.save(tmp_path)
    env = AttentionAdapter(
        RGBStack(k=2, channels_first=channels_first), checkpoint=str(tmp_path), output="mask"
    )
    env.reset(seed=0)
    obs, *_ = env.step(0)
    assert obs.dtype == np.uint8 and obs.shape == env.observation_space.shape
    frames = env.layout.split(obs)
    expected = np.round(255.0 * env.last_mask).astype(np.uint8)
    for c in range(3):  # the same grey mask in every channel of every frame
        np.testing.assert_array_equal(frames[..., c], expected)
    with pytest.raises(ValueError, match="output must be one of"):
        AttentionAdapter(RGBStack(), checkpoint=str(tmp_path), output="silhouette")


def test_attention_adapter_errors_name_the_expected_shape(tmp_path: Path) -> None:
    MaskAdapter(2, (20, 20)).save(tmp_path)
    with pytest.raises(
        AdapterShapeError, match=r"trained on 20x20 RGB frames.*\(3k, 20, 20\).*\(6, 24, 24\)"
    ):
        AttentionAdapter(RGBStack(k=2, size=24), checkpoint=str(tmp_path))
    with pytest.raises(IncompatibleSpaceError, match=r"\(H, W\)"):
        AttentionAdapter(gym.make("CartPole-v1"), checkpoint=str(tmp_path))
    with pytest.raises(IncompatibleSpaceError, match=r"RGB frames.*\(4, 84, 84\)"):
        AttentionAdapter(critwrap.make("Pong"), checkpoint=str(tmp_path))
    odd = gym.spaces.Box(0, 255, (20, 20, 20), np.uint8)
    env = RGBStack()
    env.observation_space = odd
    with pytest.raises(IncompatibleSpaceError, match="channel layout"):
        AttentionAdapter(env, checkpoint=str(tmp_path))
    with pytest.raises(CheckpointError, match="no vai-adapter checkpoint"):
        AttentionAdapter(RGBStack(), checkpoint=str(tmp_path / "nowhere"))


def test_attention_adapter_device_auto_and_unusable_devices(tmp_path: Path) -> None:
    MaskAdapter(2, (20, 20)).save(tmp_path)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    env = AttentionAdapter(RGBStack(), checkpoint=str(tmp_path), device="auto")
    assert env.device == want and next(env.adapter.parameters()).device.type == want
    env.reset(seed=0)
    env.step(0)
    assert env._saved_kwargs["device"] == "auto"  # a re-made env decides again on its own machine
    for bad, match in (("tpu", "not a torch device"), ("meta", "the adapter runs on 'cpu'")):
        with pytest.raises(ValueError, match=match):
            AttentionAdapter(RGBStack(), checkpoint=str(tmp_path), device=bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            AttentionAdapter(RGBStack(), checkpoint=str(tmp_path), device="cuda")


# ---- end to end: fit_vai, the zoo CLI -------------------------------------------------------------


def test_random_frames_can_be_cut_into_short_episodes() -> None:
    from critwrap.attention.pipeline import RenderSettings, collect_random_frames

    render = RenderSettings(size=16, shadows=False)
    cut = collect_random_frames("dm_control/cartpole-balance-v0", 11, render, seed=0, episode_frames=4)
    assert [len(e) for e in cut] == [4, 4, 3]
    whole = collect_random_frames("dm_control/cartpole-balance-v0", 11, render, seed=0)
    assert [len(e) for e in whole] == [11]
    np.testing.assert_array_equal(cut[0], whole[0][:4])  # the same seeded start
    with pytest.raises(ValueError, match="episode_frames"):
        collect_random_frames("dm_control/cartpole-balance-v0", 11, render, episode_frames=1)


def test_zoo_adapter_fit_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from critwrap.zoo.__main__ import main

    out = tmp_path / "adapter"
    argv = [
        "adapter", "fit", "--env", "dm_control/cartpole-balance-v0", "--out", str(out), "--size", "20",
        "--no-shadows", "--frames", "12", "--stage1-width", "2", "--stage1-iterations", "2", "--stage1-batch", "2",
        "--stage2-width", "2", "--stage2-iterations", "2", "--stage2-batch", "2", "--threshold", "-100", "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    for name in (
        "adapter.json",
        "adapter.safetensors",
        "transporter.json",
        "transporter.safetensors",
        "fit.json",
        "preview.png",
    ):
        assert (out / name).is_file(), name
    fit = json.loads((out / "fit.json").read_text())
    assert fit["frames"] == 12 and fit["foreground_fraction"] == 1.0 and fit["render"]["size"] == 20
    # TensorBoard: every iteration's losses of both stages and the masks' foreground fraction
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    scalars = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert scalars["stage1/reconstruction"] == [0, 1] and scalars["stage2/mask"] == [0, 1]
    assert scalars["stage2/features"] == [0, 1] and scalars["targets/foreground_fraction"] == [0]
    assert main(argv) == 1  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    again = [*argv[: argv.index("--out") + 1], str(tmp_path / "again"), *argv[argv.index("--out") + 2 :]]
    colour = ["--recolor-prob", "0.5", "--recolor-mode", "rgb", "--color-transform-prob", "0.5"]
    colour += ["--region-recolor-prob", "0.5"]
    assert (
        main([*again, "--transporter", str(out), "--stage1-iterations", "0", *colour]) == 0
    )  # stage 1 reused
    refit = json.loads((tmp_path / "again" / "fit.json").read_text())
    assert refit["transporter_reused_from"] == str(out)
    assert refit["stage2"]["recolor_mode"] == "rgb" and refit["stage2"]["color_transform_prob"] == 0.5
    assert refit["stage2"]["region_recolor_prob"] == 0.5
    assert refit["episode_frames"] is None
    assert (tmp_path / "again" / "transporter.safetensors").read_bytes() == (
        out / "transporter.safetensors"
    ).read_bytes()
    png = tmp_path / "show.png"
    assert (
        main(
            [
                "adapter",
                "show",
                "--checkpoint",
                str(out),
                "--distraction",
                "color-hard",
                "--frames",
                "3",
                "--out",
                str(png),
            ]
        )
        == 0
    )
    import imageio.v3 as iio

    assert iio.imread(png).shape == (3 * 20 * 2, 3 * 20 * 2, 3)  # rows: frames, masks, masked; scale 2
    env = critwrap.make(
        "dm_control/cartpole-balance-v0",
        wrappers=[
            ("pixel-observation", {"size": 20, "frame_stack": 2, "shadows": False}),
            ("attention-adapter", {"checkpoint": str(out)}),
        ],
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6, 20, 20)
    from critwrap.attention.pipeline import RenderSettings, make_pixel_env

    binary = make_pixel_env(
        "dm_control/cartpole-balance-v0",
        RenderSettings(size=20, shadows=False),
        channels_first=True,
        adapter=str(out),
        adapter_output="mask",
        adapter_threshold=0.5,
    )
    assert set(np.unique(binary.reset(seed=0)[0])) <= {0, 255}  # binarised mask
    assert main(["adapter", "fit", "--env", "CartPole-v1", "--out", str(tmp_path / "x"), "--size", "20"]) == 1
    assert "RGB" in capsys.readouterr().err


def test_resize_wrapper_sizes_and_bad_input() -> None:
    from critwrap.wrappers.resize import Resize

    env = critwrap.make("Breakout", preprocess=False, wrappers=[("resize", {"size": 84})])
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (84, 84, 3) and obs.dtype == np.uint8
    assert critwrap.make("Breakout", preprocess=False, wrappers=[("resize", {"size": [40, 32]})]).observation_space.shape == (40, 32, 3)  # fmt: skip
    raw = critwrap.make("Breakout", preprocess=False)
    for bad in (0, [84], "84", True):
        with pytest.raises(ValueError, match="size"):
            Resize(raw, size=bad)  # type: ignore[arg-type]
    with pytest.raises(IncompatibleSpaceError, match=r"\(H, W\) or \(H, W, C\)"):
        Resize(gym.make("CartPole-v1"), size=8)
    with pytest.raises(IncompatibleSpaceError, match="channels-last"):
        Resize(critwrap.make("Breakout"), size=8)  # (4, 84, 84) stacked grey frames


def test_vai_on_an_env_with_its_own_frames_needs_sides_divisible_by_4_and_keeps_its_wrappers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Atari's 210x160 RGB frames: a clear error naming the resize wrapper; with it, fit -> show -> train."""
    from critwrap.attention.pipeline import collect_random_frames
    from critwrap.zoo.__main__ import main

    with pytest.raises(ValueError, match=r"210x160 frames.*resize:size=84"):
        collect_random_frames("ALE/Breakout-v5", 4)
    episodes = collect_random_frames("ALE/Breakout-v5", 4, wrappers=[("resize", {"size": 20})])
    assert [e.shape for e in episodes] == [(4, 20, 20, 3)]
    out = tmp_path / "adapter"
    argv = [
        "adapter", "fit", "--env", "ALE/Breakout-v5", "--out", str(out), "--frames", "8",
        "--stage1-width", "2", "--stage1-iterations", "1", "--stage1-batch", "2", "--stage2-width", "2",
        "--stage2-iterations", "1", "--stage2-batch", "2", "--threshold", "-100", "--quiet",
    ]  # fmt: skip
    assert main([*argv, "--size", "20"]) == 1  # --size is for frames critwrap renders
    assert "210x160 frames: resize them with --wrapper resize:size=20" in capsys.readouterr().err
    assert main([*argv, "--wrapper", "resize:size=20"]) == 0
    meta = json.loads((out / "adapter.json").read_text())
    assert meta["wrappers"] == [["resize", {"size": 20}]] and meta["image_shape"] == [3, 20, 20]
    png = tmp_path / "show.png"
    assert main(["adapter", "show", "--checkpoint", str(out), "--frames", "2", "--out", str(png)]) == 0
    import imageio.v3 as iio

    assert iio.imread(png).shape == (3 * 20 * 2, 2 * 20 * 2, 3)  # the saved resize was applied
    env = critwrap.make(
        "ALE/Breakout-v5",
        wrappers=[("resize", {"size": 20}), ("attention-adapter", {"checkpoint": str(out)})],
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == (20, 20, 3)
