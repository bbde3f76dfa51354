"""The n-step placement check (benchmarks/nstep_placement_check.py): horizons and concentration by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import nstep_placement_check as npc


def test_critical_targets_bootstrap_at_the_peak_ahead() -> None:
    scores = np.array([0, 0, 0, 9, 0, 0, 0, 0, 0, 0], dtype=float)
    # transitions 0..2 all bootstrap at the peak (step 3); later ones at the first of the flat steps ahead
    assert npc.critical_targets(scores).tolist() == [3, 3, 3, 4, 5]
    distinct, most = npc.concentration(npc.critical_targets(scores))
    assert distinct == 3 / 5 and most == 3


def test_check_reports_bands_and_a_less_concentrated_random_placement() -> None:
    rng = np.random.default_rng(0)
    peaks = [np.repeat(rng.random(12), 5) for _ in range(6)]  # plateaus: many transitions share a target
    out = npc.check(peaks, np.array([0.2] * 5))
    assert out["games"] == 6 and out["bands"]["0-0"]["z"] is not None
    assert out["max_sharing"]["critical"] >= out["max_sharing"]["random"]
