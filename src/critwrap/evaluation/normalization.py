"""Score normalisation for reports: Atari human-normalised scores, min/max ranges, or raw scores.

A :class:`Normalizer` maps a raw score (an episode return) on one environment to the number that is
aggregated across environments. Choose one with :func:`get_normalizer`:

* ``"none"``: raw scores (fine for one environment, or environments on the same scale);
* ``"atari"``: ``(score - random) / (human - random)`` with the Atari-57 random and human scores
  shipped in ``critwrap/data/atari_scores.csv`` (0 = random play, 1 = human tester);
* ``"minmax:LO,HI"``: ``(score - LO) / (HI - LO)`` for every environment (``minmax:0,500`` for
  CartPole-v1);
* ``"table:PATH.csv"``: per-environment ``(score - low) / (high - low)`` from a CSV with the columns
  ``env,low,high`` (or ``game,random,human`` like the Atari table; ``#`` starts a comment line);
* ``"auto"``: ``atari`` when every environment is an Atari-57 game, else ``none``.

Environment names are matched loosely: ``Seaquest``, ``ALE/Seaquest-v5``, ``ALE-Seaquest-v5`` (a
run directory name) and ``SeaquestNoFrameskip-v4`` all find the Atari row ``Seaquest``.

Example:
    >>> from critwrap.evaluation.normalization import atari_game, get_normalizer
    >>> atari_game("ALE/MsPacman-v5")
    'MsPacman'
    >>> norm = get_normalizer("atari")
    >>> round(norm("Breakout", 30.5), 6), round(norm("ALE/Breakout-v5", 1.7), 6)
    (1.0, 0.0)
    >>> get_normalizer("minmax:0,500")("CartPole-v1", 250.0)
    0.5
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "NORMALIZE_CHOICES",
    "NormalizationError",
    "Normalizer",
    "atari_game",
    "atari_scores",
    "get_normalizer",
    "read_score_table",
]

NORMALIZE_CHOICES = "auto | none | atari | minmax:LO,HI | table:PATH.csv"


class NormalizationError(ValueError):
    """A normalisation spec is malformed, or an environment has no reference scores."""


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_score_table(source: str | Path | Iterable[str]) -> dict[str, tuple[float, float]]:
    """Read a ``name,low,high`` CSV (header row required, ``#`` comment lines skipped).

    Returns ``{name: (low, high)}``. The header's first column names the environment (``env`` or
    ``game``); the next two are the low and high reference scores (``low,high`` or ``random,human``).
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise NormalizationError(f"score table {path} does not exist")
        lines = path.read_text().splitlines()
        where = str(path)
    else:
        lines = list(source)
        where = "score table"
    rows = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.reader(rows)
    header = next(reader, None)
    if header is None or len(header) < 3:
        raise NormalizationError(
            f"{where}: expected a header row 'env,low,high' (or 'game,random,human') and one row per env"
        )
    table: dict[str, tuple[float, float]] = {}
    for n, row in enumerate(reader, start=2):
        if len(row) < 3:
            raise NormalizationError(f"{where}: row {n} {row!r} has fewer than 3 columns")
        try:
            low, high = float(row[1]), float(row[2])
        except ValueError:
            raise NormalizationError(f"{where}: row {n} {row!r}: low/high are not numbers") from None
        if high <= low:
            raise NormalizationError(
                f"{where}: row {n} {row!r}: high must be above low (a reversed range would rank the better "
                "runs lower)"
            )
        table[row[0].strip()] = (low, high)
    if not table:
        raise NormalizationError(f"{where}: no rows after the header")
    return table


@cache
def atari_scores() -> dict[str, tuple[float, float]]:
    """The shipped Atari-57 table: ``{game: (random, human)}`` (ALE spelling, e.g. ``MsPacman``)."""
    text = resources.files("critwrap").joinpath("data/atari_scores.csv").read_text()
    return read_score_table(text.splitlines())


