"""Where Deep RLSP fails on InvertedPendulum: three diagnostics on top of a ``benchmarks/rlsp.py`` run.

Each one isolates one part of the method (results in ``docs/benchmarks.md``, Deep RLSP section):

* ``oracle``: can a reward *linear in the VAE features* express the task at all? ``theta`` is fitted by
  least squares to the indicator ``|angle| <= 0.2`` on states of expert, epsilon-expert and random
  rollouts; a fresh SAC is trained on ``theta . f(s)`` exactly as the benchmark evaluates inferred
  rewards, and its true return reported.
* ``invdyn``: accuracy of the inverse dynamics with the benchmark's budget and with longer training:
  one-step error on expert transitions (relative to the mean one-step change of each coordinate) and
  the drift of a backward reconstruction that uses the expert's *true* past actions.
* ``backward``: the simulated pasts of upright expert states (mean absolute coordinates 5, 15 and 30
  steps back, and the share with the pole up) with the better inverse dynamics and the inverse policy of
  the expert or of a random policy, beside the true pasts.
* ``loop``: Deep RLSP's outer loop (gradient step, then SAC on the current reward) with the gradient
  computed from the observed states' **true pasts** (windows of expert episodes) instead of the
  simulated ones (``--past true``), or with the method's own simulation (``--past sim``). Prints the
  true return of the policy trained along, the final reward at a few hand-picked states, and the true
  return of a fresh SAC trained on the final reward (the benchmark's evaluation). ``--reset-steps N``
  trains a new SAC for N steps per iteration (the original's ``reset_solver``) instead of continuing one.

Usage (after ``python benchmarks/rlsp.py --out bench_out/rlsp``, which trains the expert and samples states)::

    python benchmarks/rlsp_diagnose.py oracle --from bench_out/rlsp
    python benchmarks/rlsp_diagnose.py invdyn --from bench_out/rlsp
    python benchmarks/rlsp_diagnose.py backward --from bench_out/rlsp
    python benchmarks/rlsp_diagnose.py loop --from bench_out/rlsp --past true --epochs 60
    python benchmarks/rlsp_diagnose.py loop --from bench_out/rlsp --past sim --epochs 60
    python benchmarks/rlsp_diagnose.py loop --from bench_out/rlsp --past true --epochs 40 --reset-steps 4000

Output is printed and appended as JSON lines to ``<from>/diagnose.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rlsp import ENV_ID, SAC_KWARGS, evaluate_reward, true_return

CANONICAL = {
    "upright at rest": [0, 0, 0, 0],
    "angular velocity +5": [0, 0, 0, 5],
    "angular velocity -5": [0, 0, 0, -5],
    "angle +0.1": [0, 0.1, 0, 0],
    "angle -0.1": [0, -0.1, 0, 0],
    "fallen +": [0, 1.57, 0, 0],
    "fallen -": [0, -1.57, 0, 0],
    "cart +0.5": [0.5, 0, 0, 0],
    "cart -0.5": [-0.5, 0, 0, 0],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_expert(src: Path) -> Any:
    from stable_baselines3 import SAC

    return SAC.load(str(src / "expert.zip"), device="cpu")


def setup(src: Path, seed: int, **overrides: Any) -> Any:
    """The benchmark's Deep RLSP setup (data, VAE, inverse dynamics) for one seed and its first state."""
    from critwrap.rlsp.deep_rlsp import DeepRLSP, RLSPConfig, sb3_policy

    expert = load_expert(src)
    states = np.load(src / f"states_seed{seed}.npy")[:1]
    cfg = RLSPConfig.fast(seed=seed, **overrides)
    rlsp = DeepRLSP(ENV_ID, states, cfg, expert=sb3_policy(expert))
    rlsp.setup()
    return rlsp, expert


def mixed_states(expert: Any, episodes: int, seed: int) -> np.ndarray:
    """States of 100-step episodes (termination ignored): expert, expert with 30% random actions, random."""
    rng = np.random.default_rng(seed)
    env = gym.make(ENV_ID, max_episode_steps=100)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        eps = (0.0, 0.3, 1.0)[ep % 3]
        for _ in range(100):
            if rng.random() < eps:
                action = env.action_space.sample()
            else:
                action = expert.predict(obs, deterministic=False)[0]
            obs, *_ = env.step(action)
            out.append(obs)
    return np.asarray(out, dtype=np.float64)


