"""Benchmark: Feedback Decision Transformer vs Decision Transformer vs BC on offline MiniGrid data.

What runs (every stage is skipped when its output exists, so a killed run resumes):

1. **Agents.** PPO (``critwrap.zoo.train``) on MiniGrid-LavaGapS6-v0 with MiniGrid's compact 7x7x3
   symbolic partial view (``ImgObsWrapper``), a checkpoint every ``--save-freq`` steps, each evaluated
   greedily on ``--agent-eval-episodes`` episodes.
2. **Offline data.** ``record_agents`` (``record agent``): the data agents are checkpoints below
   ``--data-max-quality`` greedy success, one per quality level (at most ``--data-agents``, see
   :func:`choose_agents`), each played for ``--episodes-per-agent`` episodes with epsilon mixing
   (``--epsilon``). The oracle, the best checkpoint, contributes no data, as in FDT, where a separate
   strong agent gives feedback on DQN-replay data.
3. **Feedback.** ``FeedbackOracle`` with ``RTGGap(gamma=0.9, pool=1)`` (exact hashes of the symbolic
   view) and the oracle's greedy action, for each budget in ``--budgets`` (labelled steps), at most
   ``--occurrences`` labelled steps per important state (the first best- and worst-action steps, then
   others in dataset order).
4. **Offline training.** DT, BC and FDT (one per budget) for each of ``--seeds`` seeds, the same small
   transformer for all (``--n-layer``, ``--n-embd``, context ``--context-length``), ``--max-steps``
   updates of ``--batch-size`` windows (the CPU budget; ``--max-steps 0`` trains ``--epochs`` epochs).
5. **Evaluation.** Every run plays ``--eval-episodes`` episodes on the same env seeds (greedy actions),
   DT / FDT conditioned on the best return in the data. Aggregates: rliable IQM with 95% stratified
   bootstrap CIs over seeds, probability of improvement.

Why this task: the machine has 2 shared CPU cores and no GPU, so no Atari game at DQN-replay scale.
PPO with an MLP learns LavaGapS6 in about 60k steps (4-5 min here), so checkpoints of every quality
exist; episodes are short (optimal ~8 steps, 144 at most); the symbolic view gives exact state hashes,
so RTGGap finds states seen with several actions (about 220 distinct observations, 170 ranked); the gap
in the lava wall moves between 8 places, so a policy has to generalise across layouts; and the task has
the critical states FDT targets: one step into the lava ends the episode with nothing. LavaGapS5 (3
layouts, 43 distinct observations) was tried first: every method solved the same 2 of 3 layouts.

Usage (about 30 min wall-clock on the 2 shared cores here, with the defaults)::

    nohup python benchmarks/feedback.py --out bench_out/feedback > bench_out/feedback.log 2>&1 &
    python benchmarks/feedback.py --out /tmp/fb_quick --quick      # a few-minute smoke run (LavaGapS5)
    # the 2-epoch re-run with three FDT loss variants, on the same agents / data / labels (two processes,
    # then one for the evaluation; see docs/benchmarks_feedback.md)
    python benchmarks/feedback.py --out bench_out/feedback --offline-dir offline_2ep --max-steps 0 --epochs 2 \
        --budgets 3000 --feedback-modes best-action positive-only fallback --shard 0/2   # and 1/2, then no --shard

    # run 3 (the one that meets the target): the agents restricted to MiniGrid's 3 movement actions
    python benchmarks/feedback.py --out bench_out/feedback_move --movement-only --ppo-steps 100000 --save-freq 2500 \
        --budgets 3000 --max-steps 0 --epochs 2 --seeds 10 --feedback-modes best-action fallback

Results: ``OUT/results.json`` and ``OUT/results.md`` (the table for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PPO_YAML = """\
{env}:
  n_envs: 8
  n_timesteps: {steps}
  policy: 'MlpPolicy'
  n_steps: 128
  batch_size: 256
  gae_lambda: 0.95
  gamma: 0.99
  n_epochs: 10
  ent_coef: 0.01
  learning_rate: 7.0e-4
  clip_range: 0.2
  policy_kwargs:
    net_arch: [64, 64]
    normalize_images: false
  env_kwargs: {{preprocess: false}}
  env_wrapper: ["minigrid.wrappers:ImgObsWrapper"{extra_wrappers}]
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench_out/feedback"))
    p.add_argument("--env", default="MiniGrid-LavaGapS6-v0")
    p.add_argument(
        "--movement-only",
        action="store_true",
        help="restrict the agents (and so the data and the offline policies) to MiniGrid's 3 movement "
        "actions with the 'action-subset' wrapper (the other 4 are no-ops in LavaGap)",
    )
    p.add_argument("--ppo-steps", type=int, default=200_000)
    p.add_argument("--save-freq", type=int, default=10_000)
    p.add_argument("--agent-eval-episodes", type=int, default=24)
    p.add_argument("--data-agents", type=int, default=4)
    p.add_argument(
        "--data-max-quality", type=float, default=0.8, help="greedy success rate of data agents below this"
    )
    p.add_argument("--episodes-per-agent", type=int, default=150)
    p.add_argument("--epsilon", type=float, default=0.2)
    p.add_argument("--budgets", type=int, nargs="+", default=[1000, 3000])
    p.add_argument(
        "--occurrences", default="20", help="labelled steps per important state: best-worst, all or N"
    )
    p.add_argument("--feedback-lambda", type=float, default=0.1)
    p.add_argument(
        "--feedback-modes",
        nargs="+",
        default=["best-action"],
        choices=["best-action", "positive-only", "fallback"],
        help="FDT loss variants trained at every budget (DTArgs.feedback_mode); best-action runs are "
        "named fdt-BUDGET, the others fdt-BUDGET-MODE",
    )
    p.add_argument(
        "--sensitivity-lambda",
        type=float,
        default=None,
        help="also train FDT at the largest budget with this lambda (a post-hoc check, not the headline)",
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--context-length", type=int, default=10)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--eval-episodes", type=int, default=40)
    p.add_argument("--max-steps", type=int, default=500, help="updates per offline run (0: --epochs decide)")
    p.add_argument(
        "--offline-dir",
        default="offline",
        help="folder under --out for the offline runs; results go to OUT/results.json for the default, "
        "else OUT/results_OFFLINE_DIR.json (several training protocols can share agents, data, feedback)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="train only the offline runs with index %% N == I (run N processes, then once without)",
    )
    p.add_argument("--stop-after", choices=["data", "feedback", "training"], default=None)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.env, args.ppo_steps, args.save_freq, args.agent_eval_episodes = (
            "MiniGrid-LavaGapS5-v0",
            8_000,
            1_000,
            10,
        )
        args.episodes_per_agent, args.budgets, args.seeds, args.max_steps = 30, [200], 2, 20
        args.eval_episodes = 10
    return args


