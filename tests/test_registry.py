"""critwrap.registry: discovery without imports, lazy loading, third-party plugins, plugin isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import critwrap
from critwrap import registry
from critwrap.registry import DuplicatePluginError, PluginLoadError, UnknownPluginError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_HINT = "the example plugin is not installed: pip install -e plugins/critwrap-example --no-deps"


def _declared_entry_points() -> dict[str, dict[str, str]]:
    """critwrap's own parts as pyproject.toml declares them: kind -> {name: target}."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = project.get("entry-points", {})
    return {kind: dict(groups.get(f"critwrap.{kind}", {})) for kind in registry.KINDS}


def _run_python(code: str, *args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-c", code] if code else [sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


# ---- critwrap's own parts -------------------------------------------------------------------------


def test_own_parts_are_listed_from_pyproject_entry_points() -> None:
    declared = _declared_entry_points()
    assert declared["wrappers"], "pyproject.toml declares no critwrap.wrappers entry points"
    for kind, entries in declared.items():
        listed = registry.names(kind)
        for name, target in entries.items():
            assert name in listed, (
                f"{kind} {name!r} is declared in pyproject.toml but not discovered; "
                "re-run `pip install -e . --no-deps` after adding entry points"
            )
            info = registry.get_info(kind, name)
            assert info.package == "critwrap" and info.value == target


def test_listing_imports_nothing_heavy() -> None:
    code = textwrap.dedent(
        """
        import sys
        import critwrap
        from critwrap import registry
        for kind in registry.KINDS:
            registry.names(kind)
        registry.discover()
        registry.get_info("wrappers", "minigrid-image")
        heavy = ["torch", "stable_baselines3", "sb3_contrib", "ale_py", "minigrid", "mujoco", "dm_control",
                 "critwrap_example", "critwrap.wrappers.minigrid", "critwrap.wrappers.atari"]
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, f"listing imported {loaded}"
        """
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_load_is_lazy_and_cached() -> None:
    code = textwrap.dedent(
        """
        import sys
        from critwrap import registry
        assert "critwrap.wrappers.minigrid" not in sys.modules
        assert registry.get_info("wrappers", "minigrid-image").status == "not loaded"
        cls = registry.load("wrappers", "minigrid-image")
        assert "critwrap.wrappers.minigrid" in sys.modules
        assert cls.__name__ == "MiniGridImage"
        assert registry.get_info("wrappers", "minigrid-image").status == "loaded"
        assert registry.load("wrappers", "MiniGrid_Image") is cls  # names are normalised
        assert "critwrap.wrappers.atari" not in sys.modules  # loading one part imports only its module
        """
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_resolve_accepts_names_import_paths_and_objects() -> None:
    from critwrap.wrappers.minigrid import MiniGridImage

    assert registry.resolve("wrappers", "minigrid-image") is MiniGridImage
    assert registry.resolve("wrappers", "critwrap.wrappers.minigrid:MiniGridImage") is MiniGridImage
    assert registry.resolve("wrappers", "critwrap.wrappers.minigrid.MiniGridImage") is MiniGridImage
    assert registry.resolve("wrappers", MiniGridImage) is MiniGridImage
    with pytest.raises(PluginLoadError, match="no_such_module"):
        registry.resolve("wrappers", "no_such_module:Thing")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownPluginError) as info:
        registry.load("wrappers", "minigrid-imag")
    msg = str(info.value)
    assert "minigrid-imag" in msg and "Did you mean: minigrid-image" in msg
    assert isinstance(info.value, KeyError)  # a missing key, for callers that catch KeyError
    with pytest.raises(UnknownPluginError, match="episodic-life"):
        critwrap.make("CartPole-v1", wrappers=["episodic_lif"])
    with pytest.raises(ValueError, match="unknown plugin kind"):
        registry.names("wrapper")


def test_register_in_code(fresh_registry: None) -> None:
    class Marker(gym.Wrapper):
        pass

    registry.register("wrappers", "test-marker", Marker)
    assert "test-marker" in registry.names("wrappers")
    assert registry.load("wrappers", "Test_Marker") is Marker
    with pytest.raises(DuplicatePluginError, match="already registered"):
        registry.register("wrappers", "test-marker", Marker)
    with pytest.raises(DuplicatePluginError, match="critwrap"):
        registry.register("wrappers", "minigrid-image", Marker)
    registry.unregister("wrappers", "test-marker")
    assert "test-marker" not in registry.names("wrappers")


# ---- the example third-party plugin ---------------------------------------------------------------


def test_example_plugin_is_discovered() -> None:
    assert "example-sticky-actions" in registry.names("wrappers"), EXAMPLE_HINT
    assert "example-motion" in registry.names("detectors"), EXAMPLE_HINT
    info = registry.get_info("wrappers", "example-sticky-actions")
    assert info.package == "critwrap-example" and info.value == "critwrap_example.sticky:StickyActions"


def test_example_wrapper_through_make() -> None:
    env = critwrap.make("CartPole-v1", wrappers=["example-sticky-actions"])
    last = env.spec.additional_wrappers[-1]
    assert last.entry_point == "critwrap_example.sticky:StickyActions"
    assert last.kwargs == {"p": 0.25, "seed": None}
    env = critwrap.make("CartPole-v1", wrappers=[("example-sticky-actions", {"p": 0.9})])
    env.reset(seed=0)
    repeated = [env.step(t % 2)[4]["sticky_action_repeated"] for t in range(8)]
    assert any(repeated) and not repeated[0]
    rebuilt = gym.make(env.spec)
    assert type(rebuilt).__name__ == "StickyActions" and rebuilt.get_wrapper_attr("p") == 0.9


def test_example_detector_through_registry(tmp_path: Path) -> None:
    from critwrap.detectors import Detector, load_detector

    Motion = registry.load("detectors", "example-motion")
    assert issubclass(Motion, Detector) and Motion.registry_name == "example-motion"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 40, size=(25, 12, 12, 3), dtype=np.uint8)
    frames[10:] += 200  # one big change at step 10
    det = Motion(percentile=90.0).fit([frames[:10], frames[10:]])
    scores = det.score(frames)
    assert scores.shape == (25,) and scores.min() >= 0 and scores.max() <= 1
    assert det.critical_steps(scores=scores, k=1).tolist() == [10]
    path = det.save(tmp_path / "motion")
    assert json.loads((path / "config.json").read_text())["detector"] == "example-motion"
    loaded = load_detector(path)
    assert type(loaded) is Motion and loaded.percentile == 90.0 and loaded.scale == det.scale
    np.testing.assert_array_equal(loaded.score(frames), scores)


# ---- plugin isolation -----------------------------------------------------------------------------

BROKEN_MODULES = {
    "broken_pkg_missing.py": "import critwrap_test_module_that_does_not_exist\n",
    "broken_pkg_syntax.py": "def oops(:\n    pass\n",
    "broken_pkg_runtime.py": "raise RuntimeError('broken_pkg refuses to import')\n",
}
BROKEN_ENTRY_POINTS = """\
[critwrap.wrappers]
broken-missing = broken_pkg_missing:Wrapper
broken-syntax = broken_pkg_syntax:Wrapper
broken-runtime = broken_pkg_runtime:Wrapper

[critwrap.detectors]
broken-detector = broken_pkg_runtime:Detector
"""
EXPECTED_ERRORS = {
    ("wrappers", "broken-missing"): "ModuleNotFoundError",
    ("wrappers", "broken-syntax"): "SyntaxError",
    ("wrappers", "broken-runtime"): "RuntimeError: broken_pkg refuses to import",
    ("detectors", "broken-detector"): "RuntimeError: broken_pkg refuses to import",
}


def _fake_dist(root: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> None:
    """A distribution as pip leaves it: ``<name>-<version>.dist-info`` with METADATA and entry points."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for filename, source in (modules or {}).items():
        (root / filename).write_text(source)


@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> Path:
    root = tmp_path / "site"
    _fake_dist(root, "broken-pkg", BROKEN_ENTRY_POINTS, BROKEN_MODULES)
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    return root


def test_broken_plugins_are_listed_and_do_not_break_others(broken_plugins: Path) -> None:
    wrappers = registry.names("wrappers")
    assert {"broken-missing", "broken-syntax", "broken-runtime"} <= set(wrappers)
    assert {"minigrid-image", "episodic-life"} <= set(wrappers)
    assert "broken-detector" in registry.names("detectors")
    assert registry.get_info("wrappers", "example-sticky-actions").package == "critwrap-example", EXAMPLE_HINT
    assert registry.load("wrappers", "minigrid-image").__name__ == "MiniGridImage"
    env = critwrap.make("MiniGrid-Empty-5x5-v0")
    assert env.observation_space.shape == (56, 56, 3)


@pytest.mark.parametrize(("kind", "name"), list(EXPECTED_ERRORS))
def test_loading_a_broken_plugin_names_package_and_error(broken_plugins: Path, kind: str, name: str) -> None:
    with pytest.raises(PluginLoadError) as info:
        registry.load(kind, name)
    msg = str(info.value)
    assert name in msg and "broken-pkg" in msg and EXPECTED_ERRORS[kind, name] in msg
    assert isinstance(info.value, ImportError)
    assert registry.get_info(kind, name).status.startswith("error: ")
    # the failure is the plugin's: the others still load
    assert registry.load("detectors", "random").__name__ == "RandomDetector"


def test_broken_wrapper_in_make_raises_plugin_error(broken_plugins: Path) -> None:
    with pytest.raises(PluginLoadError, match=r"broken-runtime.*broken-pkg"):
        critwrap.make("CartPole-v1", wrappers=["broken-runtime"])


def test_import_critwrap_survives_broken_plugins(broken_plugins: Path) -> None:
    code = "import critwrap; from critwrap import registry; print(len(registry.names('wrappers')))"
    proc = _run_python(code, extra_path=broken_plugins)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) >= 7  # critwrap's own + the 3 broken ones


def test_plugins_command_reports_errors_and_exits_0(broken_plugins: Path) -> None:
    proc = _run_python("", "-m", "critwrap", "plugins", extra_path=broken_plugins)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "KIND", "PACKAGE", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    for (_, name), error in EXPECTED_ERRORS.items():
        assert "error:" in rows[name] and error.split(":")[0] in rows[name] and "broken-pkg" in rows[name]
    assert " ok " in rows["minigrid-image"]

    proc = _run_python(
        "", "-m", "critwrap", "plugins", "--json", "--kind", "wrapper", extra_path=broken_plugins
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = {row["name"]: row for row in json.loads(proc.stdout)}
    assert table["broken-syntax"]["status"].startswith("error: SyntaxError")
    assert table["minigrid-image"]["status"] == "ok"
    assert all(row["kind"] == "wrapper" for row in table.values())


def test_a_malformed_entry_points_file_hides_only_its_own_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    # importlib.metadata.entry_points() raises for a whole group on such a file; the registry reads
    # distributions one by one. (Other libraries that scan entry points, e.g. networkx, may still
    # fail on it: that is theirs.)
    root = tmp_path / "site"
    _fake_dist(root, "malformed-pkg", "[critwrap.wrappers]\nthis line has no equals sign\n")
    _fake_dist(root, "fine-pkg", "[critwrap.wrappers]\nfine-clip = gymnasium.wrappers:ClipReward\n")
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()

    assert {"minigrid-image", "episodic-life", "fine-clip"} <= set(registry.names("wrappers"))
    assert registry.load("wrappers", "fine-clip") is gym.wrappers.ClipReward
    broken = registry.broken_distributions()
    assert list(broken) == ["malformed-pkg"] and "unreadable entry points" in broken["malformed-pkg"]

    proc = _run_python("", "-m", "critwrap", "plugins", "--no-check", extra_path=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if "malformed-pkg" in line]
    assert len(rows) == 1 and "error: unreadable entry points" in rows[0]
    assert any(line.startswith("minigrid-image ") for line in proc.stdout.splitlines())


def test_a_name_claimed_twice_names_both_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    root = tmp_path / "site"
    _fake_dist(root, "dup-alpha", "[critwrap.wrappers]\nshared-name = gymnasium.wrappers:ClipReward\n")
    _fake_dist(root, "dup-beta", "[critwrap.wrappers]\nshared-name = gymnasium.wrappers:ClipAction\n")
    _fake_dist(root, "dup-gamma", "[critwrap.wrappers]\nminigrid-image = gymnasium.wrappers:ClipAction\n")
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()

    assert "shared-name" in registry.names("wrappers")
    with pytest.raises(DuplicatePluginError) as info:
        registry.load("wrappers", "shared-name")
    msg = str(info.value)
    assert "dup-alpha" in msg and "dup-beta" in msg and "ClipReward" in msg and "ClipAction" in msg
    # claiming one of critwrap's own names is a conflict too, not a silent override
    with pytest.raises(DuplicatePluginError, match=r"(?s)critwrap.*dup-gamma|dup-gamma.*critwrap"):
        registry.load("wrappers", "minigrid-image")
    with pytest.raises(DuplicatePluginError):
        critwrap.make("CartPole-v1", wrappers=["shared-name"])
    # the import path still works for the user who has both installed
    assert registry.resolve("wrappers", "gymnasium.wrappers:ClipReward") is gym.wrappers.ClipReward
    status = registry.get_info("wrappers", "shared-name").status
    assert status.startswith("conflict") and ("dup-alpha" in status or "dup-beta" in status)


def test_registry_is_clean_after_fake_plugins() -> None:
    # runs after the tests above (file order): their fake distributions must be gone
    names = registry.names("wrappers")
    assert not any(n.startswith(("broken-", "shared-name")) for n in names)
    assert not registry.broken_distributions()
    assert registry.load("wrappers", "minigrid-image").__name__ == "MiniGridImage"


def test_info_command_reports_versions_devices_and_parts() -> None:
    from critwrap.__main__ import main, system_info

    info = system_info(("critwrap", "torch", "no-such-distribution-xyz"))
    assert info["packages"]["critwrap"] == critwrap.__version__
    assert info["packages"]["no-such-distribution-xyz"] == "not installed"
    import torch

    assert info["torch"]["cuda_available"] == torch.cuda.is_available()
    assert info["torch"]["auto_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info["registered"]["wrappers"] == len(registry.names("wrappers")) > 0
    assert isinstance(info["atari_roms"], int) and info["atari_roms"] > 0  # ale-py ships its ROMs
    proc = _run_python("", "-m", "critwrap", "info", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = json.loads(proc.stdout)
    assert shown["packages"]["gymnasium"] != "not installed" and "torch" in shown
    assert main(["info"]) == 0
