"""Deep RLSP on InvertedPendulum-v5 (or HalfCheetah-v5): the paper's protocol (Lindner et al. 2021, Table 1), on a CPU budget.

1. Train an expert SAC on the true reward (stopped once its evaluation return reaches 1000).
2. Per seed: draw 50 observed states from the expert (one random observation from each of 50
   stochastic episodes); the sets for n_sample_states = 1 and 10 are the first 1 and 10 of them.
   Collect transitions (random rollouts and expert rollouts with epsilon 0 / 0.12 / 0.3, as the
   original's pendulum config) and fit the feature VAE and the inverse dynamics once per seed.
3. Per seed and n: Deep RLSP (``RLSPConfig.fast`` + the overrides below), and the AverageFeatures and
   Waypoints ablations with the same features and states (with one state the two ablations are the
   same reward, ``f(s_1) . f(s) / |f(s_1)|``, so it is trained once and reported in both rows);
   with ``--methods ... gail``, also state-only GAIL from the same states (:mod:`critwrap.rlsp.gail`;
   its SAC trains with the discriminator for the same ``--eval-steps`` as the evaluation SACs).
4. Per reward: a fresh SAC trained on it (``RLSPReward``, termination ignored, episodes of
   ``--train-episode-steps``) for ``--eval-steps`` steps; its true return is the mean over
   ``--eval-episodes`` deterministic episodes of the unwrapped env (1000 steps, with termination). Results are appended to ``results.jsonl`` (a rerun skips what is
   done) and summarised in Markdown.

A calibration row, ``oracle-alive``, trains the same SAC for the same steps on the true task written as a
state reward (1 while the pole is within 0.2 rad), termination ignored as for the inferred rewards: the
best an inferred reward can do with this evaluation budget.

Differences from the paper's setup, for a 2-core CPU: SAC with a 64x64 network, batches of 256,
learning rate 1e-3, gamma 0.98, tau 0.02 (it solves the true task in ~8 000 steps on this machine,
where stable-baselines 2's defaults did not within 10 000); the evaluation SACs get ``--eval-steps``
(default 6 000) instead of 60 000 steps, on 100-step episodes instead of 1000-step ones (with 1000-step
episodes and termination ignored, SAC spends nearly all of a few thousand steps with the pole down:
the calibration reward gets 70 after 8 000 steps; with 100-step episodes it gets 1000 after 6 000);
Deep RLSP continues one SAC for 200 steps between gradient steps instead of training a new one for
50 000, and takes one gradient step per horizon of the 1 -> 30
curriculum (``max_epochs_per_horizon=1``; the original allows up to 10 while the norm of the mean of the
last gradients is above 2, which here meant ~10 epochs per horizon, 300 in all); the other reductions
are those of ``RLSPConfig.fast``.

``--env HalfCheetah-v5`` runs the same protocol on HalfCheetah forward with the cheetah profile of
:data:`PROFILES`: a 128x128 SAC (learning rate 1e-3), an expert trained for ``--expert-steps`` (60 000)
on the true reward, evaluation SACs of 30 000 steps on 1 000-step episodes, 500 SAC steps between
Deep RLSP's gradient steps, and the calibration row ``oracle-velocity`` (the forward velocity in the
observation as the reward). ``benchmarks/rlsp_reward_probe.py`` then shows what each inferred reward
pays for and how far the simulated past drifts.

Usage:
    python benchmarks/rlsp.py --out bench_out/rlsp --markdown bench_out/rlsp/summary.md
    python benchmarks/rlsp.py --env HalfCheetah-v5 --out bench_out/rlsp_cheetah --n-states 1 10
    python benchmarks/rlsp.py --out bench_out/rlsp --summary-only   # the table again, from results.jsonl
    python benchmarks/rlsp.py --out /tmp/rlsp_smoke --seeds 0 --n-states 1 --eval-steps 500 \\
        --expert-steps 1000 --set solver_iterations=50 --set horizon=2   # a smoke run
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

import gymnasium as gym
import numpy as np
import torch

ENV_ID = "InvertedPendulum-v5"
METHODS = ("deep-rlsp", "average-features", "waypoints", "gail", "gail-gp", "gail-norm", "gail-gp-norm")
SAC_KWARGS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "batch_size": 256,
    "gamma": 0.98,
    "tau": 0.02,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "policy_kwargs": {"net_arch": [64, 64]},
}
# HalfCheetah on a 2-core CPU: a 128x128 SAC (104 steps/s on one thread here, a 256x256 one 52), learning
# rate 1e-3; the original's expert is rl-baselines-zoo's 256x256 SAC trained for 2 000 000 steps.
CHEETAH_SAC_KWARGS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "batch_size": 256,
    "gamma": 0.99,
    "tau": 0.01,
    "buffer_size": 300_000,
    "learning_starts": 2000,
    "policy_kwargs": {"net_arch": [128, 128]},
}


class AliveReward(gym.Wrapper[Any, Any, Any, Any]):
    """Calibration: the true task as a state reward (1 while |angle| <= 0.2), termination ignored like the
    inferred rewards: what SAC makes of a perfect state reward in ``--eval-steps`` steps."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, _, truncated, info = self.env.step(action)
        return obs, float(abs(obs[1]) <= 0.2), False, truncated, info