def expert_pasts(expert: Any, episodes: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Expert episodes of ``length`` steps: observations ``(E, length + 1, 4)`` and actions ``(E, length, 1)``."""
    env = gym.make(ENV_ID)
    obs_all, act_all = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        traj, acts = [obs], []
        for _ in range(length):
            action = expert.predict(obs, deterministic=False)[0]
            obs, *_ = env.step(action)
            traj.append(obs)
            acts.append(action)
        obs_all.append(traj)
        act_all.append(acts)
    return np.asarray(obs_all, dtype=np.float64), np.asarray(act_all, dtype=np.float64)


def cmd_oracle(args: argparse.Namespace) -> dict[str, Any]:
    from critwrap.rlsp.reward import InferredReward

    rlsp, expert = setup(args.src, args.seed)
    states = mixed_states(expert, 200, seed=1000)
    feats = rlsp.encoder.encode(states)
    target = (np.abs(states[:, 1]) <= 0.2).astype(np.float64)
    x = np.c_[feats, np.ones(len(feats))]
    w = np.linalg.lstsq(x, target, rcond=None)[0]
    pred = x @ w
    theta = w[:-1] / np.linalg.norm(w[:-1])
    reward = InferredReward(rlsp.encoder, theta, ENV_ID, info={"method": "oracle-linear"})
    ev = evaluate_reward(reward, args.seed, args.eval_steps, 10, 100)
    avg = rlsp.initial_theta()
    return {
        "upright_fraction": float(target.mean()),
        "fit_r2": float(1 - ((pred - target) ** 2).mean() / target.var()),
        "fit_accuracy": float(((pred > 0.5) == (target > 0.5)).mean()),
        "corr_upright_average_features": float(np.corrcoef(feats @ avg, target)[0, 1]),
        "sac_true_return": ev["return_mean"],
        "sac_steps": args.eval_steps,
    }


def cmd_invdyn(args: argparse.Namespace) -> dict[str, Any]:
    from critwrap.rlsp.inverse import InverseDynamics

    rlsp, expert = setup(args.src, args.seed, vae_epochs=1, dynamics_epochs=1)
    tr = rlsp.transitions
    obs, acts = expert_pasts(expert, 20, 100, seed=5000)
    upright_share = float((np.abs(tr.obs[:, 1]) <= 0.2).mean())
    rows = []
    for hidden, layers, epochs in ((512, 3, 20), (512, 3, 100), (256, 3, 300)):
        t0 = time.process_time()
        model = InverseDynamics(4, 1, hidden, layers)
        loss = model.fit(
            tr.obs, tr.actions, tr.next_obs, epochs=epochs, batch_size=500, lr=1e-3, seed=args.seed
        )
        pred = model.predict_previous(obs[:, 1:].reshape(-1, 4), acts.reshape(-1, 1))
        err = np.abs(pred - obs[:, :-1].reshape(-1, 4)).mean(axis=0)
        mag = np.abs(obs[:, 1:] - obs[:, :-1]).reshape(-1, 4).mean(axis=0)
        s = obs[:, -1].copy()
        drift = {}
        for k in range(1, 31):
            s = model.predict_previous(s, acts[:, -k])
            if k in (5, 15, 30):
                drift[k] = np.abs(s - obs[:, -1 - k]).mean(axis=0).round(3).tolist()
        row = {
            "model": f"{hidden}x{layers}, {epochs} epochs, lr 1e-3",
            "final_loss": loss[1],
            "one_step_rel_error": (err / mag).round(3).tolist(),
            "drift_abs_error": drift,
            "cpu_seconds": time.process_time() - t0,
        }
        log(json.dumps(row))
        rows.append(row)
    return {"transitions": len(tr), "upright_share_of_transitions": upright_share, "models": rows}


def cmd_backward(args: argparse.Namespace) -> dict[str, Any]:
    """Simulated pasts of upright expert states, with the better inverse dynamics and the inverse policy of
    the expert (the best case for the method: its current policy is the expert) or of a random policy."""
    from critwrap.rlsp.deep_rlsp import sb3_policy
    from critwrap.rlsp.gradient import backward_rollouts

    rlsp, expert = setup(
        args.src, args.seed, dynamics_hidden_size=256, dynamics_layers=3, dynamics_epochs=300
    )
    pasts, _ = expert_pasts(expert, 50, 60, seed=7000)
    observed = pasts[:, -1]
    rng = np.random.default_rng(args.seed)
    true_stats = {k: np.abs(pasts[:, -1 - k]).mean(axis=0).round(3).tolist() for k in (5, 15, 30)}
    out: dict[str, Any] = {"true_past_mean_abs": true_stats}
    act_space = gym.make(ENV_ID).action_space
    policies = {
        "expert": sb3_policy(expert),
        "random": lambda o: rng.uniform(act_space.low, act_space.high, size=(len(o), 1)),
    }
    for name, policy in policies.items():
        rlsp.refit_inverse_policy(policy)
        back = backward_rollouts(observed, 200, 30, rlsp.inverse_policy, rlsp.inverse_dynamics, rng)
        obs = back.observations  # (N, 31, 4): index k = k steps before the observed state
        out[f"{name}_inverse_policy_mean_abs"] = {
            k: np.abs(obs[:, k]).mean(axis=0).round(3).tolist() for k in (5, 15, 30)
        }
        out[f"{name}_share_upright"] = {k: float((np.abs(obs[:, k, 1]) <= 0.2).mean()) for k in (5, 15, 30)}
        log(f"{name}: {out[f'{name}_inverse_policy_mean_abs']} upright {out[f'{name}_share_upright']}")
    return out


def cmd_loop(args: argparse.Namespace) -> dict[str, Any]:
    from stable_baselines3 import SAC

    from critwrap.rlsp.deep_rlsp import sb3_policy
    from critwrap.rlsp.gradient import clip_by_norm, forward_rollouts, rlsp_gradient
    from critwrap.wrappers.rlsp_reward import RLSPReward

    sim = args.past == "sim"
    rlsp, expert = setup(
        args.src,
        args.seed,
        dynamics_hidden_size=256,
        dynamics_layers=3,
        dynamics_epochs=300 if sim else 1,
    )
    enc = rlsp.encoder
    k = enc.latent_dim
    pasts, _ = expert_pasts(expert, 50, 60, seed=5000)
    env = RLSPReward(gym.make(ENV_ID, max_episode_steps=100), ignore_termination=True)
    env.set_inferred_reward(rlsp.reward)
    model = SAC("MlpPolicy", env, seed=args.seed, device="cpu", **{**SAC_KWARGS, "learning_starts": 0})
    history = []
    for epoch in range(args.epochs):
        if args.reset_steps:  # the original's reset_solver: a new SAC on the current reward
            model = SAC("MlpPolicy", env, seed=args.seed + epoch, device="cpu", **SAC_KWARGS)
            model.learn(args.reset_steps)
        else:
            model.learn(args.sac_steps, reset_num_timesteps=False)
        horizon = 1 + ((args.max_horizon - 1) * epoch) // max(args.epochs - 1, 1)
        policy = sb3_policy(model)
        if sim:
            rlsp.refit_inverse_policy(policy)
            grad = rlsp.gradient(policy, horizon)["grad"]
        else:
            past = pasts[:, pasts.shape[1] - 1 - horizon :]
            fwd = forward_rollouts(past[:, 0], len(past), horizon, policy, rlsp.simulator)
            fb = enc.encode(past.reshape(-1, 4)).reshape(len(past), -1, k)
            ff = enc.encode(fwd.reshape(-1, 4)).reshape(len(fwd), -1, k)
            grad = rlsp_gradient(fb, ff, horizon)
        rlsp.theta = rlsp.theta + 0.01 * clip_by_norm(grad, 10.0)
        env.set_inferred_reward(rlsp.reward)
        if epoch % 10 == 9 or epoch == args.epochs - 1 or args.reset_steps:
            ret = true_return(model, 3, seed=80_000)[0]
            history.append(
                {
                    "epoch": epoch + 1,
                    "horizon": horizon,
                    "grad_norm": float(np.linalg.norm(grad)),
                    "policy_true_return": ret,
                }
            )
            log(json.dumps(history[-1]))
    final = rlsp.final_reward
    canonical = dict(zip(CANONICAL, np.round(final(np.array(list(CANONICAL.values()), float)), 3).tolist()))
    along = true_return(model, 10, seed=90_000)[0]
    ev = evaluate_reward(final, args.seed, args.eval_steps, 10, 100)
    return {
        "past": args.past,
        "epochs": args.epochs,
        "max_horizon": args.max_horizon,
        "sac_steps_per_epoch": args.reset_steps or args.sac_steps,
        "reset_solver": bool(args.reset_steps),
        "history": history,
        "policy_trained_along_true_return": along,
        "final_reward_at": canonical,
        "fresh_sac_true_return": ev["return_mean"],
        "fresh_sac_steps": args.eval_steps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("oracle", "invdyn", "backward", "loop"))
    p.add_argument("--from", dest="src", type=Path, default=Path("bench_out/rlsp"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-steps", type=int, default=6000, help="fresh SAC steps on the reward")
    p.add_argument("--past", choices=("true", "sim"), default="true")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--max-horizon", type=int, default=30, help="loop: the curriculum goes 1 -> this")
    p.add_argument("--sac-steps", type=int, default=300, help="SAC steps between gradient steps (loop)")
    p.add_argument(
        "--reset-steps",
        type=int,
        default=0,
        help="loop: a new SAC of this many steps per iteration (0: continue one)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    result = {"what": args.what, "seed": args.seed, **globals()[f"cmd_{args.what}"](args)}
    result["cpu_seconds"] = time.process_time() - t0
    with (args.src / "diagnose.jsonl").open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
