"""GridWorld critical-state benchmark (the Deep State Identifier paper's table), as critwrap measures it.

For each training seed: fit DSI on the GridWorld training split (frames + success labels only), choose
the threshold on the validation split, report F1@T (T = 1, 2, 3) on the positive test episodes (as the
official evaluation does), the top-m precision, and the same for the random detector, the trivial
all-frames detector and the gradient-saliency baseline of the trained return predictor. Also the DSI
training time and its scoring throughput.

    python benchmarks/critical_states.py --out bench_out/critical_states \
        --train 2000 --val 200 --test 400 --seeds 0 1 2 --epochs 20 --markdown docs/benchmarks_critical_states.md

Smaller runs: ``--train 500 --epochs 8 --channels 16,32,32,64,64 --lstm-hidden 32 --lr 1e-3 --jobs 3``. Everything the
table shows is measured in that run; the command line is written next to the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _positives(eps: list[Any]) -> list[Any]:
    return [e for e in eps if e.label == 1 and e.metadata.get("critical_steps")]


def evaluate_detector(
    det: Any, test: list[Any], val_episodes: list[Any], grid: str, lookaheads: Any = (0,)
) -> dict[str, Any]:
    from critwrap.zoo.detect import evaluate_detector as evaluate

    return evaluate(det, test, val_episodes=val_episodes, grid=grid, lookaheads=tuple(lookaheads))


def _dsi_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "channels": tuple(int(c) for c in args["channels"].split(",")),
        "lstm_hidden": args["lstm_hidden"],
        "batch_size": args["batch_size"],
        "lr": args["lr"],
        "max_length": 84,
    }
    for name in ("l1", "l1_reduction", "mask_input", "mask_sampling", "mask_budget", "mask_budget_weight"):
        if args.get(name) is not None:
            kw[name] = args[name]
    if args.get("l1_schedule"):
        kw["l1"] = float(args["l1_schedule"][0])
    if args.get("no_length_blind"):
        kw["length_blind"] = False
    return kw


def _run_seed(job: tuple[dict[str, Any], int, str]) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Train DSI with one seed and evaluate it, the saliency baseline and the random detector."""
    import torch

    from critwrap.detectors.baselines import RandomDetector
    from critwrap.detectors.dsi import DSI
    from critwrap.detectors.saliency import ReturnSaliency
    from critwrap.episodes import EpisodeStore

    args, seed, data = job
    torch.set_num_threads(args["threads"])
    out = Path(args["out"])
    data_dir = Path(data)
    train = list(EpisodeStore(data_dir / "train", create=False))
    if args.get("subsample"):  # bagging: each run sees its own random subset of the training episodes
        if args["subsample"] > len(train):
            raise ValueError(f"--subsample {args['subsample']} > {len(train)} training episodes")
        pick = np.random.default_rng([seed, 7919]).choice(len(train), args["subsample"], replace=False)
        train = [train[i] for i in sorted(pick)]
    val = _positives(list(EpisodeStore(data_dir / "val", create=False)))
    test = _positives(list(EpisodeStore(data_dir / "test", create=False)))
    t0 = time.time()
    c0 = time.process_time()
    det = DSI(**_dsi_kwargs(args), seed=seed)
    val_truth = [e.metadata["critical_steps"] for e in val]
    best: dict[str, Any] = {"top_m": -1.0, "epoch": -1, "state": None, "curve": []}

    def keep_best(d: Any, record: dict[str, float]) -> None:
        """--select-epoch: keep the weights of the epoch with the best validation top-m precision."""
        from critwrap.detectors.selection import validation_figure

        # top-m precision, or (--select-by f1) validation F1@2 at its best validation threshold
        val_scores = d.score_batch([e.frames for e in val])
        tm = validation_figure(val_scores, val_truth, args.get("select_by", "top-m"), tolerance=2)
        best["curve"].append(round(tm, 4))
        if tm > best["top_m"] and args["select_epoch"]:
            best.update(
                top_m=tm, epoch=int(record["epoch"]), state={k: v.copy() for k, v in d._get_state().items()}
            )
        schedule = args.get("l1_schedule")
        if schedule and int(record["epoch"]) + 1 < len(schedule):  # the L1 weight of the next epoch
            d.config.l1 = float(schedule[int(record["epoch"]) + 1])

    restarts: dict[str, Any] = {}
    if args.get("restarts", 1) > 1:  # critwrap's addition: probe seeds s*N .. s*N+N-1, continue the best
        from critwrap.detectors.restarts import fit_with_restarts

        n = args["restarts"]
        det, restarts = fit_with_restarts(
            lambda s: DSI(**_dsi_kwargs(args), seed=s),
            train,
            val,
            [seed * n + i for i in range(n)],
            probe_epochs=args["probe_epochs"],
            epochs=args["epochs"],
            progress=False,
            tensorboard_log=str(out / f"tb_seed{seed}"),
            callback=keep_best if args["select_epoch"] else None,
        )
        print(json.dumps({"restart_group": seed, **restarts}), flush=True)
    else:
        if args.get("pretrain_epochs"):  # critwrap's addition: the predictor alone first, then both nets
            det.fit(train, epochs=args["pretrain_epochs"], progress=False, seed=seed, predictor_only=True)
        det.fit(
            train,
            epochs=args["epochs"],
            warm_start=bool(args.get("pretrain_epochs")),
            progress=args["jobs"] == 1,
            seed=seed,
            tensorboard_log=str(out / f"tb_seed{seed}"),
            callback=keep_best if args["select_epoch"] or args.get("l1_schedule") else None,
        )
    if best["state"] is not None:
        det._set_state(best["state"])
    train_s, train_cpu = time.time() - t0, time.process_time() - c0
    det.save(out / f"dsi_seed{seed}")
    t1 = time.time()
    scores = det.score_batch([e.frames for e in test])
    score_s = time.time() - t1
    n_frames = sum(len(s) for s in scores)
    timing = {
        "seed": seed,
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu,
        "train_frames_per_second": float(det.fit_stats.get("frames_per_s", np.nan)),
        "score_frames_per_second": n_frames / max(score_s, 1e-9),
        "selected_epoch": best["epoch"],
        "val_top_m_per_epoch": best["curve"],
        **({"restarts": restarts} if restarts else {}),
    }
    grid, ahead = args["grid"], args.get("lookahead") or [0]
    rows = {
        "DSI": evaluate_detector(det, test, val_episodes=val, grid=grid, lookaheads=ahead),
        "saliency (DSI predictor)": evaluate_detector(
            ReturnSaliency.from_dsi(det), test, val_episodes=val, grid=grid, lookaheads=ahead
        ),
        "random": evaluate_detector(
            RandomDetector(seed=seed), test, val_episodes=val, grid=grid, lookaheads=ahead
        ),
    }
    if any(ahead):
        rows["DSI without lookahead"] = evaluate_detector(det, test, val_episodes=val, grid=grid)
    print(json.dumps({"seed": seed, "timing": timing, "DSI": rows["DSI"]["per_T"]}, default=str), flush=True)
    return rows, timing