class VelocityReward(gym.Wrapper[Any, Any, Any, Any]):
    """Calibration for HalfCheetah: the forward velocity in the observation (``obs[8]``, the root's x
    velocity; the true reward is the same velocity minus a control cost) as a state reward."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, _, truncated, info = self.env.step(action)
        return obs, float(obs[8]), False, truncated, info


# per env: SAC, when the expert counts as trained, defaults of the evaluation, the calibration reward
PROFILES: dict[str, dict[str, Any]] = {
    "InvertedPendulum-v5": {
        "sac_kwargs": SAC_KWARGS,
        "expert_target": 1000.0,
        "expert_steps": 20_000,
        "expert_chunk": 2000,
        "eval_steps": 6000,
        "train_episode_steps": 100,
        "oracle": ("oracle-alive", AliveReward),
        "solver_iterations": 200,
    },
    "HalfCheetah-v5": {
        "sac_kwargs": CHEETAH_SAC_KWARGS,
        "expert_target": None,  # trained for --expert-steps
        "expert_steps": 60_000,
        "expert_chunk": 10_000,
        "eval_steps": 30_000,
        "train_episode_steps": 1000,
        "oracle": ("oracle-velocity", VelocityReward),
        "solver_iterations": 500,
    },
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def true_return(
    model: Any, episodes: int, seed: int, env_id: str = ENV_ID
) -> tuple[float, float, list[float]]:
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns)), returns


def reuse_states(folder: Path, seed: int, n: int, env_id: str) -> np.ndarray:
    """The observed states another run of this benchmark drew for ``seed`` (``states_seed{seed}.npy``)."""
    path = folder / f"states_seed{seed}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"--states-from: {path} does not exist (run that seed there first)")
    states = np.load(path, allow_pickle=False)
    dim = gym.make(env_id).observation_space.shape[0]
    if states.ndim != 2 or states.shape[1] != dim or len(states) < n:
        raise ValueError(
            f"--states-from: {path} holds {states.shape}, need at least ({n}, {dim}) for {env_id}"
        )
    return states[:n]


def train_expert(
    out: Path, max_steps: int, episodes: int, env_id: str = ENV_ID
) -> tuple[Any, dict[str, Any]]:
    from stable_baselines3 import SAC

    path = out / "expert.zip"
    info_path = out / "expert.json"
    if path.is_file() and info_path.is_file():
        log(f"expert: loading {path}")
        return SAC.load(str(path), device="cpu"), json.loads(info_path.read_text())
    t0, c0 = time.perf_counter(), time.process_time()
    prof = PROFILES[env_id]
    model = SAC("MlpPolicy", gym.make(env_id), seed=0, device="cpu", **prof["sac_kwargs"])
    mean = 0.0
    while model.num_timesteps < max_steps:
        model.learn(prof["expert_chunk"], reset_num_timesteps=False)
        mean, _, _ = true_return(model, 5, seed=50_000, env_id=env_id)
        log(f"expert: {model.num_timesteps} steps, return {mean:.1f}")
        if prof["expert_target"] is not None and mean >= prof["expert_target"]:
            break
    mean, std, returns = true_return(model, episodes, seed=60_000, env_id=env_id)
    info = {
        "steps": model.num_timesteps,
        "return_mean": mean,
        "return_std": std,
        "returns": returns,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
    model.save(str(path))
    info_path.write_text(json.dumps(info, indent=2))
    log(f"expert: {info['steps']} steps, return {mean:.1f} +- {std:.1f}")
    return model, info


def evaluate_reward(
    reward: Any, seed: int, steps: int, episodes: int, train_episode_steps: int, env_id: str = ENV_ID
) -> dict[str, Any]:
    """Train a fresh SAC on the inferred reward (``None``: the env's calibration reward); its true return."""
    from stable_baselines3 import SAC

    from critwrap.wrappers.rlsp_reward import RLSPReward

    env: gym.Env[Any, Any]
    prof = PROFILES[env_id]
    base = gym.make(env_id, max_episode_steps=train_episode_steps)
    if reward is None:
        env = prof["oracle"][1](base)
    else:
        env = RLSPReward(base, ignore_termination=True)
        env.set_inferred_reward(reward)
    t0, c0 = time.perf_counter(), time.process_time()
    model = SAC("MlpPolicy", env, seed=seed, device="cpu", **prof["sac_kwargs"])
    model.learn(steps)
    mean, std, returns = true_return(model, episodes, seed=70_000 + 100 * seed, env_id=env_id)
    return {
        "return_mean": mean,
        "return_std": std,
        "returns": returns,
        "eval_seconds": time.perf_counter() - t0,
        "eval_cpu_seconds": time.process_time() - c0,
    }


def load_done(results: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    done = {}
    if results.is_file():
        for line in results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[(row["method"], row["n_states"], row["seed"])] = row
    return done


def append(results: Path, row: dict[str, Any]) -> None:
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")


def run(args: argparse.Namespace) -> Path:
    from critwrap.rlsp.baselines import average_features_reward, waypoints_reward
    from critwrap.rlsp.deep_rlsp import (
        DeepRLSP,
        RLSPConfig,
        infer_reward,
        sample_states_from_policy,
        sb3_policy,
    )
    from critwrap.rlsp.gail import train_gail
    from critwrap.zoo.specs import parse_value

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = load_done(results)
    env_id = args.env
    prof = PROFILES[env_id]
    overrides: dict[str, Any] = {
        "solver_iterations": prof["solver_iterations"],
        "max_epochs_per_horizon": 1,
        "sac_kwargs": {**prof["sac_kwargs"], "learning_starts": 0},
    }
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    started = time.process_time()
    expert, expert_info = train_expert(out, args.expert_steps, args.eval_episodes, env_id)
    expert_policy = sb3_policy(expert)
    max_n = max(args.n_states)
    for seed in args.oracle_seeds:
        oracle = prof["oracle"][0]
        if (oracle, 0, seed) not in done:
            row = {"method": oracle, "n_states": 0, "seed": seed}
            row.update(
                evaluate_reward(
                    None, seed, args.eval_steps, args.eval_episodes, args.train_episode_steps, env_id
                )
            )
            append(results, row)
            log(f"seed {seed} {oracle}: true return {row['return_mean']:.1f}")
    for seed in args.seeds:
        todo = [(m, n) for n in args.n_states for m in args.methods if (m, n, seed) not in done]
        if not todo:
            continue
        cfg = RLSPConfig.fast(**{**overrides, "seed": seed, "verbose": 1})
        t0, c0 = time.perf_counter(), time.process_time()
        if args.states_from:
            states, ep_returns = reuse_states(Path(args.states_from), seed, max_n, env_id), []
        else:
            states, ep_returns = sample_states_from_policy(
                lambda: gym.make(env_id), expert_policy, max_n, seed=10_000 * (seed + 1)
            )
        np.save(out / f"states_seed{seed}.npy", states)
        shared = DeepRLSP(env_id, states, cfg, expert=expert_policy)
        if any(not m.startswith("gail") for m, _ in todo):
            shared.setup()  # data, VAE and inverse dynamics, once per seed (GAIL needs none of them)
        setup_seconds, setup_cpu = time.perf_counter() - t0, time.process_time() - c0
        log(
            f"seed {seed}: states and models in {setup_seconds:.0f}s (expert episode returns {ep_returns[:5]}...)"
        )
        for method, n in todo:
            obs = states[:n]
            t1, c1 = time.perf_counter(), time.process_time()
            extra: dict[str, Any] = {}
            if method.startswith("gail"):
                # state-only GAIL: its SAC trains with the discriminator for the same --eval-steps on the
                # same short episodes (termination ignored) as the SACs that evaluate the inferred rewards
                model, gail = train_gail(
                    env_id,
                    obs,
                    args.eval_steps,
                    sac_kwargs=prof["sac_kwargs"],
                    train_episode_steps=args.train_episode_steps,
                    seed=seed,
                    grad_penalty=args.gail_grad_penalty if "-gp" in method else 0.0,
                    normalize_input=method.endswith("-norm"),
                )
                mean, std, returns = true_return(
                    model, args.eval_episodes, seed=70_000 + 100 * seed, env_id=env_id
                )
                row = {
                    "method": method,
                    "n_states": n,
                    "seed": seed,
                    "return_mean": mean,
                    "return_std": std,
                    "returns": returns,
                    "eval_seconds": time.perf_counter() - t1,
                    "eval_cpu_seconds": time.process_time() - c1,
                    "setup_seconds": setup_seconds,
                    "setup_cpu_seconds": setup_cpu,
                    "discriminator": gail.history[-1] if gail.history else {},
                }
                if "-gp" in method:
                    row["grad_penalty"] = args.gail_grad_penalty
                append(results, row)
                log(f"seed {seed} n {n} {method}: true return {mean:.1f}")
                continue
            assert shared.encoder is not None
            if method == "deep-rlsp":
                rlsp = DeepRLSP(
                    env_id,
                    obs,
                    cfg,
                    encoder=shared.encoder,
                    inverse_dynamics=shared.inverse_dynamics,
                    transitions=shared.transitions,
                )
                result = infer_reward(env_id, obs, cfg, rlsp=rlsp)
                reward = result.reward
                extra = {
                    "epochs": len(result.history),
                    "final_horizon": result.history[-1]["horizon"] if result.history else 0,
                    "grad_norms": [round(h["grad_norm"], 4) for h in result.history],
                    "cos_to_initial_theta": float(
                        reward.theta @ rlsp.initial_theta() / (np.linalg.norm(reward.theta) + 1e-12)
                    ),
                    "rlsp_policy_steps": int(result.model.num_timesteps),
                }
                rlsp_policy_return = true_return(result.model, 3, seed=80_000, env_id=env_id)[0]
                extra["rlsp_policy_true_return"] = rlsp_policy_return
            elif method == "waypoints" and n == 1 and ("average-features", 1, seed) in load_done(results):
                row = dict(load_done(results)[("average-features", 1, seed)])
                row.update(
                    {"method": "waypoints", "same_as": "average-features (identical reward with one state)"}
                )
                append(results, row)
                log(f"seed {seed} n {n} {method}: same reward as average-features, {row['return_mean']:.1f}")
                continue
            elif method == "average-features":
                reward = average_features_reward(shared.encoder, obs, env_id)
            else:
                reward = waypoints_reward(shared.encoder, obs, env_id)
            reward.save(out / f"reward_{method}_n{n}_seed{seed}.safetensors")
            infer_seconds, infer_cpu = time.perf_counter() - t1, time.process_time() - c1
            ev = evaluate_reward(
                reward, seed, args.eval_steps, args.eval_episodes, args.train_episode_steps, env_id
            )
            row = {
                "method": method,
                "n_states": n,
                "seed": seed,
                **ev,
                "infer_seconds": infer_seconds,
                "infer_cpu_seconds": infer_cpu,
                "setup_seconds": setup_seconds,
                "setup_cpu_seconds": setup_cpu,
                **extra,
            }
            append(results, row)
            log(
                f"seed {seed} n {n} {method}: true return {ev['return_mean']:.1f} (infer {infer_seconds:.0f}s)"
            )
    meta = {
        "env": env_id,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'unknown'}), "
        f"{platform.system()} {platform.release()}",
        "torch": torch.__version__,
        "expert": expert_info,
        "cpu_seconds_this_run": time.process_time() - started,
        "args": vars(args),
        "sac_kwargs": prof["sac_kwargs"],
        "rlsp_overrides": overrides,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return out


def summarize(out: Path, markdown: Path | None) -> str:
    rows = list(load_done(out / "results.jsonl").values())
    meta = json.loads((out / "meta.json").read_text())
    expert = meta["expert"]["return_mean"]
    lines = [
        "| method | n states | true return (mean +- std over seeds) | % of expert | per seed |",
        "|---|---|---|---|---|",
    ]
    for method in (*METHODS, "oracle-alive", "oracle-velocity"):
        for n in sorted({r["n_states"] for r in rows}):
            sel = sorted(
                (r for r in rows if r["method"] == method and r["n_states"] == n), key=lambda r: r["seed"]
            )
            if not sel:
                continue
            vals = np.array([r["return_mean"] for r in sel])
            per_seed = ", ".join(f"{v:.0f}" for v in vals)
            lines.append(
                f"| {method} | {n} | {vals.mean():.1f} +- {vals.std():.1f} | {100 * vals.mean() / expert:.0f}% | {per_seed} |"
            )
    table = "\n".join(lines)
    cpu = sum(
        r.get("eval_cpu_seconds", 0) + r.get("infer_cpu_seconds", 0) for r in rows if "same_as" not in r
    )
    setup = {r["seed"]: r.get("setup_cpu_seconds", 0) for r in rows}
    cpu += sum(setup.values()) + meta["expert"].get("cpu_seconds", 0)
    text = (
        f"Expert SAC: {meta['expert']['steps']} steps, true return {expert:.1f} +- {meta['expert']['return_std']:.1f} "
        f"({len(meta['expert']['returns'])} episodes).\n\n{table}\n\n"
        f"Process CPU time over all parts: {cpu / 60:.1f} min. Machine: {meta['machine']}. "
        f"Command: `{meta['command']}`\n"
    )
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_out/rlsp")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-states", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--env", default=ENV_ID, choices=sorted(PROFILES), help="MuJoCo task")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS[:3]),
        choices=METHODS,
        help="default: deep-rlsp average-features waypoints; gail: state-only GAIL (critwrap.rlsp.gail); "
        "gail-gp: the same with DAC's gradient penalty (--gail-grad-penalty); -norm: discriminator inputs "
        "standardised by running statistics (imitation's RunningNorm)",
    )
    p.add_argument(
        "--states-from",
        default=None,
        help="reuse the observed states of an earlier run's folder (states_seed{seed}.npy) instead of "
        "drawing them from the expert, to compare methods on exactly the same states",
    )
    p.add_argument(
        "--gail-grad-penalty",
        type=float,
        default=10.0,
        help="weight of the discriminator's gradient penalty for --methods gail-gp (DAC's 10)",
    )
    p.add_argument(
        "--eval-steps",
        type=int,
        default=None,
        help="SAC steps on each inferred reward (pendulum 6000, cheetah 30000)",
    )
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--train-episode-steps",
        type=int,
        default=None,
        help="episode length while SAC trains on an inferred reward (termination ignored; pendulum 100, "
        "cheetah 1000; original: 1000)",
    )
    p.add_argument(
        "--expert-steps", type=int, default=None, help="at most this many expert SAC steps (20 000 / 60 000)"
    )
    p.add_argument(
        "--oracle-seeds",
        type=int,
        nargs="*",
        default=[0],
        help="seeds of the calibration run: SAC on the true task as a state reward (pendulum: alive "
        "indicator; cheetah: forward velocity), termination ignored",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RLSPConfig override")
    p.add_argument("--markdown", default=None, help="write the summary table there")
    p.add_argument("--summary-only", action="store_true", help="only rebuild the summary from --out")
    args = p.parse_args()
    prof = PROFILES[args.env]
    for key in ("eval_steps", "train_episode_steps", "expert_steps"):
        if getattr(args, key) is None:
            setattr(args, key, prof[key])
    out = Path(args.out)
    if not args.summary_only:
        run(args)
    print(summarize(out, Path(args.markdown) if args.markdown else None))


if __name__ == "__main__":
    main()
