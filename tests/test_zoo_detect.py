"""Tests of ``python -m critwrap.zoo detect`` (fit / eval / show) and its Python helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from critwrap.detectors.base import Detector
from critwrap.detectors.metrics import all_frames_f1
from critwrap.episodes import Episode, EpisodeStore
from critwrap.zoo.__main__ import main
from critwrap.zoo.detect import evaluate_detector, format_report, load_episodes

TINY_SETS = ["--set", "channels=[4, 8, 8, 8, 8]", "--set", "lstm_hidden=8", "--set", "batch_size=8"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_store(root: Path, n: int, seed: int) -> Path:
    """Episodes of dim frames with a bright square at their one critical step (white: label 1)."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore(root)
    for _ in range(n):
        T = int(rng.integers(6, 10))
        frames = np.full((T, 24, 24, 3), 40, dtype=np.uint8)
        t, label = int(rng.integers(0, T)), int(rng.integers(0, 2))
        frames[t, 5:15, 5:15] = (255, 255, 255) if label else (30, 30, 255)
        store.append(Episode(frames, label=label, metadata={"critical_steps": [t]}))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detect")
    return {
        name: make_store(root / name, n, seed)
        for name, n, seed in (("train", 12, 0), ("val", 6, 1), ("test", 8, 2))
    }


