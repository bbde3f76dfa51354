"""Tests of the Deep State Identifier (critwrap.detectors.dsi) and the saliency baseline."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from critwrap.detectors.base import DetectorFormatError, load_detector
from critwrap.detectors.baselines import RandomDetector
from critwrap.detectors.dsi import DSI, DSIConfig, _Layout, _modules
from critwrap.detectors.saliency import ReturnSaliency
from critwrap.episodes import Episode

TINY = {"channels": (4, 8, 8, 8, 8), "lstm_hidden": 8, "batch_size": 8}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def random_episodes(
    n: int, seed: int = 0, size: int = 24, lengths: tuple[int, int] = (5, 11)
) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            rng.integers(0, 256, (int(rng.integers(*lengths)), size, size, 3), dtype=np.uint8),
            label=i % 2,
        )
        for i in range(n)
    ]


def planted_episodes(n: int, seed: int) -> tuple[list[Episode], list[int]]:
    """Dim frames; at one step a 10x10 square appears: white -> success (1), blue -> failure (0).

    The label depends only on that step, so it is the one critical step of every episode.
    """
    rng = np.random.default_rng(seed)
    episodes, steps = [], []
    for _ in range(n):
        T = int(rng.integers(10, 17))
        frames = np.full((T, 24, 24, 3), 40, dtype=np.uint8)
        t_star, label = int(rng.integers(0, T)), int(rng.integers(0, 2))
        y, x = rng.integers(3, 11, size=2)
        frames[t_star, y : y + 10, x : x + 10] = (255, 255, 255) if label else (30, 30, 255)
        episodes.append(Episode(frames, label=label, metadata={"critical_steps": [t_star]}))
        steps.append(t_star)
    return episodes, steps


@pytest.fixture(scope="module")
def fitted() -> tuple[DSI, list[Episode]]:
    torch.set_num_threads(1)
    eps = random_episodes(12)
    return DSI(**TINY).fit(eps, epochs=2, progress=False, seed=0), eps


# ---- scoring ---------------------------------------------------------------------------------------


def test_scores_are_per_frame_in_unit_interval(fitted: tuple[DSI, list[Episode]]) -> None:
    det, eps = fitted
    for ep in eps[:3]:
        s = det.score(ep.frames)
        assert s.shape == (len(ep),)
        assert np.all((s > 0) & (s < 1))
    # episodes longer than the predictor's max_length can still be scored by the detector
    long = np.concatenate([eps[0].frames] * 5)
    assert det.score(long).shape == (len(long),)


def test_score_batch_equals_score_per_episode(fitted: tuple[DSI, list[Episode]]) -> None:
    det, eps = fitted
    batch = det.score_batch([ep.frames for ep in eps])
    for ep, s in zip(eps, batch):
        np.testing.assert_allclose(s, det.score(ep.frames), rtol=1e-5, atol=1e-6)
    det.config.score_batch_frames = 20  # several forward passes
    try:
        chunked = det.score_batch([ep.frames for ep in eps])
    finally:
        det.config.score_batch_frames = 4096
    for a, b in zip(batch, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_embed_gives_per_frame_features_independent_of_chunking(fitted: tuple[DSI, list[Episode]]) -> None:
    det, eps = fitted
    frames = eps[0].frames
    emb = det.embed(frames)
    assert emb.shape == (len(frames), det.config.channels[-1]) and emb.dtype == np.float32
    # different frames give different features, and chunked encoding equals one pass
    assert np.abs(emb - emb[0]).max() > 1e-4
    det.config.score_batch_frames = 3
    try:
        np.testing.assert_allclose(det.embed(frames), emb, rtol=1e-5, atol=1e-6)
    finally:
        det.config.score_batch_frames = 4096
    with pytest.raises(ValueError, match="do not match"):
        det.embed(frames[:, :8])


def test_channels_first_and_float_frames_give_the_same_model() -> None:
    eps = random_episodes(8, seed=1)
    chw = [Episode(ep.frames.transpose(0, 3, 1, 2), label=ep.label) for ep in eps]
    floats = [Episode(ep.frames.astype(np.float32) / 255.0, label=ep.label) for ep in eps]
    a = DSI(**TINY).fit(eps, epochs=1, progress=False, seed=3)
    b = DSI(**TINY).fit(chw, epochs=1, progress=False, seed=3)
    c = DSI(**TINY).fit(floats, epochs=1, progress=False, seed=3)
    assert b.config.frame_layout == "CHW" and a.config.frame_layout == "HWC"
    np.testing.assert_allclose(a.score(eps[0].frames), b.score(chw[0].frames), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.score(eps[0].frames), c.score(floats[0].frames), rtol=1e-4, atol=1e-5)
    # channels-first uint8 frames take a shortcut to the network in embed (no HWC round trip): same
    # features as the general path, which float frames of the same values take
    assert b._uint8_nchw(chw[0].frames) is not None and a._uint8_nchw(eps[0].frames) is None
    as_float = chw[0].frames.astype(np.float32)  # floats above 1: scaled by 1/255 like uint8
    assert b._uint8_nchw(as_float) is None
    np.testing.assert_allclose(b.embed(chw[0].frames), b.embed(as_float), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.embed(chw[0].frames), a.embed(eps[0].frames), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        b.embed(chw[0].frames[:, :, :8])


def test_unfitted_detector_refuses_to_score() -> None:
    with pytest.raises(RuntimeError, match="not trained"):
        DSI(**TINY).score(np.zeros((3, 24, 24, 3), dtype=np.uint8))


def test_wrong_frame_shape_at_score_time(fitted: tuple[DSI, list[Episode]]) -> None:
    det, _ = fitted
    with pytest.raises(ValueError, match="do not match"):
        det.score(np.zeros((3, 32, 32, 3), dtype=np.uint8))


# ---- reproducibility and persistence -----------------------------------------------------------------


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    eps = random_episodes(8, seed=2)
    a = DSI(**TINY).fit(eps, epochs=1, progress=False, seed=5)._get_state()
    b = DSI(**TINY).fit(eps, epochs=1, progress=False, seed=5)._get_state()
    c = DSI(**TINY).fit(eps, epochs=1, progress=False, seed=6)._get_state()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_resume_continues_a_fit_exactly() -> None:
    eps = random_episodes(10, seed=3)
    full = DSI(**TINY).fit(eps, epochs=3, progress=False, seed=4)
    part = DSI(**TINY).fit(eps, epochs=2, progress=False, seed=4)
    part.fit(eps, epochs=1, progress=False, resume=True)
    a, b = full._get_state(), part._get_state()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in part.history] == [0.0, 1.0, 2.0]
    warm = DSI(**TINY).fit(eps, epochs=2, progress=False, seed=4)
    warm.fit(eps, epochs=1, progress=False, seed=4, warm_start=True)  # new optimisers: not the same
    assert not all(np.array_equal(a[k], warm._get_state()[k]) for k in a)
    with pytest.raises(RuntimeError, match="no"):
        DSI(**TINY).fit(eps, epochs=1, progress=False, resume=True)
    with pytest.raises(ValueError, match="episodes of the previous fit"):
        part.fit(eps[:5], epochs=1, progress=False, resume=True)
    with pytest.raises(ValueError, match="not both"):
        part.fit(eps, epochs=1, progress=False, resume=True, warm_start=True)


def test_save_load_gives_identical_scores(fitted: tuple[DSI, list[Episode]], tmp_path) -> None:
    det, eps = fitted
    det.save(tmp_path / "dsi")
    cfg = json.loads((tmp_path / "dsi" / "config.json").read_text())
    assert cfg["detector"] == "dsi"
    assert not list((tmp_path / "dsi").glob("*.pt")) and not list((tmp_path / "dsi").glob("*.pkl"))
    for loaded in (DSI.load(tmp_path / "dsi"), load_detector(tmp_path / "dsi")):
        assert isinstance(loaded, DSI)
        for ep in eps[:4]:
            np.testing.assert_array_equal(loaded.score(ep.frames), det.score(ep.frames))
        np.testing.assert_array_equal(loaded.predict([eps[0].frames]), det.predict([eps[0].frames]))


def test_checkpoint_from_before_the_new_defaults_loads_with_its_own_behaviour(tmp_path) -> None:
    torch.set_num_threads(1)
    eps = random_episodes(8)
    old = DSI(**TINY, mask_input="frames", length_blind=False).fit(eps, epochs=1, progress=False, seed=0)
    old.save(tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("mask_input", "length_blind", "mask_sampling"):  # what a checkpoint of that time holds
        cfg["config"].pop(key, None)
    cfg_path.write_text(json.dumps(cfg))
    loaded = DSI.load(tmp_path / "old")
    assert loaded.config.mask_input == "frames" and loaded.config.length_blind is False
    frames = [ep.frames for ep in eps[:3]]
    np.testing.assert_allclose(
        loaded.predict(frames, masked=True), old.predict(frames, masked=True), atol=1e-6
    )
    # a DSI made today still gets today's defaults
    assert DSI(**TINY).config.mask_input == "features" and DSI(**TINY).config.length_blind is True


def test_loading_other_detectors_and_newer_formats_fails(fitted: tuple[DSI, list[Episode]], tmp_path) -> None:
    RandomDetector(seed=0).save(tmp_path / "random")
    with pytest.raises(DetectorFormatError, match="RandomDetector"):
        DSI.load(tmp_path / "random")
    det, _ = fitted
    det.save(tmp_path / "dsi")
    cfg_path = tmp_path / "dsi" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(DetectorFormatError, match="format_version"):
        DSI.load(tmp_path / "dsi")
    # weights that do not fit the configured networks
    det.save(tmp_path / "dsi2")
    cfg_path = tmp_path / "dsi2" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["config"]["lstm_hidden"] = 16
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(DetectorFormatError, match="shape"):
        DSI.load(tmp_path / "dsi2")


def test_unfitted_dsi_round_trips(tmp_path) -> None:
    DSI(**TINY, l1=0.01).save(tmp_path / "d")
    loaded = DSI.load(tmp_path / "d")
    assert isinstance(loaded, DSI) and not loaded.is_fitted and loaded.config.l1 == 0.01


# ---- bad input ---------------------------------------------------------------------------------------


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(DSI, "_train_step", boom)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: [], "no training episodes"),
        (
            lambda: [(np.zeros((0, 24, 24, 3), np.uint8), 1.0), (np.zeros((3, 24, 24, 3), np.uint8), 0.0)],
            "no frames",
        ),
        (
            lambda: [
                Episode(np.zeros((3, 24, 24, 3), np.uint8), label=0),
                Episode(np.zeros((3, 28, 28, 3), np.uint8), label=1),
            ],
            "frame shape",
        ),
        (
            lambda: [
                Episode(np.zeros((3, 24, 24, 3), np.uint8), episode_return=math.nan),
                *random_episodes(2),
            ],
            "non-finite",
        ),
        (lambda: [Episode(np.zeros((3, 24, 24, 3), np.uint8), label=1) for _ in range(3)], "same label"),
        (lambda: [Episode(np.zeros((3, 16, 16, 3), np.uint8), label=i % 2) for i in range(3)], "too small"),
        (lambda: [Episode(np.zeros((3, 24, 24, 3), np.uint8)), *random_episodes(2)], "neither a label"),
        (lambda: [np.zeros((3, 24, 24, 3), np.uint8)], "Episode"),
    ],
)
def test_bad_training_input_is_rejected_before_training(make, match, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_training(monkeypatch)
    with pytest.raises((ValueError, TypeError), match=match):
        DSI(**TINY).fit(make(), epochs=1, progress=False)


def test_bad_validation_and_length_are_rejected(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_training(monkeypatch)
    eps = random_episodes(4)
    val = [Episode(np.zeros((3, 24, 24, 3), np.uint8), label=7)]
    with pytest.raises(ValueError, match="not among the training classes"):
        DSI(**TINY).fit(eps, epochs=1, val_episodes=val, progress=False)
    with pytest.raises(ValueError, match="max_length"):
        DSI(**TINY, max_length=4).fit(eps, epochs=1, progress=False)


def test_bad_settings() -> None:
    with pytest.raises(TypeError, match="unknown DSI setting") as err:
        DSI(mask_budgett=0.1)
    assert "did you mean 'mask_budget'" in str(err.value) and "newer critwrap" not in str(err.value)
    with pytest.raises(
        TypeError, match="newer critwrap"
    ):  # a checkpoint's config with a setting unknown here
        DSI({"a_future_setting": 1})
    with pytest.raises(ValueError, match="task"):
        DSIConfig(task="ranking")
    with pytest.raises(ValueError, match="channels"):
        DSI(channels=(8, 8))


# ---- the pieces are what the paper's code computes ---------------------------------------------------


def test_two_one_way_lstms_equal_a_packed_bidirectional_lstm() -> None:
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    net = _modules()["MaskNet"](3, (4, 8, 8, 8, 6), 5, 512).backbone
    bi = torch.nn.LSTM(6, 5, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(bi, name).copy_(getattr(net.lstm_fwd, name))
            getattr(bi, name + "_reverse").copy_(getattr(net.lstm_bwd, name))
    lengths = [7, 3, 5]
    layout = _Layout.from_lengths(lengths)
    x = torch.rand(sum(lengths), 3, 24, 24)
    ours = net.sequence(x, layout)
    feats = net.encode(x)
    padded = feats.new_zeros(3, 7, 6).index_put((layout.b_idx, layout.t_idx), feats)
    out, _ = bi(pack_padded_sequence(padded, torch.tensor(lengths), batch_first=True, enforce_sorted=False))
    ref, _ = pad_packed_sequence(out, batch_first=True)
    torch.testing.assert_close(ours, ref[layout.b_idx, layout.t_idx], rtol=1e-5, atol=1e-6)


def test_instance_norm_and_l1_match_the_original_definitions() -> None:
    torch.manual_seed(0)
    enc = _modules()["MaskNet"](3, (4, 8, 8, 8, 6), 5, 512).backbone.encoder
    z = torch.randn(5, 8, 9, 9)
    torch.testing.assert_close(enc.norm2(z), torch.nn.InstanceNorm2d(8)(z), rtol=1e-4, atol=1e-5)
    det = DSI(**TINY)
    lengths = [4, 2, 3]
    layout = _Layout.from_lengths(lengths)
    m = torch.rand(sum(lengths))
    padded = torch.zeros(3, 4).index_put((layout.b_idx, layout.t_idx), m)
    # the paper's code: torch.linalg.norm(mask, ord=1) on the (batch, time) mask = max column sum
    torch.testing.assert_close(det._l1(m, layout), torch.linalg.norm(padded, ord=1))
    det.config.l1_reduction = "mean"
    torch.testing.assert_close(det._l1(m, layout), m.mean())


def test_mask_budget_hinge_is_per_episode_and_only_above_the_budget(tmp_path) -> None:
    det = DSI(**TINY, mask_budget=0.25)
    layout = _Layout.from_lengths([4, 2])
    m = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # episode means 0.25 and 1.0
    # episode 0 sits at the budget (no penalty), episode 1 is 0.75 above it: mean over episodes 0.375
    torch.testing.assert_close(det._budget_hinge(m, layout), torch.tensor(0.375))
    # training with the hinge logs it, and the setting round-trips through a checkpoint
    eps = random_episodes(8)
    det = DSI(**TINY, mask_budget=0.1, mask_budget_weight=2.0).fit(eps, epochs=1, progress=False, seed=0)
    assert all("loss_budget" in h for h in det.history if "loss_detector" in h)
    det.save(tmp_path / "b")
    assert DSI.load(tmp_path / "b").config.mask_budget == 0.1
    assert "loss_budget" not in DSI(**TINY).fit(eps, epochs=1, progress=False, seed=0).history[-1]
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="mask_budget"):
            DSI(mask_budget=bad)
    with pytest.raises(ValueError, match="mask_budget_weight"):
        DSI(mask_budget=0.1, mask_budget_weight=-1.0)


def test_mask_budget_keeps_the_mask_below_what_l1_alone_gives() -> None:
    eps, _ = planted_episodes(48, seed=1)
    kw = {**TINY, "lr": 3e-3, "l1": 0.0}
    free = DSI(**kw).fit(eps, epochs=10, progress=False, seed=0)
    capped = DSI(**kw, mask_budget=0.1, mask_budget_weight=10.0).fit(eps, epochs=10, progress=False, seed=0)
    frames = [e.frames for e in eps]
    mean_free = float(np.mean(np.concatenate(free.score_batch(frames))))
    mean_capped = float(np.mean(np.concatenate(capped.score_batch(frames))))
    assert mean_capped < 0.2 < mean_free, (mean_capped, mean_free)


def test_length_blind_predictor_sees_no_length_in_a_fully_masked_video() -> None:
    eps = random_episodes(8, lengths=(5, 11))
    det = DSI(**TINY, max_length=12).fit(eps, epochs=1, progress=False, seed=0)
    net = det.predictor_net.eval()
    layout = _Layout.from_lengths([4, 11])
    x = torch.rand(15, 3, 24, 24)
    zero = torch.zeros(15)
    with torch.inference_mode():
        blind = net(x, layout, feature_mask=zero)
        # masked-out frames and padding are the same input: the two episodes are indistinguishable
        torch.testing.assert_close(blind[0], blind[1])
        net.length_blind = False  # the original: LSTM outputs zero-padded after each episode's end
        leaky = net(x, layout, feature_mask=zero)
        assert not torch.allclose(leaky[0], leaky[1])
        # a dimmed frame is not a removed one: its CNN features (biases, instance normalisation) stay far
        # larger than 1% of the frame's features, which is what feature masking gives
        net.length_blind = True
        f_full, f_dim = net.backbone.encode(x), net.backbone.encode(x * 0.01)
        assert f_dim.norm() > 0.2 * f_full.norm()
    # the predictor's outputs on a masked video follow mask_input
    m = torch.full((15,), 0.0)
    with torch.inference_mode():
        out_f, rev_f = det._masked_outputs(x, layout, m)
        det.config.mask_input = net.mask_input = "frames"
        out_x, _ = det._masked_outputs(x, layout, m, reverse=False)
    assert rev_f is not None
    torch.testing.assert_close(out_f[0], out_f[1])  # features zeroed: nothing left
    torch.testing.assert_close(out_x[0], out_x[1])  # frames zeroed and length-blind: nothing left either


def test_mask_options_train_and_round_trip(tmp_path) -> None:
    eps = random_episodes(8)
    for kw in ({"mask_sampling": "bernoulli"}, {"mask_input": "frames", "length_blind": False}):
        det = DSI(**TINY, **kw).fit(eps, epochs=1, progress=False, seed=0)
        assert np.isfinite(det.history[-1]["loss_detector"])
        det.save(tmp_path / kw.get("mask_sampling", "frames"))
        back = DSI.load(tmp_path / kw.get("mask_sampling", "frames"))
        assert back.config.to_dict() == det.config.to_dict()
        np.testing.assert_array_equal(
            back.predict([e.frames for e in eps]), det.predict([e.frames for e in eps])
        )
    with pytest.raises(ValueError, match="mask_sampling"):
        DSI(mask_sampling="hard")
    with pytest.raises(ValueError, match="mask_input"):
        DSI(mask_input="pixels")


def test_predictor_only_leaves_the_detector_untouched() -> None:
    eps = random_episodes(8)
    det = DSI(**TINY).fit(eps, epochs=0, progress=False, seed=0)
    before = {k: v.copy() for k, v in det._get_state().items()}
    det.fit(eps, epochs=1, progress=False, predictor_only=True, warm_start=True)
    after = det._get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith("detector."))
    assert not all(np.array_equal(before[k], after[k]) for k in before if k.startswith("predictor."))


# ---- training options ----------------------------------------------------------------------------------


def test_regression_task_history_callback_and_tensorboard(tmp_path) -> None:
    rng = np.random.default_rng(0)
    eps = [
        Episode(rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8), rewards=rng.normal(size=6))
        for _ in range(10)
    ]
    seen: list[dict[str, float]] = []

    def stop_after_two(det: DSI, record: dict[str, float]) -> bool:
        seen.append(record)
        return len(seen) < 2

    det = DSI(**TINY, task="regression", return_scale=10.0)
    det.fit(
        eps,
        epochs=5,
        val_episodes=eps[:4],
        progress=False,
        tensorboard_log=tmp_path / "tb",
        callback=stop_after_two,
    )
    assert len(det.history) == 2 and det.fit_stats["epochs"] == 2
    assert all(math.isfinite(v) for v in det.history[-1].values())
    assert "val_loss_predictor" in det.history[-1]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    pred = det.predict([ep.frames for ep in eps[:3]])
    assert pred.shape == (3,) and np.isfinite(pred).all()


def test_fit_from_an_episode_store_folder(tmp_path) -> None:
    from critwrap.episodes import EpisodeStore

    store = EpisodeStore(tmp_path / "store")
    for ep in random_episodes(6):
        store.append(ep)
    det = DSI(**TINY).fit(str(tmp_path / "store"), epochs=1, progress=False)
    assert det.config.classes == [0.0, 1.0]


# ---- saliency ---------------------------------------------------------------------------------------


def test_saliency_from_dsi_scores_and_round_trips(fitted: tuple[DSI, list[Episode]], tmp_path) -> None:
    det, eps = fitted
    sal = ReturnSaliency.from_dsi(det)
    scores = sal.score_batch([ep.frames for ep in eps[:4]])
    for ep, s in zip(eps[:4], scores):
        assert s.shape == (len(ep),) and s.max() == pytest.approx(1.0) and s.min() >= 0
        np.testing.assert_allclose(s, sal.score(ep.frames), rtol=1e-4, atol=1e-5)
    sal.save(tmp_path / "sal")
    loaded = load_detector(tmp_path / "sal")
    assert isinstance(loaded, ReturnSaliency)
    np.testing.assert_allclose(loaded.score(eps[0].frames), scores[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_length"):
        sal.score(np.concatenate([eps[0].frames] * 10))


# ---- learning: the planted critical step is found -------------------------------------------------------


def test_dsi_finds_the_planted_critical_step() -> None:
    train, _ = planted_episodes(160, seed=0)
    test, steps = planted_episodes(60, seed=1)
    det = DSI(channels=(8, 16, 16, 16, 16), lstm_hidden=16, batch_size=16, lr=1e-3)
    det.fit(train, epochs=12, progress=False, seed=0)
    scores = det.score_batch([ep.frames for ep in test])
    hits = np.mean([abs(int(np.argmax(s)) - t) <= 1 for s, t in zip(scores, steps)])
    chance = np.mean([min(3, len(s)) / len(s) for s in scores])  # a random top-1 lands within +-1
    assert hits > chance + 0.3, (hits, chance)
    # the mask is higher at the critical step than elsewhere on average
    assert np.mean([s[t] - np.delete(s, t).mean() for s, t in zip(scores, steps)]) > 0.05
    # the saliency baseline on the same (trained) return predictor finds it too
    saliency = ReturnSaliency.from_dsi(det).score_batch([ep.frames for ep in test])
    sal_hits = np.mean([abs(int(np.argmax(s)) - t) <= 1 for s, t in zip(saliency, steps)])
    assert sal_hits > chance + 0.3, (sal_hits, chance)


def test_fit_from_a_folder_of_npy_videos(tmp_path) -> None:
    """The DSI datasets' layout: <split>/positive/<i>.npy and <split>/negative/<i>.npy (T, H, W, C)."""
    for i, ep in enumerate(random_episodes(6, seed=4)):
        folder = tmp_path / "train" / ("positive" if ep.label else "negative")
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i}.npy", ep.frames)
    det = DSI(**TINY).fit(tmp_path / "train", epochs=1, progress=False)
    assert det.is_fitted and det.config.classes == [0.0, 1.0] and det.config.frame_size == (24, 24)


