"""Do the DSI's *causal* embeddings mark KeyCorridorS3R3 progress where its per-frame features do not?

Exploratory companion of ``benchmarks/subgoal.py --phases`` (issue 4, twentieth session's open
question). Subgoals are taken exactly as ``extract_subgoals`` takes them (the detector's top-12 steps
of 10 successful scripted episodes, centred cosine similarity, near-duplicates merged, optionally
dropping those that 10 failed episodes also reach), once with the detector's per-frame CNN features
(what ``SubgoalReward`` uses) and once with the output of the detector's forward LSTM at each step,
which has seen the episode so far (a state that carries the episode's history). Printed: for 20
held-out successful and 20 failed scripted episodes, the share of frames of each ground-truth phase
(before the key / carrying it / door open / key put down) that match some subgoal.

    python benchmarks/subgoal_causal_phases.py bench_out/kc_phases/dsi

(the detector of ``python benchmarks/subgoal.py --out bench_out/kc_phases --tasks KeyCorridorS3R3
--phases``). Subgoals that mark progress match late phases of successful episodes and little else.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import subgoal as bench

from critwrap.detectors.dsi import DSI
from critwrap.wrappers.subgoal import SubgoalSet, _dedupe, _unit

TASK = "KeyCorridorS3R3"


def main() -> int:
    torch.set_num_threads(1)
    det = DSI.load(Path(sys.argv[1]))
    env_id = bench.TASKS[TASK]
    base = 10_000 * (list(bench.TASKS).index(TASK) + 1)  # the seeds of bench.build_data
    kinds = ("positive", "negative")
    train = [bench.scripted_episode(env_id, base + i, k) for i in range(30) for k in kinds]
    val = [bench.scripted_episode(env_id, base + 5_000 + i, k) for i in range(20) for k in kinds]
    pos = [e for e in train if e.label == 1][:10]
    neg = [e for e in train if e.label == 0][:10]
    phases = {id(e): bench.oracle_phases(env_id, e) for e in val}

    def causal(frames: np.ndarray) -> np.ndarray:
        hwc = det._frames_hwc(np.asarray(frames), "embed")
        with torch.inference_mode():
            feats = det.detector_net.backbone.encode(det._to_tensor([hwc]))
            out, _ = det.detector_net.backbone.lstm_fwd(feats[None])
        return np.asarray(out[0].numpy())

    encoders: dict[str, Any] = {"per-frame": det.embed, "causal": causal}
    for name, encoder in encoders.items():
        emb = {id(e): encoder(e.frames) for e in pos + neg + val}
        for threshold, exclude in itertools.product((0.99, 0.95, 0.9, 0.8), (True, False)):
            cand, scores = [], []
            for e in pos:
                s = det.score(e.frames)
                for t in det.critical_steps(scores=s, k=12):
                    cand.append(emb[id(e)][t])
                    scores.append(float(s[t]))
            cand_arr = np.stack(cand)
            mean = np.concatenate([emb[id(e)] for e in pos + neg]).mean(0)
            unit = _unit(cand_arr - mean)
            order = np.argsort(-np.asarray(scores), kind="stable")
            if exclude:
                failed = _unit(np.concatenate([emb[id(e)] for e in neg]) - mean)
                order = order[~((unit @ failed.T).max(1) >= threshold)[order]]
            label = f"{name} threshold={threshold} exclude_failed={exclude}"
            if len(order) == 0:
                print(f"{label}: no subgoal left", flush=True)
                continue
            sg = SubgoalSet(cand_arr[_dedupe(unit, order, threshold)], None, threshold, mean)
            res: dict[str, list[float]] = {}
            for kind in kinds:
                hits: dict[int, list[bool]] = {}
                for e in val:
                    if e.metadata["kind"] == kind:
                        for p, h in zip(phases[id(e)], sg.match(emb[id(e)]).any(1), strict=True):
                            hits.setdefault(int(p), []).append(bool(h))
                res[kind] = [round(float(np.mean(hits[p])), 2) for p in sorted(hits)]
            print(f"{label}: {len(sg)} subgoals, per phase {json.dumps(res)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
