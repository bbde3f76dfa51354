"""``python -m critwrap.zoo sweep``: grids of tiny CartPole runs on the local backend and on Ray give
the same result store; a killed sweep finishes only the missing runs when run again; a failing run
is reported without stopping the others; variants, seeds and experiment files are parsed strictly;
an unreachable Ray address fails fast with the address in the message.

Each run is ~300 DQN steps with a 16-unit network and one torch thread, so SB3 is deterministic
and the same seed gives the same evaluations in any process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from critwrap import registry
from critwrap.evaluation.store import run_state, scan
from critwrap.zoo import sweep as S
from critwrap.zoo.__main__ import main

REPO = Path(__file__).resolve().parents[1]
TINY_HP = {
    "buffer_size": 1000,
    "learning_starts": 100,
    "batch_size": 16,
    "train_freq": 4,
    "gradient_steps": 1,
    "target_update_interval": 50,
    "policy_kwargs": {"net_arch": [16]},
}
HAS_STICKY = "example-sticky-actions" in registry.names("wrappers")


def second_variant() -> dict[str, Any]:
    """A wrapper variant (the example plugin's sticky actions), else a hyperparameter variant."""
    if HAS_STICKY:
        return {"wrappers": ["example-sticky-actions:p=0.5"]}
    return {"hp": {"gamma": 0.9}}


def write_experiment(path: Path, *, broken: bool = False, **extra: Any) -> Path:
    variants: dict[str, Any] = {"base": {}, "other": second_variant()}
    if broken:
        variants["broken"] = {"hp": {"not_a_hyperparameter": 1}}
    data = {
        "experiment": "tiny",
        "algos": ["dqn"],
        "envs": ["CartPole-v1"],
        "variants": variants,
        "seeds": 2,
        "timesteps": 300,
        "hp": TINY_HP,
        "train": {"eval_freq": 100, "eval_episodes": 2, "save_freq": 0, "num_threads": 1},
        **extra,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def finished_runs(root: Path) -> dict[str, Path]:
    return {str(r.path.relative_to(root)): r.path for r in scan(root).runs}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int, str]:
    """The tiny grid (2 variants x 2 seeds, plus a variant whose runs fail) on the local backend."""
    tmp = tmp_path_factory.mktemp("local")
    exp = write_experiment(tmp / "tiny.yml", broken=True)
    root = tmp / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "critwrap.zoo", "sweep", "--experiment-file", str(exp), "--log-dir", str(root),
         "--workers", "2", "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=tmp,
    )  # fmt: skip
    return exp, root, proc.returncode, proc.stdout + proc.stderr


def test_local_sweep_writes_the_grid_and_reports_failures(local_sweep: tuple[Path, Path, int, str]) -> None:
    _, root, rc, output = local_sweep
    assert rc == 1, output  # a run failed ...
    runs = finished_runs(root)
    assert sorted(runs) == [
        f"tiny/dqn/CartPole-v1/{variant}/seed_{seed}" for variant in ("base", "other") for seed in (0, 1)
    ]  # ... and the others finished
    assert "2 failed" in output and "4 finished" in output
    assert output.count("FAILED dqn/CartPole-v1/broken/seed_") == 2
    assert "not_a_hyperparameter" in output
    summary = json.loads((root / "tiny" / "sweep.json").read_text())
    statuses = {r["run"]: r["status"] for r in summary["runs"]}
    assert statuses["dqn/CartPole-v1/broken/seed_0"] == "failed"
    assert statuses["dqn/CartPole-v1/base/seed_1"] == "finished"
    failed_log = Path(next(r["log"] for r in summary["runs"] if r["status"] == "failed"))
    assert "not_a_hyperparameter" in failed_log.read_text()
    for rel, path in runs.items():
        config = json.loads((path / "config.json").read_text())
        assert config["experiment"] == "tiny" and config["n_timesteps"] == 300
        assert config["hyperparams"]["buffer_size"] == 1000
        assert config["seed"] == int(rel[-1])
        if "/other/" in rel and HAS_STICKY:
            assert config["wrappers"] == [{"name": "example-sticky-actions", "kwargs": {"p": 0.5}}]
        if "/base/" in rel:
            assert config["wrappers"] == []
        with np.load(path / "evaluations.npz") as data:
            assert list(data["timesteps"]) == [100, 200, 300]
    # the same seed and variant give the same evaluations (SB3 is deterministic with one thread)
    base0 = json.loads((root / "tiny/dqn/CartPole-v1/base/seed_0/final_eval.json").read_text())
    assert base0["n_episodes"] == 2