def train_agents(args: argparse.Namespace) -> Path:
    from critwrap.zoo.train import train

    yml = args.out / "ppo.yml"
    yml.parent.mkdir(parents=True, exist_ok=True)
    extra = ', {"action-subset": {"actions": [0, 1, 2]}}' if args.movement_only else ""
    text = PPO_YAML.format(env=args.env, steps=args.ppo_steps, extra_wrappers=extra)
    if yml.is_file() and yml.read_text() != text and (args.out / "agents").exists():
        raise SystemExit(f"{yml} holds other agent settings; use another --out for this run")
    yml.write_text(text)
    run = args.out / "agents" / "default" / "ppo" / args.env / "base" / "seed_0"
    if (run / "model.zip").is_file():
        log(f"agents: reusing {run}")
        return run
    log(f"agents: PPO on {args.env} for {args.ppo_steps} steps, a checkpoint every {args.save_freq}")
    t = time.perf_counter()
    result = train(
        "ppo",
        args.env,
        hyperparams=str(yml),
        log_dir=str(args.out / "agents"),
        seed=0,
        save_freq=args.save_freq,
        keep_checkpoints=10_000,
        eval_freq=0,
        num_threads=1,
        overwrite=True,
    )
    log(f"agents: trained in {time.perf_counter() - t:.0f} s")
    return Path(result.run_dir)


def score_checkpoints(args: argparse.Namespace, run: Path) -> list[dict[str, Any]]:
    from critwrap.zoo.common import evaluate, load_run
    from critwrap.zoo.runs import list_checkpoints

    path = args.out / "checkpoints.json"
    if path.is_file():
        return list(json.loads(path.read_text()))
    scores = []
    t = time.perf_counter()
    for steps, zip_path in list_checkpoints(run):
        loaded = load_run(run, model_path=zip_path)
        venv = loaded.make_env(seed=123_456, n_envs=min(10, args.agent_eval_episodes))
        returns, _ = evaluate(loaded.model, venv, args.agent_eval_episodes, deterministic=True)
        venv.close()
        success = float(np.mean(np.asarray(returns) > 0))
        scores.append(
            {
                "steps": steps,
                "path": str(zip_path),
                "mean_return": float(np.mean(returns)),
                "success": success,
            }
        )
    path.write_text(json.dumps(scores, indent=1))
    log(f"checkpoints: {len(scores)} scored in {time.perf_counter() - t:.0f} s")
    return scores


