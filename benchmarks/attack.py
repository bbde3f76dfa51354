"""Benchmark: attacking a MiniGrid agent at the Deep State Identifier's top-k critical steps.

The EDGE / DSI Pong attack, scaled to this machine (2 shared CPU cores, no GPU). Stages (each skipped
when its output exists, so a killed run resumes):

1. **Victim.** PPO (``critwrap.zoo.train``, MLP 64-64 on MiniGrid's compact 7x7x3 symbolic view) on
   ``--env`` (MiniGrid-LavaGapS6-v0) for ``--ppo-steps`` steps. It must win reliably (checked on the
   evaluation seeds: the clean row of the table).
2. **Detector data.** ``--data-episodes`` episodes of the victim with epsilon mixing (``--data-epsilon``:
   a uniformly random action with that probability), so that both outcomes occur; seeds disjoint from
   the evaluation seeds. Frames: the agent's view rendered as RGB, tile 4 (28x28x3, the DSI GridWorld
   format); label: success (return > 0).
3. **DSI** (``critwrap.detectors.dsi.DSI``) trained on those frames and labels only.
4. **Attack** (replay protocol, :func:`critwrap.attack.evaluate_attack`) on ``--episodes`` seeded
   episodes: the victim's greedy action replaced by a uniformly random different action at the
   detector's top-k steps, at k random steps, at the victim's own top-k (minus the entropy of its action
   distribution) and, as an upper-bound reference, at the top-k steps of an oracle that measured the
   expected return drop of attacking each step alone (every alternative action tried). With
   ``--fgsm-epsilon`` also FGSM on the observation (one level of the symbolic view).

Why this task: PPO learns LavaGapS6 in about 60k steps (a few CPU minutes here) and then wins every
episode; one wrong step into the lava ends an episode with nothing, so there are true critical steps,
about one or two per episode; episodes are short (7-9 steps), so k is scaled to the episode: k in
{1, 2, 3} (Pong's k = 30 is about 1-3% of an episode of 1000-2000 agent steps; here k = 1 is 12%).

    nohup nice -n 5 python benchmarks/attack.py --out bench_out/attack > bench_out/attack.log 2>&1 &

Results: ``OUT/results.json`` and ``OUT/results.md``.
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
  env_wrapper: ["minigrid.wrappers:ImgObsWrapper"]
"""

DATA_SEED = 100_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pov(env: Any, obs: Any) -> np.ndarray:
    """The agent's 7x7 view rendered as RGB with tile 4: 28x28x3 (DSI's GridWorld frames)."""
    return np.asarray(env.unwrapped.get_frame(highlight=False, tile_size=4, agent_pov=True))


def train_victim(args: argparse.Namespace) -> tuple[Path, float]:
    from critwrap.zoo.train import train

    run = args.out / "victim" / "default" / "ppo" / args.env / "base" / "seed_0"
    if (run / "model.zip").is_file():
        log(f"victim: reusing {run}")
        return run, float("nan")
    yml = args.out / "ppo.yml"
    yml.parent.mkdir(parents=True, exist_ok=True)
    yml.write_text(PPO_YAML.format(env=args.env, steps=args.ppo_steps))
    log(f"victim: PPO on {args.env} for {args.ppo_steps} steps")
    t = time.perf_counter()
    result = train(
        "ppo",
        args.env,
        hyperparams=str(yml),
        log_dir=str(args.out / "victim"),
        seed=0,
        save_freq=args.save_freq,
        keep_checkpoints=10_000,
        eval_freq=0,
        num_threads=1,
        overwrite=True,
    )
    seconds = time.perf_counter() - t
    log(f"victim: trained in {seconds:.0f} s")
    return Path(result.run_dir), seconds