def test_rejected_input_leaves_the_settings_untouched(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_training(monkeypatch)
    det = DSI(**TINY)
    bad_val = [Episode(np.zeros((3, 24, 24, 3), np.uint8), label=7)]  # the training set itself is fine
    with pytest.raises(ValueError, match="not among the training classes"):
        det.fit(random_episodes(4), epochs=1, val_episodes=bad_val, progress=False)
    assert det.config == DSIConfig(**TINY)


def test_mask_spread_is_the_mean_within_episode_std() -> None:
    det = DSI(**TINY)
    layout = _Layout.from_lengths([4, 2])
    # episode 0: 1, 0, 0, 0 (std sqrt(3)/4); episode 1: 0.3, 0.3 (std 0, flat at any level)
    m = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.3, 0.3])
    assert det._mask_spread(m, layout) == pytest.approx((math.sqrt(3) / 4 + 0.0) / 2, rel=1e-6)


def test_fit_logs_mask_std_and_warns_when_the_mask_is_flat(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import critwrap.detectors.dsi as dsi_module

    eps = random_episodes(8)
    with pytest.warns(RuntimeWarning, match="nearly constant"):
        monkeypatch.setattr(dsi_module, "FLAT_MASK_STD", 2.0)  # any mask std counts as flat
        det = DSI(**TINY).fit(eps, epochs=1, progress=False, seed=0, val_episodes=eps[:2])
    rec = det.history[-1]
    assert 0.0 <= rec["mask_std"] <= 0.5 and 0.0 <= rec["val_mask_std"] <= 0.5
    import warnings

    monkeypatch.setattr(dsi_module, "FLAT_MASK_STD", 0.0)  # nothing counts as flat
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        DSI(**TINY).fit(eps, epochs=1, progress=False, seed=0)


def test_constant_baseline_is_the_best_input_blind_prediction() -> None:
    det = DSI(**TINY, task="classification")
    det.config.classes = [0.0, 1.0]
    out = det._constant_output(np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(np.exp(out), [[0.75, 0.25]], rtol=1e-5)
    reg = DSI(**TINY, task="regression")
    # smooth-L1 of the median 0 is (0 * 3 + 9.5) / 4 = 2.375, of the mean 2.5 it is (2 * 3 + 7) / 4 = 3.25
    assert reg._constant_output(np.array([0.0, 0.0, 0.0, 10.0], np.float32))[0, 0] == 0.0
    # with targets spread evenly the mean is as good as the median and both are the middle value
    assert reg._constant_output(np.array([1.0, 2.0, 3.0], np.float32))[0, 0] == pytest.approx(2.0)


def test_fit_warns_when_the_predictor_never_beats_a_constant() -> None:
    # labels independent of the frames: nothing to learn, the validation loss cannot beat the base rate
    train, val = random_episodes(16, seed=0), random_episodes(32, seed=1)
    with pytest.warns(RuntimeWarning, match="not beat a constant"):
        det = DSI(**TINY).fit(train, epochs=2, progress=False, seed=0, val_episodes=val)
    rec = det.history[-1]
    assert rec["val_loss_constant"] == pytest.approx(math.log(2), rel=1e-4)  # balanced labels
    assert rec["val_acc_constant"] == pytest.approx(0.5)


def test_a_learned_predictor_beats_the_constant_baseline() -> None:
    import warnings

    train, _ = planted_episodes(96, seed=0)
    val, _ = planted_episodes(32, seed=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not beat a constant.*", category=RuntimeWarning)
        det = DSI(channels=(8, 16, 16, 16, 16), lstm_hidden=16, batch_size=16, lr=1e-3).fit(
            train, epochs=6, progress=False, seed=0, val_episodes=val
        )
    best = min(r["val_loss_predictor"] for r in det.history)
    assert best < 0.95 * det.history[-1]["val_loss_constant"], (best, det.history[-1]["val_loss_constant"])


# ---- device --------------------------------------------------------------------------------------


def test_device_is_checked_kept_out_of_the_checkpoint_and_cpu_gives_the_default_model(tmp_path) -> None:
    eps = random_episodes(8, seed=7)
    a = DSI(**TINY).fit(eps, epochs=1, progress=False, seed=3)
    b = DSI(**TINY, device="cpu").fit(eps, epochs=1, progress=False, seed=3)
    assert a.device == torch.device("cpu") == b.device
    sa, sb = a._get_state(), b._get_state()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert b.to(torch.device("cpu")) is b
    b.save(tmp_path / "d")
    assert "device" not in json.loads((tmp_path / "d" / "config.json").read_text())["config"]
    for bad, match in (("meta", "runs on .cpu."), ("tpu", "not a torch device"), (3.5, "not a torch")):
        with pytest.raises(ValueError, match=match):
            DSI(**TINY, device=bad)
        with pytest.raises(ValueError, match=match):
            a.to(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            DSI(**TINY, device="cuda")
    assert a.device == torch.device("cpu")  # a refused move leaves the detector where it was
    sal = ReturnSaliency.from_dsi(a)
    assert sal.to("cpu") is sal and sal.dsi.device == torch.device("cpu")
    with pytest.raises(ValueError, match="runs on 'cpu'"):
        sal.to("meta")
    with pytest.raises(ValueError, match="CPU only"):
        RandomDetector(seed=0).to("cuda")
    assert RandomDetector(seed=0).to("cpu") is not None
    assert RandomDetector(seed=0).to("auto") is not None  # SB3's "auto": the CPU for a CPU-only detector


def test_auto_device_is_sb3s_choice() -> None:
    """``device="auto"`` means what it means in SB3: the first CUDA GPU when torch sees one, else the CPU."""
    want = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert DSI(**TINY, device="auto").device == want
    det = DSI(**TINY).fit(random_episodes(4, seed=3), epochs=1, progress=False, seed=0)
    assert det.to("auto").device == want
    assert ReturnSaliency.from_dsi(det).to("auto").dsi.device == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_and_scores_match_the_cpu() -> None:
    eps = random_episodes(8, seed=8)
    cpu = DSI(**TINY, mask_sampling="bernoulli").fit(eps, epochs=2, progress=False, seed=1)
    gpu = DSI(**TINY, mask_sampling="bernoulli", device="cuda").fit(eps, epochs=2, progress=False, seed=1)
    assert next(gpu.detector_net.parameters()).is_cuda
    frames = [e.frames for e in eps]
    for x, y in zip(cpu.score_batch(frames), gpu.score_batch(frames), strict=True):
        np.testing.assert_allclose(x, y, atol=2e-3)
    np.testing.assert_allclose(cpu.embed(frames[0]), gpu.embed(frames[0]), rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(cpu.predict(frames), gpu.predict(frames), atol=2e-3)
    sal_cpu, sal_gpu = ReturnSaliency.from_dsi(cpu), ReturnSaliency.from_dsi(gpu)
    np.testing.assert_allclose(sal_cpu.score(frames[0]), sal_gpu.score(frames[0]), atol=2e-2)
    moved = gpu.to("cpu")
    np.testing.assert_allclose(moved.score(frames[0]), cpu.score(frames[0]), atol=2e-3)


def test_vector_observations_get_an_error_that_says_how_to_record_frames() -> None:
    eps = [Episode(np.zeros((11, 4), np.float32), label=i % 2) for i in range(4)]
    with pytest.raises(
        ValueError, match=r"shape \(11, 4\): these look like vector observations.*record=frames"
    ):
        DSI(epochs=1).fit(eps)


def test_classification_refuses_continuous_returns_as_classes_but_takes_two_outcomes() -> None:
    frames = [np.full((6, 24, 24, 3), 40 + i, np.uint8) for i in range(6)]
    returns = [Episode(f, rewards=np.full(6, float(i))) for i, f in enumerate(frames)]  # 6 distinct returns
    with pytest.raises(ValueError, match=r"6 of the 6 training episodes have no label.*6 classes"):
        DSI(epochs=1, channels=(4, 8, 8, 8, 8), lstm_hidden=8).fit(returns)
    binary = [Episode(f, rewards=np.full(6, float(i % 2))) for i, f in enumerate(frames)]  # returns 0 / 6
    det = DSI(epochs=1, channels=(4, 8, 8, 8, 8), lstm_hidden=8).fit(binary)
    assert det.config.classes == [0.0, 6.0]