def _train_seeds(args: argparse.Namespace, seeds: list[int], data_dir: Path) -> list[Any]:
    """Fit and evaluate DSI for each seed (``args.jobs`` processes at once)."""
    if args.jobs > 1 and len(seeds) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(seeds)), mp_context=mp.get_context("spawn")) as pool:
            return list(pool.map(_run_seed, [(vars(args), s, str(data_dir)) for s in seeds]))
    return [_run_seed((vars(args), s, str(data_dir))) for s in seeds]


def _ensembles(
    args: argparse.Namespace, data_dir: Path, val: list[Any], test: list[Any], rows: dict[str, list[Any]]
) -> list[Any]:
    """--ensemble N: per seed s, a MeanEnsemble of the runs s*N .. s*N+N-1, members picked on validation.

    Each member is an ordinary run of this benchmark (fitted, saved to OUT/dsi_seed<m>, evaluated on its
    own; its rows are kept in OUT/member_seed<m>.json and reused by later invocations). The ensemble's
    training time is the sum of its members' (they are independent and could run on separate cores).
    """
    from critwrap.detectors.dsi import DSI
    from critwrap.detectors.ensemble import MeanEnsemble, select_members

    out = Path(args.out)
    n = args.ensemble
    keep = args.ensemble_keep or n
    groups = {s: [s * n + i for i in range(n)] for s in args.seeds}
    members = sorted({m for g in groups.values() for m in g})
    done: dict[int, Any] = {}
    for m in members:
        path = out / f"member_seed{m}.json"
        if path.is_file() and (out / f"dsi_seed{m}" / "config.json").is_file():
            done[m] = json.loads(path.read_text())
            for report in done[m]["rows"].values():  # JSON keys are strings; the tolerances are ints
                report["per_T"] = {int(T): v for T, v in report["per_T"].items()}
    todo = [m for m in members if m not in done]
    for m, (member_rows, member_timing) in zip(todo, _train_seeds(args, todo, data_dir)):
        done[m] = {"rows": member_rows, "timing": member_timing}
        (out / f"member_seed{m}.json").write_text(json.dumps(done[m], indent=1, default=str))
    rows["DSI, single runs (every member)"] = [done[m]["rows"]["DSI"] for m in members]
    val_truth = [e.metadata["critical_steps"] for e in val]
    results = []
    for s, group in groups.items():
        dets = [DSI.load(out / f"dsi_seed{m}") for m in group]
        chosen, precision = select_members(
            dets, [e.frames for e in val], val_truth, keep, by=args.ensemble_select, lookaheads=args.lookahead
        )
        ensemble = MeanEnsemble([dets[i] for i in chosen])
        t0 = time.time()
        scores = ensemble.score_batch([e.frames for e in test])
        score_s = time.time() - t0
        timings = [done[m]["timing"] for m in group]
        timing = {
            "seed": s,
            "members": group,
            "chosen": [group[i] for i in chosen],
            "member_val_top_m" if args.ensemble_select == "top-m" else "member_val_f1@2": [
                round(p, 4) for p in precision
            ],
            "train_seconds": float(sum(t["train_seconds"] for t in timings)),
            "train_cpu_seconds": float(sum(t["train_cpu_seconds"] for t in timings)),
            "train_frames_per_second": float(np.mean([t["train_frames_per_second"] for t in timings])),
            "score_frames_per_second": sum(len(x) for x in scores) / max(score_s, 1e-9),
            "selected_epoch": [t["selected_epoch"] for t in timings],
            "val_top_m_per_epoch": [t["val_top_m_per_epoch"] for t in timings],
        }
        best = group[chosen[0]]
        seed_rows = {
            "DSI": evaluate_detector(
                ensemble, test, val_episodes=val, grid=args.grid, lookaheads=args.lookahead
            ),
            "saliency (DSI predictor)": done[best]["rows"]["saliency (DSI predictor)"],
            "random": done[best]["rows"]["random"],
        }
        if any(args.lookahead):
            seed_rows["DSI without lookahead"] = evaluate_detector(
                ensemble, test, val_episodes=val, grid=args.grid
            )
        ensemble.save(out / f"ensemble_seed{s}")
        print(
            json.dumps({"ensemble_seed": s, "timing": timing, "DSI": seed_rows["DSI"]["per_T"]}, default=str)
        )
        results.append((seed_rows, timing))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out/critical_states")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=400)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--channels", default="32,64,128,128,256")
    p.add_argument("--lstm-hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads per training process")
    p.add_argument("--jobs", type=int, default=1, help="train this many seeds at once (processes)")
    p.add_argument(
        "--negative-length",
        choices=["matched", "paper"],
        default="matched",
        help="GridWorld negatives: as long as the positive of the same layout (default) or the paper's 24 moves",
    )
    p.add_argument(
        "--style",
        choices=["minigrid", "original"],
        default="minigrid",
        help="GridWorld style: MiniGrid actions, critical = interactions (default), or the original "
        "generator's moves, critical = frames on a door cell (critwrap.gridworld)",
    )
    p.add_argument("--l1", type=float, default=None, help="DSI L1 weight (default: DSIConfig's)")
    p.add_argument(
        "--l1-schedule",
        type=lambda v: [float(x) for x in v.split(",")],
        default=None,
        help="DSI L1 weight per epoch, comma-separated (the last one holds for the remaining epochs); "
        "overrides --l1",
    )
    p.add_argument("--l1-reduction", default=None, choices=["original", "mean", "sum"])
    p.add_argument("--mask-input", default=None, choices=["features", "frames"])
    p.add_argument("--mask-sampling", default=None, choices=["bernoulli", "soft"])
    p.add_argument("--no-length-blind", action="store_true", help="the original predictor padding")
    p.add_argument(
        "--mask-budget",
        type=float,
        default=None,
        help="DSIConfig.mask_budget: hinge on each episode's mean mask above this share (critwrap addition)",
    )
    p.add_argument("--mask-budget-weight", type=float, default=None, help="DSIConfig.mask_budget_weight")
    p.add_argument(
        "--select-epoch",
        action="store_true",
        help="keep the epoch with the best top-m precision on the validation positives (not the last)",
    )
    p.add_argument(
        "--select-by",
        default="top-m",
        choices=["top-m", "f1"],
        help="--select-epoch criterion: validation top-m precision (default) or validation F1@2 at the best "
        "validation threshold (fine grid)",
    )
    p.add_argument(
        "--subsample",
        type=int,
        default=None,
        help="critwrap's addition: each run trains on its own random subset of this many training episodes "
        "(drawn with the run's seed; with --ensemble this is bagging)",
    )
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        help="critwrap's addition: train the return predictor alone for this many epochs before the "
        "alternating loop (default 0: the paper's loop from the start)",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="critwrap's addition: each seed s is a MeanEnsemble of DSI runs with seeds s*N .. s*N+N-1 "
        "(trained runs are reused from OUT/dsi_seed<m> + OUT/member_seed<m>.json); default 1: one run",
    )
    p.add_argument(
        "--ensemble-keep",
        type=int,
        default=None,
        help="keep the K members with the best validation top-m precision (default: all N)",
    )
    p.add_argument(
        "--ensemble-select",
        default="top-m",
        choices=["top-m", "f1"],
        help="how --ensemble-keep ranks the runs: validation top-m precision (default) or validation F1@2 "
        "(best threshold and --lookahead)",
    )
    p.add_argument(
        "--lookahead",
        type=int,
        nargs="+",
        default=[0],
        help="critwrap's addition: score lookaheads tried (a frame counts when it or one of the next N "
        "scores high); per T the best on validation is used, with its threshold (default 0: none)",
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="critwrap's addition (critwrap.detectors.restarts): per seed s, train seeds s*N .. s*N+N-1 for "
        "--probe-epochs, continue the one with the best validation top-m (mean of its last 3 probe epochs) "
        "to --epochs; --select-epoch then picks among the continued epochs; one process per seed s "
        "(default 1: no restarts)",
    )
    p.add_argument("--probe-epochs", type=int, default=10, help="epochs per candidate with --restarts")
    p.add_argument("--grid", default="fine", choices=["fine", "paper"], help="thresholds tried on validation")
    p.add_argument("--markdown", default=None, help="write the result table to this Markdown file")
    args = p.parse_args(argv)
    load0 = os.getloadavg()[0]

    from critwrap.episodes import EpisodeStore
    from critwrap.gridworld import generate_gridworld_splits

    out = Path(args.out)
    tag = "" if args.negative_length == "paper" else f"_{args.negative_length}"
    if args.style != "minigrid":
        tag += f"_{args.style}"
    data_dir = out / f"gridworld_{args.train}_{args.val}_{args.test}_s{args.data_seed}{tag}"
    if not (data_dir / "test" / "manifest.jsonl").exists():
        generate_gridworld_splits(
            data_dir,
            args.train,
            args.val,
            args.test,
            seed=args.data_seed,
            negative_length=args.negative_length,
            style=args.style,
        )
    train = list(EpisodeStore(data_dir / "train", create=False))
    val = _positives(list(EpisodeStore(data_dir / "val", create=False)))
    test = _positives(list(EpisodeStore(data_dir / "test", create=False)))
    channels = tuple(int(c) for c in args.channels.split(","))
    rows: dict[str, list[dict[str, Any]]] = {"DSI": [], "saliency (DSI predictor)": [], "random": []}
    timing: list[dict[str, float]] = []
    if args.ensemble > 1 and args.restarts > 1:
        p.error("--ensemble and --restarts cannot be combined")
    if args.restarts > 1:
        results = _train_seeds(args, args.seeds, data_dir)
    elif args.ensemble > 1:
        results = _ensembles(args, data_dir, val, test, rows)
    else:
        results = _train_seeds(args, args.seeds, data_dir)
    for seed_rows, seed_timing in results:
        for k, v in seed_rows.items():
            rows.setdefault(k, []).append(v)
        timing.append(seed_timing)

    def agg(reports: list[dict[str, Any]], key: str, T: int | None = None) -> tuple[float, float]:
        vals = [r["per_T"][T][key] if T is not None else r[key] for r in reports]
        return float(np.mean(vals)), float(np.std(vals))

    lines = [
        "| detector | F1@1 | F1@2 | F1@3 | top-m precision |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, reps in rows.items():
        cells = [
            f"{100 * agg(reps, 'test_f1', T)[0]:.2f} ± {100 * agg(reps, 'test_f1', T)[1]:.2f}"
            for T in (1, 2, 3)
        ]
        tm = agg(reps, "top_m_precision")
        lines.append(f"| {name} | {' | '.join(cells)} | {100 * tm[0]:.2f} ± {100 * tm[1]:.2f} |")
    trivial = rows["DSI"][0]["per_T"]
    lines.append(
        "| all frames (trivial) | "
        + " | ".join(f"{100 * trivial[T]['all_frames_f1']:.2f}" for T in (1, 2, 3))
        + " | n/a |"
    )
    best = [f"{100 * agg(rows['DSI'], 'best_test_f1_oracle_threshold', T)[0]:.2f}" for T in (1, 2, 3)]
    lines.append(
        f"| DSI, threshold picked on test (the paper's protocol, optimistic) | {' | '.join(best)} | |"
    )
    tr = np.mean([t["train_seconds"] for t in timing])
    tr_cpu = np.mean([t["train_cpu_seconds"] for t in timing])
    fps = np.mean([t["train_frames_per_second"] for t in timing])
    sfps = np.mean([t["score_frames_per_second"] for t in timing])
    cmd = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    md = "\n".join(
        [
            f"Seeds {args.seeds} (mean ± std over training seeds), {len(train)} training episodes, "
            f"{len(val)} positive validation and {len(test)} positive test episodes; threshold chosen on "
            f"validation ({args.grid} threshold grid"
            + (f"; lookahead chosen on validation among {args.lookahead}" if any(args.lookahead) else "")
            + f"). GridWorld: {args.style} style, negatives of {args.negative_length} lengths. "
            f"DSI: channels {channels}, LSTM {args.lstm_hidden}, {args.epochs} epochs, batch "
            f"{args.batch_size}, lr {args.lr}, {json.dumps(_dsi_kwargs(vars(args)), default=str)}; "
            f"DSIConfig defaults otherwise."
            + (
                f" DSI row: a MeanEnsemble per seed of {args.ensemble} runs (seeds s*{args.ensemble}+i), the "
                f"{args.ensemble_keep or args.ensemble} with the best validation {args.ensemble_select} kept; members chosen "
                f"{[t['chosen'] for t in timing]}; training time below is the sum over an ensemble's runs."
                if args.ensemble > 1
                else ""
            )
            + (
                f" DSI row: per seed s, {args.restarts} candidate seeds (s*{args.restarts}+i) probed for "
                f"{args.probe_epochs} epochs, the best (validation top-m, mean of the last 3 probe epochs) "
                f"continued to {args.epochs}; chosen {[t['restarts']['chosen_seed'] for t in timing]}; "
                "training time below includes the probes."
                if args.restarts > 1
                else ""
            ),
            "",
            *lines,
            "",
            f"DSI training: {tr:.0f} s wall and {tr_cpu:.0f} CPU-s per seed ({fps:.0f} frames/s), "
            f"{args.jobs} seed(s) at once; scoring {sfps:.0f} frames/s; "
            + (
                f"epoch kept (best validation {args.select_by}, 0-based): {[t['selected_epoch'] for t in timing]}, "
                f"validation {args.select_by} per epoch: {[t['val_top_m_per_epoch'] for t in timing]}; "
                if args.select_epoch
                else ""
            )
            + f"{args.threads} torch thread(s) per process on `{platform.processor() or platform.machine()}`, "
            f"{os.cpu_count()} CPUs shared with other jobs, no GPU; load average at the start {load0:.1f}, "
            f"at the end {os.getloadavg()[0]:.1f}.",
            "",
            f"Command: `{cmd}`",
        ]
    )
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"rows": rows, "timing": timing, "args": vars(args)}, indent=1, default=str)
    )
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
