"""benchmarks/attack_minatar.py: its frames, the determinism the replay protocol needs, and a toy-scale run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minatar")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> object:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attack_minatar
    finally:
        sys.path.pop(0)
    return attack_minatar


def test_frames_scale_each_cell_to_a_block(bench: object) -> None:
    obs = np.zeros((10, 10, 4), dtype=bool)
    obs[9, 2, 0] = True  # the paddle's cell
    f = bench.frame(None, obs)  # type: ignore[attr-defined]
    assert f.shape == (30, 30, 4) and f.dtype == np.uint8
    assert (f[27:30, 6:9, 0] == 255).all() and f.sum() == 9 * 255


@pytest.mark.parametrize("game", ["breakout", "freeway", "seaquest", "space_invaders", "asterix"])
def test_games_replay_exactly_without_sticky_actions(bench: object, game: str) -> None:
    env = bench.make_env(200, game=game)  # type: ignore[attr-defined]

    def play(seed: int, actions: np.ndarray) -> list[bytes]:
        obs, _ = env.reset(seed=seed)
        seen = [obs.tobytes()]
        for a in actions:
            obs, _, term, trunc, _ = env.step(int(a))
            seen.append(obs.tobytes())
            if term or trunc:
                break
        return seen

    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=200)
    assert play(1, actions) == play(1, actions)
    games = {b"".join(play(s, actions)) for s in range(20)}
    if game == "space_invaders":
        # MinAtar's Space Invaders has no randomness of its own: the evaluated games differ only through
        # the victim's keyed samples (docs/benchmarks_attack.md, run SI)
        assert len(games) == 1
    else:
        assert len(games) > 1


def test_breakout_start_depends_on_the_seed(bench: object) -> None:
    env = bench.make_env(200)  # type: ignore[attr-defined]
    starts = {env.reset(seed=s)[0].tobytes() for s in range(20)}
    assert len(starts) > 1  # the ball's start depends on the seed


@pytest.mark.slow
def test_attack_minatar_pipeline_runs(tmp_path: Path, bench: object) -> None:
    argv = ["--out", str(tmp_path), "--ppo-steps", "1024", "--data-episodes", "8", "--max-steps", "80"]
    argv += [
        "--data-epsilon",
        "1.0,0.5",
        "--check-episodes",
        "2",
        "--dsi-epochs",
        "1",
        "--dsi-channels",
        "4,4,4,4,4",
        "--dsi-lstm",
        "4",
    ]
    argv += ["--episodes", "2", "--ks", "1", "2", "--jobs", "1", "--chunk", "1"]
    assert bench.main(argv) == 0  # type: ignore[attr-defined]
    out = json.loads((tmp_path / "results.json").read_text())
    assert [r["k"] for r in out["reports"]] == [1, 2]
    for report in out["reports"]:
        rows = {r["method"]: r for r in report["table"]}
        assert set(rows) == {"clean", "detector", "random", "victim", "block", "detector-spaced"}
        assert all(rows[m]["mean_perturbed_steps"] <= report["k"] for m in rows if m != "clean")
    assert json.loads((tmp_path / "data.json").read_text())["games"] == 16  # 8 per epsilon


def test_cut_windows_labels_the_last_window_lost_and_an_earlier_one_kept(bench: object) -> None:
    from critwrap.episodes import Episode

    def game(n: int) -> Episode:
        return Episode(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(3, axis=-1))

    games = [game(50), game(30), game(100)]  # the last one reached the cap of 100 steps
    wins = bench.cut_windows(games, 20, cap=100, seed=0)  # type: ignore[attr-defined]
    # 50 frames: last window + one earlier; 30: last only (< 40); 100 (capped): last (kept) + earlier
    assert [len(w.frames) for w in wins] == [20, 20, 20, 20, 20]
    assert [w.label for w in wins] == [0, 1, 0, 1, 1]
    assert wins[0].frames[0, 0, 0, 0] == 30 and wins[2].frames[0, 0, 0, 0] == 10
    for last, earlier in ((wins[0], wins[1]), (wins[3], wins[4])):
        assert earlier.frames[-1, 0, 0, 0] < last.frames[0, 0, 0, 0]  # no overlap with the last window
    starts = {int(w.frames[0, 0, 0, 0]) for w in bench.cut_windows([game(60)] * 200, 20, cap=999)[1::2]}  # type: ignore[attr-defined]
    assert starts == set(range(21))  # uniform over 0 .. len - 40
    short = bench.cut_windows([game(5)], 20, cap=100)  # type: ignore[attr-defined]
    assert len(short) == 1 and len(short[0].frames) == 5 and short[0].label == 0
    with pytest.raises(ValueError, match="width"):
        bench.cut_windows(games, 0, cap=100)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_attack_minatar_windows_pipeline_runs(tmp_path: Path, bench: object) -> None:
    argv = ["--out", str(tmp_path), "--ppo-steps", "1024", "--data-episodes", "8", "--max-steps", "80"]
    argv += ["--data-epsilon", "1.0,0.5", "--check-episodes", "2", "--dsi-epochs", "1", "--windows", "6"]
    argv += ["--dsi-channels", "4,4,4,4,4", "--dsi-lstm", "4", "--episodes", "2", "--ks", "1", "--jobs", "1"]
    argv += ["--methods", "detector,random", "--chunk", "1"]
    assert bench.main(argv) == 0  # type: ignore[attr-defined]
    out = json.loads((tmp_path / "results.json").read_text())
    rows = {r["method"]: r for r in out["reports"][0]["table"]}
    assert set(rows) == {"clean", "detector", "random"}
    fit = json.loads((tmp_path / "dsi_fit.json").read_text())
    assert fit["episodes"] > 16  # windows, not the 16 games
    from critwrap.detectors.dsi import DSI

    assert DSI.load(tmp_path / "dsi").config.max_length == 6
    rows = json.loads((tmp_path / "mask_by_ball_row.json").read_text())["detector"]["by_ball_row"]
    assert rows and all(r["frames"] > 0 for r in rows.values())
    # run M3: the lead calibrated on other seeds, per k, then used by the detector's attack
    argv2 = [*argv, "--calibrate-leads", "-1", "0", "1", "--calibration-episodes", "2", "--tag", "cal"]
    assert bench.main(argv2) == 0  # type: ignore[attr-defined]
    cal = json.loads((tmp_path / "calibration.json").read_text())
    assert (
        cal["seeds"] == [30000, 30001]
        and cal["games"] == 2
        and set(cal["mean_drop"]["1"]) == {"-1", "0", "1"}
    )
    means = cal["mean_drop"]["1"]
    assert means[str(cal["chosen"]["1"])] == max(means.values())
    res = json.loads((tmp_path / "results_cal.json").read_text())
    assert res["calibration"]["chosen"] == cal["chosen"]
    with pytest.raises(SystemExit, match="overlap"):
        bench.main([*argv, "--calibrate-leads", "0", "--calibration-seed", "20001", "--tag", "bad"])  # type: ignore[attr-defined]
    # run SI2: the DSI's positional prior measured on the data games and subtracted before averaging
    assert bench.main([*argv, "--position-profile", "--tag", "pp"]) == 0  # type: ignore[attr-defined]
    prof = json.loads((tmp_path / "position_profile.json").read_text())
    assert len(prof) == 6 and all(np.isfinite(prof))
    assert json.loads((tmp_path / "results_pp.json").read_text())["reports"]
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path / "x"), "--position-profile"])  # type: ignore[attr-defined]
    # run SI3: the calibration chooses per k between the plain and the profile scoring, and the lead
    argv4 = [*argv, "--calibrate-scoring", "--calibrate-leads", "-1", "0", "--calibration-episodes", "2"]
    assert bench.main([*argv4, "--tag", "sc"]) == 0  # type: ignore[attr-defined]
    cal = json.loads((tmp_path / "calibration.json").read_text())
    assert set(cal["mean_drop"]["1"]) == {"plain:-1", "plain:0", "profile:-1", "profile:0"}
    assert cal["mean_drop"]["1"][cal["chosen"]["1"]] == max(cal["mean_drop"]["1"].values())
    assert json.loads((tmp_path / "results_sc.json").read_text())["calibration"]["chosen"] == cal["chosen"]
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path / "y"), "--windows", "6", "--calibrate-scoring"])  # type: ignore[attr-defined]