@pytest.fixture(scope="module")
def checkpoint(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "dsi"
    argv = ["detect", "fit", "--detector", "dsi", "--data", str(data["train"]), "--val", str(data["val"])]
    rc = main([*argv, "--out", str(out), "--epochs", "1", "--seed", "0", "--no-progress", *TINY_SETS])
    assert rc == 0
    return out


class Oracle(Detector):
    """Scores 1 exactly at the true critical steps it was given, 0 elsewhere (keyed by the frames' bytes)."""

    def __init__(self, truth: dict[bytes, list[int]]) -> None:
        self.truth = truth

    def score(self, frames: np.ndarray) -> np.ndarray:
        s = np.zeros(len(frames))
        s[self.truth[np.asarray(frames).tobytes()]] = 1.0
        return s


def test_fit_writes_a_loadable_checkpoint(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = json.loads((checkpoint / "config.json").read_text())
    assert cfg["detector"] == "dsi" and cfg["config"]["channels"] == [4, 8, 8, 8, 8]
    assert (checkpoint / "weights.safetensors").is_file()


def test_fit_refuses_to_overwrite(
    checkpoint: Path, data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["detect", "fit", "--data", str(data["train"]), "--out", str(checkpoint), "--epochs", "1", *TINY_SETS]
    )
    assert rc == 1
    assert "--overwrite" in capsys.readouterr().err


def test_eval_prints_f1_rows_and_the_all_frames_baseline(
    checkpoint: Path, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    argv = [
        "detect",
        "eval",
        "--detector",
        str(checkpoint),
        "--data",
        str(data["test"]),
        "--val",
        str(data["val"]),
    ]
    assert main([*argv, "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "all frames" in out and "top-m precision" in out and "threshold (val)" in out
    report = json.loads(report_path.read_text())
    assert set(report["per_T"]) == {"1", "2", "3"} and report["threshold_from"] == "val"
    episodes = load_episodes(data["test"])
    truth = [ep.metadata["critical_steps"] for ep in episodes]
    for T in (1, 2, 3):
        row = report["per_T"][str(T)]
        assert row["all_frames_f1"] == pytest.approx(all_frames_f1([len(ep) for ep in episodes], truth, T))
        assert 0.0 <= row["test_f1"] <= 1.0 and row["test_f1"] <= row["best_test_f1_oracle_threshold"] + 1e-12


def test_eval_of_a_registry_detector_without_val_warns(
    data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["detect", "eval", "--detector", "random", "--data", str(data["test"])]) == 0
    assert "no --val given" in capsys.readouterr().out


def test_evaluate_detector_scores_a_perfect_detector_perfectly(data: dict[str, Path]) -> None:
    episodes = load_episodes(data["test"])
    oracle = Oracle({ep.frames.tobytes(): list(ep.metadata["critical_steps"]) for ep in episodes})
    report = evaluate_detector(oracle, episodes, episodes)
    assert report["top_m_precision"] == 1.0
    assert all(row["test_f1"] == 1.0 for row in report["per_T"].values())
    text = format_report(report, "oracle")
    assert "oracle" in text and "100.00" in text
    fine = evaluate_detector(oracle, episodes, episodes, grid="fine")
    assert fine["grid"] == "fine" and all(row["test_f1"] == 1.0 for row in fine["per_T"].values())
    with pytest.raises(ValueError, match="grid"):
        evaluate_detector(oracle, episodes, episodes, grid="coarse")


def test_eval_needs_ground_truth(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EpisodeStore(tmp_path / "nolabels")
    store.append(Episode(np.zeros((5, 24, 24, 3), dtype=np.uint8), label=0))
    assert main(["detect", "eval", "--detector", str(checkpoint), "--data", str(tmp_path / "nolabels")]) == 1
    assert "critical_steps" in capsys.readouterr().err


def test_show_writes_png_and_gif(checkpoint: Path, data: dict[str, Path], tmp_path: Path) -> None:
    import imageio.v3 as iio

    png = tmp_path / "show" / "ep.png"
    argv = ["detect", "show", "--detector", str(checkpoint), "--data", str(data["test"]), "--episode", "2"]
    assert main([*argv, "--out", str(png)]) == 0
    image = iio.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    gif = iio.imread(png.with_suffix(".gif"), index=None)
    assert gif.shape[0] == len(load_episodes(data["test"])[2])
    assert main([*argv, "--out", str(tmp_path / "x.png"), "--episode", "99"]) == 1


def test_eval_with_lookahead_reports_the_chosen_lookahead(
    checkpoint: Path, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    argv = [
        "detect",
        "eval",
        "--detector",
        str(checkpoint),
        "--data",
        str(data["test"]),
        "--val",
        str(data["val"]),
    ]
    assert main([*argv, "--lookahead", "0", "1", "2", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert all(row["lookahead"] in (0, 1, 2) for row in report["per_T"].values())
    plain_path = tmp_path / "plain.json"
    assert main([*argv, "--json", str(plain_path)]) == 0
    plain = json.loads(plain_path.read_text())
    for T, row in report["per_T"].items():  # a lookahead is only taken when it does better on validation
        assert row["val_f1"] >= plain["per_T"][T]["val_f1"] - 1e-12
    capsys.readouterr()
    assert main([*argv, "--lookahead", "-1"]) == 1
    assert "lookahead steps must be >= 0" in capsys.readouterr().err


def test_fit_with_restarts_trains_the_best_probed_seed(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from critwrap.detectors.dsi import DSI
    from critwrap.detectors.restarts import probe_score, probe_seed

    out = tmp_path / "dsi_r"
    argv = ["detect", "fit", "--detector", "dsi", "--data", str(data["train"]), "--val", str(data["val"])]
    opts = ["--epochs", "2", "--seed", "3", "--restarts", "2", "--probe-epochs", "1", "--no-progress"]
    rc = main([*argv, "--out", str(out), *opts, *TINY_SETS])
    assert rc == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("probe top-m per seed"))
    chosen = int(line.rsplit("continuing seed", 1)[1])
    assert chosen in (3, 4)
    # the report is the probes' own numbers: recompute them
    tiny = {"channels": (4, 8, 8, 8, 8), "lstm_hidden": 8, "batch_size": 8}
    train, val = load_episodes(data["train"]), load_episodes(data["val"])
    probes = {s: probe_score(probe_seed(lambda x: DSI(**tiny, seed=x), s, train, val, 1)) for s in (3, 4)}
    shown = json.loads(line.split("epochs): ", 1)[1].split(";")[0])
    assert shown == {str(s): round(v, 4) for s, v in probes.items()}
    assert chosen == max((3, 4), key=lambda s: (probes[s], -s))
    saved = DSI.load(out)  # the continued probe equals one uninterrupted 2-epoch run of that seed
    reference = DSI(**tiny, seed=chosen).fit(train, epochs=2, seed=chosen, progress=False)
    frames = train[0].frames
    np.testing.assert_allclose(saved.score(frames), reference.score(frames), atol=1e-6)


def test_fit_restarts_needs_val_and_an_epoch_trained_detector(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["detect", "fit", "--data", str(data["train"]), "--out", str(tmp_path / "x"), "--restarts", "2"]
    assert main([*base, "--detector", "dsi", *TINY_SETS]) == 1
    assert "give --val" in capsys.readouterr().err
    assert main([*base, "--detector", "random", "--val", str(data["val"])]) == 1
    assert "trained by epochs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fit_select_epoch_keeps_the_best_validation_epoch(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from critwrap.detectors.dsi import DSI
    from critwrap.detectors.selection import BestEpoch

    out = tmp_path / "dsi_sel"
    argv = ["detect", "fit", "--detector", "dsi", "--data", str(data["train"]), "--val", str(data["val"])]
    rc = main(
        [*argv, "--out", str(out), "--epochs", "3", "--select-epoch", "top-m", "--no-progress", *TINY_SETS]
    )
    assert rc == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("kept epoch"))
    kept = int(line.split()[2])
    # the same run by hand: the kept epoch and the saved weights are the best epoch's
    tiny = {"channels": (4, 8, 8, 8, 8), "lstm_hidden": 8, "batch_size": 8}
    train, val = load_episodes(data["train"]), load_episodes(data["val"])
    best = BestEpoch(val)
    ref = DSI(**tiny, seed=0).fit(train, epochs=3, seed=0, progress=False, callback=best)
    assert kept == best.best_epoch
    best.restore(ref)
    np.testing.assert_allclose(DSI.load(out).score(train[0].frames), ref.score(train[0].frames), atol=1e-6)


def test_fit_select_epoch_bad_input(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "detect",
        "fit",
        "--data",
        str(data["train"]),
        "--out",
        str(tmp_path / "x"),
        "--select-epoch",
        "f1",
    ]
    assert main([*base, "--detector", "dsi", *TINY_SETS]) == 1
    assert "give --val" in capsys.readouterr().err
    val = ["--val", str(data["val"])]
    assert main([*base, "--detector", "random", *val]) == 1
    assert "trained by epochs" in capsys.readouterr().err
    opts = ["--restarts", "2", "--probe-epochs", "2", "--epochs", "2"]
    assert main([*base, "--detector", "dsi", *val, *opts, *TINY_SETS]) == 1
    assert "--probe-epochs (2) must be < --epochs (2)" in capsys.readouterr().err
    zero = ["detect", "fit", "--data", str(data["train"]), "--out", str(tmp_path / "x"), "--epochs", "0"]
    assert main([*zero, *TINY_SETS]) == 1  # an untrained detector is not saved
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fit_on_a_device_named_by_set(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--set device=...` reaches the DSI (fit there); the device is not written into the checkpoint."""
    argv = ["detect", "fit", "--data", str(data["train"]), "--epochs", "1", "--no-progress", *TINY_SETS]
    assert main([*argv, "--out", str(tmp_path / "cpu"), "--set", "device=cpu"]) == 0
    assert "device" not in json.loads((tmp_path / "cpu" / "config.json").read_text())["config"]
    assert main([*argv, "--out", str(tmp_path / "tpu"), "--set", "device=tpu"]) == 1
    assert "not a torch device" in capsys.readouterr().err


def test_subgoals_prints_coverage_per_threshold(
    checkpoint: Path, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cov.json"
    argv = ["detect", "subgoals", "--detector", str(checkpoint), "--data", str(data["train"])]
    rc = main([*argv, "--val", str(data["test"]), "--k", "1", "--thresholds", "0.99,0.9", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "succ reach" in text and "first hit" in text and "in-sample" not in text
    rows = json.loads(out.read_text())
    assert [(r["threshold"], r["exclude_failed"]) for r in rows] == [
        (0.99, False),
        (0.99, True),
        (0.9, False),
        (0.9, True),
    ]
    assert all("error" in r or 0.0 <= r["success_reach"] <= 1.0 for r in rows)
    assert all("error" in r or len(r["per_subgoal_success"]) == r["subgoals"] for r in rows)
    assert "frames" not in rows[0]
    # the raw-pixel encoder, in-sample (flagged as such)
    png = tmp_path / "sg.png"
    assert main([*argv, "--encoder", "pixel", "--thresholds", "0.99", "--png", str(png)]) == 0
    assert "in-sample" in capsys.readouterr().out
    assert png.stat().st_size > 1000
    assert main([*argv, "--thresholds", ","]) == 1
    assert "--thresholds needs" in capsys.readouterr().err


def test_fit_on_windows_saves_a_windowed_detector(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from critwrap.detectors.base import load_detector
    from critwrap.detectors.windowed import Windowed

    out = tmp_path / "win"
    argv = ["detect", "fit", "--data", str(data["train"]), "--val", str(data["val"]), "--out", str(out)]
    argv += ["--epochs", "1", "--no-progress", "--windows", "4", *TINY_SETS]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "cut 12 episodes into" in text and "windows every 2 steps" in text
    det = load_detector(out)
    assert isinstance(det, Windowed) and (det.width, det.stride, det.fit_on_windows) == (4, 2, True)
    ep = load_episodes(data["test"])[0]
    assert det.score(ep.frames).shape == (len(ep),)
    # the training clips: 6-9 frames per episode -> two or three 4-frame clips, the last one end-aligned
    assert int(text.split("into ")[1].split()[0]) >= 24
    for bad, msg in (
        (["--windows", "0"], "--windows must be >= 1"),
        (["--windows", "4", "--select-epoch", "top-m"], "cannot be combined"),
    ):
        assert main([*argv[: -len(TINY_SETS) - 3], "--overwrite", *bad, *TINY_SETS]) == 1
        assert msg in capsys.readouterr().err


def test_unlabelled_episodes_need_labels_or_a_return_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Games recorded from an agent carry returns, not labels: as classification targets their many
    distinct returns would each become a class; that is refused, and --success-above labels them."""
    rng = np.random.default_rng(0)
    store = EpisodeStore(tmp_path / "games")
    for i in range(8):
        T = int(rng.integers(6, 10))
        store.append(Episode(np.full((T, 24, 24, 3), 40 + i, np.uint8), rewards=np.full(T, float(i))))
    fit = ["detect", "fit", "--data", str(tmp_path / "games"), "--epochs", "1", "--no-progress", *TINY_SETS]
    assert main([*fit, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "8 of the 8 training episodes have no label" in err and "--success-above" in err
    assert main([*fit, "--out", str(tmp_path / "b"), "--success-above", "20"]) == 0
    assert "labelled by return > 20: " in capsys.readouterr().out
    from critwrap.detectors.dsi import DSI

    assert DSI.load(tmp_path / "b").config.classes == [0.0, 1.0]