def _store_signature(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rel, path in finished_runs(root).items():
        final = json.loads((path / "final_eval.json").read_text())
        with np.load(path / "evaluations.npz") as data:
            curve = {k: data[k].tolist() for k in ("timesteps", "results", "ep_lengths")}
        config = json.loads((path / "config.json").read_text())
        for key in ("log_dir", "command"):
            config.pop(key)
        out[rel] = {"final": final, "curve": curve, "config": config}
    return out


def test_ray_sweep_gives_the_same_result_store(
    local_sweep: tuple[Path, Path, int, str], tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'critwrap[ray]')")
    exp, local_root, _, _ = local_sweep
    root = tmp_path / "runs"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rc = main(
            [
                "sweep",
                "--experiment-file",
                str(exp),
                "--log-dir",
                str(root),
                "--backend",
                "ray",
                "--no-progress",
            ]
        )
        assert ray.is_initialized()  # the sweep used the Ray instance of the caller and left it running
    finally:
        ray.shutdown()
    assert rc == 1  # the broken variant fails on Ray too
    local, remote = _store_signature(local_root), _store_signature(root)
    assert sorted(remote) == sorted(local) and len(local) == 4
    for rel in local:
        assert remote[rel] == local[rel], rel
    summary = json.loads((root / "tiny" / "sweep.json").read_text())
    assert sum(r["status"] == "failed" for r in summary["runs"]) == 2


def test_rerun_skips_finished_runs(
    local_sweep: tuple[Path, Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    exp, root, _, _ = local_sweep
    before = {p: p.stat().st_mtime_ns for p in root.rglob("final_eval.json")}
    rc = main(["sweep", "--experiment-file", str(exp), "--log-dir", str(root), "--variants", "base,other",
               "--no-progress"])  # fmt: skip
    _, err = capsys.readouterr()
    assert rc == 0
    assert "4 already finished, 0 to run" in err
    assert {p: p.stat().st_mtime_ns for p in root.rglob("final_eval.json")} == before
    # a finished run is kept even when the sweep now asks for another budget; the sweep says so
    rc = main(["sweep", "--experiment-file", str(exp), "--log-dir", str(root), "--variants", "base",
               "--timesteps", "400", "--no-progress"])  # fmt: skip
    _, err = capsys.readouterr()
    assert rc == 0 and err.count("note: skipping the finished run") == 2 and "asks for 400" in err


def test_a_run_another_process_is_training_is_skipped_not_deleted(
    local_sweep: tuple[Path, Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from critwrap.zoo.runs import run_lock

    exp, root, _, _ = local_sweep
    (run,) = [p for name, p in finished_runs(root).items() if "/base/seed_0" in name]
    status = run / "status.json"
    text = status.read_text()
    status.write_text(text.replace('"finished"', '"running"'))  # as a live run looks to another sweep
    try:
        with run_lock(run):  # and its process holds the lock
            rc = main(["sweep", "--experiment-file", str(exp), "--log-dir", str(root), "--variants", "base",
                       "--seeds", "0-0", "--no-progress"])  # fmt: skip
        _, err = capsys.readouterr()
        assert rc == 0 and "1 in use by another process, 0 to run" in err
        assert "note: skipping dqn/CartPole-v1/base/seed_0: another process is training it now" in err
        assert (run / "final_eval.json").is_file()  # not deleted to be rerun
    finally:
        status.write_text(text)


def test_evaluate_and_enjoy_record_into_the_store(
    local_sweep: tuple[Path, Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import imageio.v2 as imageio

    _, root, _, _ = local_sweep
    run = root / "tiny/dqn/CartPole-v1/base/seed_1"
    rc = main(["evaluate", "--run", str(run), "--episodes", "2", "--quiet", "--num-threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rc = main(
        ["enjoy", "--run", str(run), "--episodes", "2", "--deterministic", "--record", "--num-threads", "1"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    enjoy = json.loads(next(run.glob("enjoy_*.json")).read_text())
    video = Path(enjoy["video"])
    assert video.parent == run / "videos" and video.suffix == ".mp4" and f"Wrote video {video}" in out
    reader = imageio.get_reader(video)
    frames = reader.count_frames()
    width, height = reader.get_meta_data()["size"]
    reader.close()
    assert frames == 1 + sum(enjoy["lengths"])  # the first reset, then one frame per step
    assert (width, height) == (600, 400)  # CartPole's rgb_array
    # deterministic enjoy with the default seed replays the final evaluation of training
    assert enjoy["returns"] == json.loads((run / "final_eval.json").read_text())["returns"]
    # the store reads the records back, and the run stays a finished run
    (record,) = [r for r in scan(root).runs if r.path == run]
    files = [r["file"] for r in record.eval_records()]
    assert any(f.startswith("eval_") for f in files) and any(f.startswith("enjoy_") for f in files)
    custom = run.parent / "custom.mp4"
    rc = main(
        ["enjoy", "--run", str(run), "--episodes", "1", "--record", str(custom), "--no-save", "--fps", "10"]
    )
    assert rc == 0 and custom.is_file() and len(list(run.glob("enjoy_*.json"))) == 1
    rc = main(["enjoy", "--run", str(run), "--episodes", "1", "--record", "--render"])
    assert rc == 1 and "--render and --record" in capsys.readouterr().err


def _wait_finished(path: Path, proc: subprocess.Popen[str], timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while run_state(path) != "finished":
        if proc.poll() is not None:
            raise AssertionError(
                f"the sweep ended early ({proc.returncode}): {proc.communicate()[1][-3000:]}"
            )
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not finish within {timeout} s")
        time.sleep(0.2)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file() and "sweep_logs" not in str(p)
    }


def _sweep_cmd(exp: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "critwrap.zoo", "sweep", "--experiment-file", str(exp), "--log-dir", str(root),
            "--workers", "1", "--no-progress"]  # fmt: skip


def test_killed_sweep_finishes_only_the_missing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = write_experiment(tmp_path / "tiny.yml", variants={"base": {}})
    root = tmp_path / "runs"
    seed = [root / f"tiny/dqn/CartPole-v1/base/seed_{i}" for i in range(2)]

    # SIGKILL once the first run is done: nothing is left running (no orphaned run keeps writing)
    proc = subprocess.Popen(_sweep_cmd(exp, root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_finished(seed[0], proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    time.sleep(1.0)
    snap = _snapshot(root)
    time.sleep(1.5)
    assert _snapshot(root) == snap
    assert run_state(seed[0]) == "finished" and run_state(seed[1]) in ("missing", "partial")
    first_final = (seed[0] / "final_eval.json").stat().st_mtime_ns

    # running it again finishes the missing run only
    rc = main(_sweep_cmd(exp, root)[3:])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert "1 already finished, 1 to run" in err
    assert [run_state(s) for s in seed] == ["finished", "finished"]
    assert (seed[0] / "final_eval.json").stat().st_mtime_ns == first_final


@pytest.mark.slow
def test_sigterm_stops_a_sweep_cleanly(local_sweep: tuple[Path, Path, int, str], tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "tiny.yml", seeds=3, variants={"base": {}})
    root = tmp_path / "runs"
    seed = [root / f"tiny/dqn/CartPole-v1/base/seed_{i}" for i in range(3)]
    proc = subprocess.Popen(_sweep_cmd(exp, root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_finished(seed[0], proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGTERM" in err
    assert run_state(seed[0]) == "finished" and run_state(seed[2]) == "missing"
    assert run_state(seed[1]) in ("missing", "partial")
    proc = subprocess.run(_sweep_cmd(exp, root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "1 already finished, 2 to run" in proc.stderr
    # the runs equal those of an uninterrupted sweep with the same seeds
    _, local_root, _, _ = local_sweep
    for i in range(2):
        assert (seed[i] / "final_eval.json").read_text() == (
            local_root / f"tiny/dqn/CartPole-v1/base/seed_{i}/final_eval.json"
        ).read_text()


# ----------------------------------------------------------------------------- parsing, fast


def test_parse_seeds() -> None:
    assert S.parse_seeds(3) == [0, 1, 2]
    assert S.parse_seeds("3") == [0, 1, 2]
    assert S.parse_seeds("0,3,7") == [0, 3, 7]
    assert S.parse_seeds("10-12") == [10, 11, 12]
    assert S.parse_seeds([4, 2]) == [4, 2]
    for bad in (0, "x", "1,1", [], True, "3-1"):
        with pytest.raises(S.SweepError, match="seeds"):
            S.parse_seeds(bad)
    assert S.parse_seeds("0-0") == [0]
    with pytest.raises(S.SweepError, match="for seed 0 alone write 0-0"):
        S.parse_seeds("0")
    with pytest.raises(S.SweepError, match="LO <= HI"):
        S.parse_seeds("3-1")


def test_parse_variant() -> None:
    assert S.parse_variant("base") == S.Variant("base")
    defined = {"mine": S.Variant("mine", hp={"gamma": 0.9})}
    assert S.parse_variant("mine", defined).hp == {"gamma": 0.9}
    v = S.parse_variant("record-episodes:store=eps:max_episodes=3")
    assert v.wrappers == [("record-episodes", {"store": "eps", "max_episodes": 3})]
    assert v.dirname == "record-episodes-store=eps-max_episodes=3"
    assert S.parse_variant("episode-recorder").callbacks == [("episode-recorder", {})]
    assert S.parse_variant("nature-cnn:features_dim=64").hp == {
        "policy_kwargs": {
            "features_extractor_class": "nature-cnn",
            "features_extractor_kwargs": {"features_dim": 64},
        }
    }
    v = S.parse_variant("gymnasium.wrappers:ClipReward:min_reward=0:max_reward=1")
    assert v.wrappers == [("gymnasium.wrappers:ClipReward", {"min_reward": 0, "max_reward": 1})]
    v = S.parse_variant("stable_baselines3.her:HerReplayBuffer:n_sampled_goal=2")
    assert v.hp == {
        "replay_buffer_class": "stable_baselines3.her:HerReplayBuffer",
        "replay_buffer_kwargs": {"n_sampled_goal": 2},
    }
    with pytest.raises(S.SweepError, match=r"unknown variant 'no-such-thing'.*Known: base"):
        S.parse_variant("no-such-thing")
    with pytest.raises(S.SweepError, match="not a gymnasium wrapper"):
        S.parse_variant("collections:OrderedDict")
    with pytest.raises(S.SweepError, match=r"malformed variant 'record-episodes:store'.*colons separate"):
        S.parse_variant("record-episodes:store")


def test_experiment_files_and_cli_overrides(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "tiny.yml", hp_per_env={"CartPole-v1": {"gamma": 0.95}})
    data, defined = S.load_experiment(exp)
    spec = S.build_spec(
        data, defined, seeds="5-6", hp=["batch_size=8"], workers=3, timesteps=None, variants=None
    )
    assert spec.seeds == [5, 6] and spec.workers == 3 and spec.timesteps == 300
    assert [v.name for v in spec.variants] == ["base", "other"]
    trials = S.expand(spec)
    assert len(trials) == 4
    t = trials[0]
    assert t.options["hp"]["batch_size"] == 8 and t.options["hp"]["gamma"] == 0.95
    assert t.options["hp"]["policy_kwargs"] == {"net_arch": [16]}
    assert t.options["num_threads"] == 1 and t.options["device"] == "cpu"
    assert t.options["eval_max_steps"] is None
    capped = S.expand(S.build_spec(data, defined, variants=None, eval_max_steps=50))
    assert {c.options["eval_max_steps"] for c in capped} == {50}  # --eval-max-steps reaches every run
    assert t.run_dir.is_absolute()
    assert t.run_dir.parts[-5:] == ("tiny", "dqn", "CartPole-v1", "base", "seed_5")
    # per-env budgets
    spec2 = S.build_spec({**data, "timesteps": {"CartPole-v1": 500, "default": 100}}, defined)
    assert spec2.timesteps_for("CartPole-v1") == 500 and spec2.timesteps_for("Acrobot-v1") == 100

    bad = tmp_path / "bad.yml"
    bad.write_text("algos: [dqn]\nenvs: [CartPole-v1]\nseedz: 3\n")
    with pytest.raises(S.SweepError, match=r"unknown keys \['seedz'\]"):
        S.load_experiment(bad)
    bad.write_text("algos: [dqn]\nvariants:\n  v: {wrapper: [x]}\n")
    with pytest.raises(S.SweepError, match=r"unknown keys.*wrapper"):
        S.load_experiment(bad)
    bad.write_text("algos: [dqn]\ntrain: {evl_freq: 3}\nenvs: [CartPole-v1]\nseeds: 1\n")
    data, defined = S.load_experiment(bad)
    with pytest.raises(S.SweepError, match="evl_freq"):
        S.build_spec(data, defined, variants="base")
    with pytest.raises(S.SweepError, match="no envs"):
        S.build_spec({}, {}, algos="dqn", variants="base", seeds=1)


def test_dry_run_and_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sweep", "--algo", "dqn", "--envs", "CartPole-v1,Acrobot-v1", "--variants", "base,episode-recorder",
               "--seeds", "2", "--log-dir", str(tmp_path), "--dry-run", "--no-progress"])  # fmt: skip
    _, err = capsys.readouterr()
    assert rc == 0
    assert "8 runs (1 algo x 2 env x 2 variant x 2 seed)" in err
    assert err.count("would run") == 8 and "dqn/Acrobot-v1/episode-recorder/seed_1" in err
    assert not any(tmp_path.iterdir())
    rc = main(["sweep", "--algo", "dqn", "--envs", "CartPole-v1", "--variants", "base,nope", "--seeds", "1"])
    assert rc == 1 and "unknown variant 'nope'" in capsys.readouterr().err
    rc = main(["sweep", "--algo", "dqnn", "--envs", "CartPole-v1", "--seeds", "1"])
    assert rc == 1 and "dqn" in capsys.readouterr().err
    rc = main(["sweep", "--experiment-file", str(tmp_path / "missing.yml")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_check_address_fails_fast() -> None:
    start = time.time()
    with pytest.raises(S.ClusterUnreachableError, match=r"127\.0\.0\.1:1"):
        S.check_address("127.0.0.1:1", timeout=2)
    with pytest.raises(S.ClusterUnreachableError, match=r"ray://127\.0\.0\.1:1"):
        S.check_address("ray://127.0.0.1:1", timeout=2)
    with pytest.raises(S.ClusterUnreachableError, match="not a port"):
        S.check_address("somehost:abc")
    assert time.time() - start < 10
    S.check_address(None)
    S.check_address("auto")


def test_unreachable_ray_address_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'critwrap[ray]')")
    exp = write_experiment(tmp_path / "tiny.yml")
    for address in ("127.0.0.1:1", "10.255.255.1:6379"):  # refused; not routable (or answered by a proxy)
        start = time.time()
        rc = main(["sweep", "--experiment-file", str(exp), "--log-dir", str(tmp_path / "runs"), "--backend", "ray",
                   "--address", address, "--connect-timeout", "2", "--no-progress"])  # fmt: skip
        elapsed = time.time() - start
        err = capsys.readouterr().err
        assert rc == 1 and address in err and "error:" in err, err
        assert elapsed < 20, f"{address}: took {elapsed:.1f} s"
        assert "RAY_gcs_server_port_wait_time_s" not in os.environ  # the shortened wait is not left behind
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("status.json"))


def test_shipped_experiment_files_are_valid() -> None:
    files = sorted((REPO / "zoo" / "experiments").glob("*.yml"))
    assert files
    for path in files:
        data, defined = S.load_experiment(path)
        names = [v for v in (data.get("variants") or [])]
        needs_plugin = any(
            "example-sticky-actions" in json.dumps(defined[n].wrappers) for n in defined if n in names
        )
        if needs_plugin and not HAS_STICKY:
            continue
        spec = S.build_spec(data, defined)
        assert S.expand(spec), path
