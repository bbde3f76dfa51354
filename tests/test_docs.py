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
