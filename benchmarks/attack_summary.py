"""Summarise ``benchmarks/attack.py`` results over DSI training seeds.

Reads every ``results*.json`` in the given output folders, keeps the random-action rows, and prints one
Markdown table per env: for each ``--lead`` and k, the detector's return drop per DSI seed, its mean
over the seeds, the random-k drop (the same episodes and draws for every seed) and the ratio of the
mean detector drop to the random drop. Runs with the same env, DSI seed and lead are deduplicated
(the newest file wins); runs with other detector-data or DSI settings than ``--match`` are skipped.
``--protocol online`` summarises the online-protocol rows instead; there the random method is matched
to each detector's number of attacks, so its drop is given per DSI seed as its mean over the seeds, and
the ratio is that of the two means.

    python benchmarks/attack_summary.py bench_out/attack bench_out/attack_dyn
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# the settings that make two runs comparable (detector data and DSI training, evaluation)
MATCH = (
    "ppo_steps",
    "data_episodes",
    "data_epsilon",
    "data_checkpoints",
    "data_deviation_steps",
    "dsi_epochs",
    "dsi_channels",
    "dsi_lstm",
    "dsi_lr",
    "dsi_l1",
    "dsi_l1_reduction",
    "dsi_mask_budget",
    "dsi_mask_budget_weight",
    "episodes",
    "seed",
)
DEFAULTS = {
    "data_epsilon": "0.5",
    "data_checkpoints": "",
    "data_deviation_steps": "0",
    "dsi_l1": "0.005",
    "dsi_mask_budget": "None",
    "dsi_mask_budget_weight": "10.0",
}


def collect(
    folders: list[Path], mask_budget: str = "None", protocol: str = "replay"
) -> dict[str, dict[tuple[int, int], dict[int, dict[str, float]]]]:
    """env -> (lead, dsi_seed) -> k -> {"detector": drop, "random": drop}.

    ``mask_budget``: keep only runs with this ``--dsi-mask-budget`` ("None": runs without one)."""
    table: dict[str, dict[tuple[int, int], dict[int, dict[str, float]]]] = defaultdict(dict)
    reference: dict[str, dict[str, str]] = {}
    for folder in folders:
        for path in sorted(folder.glob("results*.json"), key=lambda p: p.stat().st_mtime):
            data = json.loads(path.read_text())
            args: dict[str, Any] = data.get("args", {})
            if not args:
                continue
            env = args["env"]
            setting = {k: args.get(k, DEFAULTS.get(k, "")) for k in MATCH}
            if setting.get("dsi_l1_reduction") != "original" or setting.get("dsi_l1") != "0.005":
                continue
            if str(setting.get("dsi_mask_budget")) != mask_budget:
                continue
            if setting.get("data_checkpoints") or setting.get("data_deviation_steps") not in ("0", None):
                continue
            ref = reference.setdefault(env, setting)
            if setting != ref:
                continue
            lead = int(args.get("lead", 0))
            seed = int(args.get("dsi_seed", 0))
            rows = {}
            for row in data["summary"]:
                if row.get("protocol", "replay") != protocol:
                    continue
                if "random" in row["perturbation"] and "action" in row["perturbation"]:
                    rows[int(row["k"])] = {
                        "detector": row["detector_drop"],
                        "random": row["random_drop"],
                        "steps": row.get("detector_steps", float("nan")),
                    }
            if rows:
                table[env][(lead, seed)] = rows
    return table


def markdown(table: dict[str, dict[tuple[int, int], dict[int, dict[str, float]]]]) -> str:
    out = []
    for env, runs in table.items():
        seeds = sorted({s for _, s in runs})
        leads = sorted({lead for lead, _ in runs})
        out += [
            f"**{env}** (random different action; drop = clean return - attacked return, 200 episodes)",
            "",
            "| lead | k | "
            + " | ".join(f"DSI seed {s}" for s in seeds)
            + " | DSI mean ± std | random-k | mean DSI / random | attacked steps / episode (DSI) |",
            "|---|---|" + "---|" * len(seeds) + "---|---|---|---|",
        ]
        for lead in leads:
            ks = sorted({k for (ld, _), rows in runs.items() if ld == lead for k in rows})
            for k in ks:
                drops = [runs.get((lead, s), {}).get(k, {}).get("detector") for s in seeds]
                have = [d for d in drops if d is not None]
                here = [runs[(lead, s)][k] for s in seeds if (lead, s) in runs and k in runs[(lead, s)]]
                rand = float(np.mean([r["random"] for r in here]))  # replay: the same for every seed
                steps = float(np.mean([r["steps"] for r in here]))
                mean = float(np.mean(have)) if have else float("nan")
                std = float(np.std(have)) if have else float("nan")
                cells = " | ".join("-" if d is None else f"{d:.3f}" for d in drops)
                out.append(
                    f"| {lead} | {k} | {cells} | {mean:.3f} ± {std:.3f} (n={len(have)}) | {rand:.3f} | "
                    f"{mean / rand if rand > 0 else float('inf'):.2f} | {steps:.2f} |"
                )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument(
        "--mask-budget", default="None", help="summarise the runs with this --dsi-mask-budget (default: none)"
    )
    p.add_argument(
        "--protocol", default="replay", choices=["replay", "online"], help="which rows (default replay)"
    )
    args = p.parse_args(argv)
    print(markdown(collect(args.folders, mask_budget=args.mask_budget, protocol=args.protocol)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
