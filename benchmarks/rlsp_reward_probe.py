"""What an inferred HalfCheetah reward pays for: its dependence on the forward velocity.

For every ``reward_*.safetensors`` of a ``benchmarks/rlsp.py --env HalfCheetah-v5`` run, the mean reward
on states of four kinds, and the slope and correlation of the reward against the forward velocity
(``obs[8]``) over all of them:

* ``expert``: the run's expert (``expert.zip``), stochastic, 3 episodes of 1 000 steps;
* ``mirrored``: the same states with every velocity (``obs[8:]``) negated: the same posture and speed,
  moving backwards (not a physical trajectory, a probe of the reward's symmetry);
* ``zero``: the zero action for 1 000 steps (the cheetah stands still);
* ``random``: uniformly random actions for 1 000 steps.

A reward that tells the task should pay more on ``expert`` than on ``mirrored``, ``zero`` and
``random`` and have a positive slope in the forward velocity.

``--backward SEED`` also checks the simulated past the gradient is made of: the benchmark's own models
for that seed (data, VAE and inverse dynamics refitted as ``benchmarks/rlsp.py`` does), the inverse
policy refitted on the expert's transitions (the best case: the current policy is the expert) or on a
random policy's, 200 backward trajectories of 30 steps from running expert states, against the true
pasts of the same states: the forward velocity k steps back and the share still running forward.

Usage::

    python benchmarks/rlsp_reward_probe.py bench_out/rlsp_cheetah [--markdown FILE] [--backward 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "HalfCheetah-v5"
VELOCITY = 8  # obs[8]: the root's x velocity; obs[8:] are all velocities


def rollout_states(act: Any, episodes: int, seed: int) -> np.ndarray:
    env = gym.make(ENV_ID)
    env.action_space.seed(seed)
    states = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(act(obs, env))
            states.append(obs)
            done = terminated or truncated
    env.close()
    return np.asarray(states, dtype=np.float64)


def probe_states(run: Path, seed: int = 123) -> dict[str, np.ndarray]:
    from stable_baselines3 import SAC

    expert = SAC.load(str(run / "expert.zip"), device="cpu")
    states = {
        "expert": rollout_states(lambda o, env: expert.predict(o, deterministic=False)[0], 3, seed),
        "zero": rollout_states(lambda o, env: np.zeros(env.action_space.shape, np.float32), 1, seed),
        "random": rollout_states(lambda o, env: env.action_space.sample(), 1, seed),
    }
    mirrored = states["expert"].copy()
    mirrored[:, VELOCITY:] *= -1.0
    states["mirrored"] = mirrored
    return states


def probe(run: Path) -> list[dict[str, Any]]:
    from critwrap.rlsp.reward import load_reward

    states = probe_states(run)
    pool = np.concatenate(list(states.values()))
    rows = []
    for path in sorted(run.glob("reward_*.safetensors")):
        reward = load_reward(path, env_id=ENV_ID)
        r_pool = np.asarray(reward(pool), dtype=np.float64)
        v = pool[:, VELOCITY]
        slope = float(np.polyfit(v, r_pool, 1)[0])
        row = {
            "reward": path.stem.removeprefix("reward_"),
            **{f"mean_{k}": float(np.mean(reward(s))) for k, s in states.items()},
            "slope_per_velocity": slope,
            "corr_velocity": float(np.corrcoef(v, r_pool)[0, 1]),
            "corr_abs_velocities": float(np.corrcoef(np.abs(pool[:, VELOCITY:]).sum(1), r_pool)[0, 1]),
        }
        rows.append(row)
    return rows


def backward_check(run: Path, seed: int) -> dict[str, Any]:
    """Simulated vs true pasts of running expert states (forward velocity k steps back)."""
    from stable_baselines3 import SAC

    from critwrap.rlsp.deep_rlsp import DeepRLSP, RLSPConfig, sb3_policy
    from critwrap.rlsp.gradient import backward_rollouts

    expert = SAC.load(str(run / "expert.zip"), device="cpu")
    cfg = RLSPConfig.fast(seed=seed)
    observed_states = np.load(run / f"states_seed{seed}.npy")[:1]
    rlsp = DeepRLSP(ENV_ID, observed_states, cfg, expert=sb3_policy(expert))
    rlsp.setup()
    env = gym.make(ENV_ID)
    pasts = []
    for e in range(50):  # true pasts: the last 31 states of 100-step expert episodes
        obs, _ = env.reset(seed=9000 + e)
        traj = [obs]
        for _ in range(100):
            obs, *_ = env.step(expert.predict(obs, deterministic=False)[0])
            traj.append(obs)
        pasts.append(traj[-31:][::-1])  # index k = k steps before the observed state
    true = np.asarray(pasts)
    env.close()
    steps = (1, 5, 15, 30)
    out: dict[str, Any] = {
        "seed": seed,
        "true_velocity": {k: float(true[:, k, VELOCITY].mean()) for k in steps},
        "true_share_forward": {k: float((true[:, k, VELOCITY] > 1.0).mean()) for k in steps},
    }
    rng = np.random.default_rng(seed)
    space = gym.make(ENV_ID).action_space
    policies = {
        "expert": sb3_policy(expert),
        "random": lambda o: rng.uniform(space.low, space.high, size=(len(o), space.shape[0])),
    }
    for name, policy in policies.items():
        rlsp.refit_inverse_policy(policy)
        back = backward_rollouts(true[:, 0], 200, 30, rlsp.inverse_policy, rlsp.inverse_dynamics, rng)
        sim = back.observations  # (N, 31, obs_dim): index k = k steps before the observed state
        out[f"{name}_velocity"] = {k: float(sim[:, k, VELOCITY].mean()) for k in steps}
        out[f"{name}_share_forward"] = {k: float((sim[:, k, VELOCITY] > 1.0).mean()) for k in steps}
        # mean absolute error of every coordinate against the true past of the same observed state
        out[f"{name}_abs_error"] = {k: float(np.abs(sim[:, k] - true[back.sources, k]).mean()) for k in steps}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| reward | expert | mirrored | zero action | random | slope per m/s | corr(r, v) | corr(r, sum abs velocities) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['reward']} | {r['mean_expert']:.2f} | {r['mean_mirrored']:.2f} | {r['mean_zero']:.2f} | "
            f"{r['mean_random']:.2f} | {r['slope_per_velocity']:.3f} | {r['corr_velocity']:.2f} | "
            f"{r['corr_abs_velocities']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="an output folder of benchmarks/rlsp.py --env HalfCheetah-v5")
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--backward", type=int, default=None, metavar="SEED", help="also the simulated-past check")
    args = p.parse_args()
    if not (args.run / "expert.zip").is_file():
        raise SystemExit(f"{args.run}: no expert.zip; run benchmarks/rlsp.py --env HalfCheetah-v5 first")
    rows = probe(args.run)
    if not rows:
        raise SystemExit(f"{args.run}: no reward_*.safetensors")
    (args.run / "probe.json").write_text(json.dumps(rows, indent=2))
    text = table(rows)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print(text)
    if args.backward is not None:
        check = backward_check(args.run, args.backward)
        (args.run / f"backward_seed{args.backward}.json").write_text(json.dumps(check, indent=2))
        print(json.dumps(check, indent=2))


if __name__ == "__main__":
    main()