def record_data(args: argparse.Namespace, env: Any, victim: Any, run: Path) -> Path:
    """Episodes of the victim (and of its earlier checkpoints, ``--data-checkpoints``) with epsilon mixing."""
    from critwrap.attack import Victim
    from critwrap.episodes import Episode, EpisodeStore
    from critwrap.zoo.algos import get_algo_class

    ckpts = [int(c) for c in args.data_checkpoints.split(",") if c.strip()] if args.data_checkpoints else []
    tag = f"_ck{'-'.join(str(c // 1000) for c in ckpts)}" if ckpts else ""
    if args.data_deviation_steps:
        tag += f"_dev{args.data_deviation_steps}"
    root = args.out / f"data_{args.data_episodes}_eps{args.data_epsilon}{tag}"
    if (root / "done").is_file():
        log(f"data: reusing {root}")
        return root
    agents = [victim]
    for steps in ckpts:
        path = run / "checkpoints" / f"rl_model_{steps}_steps.zip"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: train the victim with --save-freq dividing {steps}")
        agents.append(Victim(get_algo_class("ppo").load(str(path), device="cpu")))
    store = EpisodeStore(root)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for i in range(len(store), args.data_episodes):
        agent = agents[i % len(agents)]
        obs, _ = env.reset(seed=DATA_SEED + i)
        frames, ret = [], 0.0
        deviate = int(rng.integers(args.data_deviation_steps)) if args.data_deviation_steps else -1
        while True:
            frames.append(pov(env, obs))
            explore = rng.random() < args.data_epsilon
            action = int(rng.integers(env.action_space.n)) if explore else agent.act(obs)
            if len(frames) - 1 == deviate:  # one random *different* action: the attack's own perturbation
                other = int(rng.integers(env.action_space.n - 1))
                action = other + (other >= int(action))
            obs, reward, terminated, truncated, _ = env.step(action)
            ret += float(reward)
            if terminated or truncated:
                break
        meta = {"seed": DATA_SEED + i, "agent": i % len(agents)}
        store.append(Episode(np.stack(frames), episode_return=ret, label=int(ret > 0), metadata=meta))
    (root / "done").write_text("ok\n")
    labels = [e.label for e in store]
    log(
        f"data: {len(store)} episodes, success rate {np.mean(labels):.2f}, in {time.perf_counter() - t:.0f} s"
    )
    return root


def train_dsi(args: argparse.Namespace, data: Path) -> tuple[Any, dict[str, Any]]:
    from critwrap.detectors.dsi import DSI
    from critwrap.episodes import EpisodeStore

    out = data / f"dsi_e{args.dsi_epochs}_s{args.dsi_seed}_l1{args.dsi_l1}{args.dsi_l1_reduction}"
    if args.dsi_mask_budget is not None:
        out = out.with_name(f"{out.name}_budget{args.dsi_mask_budget}w{args.dsi_mask_budget_weight}")
    if (out / "config.json").is_file():
        log(f"dsi: reusing {out}")
        info = json.loads((out / "fit_info.json").read_text()) if (out / "fit_info.json").is_file() else {}
        return DSI.load(out), info
    episodes = list(EpisodeStore(data, create=False))
    channels = tuple(int(c) for c in args.dsi_channels.split(","))
    det = DSI(
        channels=channels,
        lstm_hidden=args.dsi_lstm,
        batch_size=32,
        lr=args.dsi_lr,
        max_length=max(len(e) for e in episodes),
        seed=args.dsi_seed,
        l1=args.dsi_l1,
        l1_reduction=args.dsi_l1_reduction,
        mask_budget=args.dsi_mask_budget,
        mask_budget_weight=args.dsi_mask_budget_weight,
    )
    t = time.perf_counter()
    det.fit(episodes, epochs=args.dsi_epochs, progress=False, seed=args.dsi_seed)
    seconds = time.perf_counter() - t
    det.save(out)
    info = {"seconds": seconds, "frames": int(sum(len(e) for e in episodes)), "history": det.history[-1:]}
    (out / "fit_info.json").write_text(json.dumps(info, indent=1, default=float))
    log(f"dsi: trained in {seconds:.0f} s")
    return det, info


