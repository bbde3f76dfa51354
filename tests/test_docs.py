"""README.md and docs/benchmarks.md are assembled from docs/readme_*.md / docs/benchmarks_*.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_and_benchmarks_are_built_from_their_parts() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_docs.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


def test_readme_image_links_exist() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links, "the README shows pictures"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README images missing: {missing}"


def test_benchmark_image_links_exist() -> None:
    import re

    text = (ROOT / "docs" / "benchmarks.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    missing = [link for link in links if not (ROOT / "docs" / link).exists()]
    assert not missing, f"docs/benchmarks.md images missing: {missing}"


def _benchmark_commands(text: str) -> list[tuple[str, list[str]]]:
    """(script, flags) of every ``python benchmarks/X.py ...`` command in ``text`` (continued lines joined)."""
    import re

    text = re.sub(r"\\\n\s*", " ", text)
    return [
        (script, re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", rest))
        for script, rest in re.findall(r"python3? (benchmarks/[a-z_0-9]+\.py)([^`\n]*)", text)
    ]


def _has_flag(help_text: str, flag: str) -> bool:
    import re

    return re.search(re.escape(flag) + r"(?![a-z0-9-])", help_text) is not None  # --seed is not --seeds


def _unknown_flags(commands: list[tuple[str, list[str]]]) -> list[str]:
    helps: dict[str, str] = {}
    out = []
    for script, flags in commands:
        if script not in helps:
            path = ROOT / script
            if not path.is_file():
                out.append(f"{script}: no such script")
                helps[script] = ""
                continue
            res = subprocess.run(
                [sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300
            )
            helps[script] = res.stdout
        out += [f"{script} {flag}" for flag in flags if helps[script] and not _has_flag(helps[script], flag)]
    return sorted(set(out))


def test_benchmark_commands_in_the_docs_use_existing_scripts_and_flags() -> None:
    """Every ``python benchmarks/X.py --flag`` in docs/benchmarks.md and the README names a script and
    flags that exist (the flag appears in the script's ``--help``)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text() + (ROOT / "README.md").read_text()
    commands = _benchmark_commands(text)
    assert len(commands) >= 100
    assert not _unknown_flags(commands)


def test_the_benchmark_command_check_can_fail() -> None:
    commands = _benchmark_commands(
        "`python benchmarks/overhead.py --out x \\\n  --no-such-flag 3` and `python benchmarks/nope.py --a`"
    )
    assert commands == [
        ("benchmarks/overhead.py", ["--out", "--no-such-flag"]),
        ("benchmarks/nope.py", ["--a"]),
    ]
    assert _unknown_flags(commands) == [
        "benchmarks/nope.py: no such script",
        "benchmarks/overhead.py --no-such-flag",
    ]
    assert _has_flag("  --seeds SEEDS [SEEDS ...]", "--seeds") and not _has_flag("  --seeds SEEDS", "--seed")
