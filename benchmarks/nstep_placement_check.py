"""Where ``CriticalNStepReplayBuffer``'s rule puts its horizons on a DSI's own data games (run MSC's check).

For each game the saved DSI scores the frames; each transition ``t`` with five steps ahead gets the
horizon ``n = 1 + argmax(scores[t + 1 : t + 6])`` (bootstrap at the most critical state ahead, as the
buffer does with ``n_max=5``). Printed: the mean within-game z-score of the DSI and the horizons by steps
before the end of the game, and how concentrated the bootstrap states are (distinct bootstrap states per
transition; the per-game maximum number of transitions sharing one bootstrap state) against random
placement of a given horizon mix.

    python benchmarks/nstep_placement_check.py --dsi bench_out/attack_minatar_sq/dsi \\
        --data bench_out/attack_minatar_sq/data_eps0.1.npz --games 120
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

BANDS = ((0, 0), (1, 2), (3, 5), (6, 10), (11, 20), (21, 40), (41, 10**9))


def critical_targets(scores: np.ndarray, n_max: int = 5) -> np.ndarray:
    """Bootstrap index ``t + n`` of every transition ``t`` with ``n_max`` steps ahead."""
    s = np.asarray(scores, dtype=np.float64)
    return np.array(
        [t + 1 + int(np.argmax(s[t + 1 : t + 1 + n_max])) for t in range(len(s) - n_max)], dtype=int
    )


def concentration(targets: np.ndarray) -> tuple[float, int]:
    """(distinct bootstrap states per transition, most transitions sharing one bootstrap state)."""
    if len(targets) == 0:
        return float("nan"), 0
    return len(set(targets.tolist())) / len(targets), int(np.bincount(targets).max())


def check(scores: list[np.ndarray], mix: np.ndarray, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    z_by: dict[tuple[int, int], list[float]] = {b: [] for b in BANDS}
    h_by: dict[tuple[int, int], list[int]] = {b: [] for b in BANDS}
    crit, rand = [], []
    for sc in scores:
        sc = np.asarray(sc, dtype=np.float64)
        n = len(sc)
        z = (sc - sc.mean()) / (sc.std() + 1e-9)
        tc = critical_targets(sc)
        for t in range(n):
            b = next(b for b in BANDS if b[0] <= n - 1 - t <= b[1])
            z_by[b].append(float(z[t]))
            if t < len(tc):
                h_by[b].append(int(tc[t] - t))
        if len(tc) >= 7:
            tr = np.arange(len(tc)) + 1 + rng.choice(len(mix), size=len(tc), p=mix)
            crit.append(concentration(tc))
            rand.append(concentration(tr))
    return {
        "bands": {
            f"{a}-{b}": {
                "z": float(np.mean(z_by[(a, b)])) if z_by[(a, b)] else None,
                "mean_horizon": float(np.mean(h_by[(a, b)])) if h_by[(a, b)] else None,
                "share_n5": float(np.mean(np.array(h_by[(a, b)]) == 5)) if h_by[(a, b)] else None,
            }
            for a, b in BANDS
        },
        "distinct_per_transition": {
            "critical": float(np.mean([c[0] for c in crit])),
            "random": float(np.mean([r[0] for r in rand])),
        },
        "max_sharing": {
            "critical": float(np.mean([c[1] for c in crit])),
            "random": float(np.mean([r[1] for r in rand])),
        },
        "games": len(crit),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsi", required=True)
    p.add_argument("--data", required=True, help="an .npz of concatenated game frames and their lengths")
    p.add_argument("--games", type=int, default=120)
    p.add_argument("--mix", type=float, nargs=5, default=[0.39, 0.11, 0.09, 0.10, 0.31])
    args = p.parse_args(argv)
    import json

    from critwrap.detectors.dsi import DSI

    d = np.load(args.data)
    frames, lengths = d["frames"], d["lengths"]  # each d[...] access would read the array again
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    games = [frames[s : s + n] for s, n in zip(starts, lengths, strict=True)][: args.games]
    mix = np.asarray(args.mix) / np.sum(args.mix)
    print(json.dumps(check(DSI.load(args.dsi).score_batch(games), mix), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
