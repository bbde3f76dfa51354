"""``python -m critwrap.zoo rlsp``: infer a reward from observed states with Deep RLSP (or an ablation).

``--states`` takes:

* a ``.npy`` file (``(N, obs_dim)`` or ``(obs_dim,)``), a ``.npz`` file (array ``states`` or
  ``observations``), or a critwrap EpisodeStore folder (every observation of every episode):
  ``--n-states`` of them are drawn at random (all of them when there are no more);
* a policy: a zoo run directory (``runs/.../seed_0``, with ``config.json``) or a model ``.zip``
  (``--algo``, default ``sac``): ``--n-states`` episodes are played with its stochastic policy and one
  observation is drawn from each, as in the paper; the policy's rollouts also go into the data the
  models are trained on (the original's pendulum setting).

The reward is written to ``--out`` (safetensors with a JSON config; see :mod:`critwrap.rlsp.reward`);
``--save-states FILE.npy`` keeps the states used. Then train on it and read the true return::

    python -m critwrap.zoo train sac InvertedPendulum-v5 --wrapper rlsp-reward:path=OUT \\
        --eval-skip-wrapper rlsp-reward

``--preset fast`` (the default) uses the reduced settings of ``benchmarks/rlsp.py``
(:meth:`RLSPConfig.fast`, minutes on a CPU); ``--preset paper`` the original's (days on a CPU: a new SAC
trained for 50 000 steps before every iteration, ``reset_solver``); ``--set key=value`` changes any :class:`~critwrap.rlsp.deep_rlsp.RLSPConfig` field.
``--method average-features`` / ``waypoints`` fit only the features and write the ablation's reward.
``--method gail`` is the paper's other baseline, state-only GAIL (:mod:`critwrap.rlsp.gail`): it trains
a SAC policy with a discriminator on the states for ``--gail-steps`` steps (termination ignored, as
on an inferred reward) and writes that policy, an SB3 ``.zip``, to ``--out``; it prints the policy's
true return over ``--eval-episodes`` episodes of the unmodified env. ``--hp key=value`` sets its SAC.

Example:
    .. code-block:: console

        python -m critwrap.zoo train sac InvertedPendulum-v5 --timesteps 10000
        python -m critwrap.zoo rlsp --env InvertedPendulum-v5 --states runs/default/sac/InvertedPendulum-v5/base/seed_0 \\
            --n-states 1 --out pendulum.rlsp.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "load_or_sample_states", "run"]

NAME = "rlsp"
METHODS = ("deep-rlsp", "average-features", "waypoints", "gail")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="infer a reward from observed states (Deep RLSP, AverageFeatures, Waypoints; or GAIL from them)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", required=True, help="Gymnasium id of a MuJoCo env (e.g. InvertedPendulum-v5)")
    p.add_argument(
        "--states",
        required=True,
        metavar="FILE",
        help=".npy / .npz states, an EpisodeStore folder, or a policy (zoo run dir or model .zip) to sample from",
    )
    p.add_argument("--n-states", type=int, default=1, help="number of observed states (default 1)")
    p.add_argument("--out", required=True, metavar="PATH", help="where to write the inferred reward")
    p.add_argument("--method", choices=METHODS, default="deep-rlsp", help="default: deep-rlsp")
    p.add_argument("--algo", default="sac", help="algorithm of a model .zip given as --states (default sac)")
    p.add_argument(
        "--preset", choices=["fast", "paper", "small"], default="fast", help="settings (default fast)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change an RLSPConfig field (YAML value), e.g. --set solver_iterations=1000; repeatable",
    )
    p.add_argument("--gail-steps", type=int, default=20_000, help="--method gail: SAC steps (default 20000)")
    p.add_argument(
        "--gail-episode-steps",
        type=int,
        default=None,
        help="--method gail: episode length while training (default: the env's own limit)",
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--method gail: a SAC hyperparameter (YAML value), e.g. --hp learning_rate=1e-3; repeatable",
    )
    p.add_argument("--eval-episodes", type=int, default=10, help="--method gail: true-return episodes")
    p.add_argument(
        "--gail-grad-penalty",
        type=float,
        default=0.0,
        help="--method gail: weight of DAC's gradient penalty on the discriminator (default 0, as the "
        "original baseline; DAC uses 10)",
    )
    p.add_argument(
        "--gail-normalize",
        action="store_true",
        help="--method gail: standardise the discriminator's inputs by running statistics (imitation's "
        "RunningNorm); the gradient penalty then acts in standard units",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--save-states", default=None, metavar="FILE.npy", help="also save the states used")
    p.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="--method deep-rlsp: TensorBoard logs of every iteration (rlsp/...) and of the SAC (sac/...)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="print a line per stage and iteration")
    return p


def _config(args: argparse.Namespace) -> Any:
    from critwrap.rlsp.deep_rlsp import RLSPConfig
    from critwrap.zoo.specs import parse_value

    overrides: dict[str, Any] = {}
    fields = set(RLSPConfig.__dataclass_fields__)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in fields:
            raise ValueError(f"--set: unknown setting {key!r}; known: {', '.join(sorted(fields))}")
        overrides[key] = parse_value(value)
    overrides.setdefault("seed", args.seed)
    overrides.setdefault("verbose", int(args.verbose))
    if args.preset == "paper":
        return RLSPConfig(**overrides)
    if args.preset == "small":
        return RLSPConfig.small(**overrides)
    return RLSPConfig.fast(**overrides)


def _is_policy(path: Path) -> bool:
    return (path.is_dir() and (path / "config.json").is_file()) or path.suffix == ".zip"


def load_or_sample_states(
    source: str | Path, env_id: str, n_states: int, *, seed: int = 0, algo: str = "sac"
) -> tuple[Any, Any, dict[str, Any]]:
    """``(states, expert_policy_or_None, notes)`` from a states file/folder or a policy to sample from."""
    import gymnasium as gym
    import numpy as np

    from critwrap.rlsp.deep_rlsp import load_states, sample_states_from_policy, sb3_policy

    if n_states < 1:
        raise ValueError(f"--n-states must be >= 1, got {n_states}")
    path = Path(source)
    probe = gym.make(env_id)
    shape = probe.observation_space.shape
    obs_dim = int(shape[0]) if shape else None
    probe.close()
    if _is_policy(path):
        from critwrap.zoo.common import load_run

        if path.is_dir():
            loaded = load_run(path)
            run_env = str(loaded.config.get("env", env_id))
            if run_env != env_id:
                raise ValueError(f"the policy in {path} was trained on {run_env!r}, not {env_id!r}")
        else:
            loaded = load_run(model_path=path, algo=algo, env=env_id)
        expert = sb3_policy(loaded.model)
        model_obs = loaded.model.observation_space.shape
        if obs_dim is not None and model_obs and int(model_obs[0]) != obs_dim:
            raise ValueError(
                f"the policy in {path} takes observations of size {model_obs[0]}, {env_id}'s are {obs_dim}"
            )
        states, returns = sample_states_from_policy(lambda: gym.make(env_id), expert, n_states, seed=seed)
        return states, expert, {"source": "policy", "policy": str(path), "episode_returns": returns}
    states = load_states(path, obs_dim)
    if len(states) < n_states:
        raise ValueError(
            f"--n-states {n_states} asked for, but {path} holds only {len(states)} states; pass --n-states "
            f"{len(states)} or a file with more states (or a policy to sample them from)"
        )
    if len(states) > n_states:
        idx = np.random.default_rng(seed).choice(len(states), size=n_states, replace=False)
        states = states[np.sort(idx)]
    return states, None, {"source": "file", "file": str(path)}


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from critwrap.rlsp.baselines import average_features_reward, waypoints_reward
    from critwrap.rlsp.deep_rlsp import DeepRLSP, infer_reward
    from critwrap.rlsp.gradient import MujocoStateSetter

    if args.num_threads:
        torch.set_num_threads(int(args.num_threads))
    cfg = _config(args)
    if args.tensorboard and args.method != "deep-rlsp":
        raise ValueError(f"--tensorboard logs Deep RLSP's iterations; --method {args.method} has none to log")
    t0 = time.perf_counter()
    if args.method == "deep-rlsp":  # fail before sampling states when the env cannot be simulated
        import gymnasium as gym

        MujocoStateSetter(gym.make(args.env))
    states, expert, notes = load_or_sample_states(
        args.states, args.env, args.n_states, seed=args.seed, algo=args.algo
    )
    if args.save_states:
        np.save(args.save_states, states)
    if args.method == "gail":
        return _run_gail(args, states, notes, t0)
    rlsp = DeepRLSP(args.env, states, cfg, expert=expert)
    if args.method == "deep-rlsp":
        result = infer_reward(
            args.env,
            states,
            cfg,
            rlsp=rlsp,
            save_path=args.out,
            progress=not args.no_progress,
            tensorboard=args.tensorboard,
        )
        reward = result.reward
        reward.info.update({"states": notes, "history": result.history})
    else:
        rlsp.setup(progress=not args.no_progress)  # data and features only
        assert rlsp.encoder is not None
        make = average_features_reward if args.method == "average-features" else waypoints_reward
        reward = make(rlsp.encoder, states, args.env)
        reward.info.update({"states": notes, "config": cfg.to_dict()})
    reward.save(args.out)
    summary = {
        "out": str(args.out),
        "method": args.method,
        "env": args.env,
        "n_states": len(states),
        "seconds": round(time.perf_counter() - t0, 1),
        "epochs": len(rlsp.history),
        "final_horizon": rlsp.curriculum.horizon,
        "states_from": notes,
    }
    print(json.dumps(summary, indent=2))
    print(
        f"Train on it: python -m critwrap.zoo train sac {args.env} --wrapper rlsp-reward:path={args.out} "
        "--eval-skip-wrapper rlsp-reward"
    )
    return 0


def _run_gail(args: argparse.Namespace, states: Any, notes: dict[str, Any], t0: float) -> int:
    import gymnasium as gym
    import numpy as np

    from critwrap.rlsp.gail import train_gail
    from critwrap.zoo.specs import parse_value

    if args.gail_steps < 1:
        raise ValueError(f"--gail-steps must be >= 1, got {args.gail_steps}")
    sac_kwargs: dict[str, Any] = {}
    for item in args.hp:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--hp expects KEY=VALUE, got {item!r}")
        sac_kwargs[key] = parse_value(value)
    model, gail = train_gail(
        args.env,
        states,
        args.gail_steps,
        sac_kwargs=sac_kwargs,
        train_episode_steps=args.gail_episode_steps,
        seed=args.seed,
        grad_penalty=args.gail_grad_penalty,
        normalize_input=args.gail_normalize,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    if out.suffix != ".zip":
        out = out.with_name(out.name + ".zip")
    model.save(str(out))
    env = gym.make(args.env)
    returns = []
    for i in range(int(args.eval_episodes)):
        obs, _ = env.reset(seed=10_000 + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    env.close()
    summary = {
        "out": str(out),
        "method": "gail",
        "env": args.env,
        "n_states": len(states),
        "seconds": round(time.perf_counter() - t0, 1),
        "steps": int(model.num_timesteps),
        "true_return_mean": float(np.mean(returns)) if returns else None,
        "true_returns": returns,
        "discriminator": gail.history[-1] if gail.history else {},
        "grad_penalty": args.gail_grad_penalty,
        "normalize_input": bool(args.gail_normalize),
        "states_from": notes,
    }
    print(json.dumps(summary, indent=2))
    print(f"Watch it: python -m critwrap.zoo enjoy --model {out} --algo sac --env {args.env}")
    return 0