def atari_game(env: str) -> str | None:
    """The Atari-57 game an environment name refers to, or ``None``.

    Accepts ``Seaquest``, ``ALE/Seaquest-v5``, ``ALE-Seaquest-v5``, ``SeaquestNoFrameskip-v4``,
    ``Seaquest-v4`` and ``seaquest`` (case and punctuation are ignored).
    """
    name = env.strip()
    for prefix in ("ALE/", "ALE-", "ale/", "ale-"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    games = {_key(g): g for g in atari_scores()}
    return games.get(_key(name))


@dataclass
class Normalizer:
    """Maps raw scores to normalised ones; ``kind`` is ``none``, ``atari``, ``minmax`` or ``table``.

    ``ranges`` holds per-environment ``(low, high)`` (keys matched loosely); ``default`` the range for
    every environment (``minmax``); neither for ``none``.
    """

    kind: str
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    default: tuple[float, float] | None = None
    source: str = ""

    @property
    def label(self) -> str:
        """How scores are labelled in plots and tables."""
        return {
            "none": "raw score",
            "atari": "human-normalised score",
            "minmax": f"normalised score ({self.source})",
            "table": f"normalised score ({self.source})",
        }.get(self.kind, "score")

    @property
    def threshold(self) -> float | None:
        """Where 'solved' is for the optimality gap: 1.0 for normalised scores, ``None`` for raw ones."""
        return None if self.kind == "none" else 1.0

    def range_for(self, env: str) -> tuple[float, float] | None:
        if self.kind == "none":
            return None
        if self.kind == "atari":
            game = atari_game(env)
            if game is None:
                raise NormalizationError(
                    f"{env!r} is not one of the 57 Atari games of the human-normalisation table "
                    f"(critwrap/data/atari_scores.csv); use --normalize none, minmax:LO,HI or table:PATH.csv"
                )
            return atari_scores()[game]
        if self.default is not None:
            return self.default
        keys = {_key(k): v for k, v in self.ranges.items()}
        for candidate in (env, re.sub(r"^(ALE[/-])", "", env)):
            if _key(candidate) in keys:
                return keys[_key(candidate)]
        raise NormalizationError(
            f"no reference scores for {env!r} in {self.source or 'the score table'} "
            f"(it has: {', '.join(sorted(self.ranges)) or 'nothing'})"
        )

    def __call__(self, env: str, scores: float | np.ndarray) -> np.ndarray | float:
        rng = self.range_for(env)
        if rng is None:
            return scores
        low, high = rng
        out = (np.asarray(scores, dtype=np.float64) - low) / (high - low)
        return float(out) if np.ndim(out) == 0 else out


def get_normalizer(spec: str | Normalizer | None, envs: Iterable[str] = ()) -> Normalizer:
    """A :class:`Normalizer` from a spec string (see the module docstring); ``envs`` decides ``auto``."""
    if isinstance(spec, Normalizer):
        return spec
    text = (spec or "auto").strip()
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "auto":
        envs = list(envs)
        if envs and all(atari_game(e) is not None for e in envs):
            return Normalizer("atari", source="Atari-57 random/human table")
        return Normalizer("none")
    if kind in ("none", "raw"):
        return Normalizer("none")
    if kind == "atari":
        return Normalizer("atari", source="Atari-57 random/human table")
    if kind == "minmax":
        parts = arg.split(",")
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise NormalizationError(
                f"--normalize {text!r}: expected minmax:LO,HI with two numbers, e.g. minmax:0,500"
            ) from None
        if high <= low:
            raise NormalizationError(
                f"--normalize {text!r}: HI must be above LO (the score is (score - LO) / (HI - LO), and a "
                "reversed range would rank the better runs lower)"
            )
        return Normalizer("minmax", default=(low, high), source=f"min {low:g}, max {high:g}")
    if kind == "table":
        if not arg:
            raise NormalizationError("--normalize table:PATH.csv needs the path of an env,low,high CSV")
        return Normalizer("table", ranges=read_score_table(arg), source=Path(arg).name)
    raise NormalizationError(f"unknown normalisation {text!r}; expected {NORMALIZE_CHOICES}")