def oracle_scores(env: Any, victim: Any, clean: Any, cache: dict[tuple[Any, ...], np.ndarray]) -> np.ndarray:
    """Expected return drop of attacking each step alone, every alternative action tried (exact, no sampling)."""
    from critwrap.attack import CallablePerturbation, run_episode

    key = (*(int(np.asarray(a)) for a in clean.actions), clean.seed)
    if key in cache:
        return cache[key]
    n = int(env.action_space.n)
    out = np.zeros(clean.length)
    for t in range(clean.length):
        taken = int(np.asarray(clean.actions[t]))
        drops = []
        for a in range(n):
            if a == taken:
                continue
            p = CallablePerturbation(lambda obs, act, rng, a=a: a)
            rec = run_episode(
                env, victim, seed=clean.seed, attack_steps=[t], perturbation=p, keep_frames=False
            )
            drops.append(clean.episode_return - rec.episode_return)
        out[t] = float(np.mean(drops))
    cache[key] = out
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/attack"))
    p.add_argument("--env", default="MiniGrid-LavaGapS6-v0")
    p.add_argument("--ppo-steps", type=int, default=120_000)
    p.add_argument("--data-episodes", type=int, default=1500)
    p.add_argument("--data-epsilon", type=float, default=0.5)
    p.add_argument(
        "--data-checkpoints",
        default="",
        help="comma-separated checkpoint steps of the victim's run whose episodes join the detector data",
    )
    p.add_argument("--save-freq", type=int, default=10_000, help="victim checkpoint frequency")
    p.add_argument(
        "--data-deviation-steps",
        type=int,
        default=0,
        help="N > 0: in each data episode, one random different action at a step drawn from 0..N-1",
    )
    p.add_argument("--dsi-epochs", type=int, default=8)
    p.add_argument("--dsi-channels", default="16,32,32,64,64")
    p.add_argument("--dsi-lstm", type=int, default=32)
    p.add_argument("--dsi-lr", type=float, default=1e-3)
    p.add_argument("--dsi-seed", type=int, default=0)
    p.add_argument("--dsi-l1", type=float, default=5e-3, help="weight of the mask's L1 term (paper: 5e-3)")
    p.add_argument(
        "--dsi-l1-reduction", default="original", choices=["original", "mean", "sum"], help="see DSIConfig"
    )
    p.add_argument(
        "--dsi-mask-budget",
        type=float,
        default=None,
        help="DSIConfig.mask_budget: a hinge on each episode's mean mask above this share (default: off)",
    )
    p.add_argument("--dsi-mask-budget-weight", type=float, default=10.0, help="DSIConfig.mask_budget_weight")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="first evaluation seed")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--lead",
        type=int,
        default=0,
        help="the detector attacks this many steps before its top-scored frames (2: the original Pong script)",
    )
    p.add_argument(
        "--protocol",
        nargs="+",
        default=["replay"],
        choices=["replay", "online"],
        help="replay (the paper's, default) and/or online (attack during the episode when the score of the "
        "frames so far passes a threshold calibrated on --calibration-episodes clean episodes)",
    )
    p.add_argument("--calibration-episodes", type=int, default=20, help="online: clean calibration episodes")
    p.add_argument("--fgsm-epsilon", type=float, default=1.0, help="0: no FGSM rows")
    p.add_argument("--no-oracle", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--tag", default="", help="results_<tag>.json / .md (several detector settings side by side)"
    )
    args = p.parse_args(argv)

    import torch

    from critwrap.attack import Victim, evaluate_attack, evaluate_online_attack, format_table, run_episode
    from critwrap.zoo.attack import make_attack_env, resolve_model

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    cpu0 = time.process_time()
    args.out.mkdir(parents=True, exist_ok=True)
    run, train_seconds = train_victim(args)
    loaded = resolve_model(str(run), None, None, [], "cpu")
    env = make_attack_env(loaded)
    victim = Victim(loaded.model)
    data = record_data(args, env, victim, run)
    det, fit_info = train_dsi(args, data)

    t = time.perf_counter()
    seeds = [args.seed + i for i in range(args.episodes)]
    clean = [run_episode(env, victim, seed=s, frames=pov) for s in seeds]
    lengths = np.array([c.length for c in clean])
    log(
        f"clean: {len(clean)} episodes, mean return {np.mean([c.episode_return for c in clean]):.3f}, "
        f"length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()}), {time.perf_counter() - t:.0f} s"
    )
    cache: dict[tuple[Any, ...], np.ndarray] = {}
    cache_file = args.out / "oracle_cache.json"
    if cache_file.is_file():
        cache = {tuple(json.loads(k)): np.asarray(v) for k, v in json.loads(cache_file.read_text()).items()}
    rankers = {} if args.no_oracle else {"oracle": lambda c: oracle_scores(env, victim, c, cache)}
    results: dict[str, Any] = {"reports": []}
    md: list[str] = []
    perturbs: list[tuple[str, float | None]] = [("action", None)]
    if args.fgsm_epsilon > 0:
        perturbs.append(("fgsm", args.fgsm_epsilon))
    summary = []
    for protocol, pert, eps, k in (
        (pr, pe, ep, k) for pr in args.protocol for pe, ep in perturbs for k in args.ks
    ):  # fmt: skip
        t = time.perf_counter()
        common: dict[str, Any] = {
            "k": k,
            "perturbation": pert,
            "epsilon": eps,
            "frames": pov,
            "win_threshold": 0.0,
        }
        if protocol == "online":
            report = evaluate_online_attack(
                env,
                victim,
                det,
                episodes=args.episodes,
                seed=args.seed,
                calibration_episodes=args.calibration_episodes,
                **common,
            )
        else:
            report = evaluate_attack(
                env,
                victim,
                det,
                clean_runs=clean,
                rankers=rankers if pert == "action" else None,
                detector_lead=args.lead,
                **common,
            )
        rows = report.table()
        byname = {r["method"]: r for r in rows}
        ratio = (
            byname["detector"]["drop"] / byname["random"]["drop"]
            if byname["random"]["drop"] > 0
            else float("inf")
        )
        log(
            f"{protocol} {pert} k={k}: detector {byname['detector']['drop']:.3f}, random {byname['random']['drop']:.3f}, "
            f"victim {byname['victim']['drop']:.3f}, ratio {ratio:.2f} ({time.perf_counter() - t:.0f} s)"
        )
        results["reports"].append(report.to_dict())
        extra = ""
        if protocol == "online":
            st = report.settings
            extra = (
                f"; thresholds calibrated on seeds {st['calibration_seeds'][0]}..{st['calibration_seeds'][-1]}: "
                f"detector {st['threshold']:.4g}, victim {st['victim_threshold']:.4g}; attacked episodes "
                + ", ".join(f"{r['method']} {r['attacked_episodes']}" for r in rows[1:])
            )
        md += [
            f"**{protocol} protocol, {report.perturbation}, k = {k}** ({len(seeds)} episodes{extra})",
            "",
            format_table(rows),
            "",
        ]
        summary.append(
            {
                "protocol": protocol,
                "perturbation": report.perturbation,
                "k": k,
                **{f"{m}_drop": byname[m]["drop"] for m in byname if m != "clean"},
                **{
                    f"{m}_ci": [byname[m]["drop_ci_low"], byname[m]["drop_ci_high"]]
                    for m in byname
                    if m != "clean"
                },
                "ratio_detector_random": ratio,
                "detector_steps": byname["detector"]["mean_perturbed_steps"],
            }
        )
    # how often the detector's top-1 is an oracle-critical step (expected drop > 0.1)
    hits = []
    if not args.no_oracle:
        for c in clean:
            o = oracle_scores(env, victim, c, cache)
            s = det.score(c.frames_array())
            if c.length > args.lead:
                hits.append(float(o[int(np.argmax(s[args.lead :]))] > 0.1))
        critical_frac = float(np.mean([np.mean(oracle_scores(env, victim, c, cache) > 0.1) for c in clean]))
    else:
        critical_frac = float("nan")
    cache_file.write_text(json.dumps({json.dumps(list(k)): v.tolist() for k, v in cache.items()}))
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - cpu0
    meta = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), no GPU, torch threads {args.threads}",
        "load_average_end": os.getloadavg(),
        "wall_seconds": wall,
        "cpu_seconds_this_process": cpu,
        "victim_train_seconds": train_seconds,
        "dsi_fit": fit_info,
        "clean_length_mean": float(lengths.mean()),
        "distinct_clean_trajectories": len({tuple(int(np.asarray(a)) for a in c.actions) for c in clean}),
        "detector_top1_is_critical": float(np.mean(hits)) if hits else float("nan"),
        "fraction_of_steps_critical": critical_frac,
        "summary": summary,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    results.update(meta)
    (args.out / f"results{'_' + args.tag if args.tag else ''}.json").write_text(
        json.dumps(results, indent=1, default=float)
    )
    head = [
        "| protocol | perturbation | k | detector drop [95% CI] | random drop | victim drop | oracle drop | detector / random | mean attacked steps (detector) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for srow in summary:
        oracle = f"{srow['oracle_drop']:.3f}" if "oracle_drop" in srow else "n/a"
        head.append(
            f"| {srow['protocol']} | {srow['perturbation']} | {srow['k']} | {srow['detector_drop']:.3f} [{srow['detector_ci'][0]:.3f}, "
            f"{srow['detector_ci'][1]:.3f}] | {srow['random_drop']:.3f} [{srow['random_ci'][0]:.3f}, {srow['random_ci'][1]:.3f}] "
            f"| {srow['victim_drop']:.3f} [{srow['victim_ci'][0]:.3f}, {srow['victim_ci'][1]:.3f}] | {oracle} "
            f"| {srow['ratio_detector_random']:.2f} | {srow['detector_steps']:.2f} |"
        )
    text = "\n".join(
        [
            *head,
            "",
            f"Detector's top-1 step is oracle-critical (expected drop > 0.1) in {meta['detector_top1_is_critical']:.2f} "
            f"of the episodes; {critical_frac:.2f} of all steps are. {meta['distinct_clean_trajectories']} distinct clean "
            f"trajectories among {len(clean)} seeds; mean length {lengths.mean():.1f}.",
            "",
            f"Wall {wall:.0f} s, CPU {cpu:.0f} s (this process); {meta['machine']}; load average at the end "
            f"{meta['load_average_end'][0]:.1f}. Command: `{meta['command']}`",
            "",
            *md,
        ]
    )
    (args.out / f"results{'_' + args.tag if args.tag else ''}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
