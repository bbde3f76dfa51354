"""Assemble README.md's part sections and docs/benchmarks.md from the per-part sources in docs/.

Each part of critwrap keeps its README section in ``docs/readme_<part>.md`` and its measured results in
``docs/benchmarks_<part>.md`` (both start with their ``## `` heading). This script splices them into
``README.md`` (between the hand-written head, which ends before the first part heading, and the
``## Development`` tail) and writes ``docs/benchmarks.md`` (its hand-written header plus every part).

    python scripts/build_docs.py          # rewrite README.md and docs/benchmarks.md
    python scripts/build_docs.py --check  # exit 1 if either is out of date (used by the tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

README_PARTS = ["critical", "subgoal", "nstep", "attack", "feedback", "rlsp", "attention", "reports"]
BENCHMARK_PARTS = ["glance", "critical_states", "subgoal", "nstep", "attack", "feedback", "attention", "rlsp"]

BENCHMARKS_HEADER = """# Benchmarks

Every number here was measured by the command shown beside it, on the development machine: x86_64,
2 CPU cores shared with other jobs (the load average during each run is given in its section), 24 GiB
memory, no GPU, Python 3.11, torch 2.13.0 (CPU build), gymnasium 1.4.0, stable-baselines3 2.9.2. The
one exception says so in its section: the SubgoalReward overhead on a lent NVIDIA H200 machine.
Targets the runs did not reach are marked as such, with the measured number. Timings measured under
load are pessimistic. This file is assembled from `docs/benchmarks_<part>.md` by
`python scripts/build_docs.py`; edit those.
"""

TAIL_HEADING = "## Development"


def _part(name: str) -> str:
    path = DOCS / name
    text = path.read_text().strip("\n")
    while text.startswith("<!--") and "-->" in text:  # a leading comment (e.g. when it was measured)
        text = text[text.index("-->") + 3 :].lstrip("\n")
    if not text.startswith("## "):
        raise SystemExit(f"{path} must start with its '## ' heading, starts with {text[:40]!r}")
    return text + "\n"


def build_readme(current: str) -> str:
    first = _part(f"readme_{README_PARTS[0]}.md").splitlines()[0]
    try:
        head_end = current.index("\n" + first + "\n") + 1
        tail_start = current.index("\n" + TAIL_HEADING + "\n") + 1
    except ValueError as exc:
        raise SystemExit(f"README.md lacks the heading {first!r} or {TAIL_HEADING!r}") from exc
    parts = [_part(f"readme_{p}.md") for p in README_PARTS]
    return current[:head_end] + "\n".join(parts) + "\n" + current[tail_start:]


def build_benchmarks() -> str:
    parts = [_part(f"benchmarks_{p}.md") for p in BENCHMARK_PARTS]
    return BENCHMARKS_HEADER + "\n" + "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = p.parse_args(argv)
    readme = ROOT / "README.md"
    bench = DOCS / "benchmarks.md"
    want = {readme: build_readme(readme.read_text()), bench: build_benchmarks()}
    stale = [path for path, text in want.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is out of date: run python scripts/build_docs.py", file=sys.stderr
            )
        return 1 if stale else 0
    for path in stale:
        path.write_text(want[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
