"""critwrap.evaluation: the Atari table and normalisation, reading the result store (bad runs named),
and rliable aggregates checked against rliable called directly on the same arrays.

Runs here are written by hand in the documented layout (no training), so the tests take seconds.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats

from critwrap.evaluation import aggregate as A
from critwrap.evaluation.normalization import (
    NormalizationError,
    atari_game,
    atari_scores,
    get_normalizer,
    read_score_table,
)
from critwrap.evaluation.store import BadRunError, load_run_record, run_state, scan
from critwrap.zoo.runs import run_dir, write_json, write_status

REPS = 100


def fake_run(
    root: Path,
    env: str,
    variant: str,
    seed: int,
    score: float,
    *,
    algo: str = "dqn",
    experiment: str = "exp",
    steps: tuple[int, ...] = (100, 200, 300),
    status: str = "finished",
) -> Path:
    """A run directory as `zoo train` writes it, with a final mean return of exactly ``score``."""
    d = run_dir(root, experiment, algo, env, variant, seed)
    d.mkdir(parents=True, exist_ok=True)
    write_json(
        d / "config.json",
        {"algo": algo, "env": env, "env_id": env, "seed": seed, "experiment": experiment, "variant": variant},
    )
    write_status(d, status, num_timesteps=steps[-1], total_timesteps=steps[-1])
    rng = np.random.default_rng(seed + 1000 * len(variant))
    frac = np.arange(1, len(steps) + 1)[:, None] / len(steps)
    results = score * frac + rng.normal(0, 0.5, size=(len(steps), 3))
    np.savez(
        d / "evaluations.npz", timesteps=np.array(steps), results=results, ep_lengths=np.ones((len(steps), 3))
    )
    returns = [score - 1.0, score, score + 1.0]
    write_json(d / "final_eval.json", {"returns": returns, "mean_return": float(np.mean(returns))})
    return d


def good_store(root: Path) -> dict[tuple[str, str, int], float]:
    """Two variants x three Atari games x four seeds; returns the raw scores written."""
    scores = {}
    rng = np.random.default_rng(0)
    for env, base in (("Seaquest", 400.0), ("Breakout", 12.0), ("Pong", -18.0)):
        for variant, gain in (("base", 1.0), ("sticky", 1.3)):
            for seed in range(4):
                value = float(round(base * gain + abs(base) * 0.3 * rng.normal(), 3))
                fake_run(root, env, variant, seed, value)
                scores[(env, variant, seed)] = value
    return scores


# ------------------------------------------------------------------------------- normalisation


def test_atari_table_has_the_57_games_with_published_values() -> None:
    table = atari_scores()
    assert len(table) == 57
    known = json.loads((Path(__file__).parents[1] / "src/critwrap/data/known_envs.json").read_text())
    assert set(table) <= set(known["ale_games"])  # spelled as ALE spells them
    # spot checks against the DQN-literature table (random, human)
    assert table["Breakout"] == (1.7, 30.5)
    assert table["Seaquest"] == (68.4, 42054.7)
    assert table["MontezumaRevenge"] == (0.0, 4753.3)
    assert table["Pong"] == (-20.7, 14.6)
    assert all(human > random for random, human in table.values())
    text = (Path(__file__).parents[1] / "src/critwrap/data/atari_scores.csv").read_text()
    assert re.search(r"^# .*https://github\.com/\S+atari_data\.py", text, re.M)  # the source is cited


@pytest.mark.parametrize(
    "name, game",
    [
        ("Seaquest", "Seaquest"),
        ("ALE/MsPacman-v5", "MsPacman"),
        ("ALE-MsPacman-v5", "MsPacman"),
        ("BreakoutNoFrameskip-v4", "Breakout"),
        ("montezumarevenge", "MontezumaRevenge"),
        ("CartPole-v1", None),
        ("ALE/Tetris-v5", None),  # an ALE game outside the 57
    ],
)
def test_atari_game_names(name: str, game: str | None) -> None:
    assert atari_game(name) == game


def test_normalizers() -> None:
    atari = get_normalizer("atari")
    assert atari("Breakout", 1.7) == pytest.approx(0.0)
    assert atari("ALE/Breakout-v5", 30.5) == pytest.approx(1.0)
    assert atari("Pong", -3.05) == pytest.approx(0.5)
    np.testing.assert_allclose(atari("Pong", np.array([-20.7, 14.6])), [0.0, 1.0])
    with pytest.raises(NormalizationError, match=r"CartPole-v1.*57 Atari"):
        atari("CartPole-v1", 1.0)
    assert get_normalizer("minmax:0,500")("CartPole-v1", 125.0) == 0.25
    assert get_normalizer("none")("CartPole-v1", 125.0) == 125.0
    assert get_normalizer("auto", ["ALE/Pong-v5", "Breakout"]).kind == "atari"
    assert get_normalizer("auto", ["Pong", "CartPole-v1"]).kind == "none"
    for bad in ("minmax:1", "minmax:a,b", "minmax:3,3", "zscore", "table:"):
        with pytest.raises(NormalizationError):
            get_normalizer(bad)
    with pytest.raises(NormalizationError, match="HI must be above LO"):
        get_normalizer("minmax:500,0")  # would rank the better runs lower


def test_table_normalizer(tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    path.write_text("# my ranges\nenv,low,high\nCartPole-v1,0,500\nAcrobot-v1,-500,0\n")
    norm = get_normalizer(f"table:{path}")
    assert norm("CartPole-v1", 250) == 0.5
    assert norm("Acrobot-v1", -100) == pytest.approx(0.8)
    with pytest.raises(NormalizationError, match="MountainCar"):
        norm("MountainCar-v0", 1.0)
    with pytest.raises(NormalizationError, match="not numbers"):
        read_score_table(["env,low,high", "x,a,1"])
    with pytest.raises(NormalizationError, match="high must be above low"):
        read_score_table(["env,low,high", "x,5,1"])


# ----------------------------------------------------------------------------------- the store


def test_scan_names_partial_failed_and_corrupt_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    good = [fake_run(root, "Pong", "base", s, -10.0 + s) for s in range(3)]
    partial = fake_run(root, "Pong", "base", 3, 0.0, status="running")
    failed = fake_run(root, "Pong", "base", 4, 0.0, status="failed")
    write_status(failed, "failed", error="RuntimeError: boom")
    bad_final = fake_run(root, "Pong", "base", 5, 0.0)
    (bad_final / "final_eval.json").write_text('{"returns": [1, 2')
    bad_npz = fake_run(root, "Pong", "base", 6, 0.0)
    (bad_npz / "evaluations.npz").write_bytes(b"not a zip archive")
    bad_shape = fake_run(root, "Pong", "base", 7, 0.0)
    np.savez(
        bad_shape / "evaluations.npz",
        timesteps=np.arange(3),
        results=np.ones((2, 3)),
        ep_lengths=np.ones((2, 3)),
    )
    bad_config = fake_run(root, "Pong", "base", 8, 0.0)
    (bad_config / "config.json").write_text("[]")
    no_final = fake_run(root, "Pong", "base", 9, 0.0)
    (no_final / "final_eval.json").unlink()
    empty = run_dir(root, "exp", "dqn", "Pong", "base", 10)
    empty.mkdir(parents=True)
    nan_final = fake_run(root, "Pong", "base", 11, 0.0)
    write_json(nan_final / "final_eval.json", {"mean_return": float("nan")})

    store = scan(root)
    assert sorted(r.path for r in store.runs) == sorted(good)
    assert [r.score for r in store.runs] == [-10.0, -9.0, -8.0]
    assert store.runs[0].curve is not None and store.runs[0].curve.returns.shape == (3, 3)
    bad = {b.path: b for b in store.bad}
    assert set(bad) == {
        partial,
        failed,
        bad_final,
        bad_npz,
        bad_shape,
        bad_config,
        no_final,
        empty,
        nan_final,
    }
    assert bad[partial].kind == "partial" and "running" in bad[partial].reason
    assert bad[failed].kind == "failed" and "boom" in bad[failed].reason
    assert bad[bad_final].kind == "corrupt" and "final_eval.json is not valid JSON" in bad[bad_final].reason
    assert bad[bad_npz].kind == "corrupt" and "evaluations.npz" in bad[bad_npz].reason
    assert bad[bad_shape].kind == "corrupt" and "inconsistent shapes" in bad[bad_shape].reason
    assert bad[bad_config].kind == "corrupt" and "config.json" in bad[bad_config].reason
    assert bad[no_final].kind == "partial" and "final_eval.json" in bad[no_final].reason
    assert bad[empty].kind == "partial" and "config.json" in bad[empty].reason
    assert bad[nan_final].kind == "corrupt" and "nan" in bad[nan_final].reason
    assert bad[partial].key is not None and bad[partial].key.seed == 3

    assert run_state(good[0]) == "finished"
    assert run_state(partial) == "partial"
    assert run_state(failed) == "failed"
    assert run_state(bad_npz) == "corrupt"
    assert run_state(root / "nowhere") == "missing"
    assert run_state(empty) == "missing"
    with pytest.raises(BadRunError, match="failed: RuntimeError: boom"):
        load_run_record(failed)


def test_scan_identifies_runs_and_selects(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    fake_run(root, "ALE/Pong-v5", "base", 0, 1.0, experiment="e1", algo="ppo")
    fake_run(root, "Breakout", "sticky", 2, 1.0, experiment="e2")
    store = scan(root)
    keys = sorted(str(r.key) for r in store.runs)
    assert keys == ["e1/ppo/ALE-Pong-v5/base/seed_0", "e2/dqn/Breakout/sticky/seed_2"]
    assert [r.key.seed for r in store.select(variant="sticky")] == [2]
    assert store.select(experiment="e1")[0].env_id == "ALE/Pong-v5"
    # an experiment directory, or a single run directory, works as a root too
    assert len(scan(root / "e2")) == 1
    assert len(scan(store.runs[0].path)) == 1
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no runs under"):
        scan(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan(tmp_path / "missing")


# -------------------------------------------------------------------------------- aggregates


def _direct(score_dict: dict[str, np.ndarray], func: Any, reps: int, seed: int) -> Any:
    from rliable import library as rly

    np.random.seed(seed)
    return rly.get_interval_estimates(score_dict, func, reps=reps)


def test_score_matrices_and_aggregates_match_rliable(tmp_path: Path) -> None:
    from rliable import library as rly
    from rliable import metrics

    written = good_store(tmp_path / "runs")
    store = scan(tmp_path / "runs")
    norm = get_normalizer("atari")
    data = A.score_matrices(store.runs, norm)
    assert data.methods == ["dqn/base", "dqn/sticky"] and data.tasks == ["Breakout", "Pong", "Seaquest"]
    for m, variant in zip(data.methods, ("base", "sticky")):
        raw = np.array([[written[(t, variant, s)] for t in data.tasks] for s in range(4)])
        np.testing.assert_allclose(data.raw[m], raw)
        table = atari_scores()
        expected = np.stack(
            [(raw[:, j] - table[t][0]) / (table[t][1] - table[t][0]) for j, t in enumerate(data.tasks)], 1
        )
        np.testing.assert_allclose(data.scores[m], expected)

    est = A.aggregate_estimates(data.scores, reps=REPS, seed=7)
    func, names = A.aggregate_function(1.0)
    points, intervals = _direct(data.scores, func, REPS, 7)
    for m in data.methods:
        for i, name in enumerate(names):
            assert est[m][name].point == pytest.approx(points[m][i], abs=0, rel=1e-12)
            assert est[m][name].low == pytest.approx(intervals[m][0][i], rel=1e-12)
            assert est[m][name].high == pytest.approx(intervals[m][1][i], rel=1e-12)
        # and the point estimates are what the definitions say
        s = data.scores[m]
        assert est[m]["IQM"].point == pytest.approx(scipy.stats.trim_mean(s.ravel(), 0.25))
        assert est[m]["Median"].point == pytest.approx(np.median(s.mean(axis=0)))
        assert est[m]["Mean"].point == pytest.approx(s.mean())
        assert est[m]["Optimality gap"].point == pytest.approx(1 - np.minimum(s, 1).mean())
        assert est[m]["IQM"].low <= est[m]["IQM"].point <= est[m]["IQM"].high
    # the same seed gives the same intervals; another seed other ones; the global state is restored
    np.random.seed(123)
    before = np.random.rand()
    np.random.seed(123)
    again = A.aggregate_estimates(data.scores, reps=REPS, seed=7)
    assert np.random.rand() == before
    assert again == est
    other = A.aggregate_estimates(data.scores, reps=REPS, seed=8)
    assert other["dqn/base"]["IQM"].low != est["dqn/base"]["IQM"].low
    # raw scores: no optimality gap
    assert list(A.aggregate_estimates(data.raw, reps=20, gamma=None)["dqn/base"]) == ["IQM", "Median", "Mean"]

    pairs = A.improvement_pairs(data.methods)
    assert pairs == [("dqn/sticky", "dqn/base")]
    poi = A.probability_of_improvement(data.scores, pairs, reps=REPS, seed=3)

    def poi_func(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    p_points, p_int = _direct({"a": (data.scores["dqn/sticky"], data.scores["dqn/base"])}, poi_func, REPS, 3)
    e = poi[("dqn/sticky", "dqn/base")]
    assert (e.point, e.low, e.high) == pytest.approx((p_points["a"][0], p_int["a"][0][0], p_int["a"][1][0]))
    x, y = data.scores["dqn/sticky"], data.scores["dqn/base"]
    by_hand = np.mean(
        [
            np.mean(x[:, None, t] > y[None, :, t]) + 0.5 * np.mean(x[:, None, t] == y[None, :, t])
            for t in range(3)
        ]
    )
    assert e.point == pytest.approx(by_hand)

    taus = A.default_taus(data.scores, normalized=True)
    assert taus[0] <= 0.0 and taus[-1] >= 1.0
    profiles, cis = A.performance_profiles(data.scores, taus, reps=REPS, seed=5)
    np.random.seed(5)
    d_profiles, d_cis = rly.create_performance_profile(data.scores, taus, reps=REPS)
    for m in data.methods:
        np.testing.assert_allclose(profiles[m], d_profiles[m])
        np.testing.assert_allclose(cis[m], d_cis[m])
        np.testing.assert_allclose(profiles[m], [np.mean(data.scores[m] > t) for t in taus])


def test_sample_efficiency_matches_rliable(tmp_path: Path) -> None:
    from rliable import metrics

    good_store(tmp_path / "runs")
    data = A.score_matrices(scan(tmp_path / "runs").runs, get_normalizer("atari"))
    curves, notes = A.curve_matrices(data)
    assert notes == []
    steps, arr = curves["dqn/base"]
    np.testing.assert_array_equal(steps, [100, 200, 300])
    assert arr.shape == (4, 3, 3)
    run = data.runs["dqn/base"][1][2]  # seed 2 on Pong
    np.testing.assert_allclose(arr[2, 1], get_normalizer("atari")("Pong", run.curve.mean_returns))
    est = A.sample_efficiency(curves, reps=REPS, seed=11)

    def iqm_per_step(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x[..., t]) for t in range(x.shape[-1])])

    for m, (_, arr) in curves.items():
        points, intervals = _direct({m: arr}, iqm_per_step, REPS, 11)
        np.testing.assert_allclose(est[m].point, points[m], rtol=1e-12)
        np.testing.assert_allclose(est[m].low, intervals[m][0], rtol=1e-12)
        np.testing.assert_allclose(est[m].high, intervals[m][1], rtol=1e-12)


def test_uneven_runs_tasks_and_steps(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for s in range(3):
        fake_run(root, "Pong", "base", s, -10.0 + s, steps=(100, 200, 300))
        fake_run(root, "Pong", "sticky", s, -5.0 + s, steps=(150, 250, 350))
    fake_run(root, "Breakout", "base", 0, 5.0)
    fake_run(root, "Breakout", "base", 1, 6.0)
    fake_run(root, "Boxing", "base", 0, 3.0)  # only base has Boxing
    data = A.score_matrices(scan(root).runs, get_normalizer("none"))
    assert data.tasks == ["Pong"]  # the only env both methods ran on
    assert data.scores["dqn/base"].shape == (3, 1)
    assert any("Breakout" in n and "dqn/sticky" in n for n in data.notes)
    assert any("Boxing" in n for n in data.notes)
    curves, _ = A.curve_matrices(data)
    assert set(curves) == {"dqn/base", "dqn/sticky"}
    np.testing.assert_array_equal(curves["dqn/sticky"][0], [150, 250, 350])

    # one method with unequal counts over its tasks keeps the first n runs per task
    root2 = tmp_path / "runs2"
    for s in range(3):
        fake_run(root2, "Pong", "base", s, float(s))
    fake_run(root2, "Breakout", "base", 0, 1.0)
    fake_run(root2, "Breakout", "base", 1, 2.0)
    d2 = A.score_matrices(scan(root2).runs, get_normalizer("none"))
    np.testing.assert_allclose(d2.raw["dqn/base"], [[1.0, 0.0], [2.0, 1.0]])
    assert any("seed 2" in n for n in d2.notes)
    # runs with different evaluation steps are interpolated onto their common range
    root3 = tmp_path / "runs3"
    fake_run(root3, "Pong", "base", 0, 1.0, steps=(100, 200, 300))
    fake_run(root3, "Pong", "base", 1, 1.0, steps=(150, 250, 350))
    c3, n3 = A.curve_matrices(A.score_matrices(scan(root3).runs, get_normalizer("none")))
    assert c3["dqn/base"][0][0] == 150 and c3["dqn/base"][0][-1] == 300
    assert any("interpolated" in n for n in n3)
    with pytest.raises(ValueError, match="no finished runs"):
        A.score_matrices([], get_normalizer("none"))


def test_improvement_pairs() -> None:
    assert A.improvement_pairs(["dqn/a", "dqn/base", "dqn/b", "ppo/x", "ppo/y"]) == [
        ("dqn/a", "dqn/base"),
        ("dqn/b", "dqn/base"),
        ("ppo/x", "ppo/y"),
    ]
    assert A.improvement_pairs(["a2c/base", "dqn/base", "ppo/base"]) == [
        ("a2c/base", "dqn/base"),
        ("a2c/base", "ppo/base"),
        ("dqn/base", "ppo/base"),
    ]
    assert A.improvement_pairs(["dqn/base"]) == []


def test_one_run_per_environment_is_noted_as_giving_no_interval(tmp_path: Path) -> None:
    from critwrap.evaluation.report import make_report

    root = tmp_path / "runs"
    fake_run(root, "Pong", "base", 0, 1.0)
    for s in range(3):
        fake_run(root, "Pong", "sticky", s, 2.0 + s)
    rep = make_report(root, normalize="none", reps=REPS, plots=False)
    single = [n for n in rep.notes if "one run per environment" in n]
    assert len(single) == 1 and single[0].startswith("dqn/base:") and "dqn/sticky" not in single[0]
    iqm = rep.estimates["dqn/base"]["IQM"]
    assert iqm.low == iqm.high == iqm.point  # what the note is about: the interval collapsed
    assert rep.estimates["dqn/sticky"]["IQM"].low < rep.estimates["dqn/sticky"]["IQM"].high


def test_a_running_run_is_told_apart_from_an_interrupted_one_without_writing(tmp_path: Path) -> None:
    from critwrap.zoo.runs import run_lock

    root = tmp_path / "runs"
    d = fake_run(root, "Pong", "base", 0, 1.0, status="running")
    (bad,) = scan(root).bad
    assert bad.kind == "partial" and "interrupted, or training on another machine" in str(bad)
    assert not list(d.parent.glob(".*.lock"))  # reading the store creates no lock file
    with run_lock(d):
        (bad,) = scan(root).bad
        assert f"still training: pid {os.getpid()}" in str(bad)
    (bad,) = scan(root).bad  # released
    assert "interrupted" in str(bad)