def choose_agents(
    args: argparse.Namespace, scores: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The oracle is the best checkpoint (the latest among equals); the data agents are checkpoints below
    ``--data-max-quality`` greedy success, one per quality level (the latest at that level), levels
    spread evenly when there are more than ``--data-agents``: the mixture a learning agent leaves."""
    best = max(scores, key=lambda s: (s["mean_return"], s["steps"]))
    pool = [s for s in scores if s is not best and s["success"] < args.data_max_quality]
    if not pool:
        raise RuntimeError("no checkpoint is below --data-max-quality: save checkpoints more often")
    levels: dict[float, dict[str, Any]] = {}
    for s in sorted(pool, key=lambda s: s["steps"]):
        levels[round(s["success"] * 20) / 20] = s  # the latest checkpoint of each 0.05 success level
    ordered = [levels[k] for k in sorted(levels)]
    if len(ordered) > args.data_agents:
        picks = np.linspace(0, len(ordered) - 1, args.data_agents).round().astype(int)
        ordered = [ordered[i] for i in sorted(set(picks.tolist()))]
    return best, sorted(ordered, key=lambda s: s["steps"])


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. agents and their checkpoints
    run = train_agents(args)
    scores = score_checkpoints(args, run)
    oracle, data_agents = choose_agents(args, scores)
    log(
        f"oracle: checkpoint at {oracle['steps']} steps, greedy success {oracle['success']:.2f}, return {oracle['mean_return']:.3f}"
    )
    for a in data_agents:
        log(
            f"data agent: {a['steps']} steps, greedy success {a['success']:.2f}, return {a['mean_return']:.3f}"
        )
    timings["agents"] = time.perf_counter() - t0

    # 2. offline data
    from critwrap.episodes import EpisodeStore
    from critwrap.feedback.data import OfflineData, record_agents

    data_dir = args.out / "data"
    t = time.perf_counter()
    if not (data_dir / "manifest.jsonl").is_file():
        record_agents(
            [a["path"] for a in data_agents],
            data_dir,
            episodes=args.episodes_per_agent,
            epsilon=args.epsilon,
            seed=1,
            progress=False,
        )
    store = EpisodeStore(data_dir, create=False)
    data = OfflineData.load(store)
    summary = data.summary()
    random_share = float(np.sum([ep.metadata["random_actions"] for ep in store]) / len(data))
    success_share = float(np.mean(data.returns > 0))
    log(f"data: {summary['episodes']} episodes, {summary['steps']} steps, mean return {summary['return_mean']:.3f}, "
        f"success {success_share:.2f}, random actions {random_share:.2f}")  # fmt: skip
    timings["data"] = time.perf_counter() - t
    if args.stop_after == "data":
        return 0

    # 3. oracle feedback at the RTGGap important states
    from critwrap.detectors.rtg_gap import RTGGap
    from critwrap.feedback.oracle import FeedbackLabels, FeedbackOracle
    from critwrap.zoo.common import load_run

    t = time.perf_counter()
    oracle_model = load_run(run, model_path=oracle["path"]).model
    feedback_stats: dict[int, dict[str, Any]] = {}
    for budget in args.budgets:
        path = data_dir / f"feedback_{budget}.npz"
        if not path.is_file():
            oracle_fb = FeedbackOracle(
                oracle_model, selector=RTGGap(gamma=0.9, pool=1), budget=budget, occurrences=args.occurrences
            )
            oracle_fb.label(store).save(path)
        labels = FeedbackLabels.load(path)
        feedback_stats[budget] = {
            "labels": len(labels),
            "positive": labels.n_positive,
            "states": len(set(labels.state_hash.tolist())),
            "with_best_action": int((labels.best_action >= 0).sum()),
            "best_equals_oracle_on_negative": float(
                np.mean((labels.best_action == labels.oracle_action)[labels.label == 0])
            ),
            "share_of_steps": len(labels) / len(data),
        }
        log(f"feedback {budget}: {feedback_stats[budget]}")
    timings["feedback"] = time.perf_counter() - t
    if args.stop_after == "feedback":
        return 0

    # 4. offline training
    from critwrap.feedback.dt import DTArgs, train

    t = time.perf_counter()
    lam = args.feedback_lambda
    variants: list[tuple[str, str, str | None, float]] = [("dt", "dt", None, lam), ("bc", "bc", None, lam)]
    modes: dict[str, str] = {}
    for b in args.budgets:
        for mode in args.feedback_modes:
            name = f"fdt-{b}" if mode == "best-action" else f"fdt-{b}-{mode}"
            modes[name] = mode
            variants.append((name, "fdt", str(data_dir / f"feedback_{b}.npz"), lam))
    if args.sensitivity_lambda is not None:  # a post-hoc check, reported apart from the headline
        b = max(args.budgets)
        fb_file = str(data_dir / f"feedback_{b}.npz")
        variants.append(
            (f"fdt-{b}-lambda{args.sensitivity_lambda:g}", "fdt", fb_file, args.sensitivity_lambda)
        )
    runs: dict[str, list[Path]] = {name: [] for name, _, _, _ in variants}
    shard_i, shard_n = (int(x) for x in args.shard.split("/")) if args.shard else (0, 1)
    cpu_seconds: dict[str, float] = {}
    index = -1
    for seed in range(args.seeds):
        for name, algo, fb, lam in variants:
            index += 1
            out = args.out / args.offline_dir / name / f"seed_{seed}"
            runs[name].append(out)
            if (out / "model.pt").is_file():
                cfg = json.loads((out / "config.json").read_text())
                want = args.max_steps or None
                if want is not None and cfg["train"]["steps"] != want:
                    raise RuntimeError(
                        f"{out} was trained for {cfg['train']['steps']} updates, not --max-steps {want}: "
                        "use another --offline-dir"
                    )
                continue
            if index % shard_n != shard_i:
                continue
            ts, cs = time.perf_counter(), time.process_time()
            train(
                DTArgs(
                    data=str(data_dir),
                    out=str(out),
                    algo=algo,
                    feedback=fb,
                    feedback_lambda=lam,
                    feedback_mode=modes.get(name, "best-action"),
                    seed=seed,
                    epochs=args.epochs,
                    max_steps=args.max_steps or None,
                    batch_size=args.batch_size,
                    context_length=args.context_length,
                    n_layer=args.n_layer,
                    n_head=args.n_head,
                    n_embd=args.n_embd,
                    num_threads=1,
                    progress=False,
                    overwrite=True,
                )
            )
            cpu_seconds[f"{name}/seed_{seed}"] = time.process_time() - cs
            log(f"trained {name} seed {seed} in {time.perf_counter() - ts:.0f} s "
                f"({cpu_seconds[f'{name}/seed_{seed}']:.0f} s CPU)")  # fmt: skip
    timings["offline_training"] = time.perf_counter() - t
    if args.stop_after == "training" or args.shard:
        return 0

    # 5. evaluation
    from critwrap.feedback.evaluate import aggregate, rollout

    t, cs = time.perf_counter(), time.process_time()
    target = float(summary["return_max"])
    per_run: dict[str, list[float]] = {}
    train_cpu: dict[str, float] = {}
    for name, paths in runs.items():
        for path in paths:
            result_file = path / "benchmark_eval.json"
            if result_file.is_file():
                res = json.loads(result_file.read_text())
            else:
                res = rollout(
                    path,
                    target_return=None if name == "bc" else target,
                    episodes=args.eval_episodes,
                    seed=777,
                )
                result_file.write_text(json.dumps(res))
            per_run.setdefault(name, []).append(float(res["mean_return"]))
            train_info = json.loads((path / "config.json").read_text())["train"]
            train_cpu[f"{name}/{path.name}"] = float(train_info.get("cpu_seconds", float("nan")))
        log(f"evaluated {name}: {np.round(per_run[name], 3).tolist()}")
    timings["evaluation"] = time.perf_counter() - t
    timings["evaluation_cpu"] = time.process_time() - cs
    agg = aggregate(per_run, reps=5000)
    timings["total"] = time.perf_counter() - t0

    results = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "oracle": oracle,
        "data_agents": data_agents,
        "data": {**summary, "success_share": success_share, "random_action_share": random_share},
        "target_return": target,
        "feedback": {str(k): v for k, v in feedback_stats.items()},
        "per_run_mean_return": per_run,
        "aggregate": agg,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "offline_train_cpu_s": {"total": round(sum(train_cpu.values()), 1), **train_cpu},
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    stem = "results" if args.offline_dir == "offline" else f"results_{args.offline_dir}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(r: dict[str, Any]) -> str:
    agg = r["aggregate"]
    lines = [
        "| method | runs | IQM mean return [95% CI] | mean |",
        "|---|---|---|---|",
    ]
    for name, g in agg["groups"].items():
        lines.append(
            f"| {name} | {g['runs']} | {g['iqm']:.3f} [{g['ci_low']:.3f}, {g['ci_high']:.3f}] | {g['mean']:.3f} |"
        )
    lines.append("")
    lines.append("| comparison | probability of improvement |")
    lines.append("|---|---|")
    for pair, p in agg["probability_of_improvement"].items():
        a, b = pair.split(">")
        if (
            (a.startswith("fdt") and b in ("dt", "bc"))
            or (a == "dt" and b == "bc")
            or (b.startswith("fdt") and a.startswith(b + "-"))  # a loss variant vs the default FDT
        ):
            lines.append(f"| P({a} > {b}) | {p:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
