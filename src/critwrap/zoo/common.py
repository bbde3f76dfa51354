"""Shared parts of the zoo's subcommands: vectorised envs, default policies, evaluation, loading runs.

Example:
    >>> from critwrap.zoo.common import make_vec_env
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, seed=0, training=True)
    >>> venv.num_envs
    2
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "EVAL_SEED_OFFSET",
    "LoadedRun",
    "add_wrapper_options",
    "default_policy",
    "evaluate",
    "instantiate_callbacks",
    "load_run",
    "make_env_fn",
    "make_vec_env",
    "summarize",
    "wrap_vec_env",
]

EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded with seed + EVAL_SEED_OFFSET


def make_env_fn(
    env: str,
    *,
    wrappers: Sequence[tuple[str, Mapping[str, Any]]] = (),
    training: bool,
    env_kwargs: Mapping[str, Any] | None = None,
    render_mode: str | None = None,
    monitor: bool = True,
    max_episode_steps: int | None = None,
) -> Callable[[], gym.Env[Any, Any]]:
    """A picklable-enough thunk making ``critwrap.make(env, wrappers, training=...)`` inside a ``Monitor``.

    The ``Monitor`` is outermost, so training statistics (``rollout/ep_rew_mean``) are the returns the
    agent is trained on (for Atari with ``training=True``: per life and clipped); evaluation envs
    (``training=False``) report game scores. ``max_episode_steps`` ends (truncates) an episode after that
    many agent steps (a ``TimeLimit`` under the ``Monitor``; the zoo's ``eval_max_steps``).
    """
    if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or int(max_episode_steps) < 1):
        raise ValueError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
    wrapper_list = [(name, dict(kwargs)) for name, kwargs in wrappers]
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode

    def _thunk() -> gym.Env[Any, Any]:
        from stable_baselines3.common.monitor import Monitor

        import critwrap

        e = critwrap.make(env, wrappers=wrapper_list, training=training, **kwargs)
        if max_episode_steps is not None:
            e = gym.wrappers.TimeLimit(e, max_episode_steps=int(max_episode_steps))
        return Monitor(e) if monitor else e

    return _thunk


def make_vec_env(
    env: str,
    *,
    n_envs: int = 1,
    seed: int | None = 0,
    training: bool,
    wrappers: Sequence[tuple[str, Mapping[str, Any]]] = (),
    env_kwargs: Mapping[str, Any] | None = None,
    vec_env: str = "dummy",
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
) -> Any:
    """SB3 ``make_vec_env``-style: ``n_envs`` copies in a ``DummyVecEnv`` (or ``SubprocVecEnv`` with
    ``vec_env="subproc"``), each in a ``Monitor``, env ``i`` seeded with ``seed + i`` on its first reset."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    fns = [
        make_env_fn(
            env,
            wrappers=wrappers,
            training=training,
            env_kwargs=env_kwargs,
            render_mode=render_mode,
            max_episode_steps=max_episode_steps,
        )
        for _ in range(n_envs)
    ]
    if vec_env == "dummy":
        venv: Any = DummyVecEnv(fns)
    elif vec_env == "subproc":
        # build one copy here first: an env or wrapper that cannot be built (a detector for other
        # frames, a bad argument) is then the clear error it raises, not a dead worker process
        fns[0]().close()
        try:
            venv = SubprocVecEnv(fns)
        except (EOFError, ConnectionError) as exc:
            raise RuntimeError(
                f"a SubprocVecEnv worker died while building {env!r} ({type(exc).__name__}); its traceback "
                "is printed above. The same env builds in this process, so the cause is the subprocess "
                "(e.g. a wrapper argument that cannot be pickled): try vec_env='dummy' (--vec-env dummy)"
            ) from exc
    else:
        raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {vec_env!r}")
    if seed is not None:
        venv.seed(seed)
        venv.action_space.seed(seed)
    return venv


def wrap_vec_env(
    venv: Any,
    *,
    frame_stack: int | None = None,
    normalize: bool | Mapping[str, Any] | None = None,
    training: bool,
    vecnormalize_path: str | Path | None = None,
) -> Any:
    """Add ``VecFrameStack`` / ``VecNormalize`` (loaded from ``vecnormalize_path`` when given) and
    ``VecTransposeImage`` where SB3 would, so training and evaluation envs are wrapped alike."""
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    if frame_stack:
        venv = VecFrameStack(venv, n_stack=int(frame_stack))
    if vecnormalize_path is not None:
        venv = VecNormalize.load(str(vecnormalize_path), venv)
        venv.training = training
        if not training:
            venv.norm_reward = False
    elif normalize:
        kwargs = dict(normalize) if isinstance(normalize, Mapping) else {}
        if training:
            venv = VecNormalize(venv, **kwargs)
        else:
            kwargs["norm_reward"] = False
            venv = VecNormalize(venv, training=False, **kwargs)
    return BaseAlgorithm._wrap_env(venv, verbose=0, monitor_wrapper=False)


def default_policy(algo: str, observation_space: gym.Space) -> str:
    """``CnnPolicy`` for images, ``MultiInputPolicy`` for dicts, else ``MlpPolicy`` (``*LstmPolicy`` for recurrentppo)."""
    from stable_baselines3.common.preprocessing import is_image_space

    if isinstance(observation_space, gym.spaces.Dict):
        base = "MultiInput"
    elif is_image_space(observation_space, check_channels=False) and algo != "ars":
        base = "Cnn"
    else:
        base = "Mlp"
    return f"{base}LstmPolicy" if algo == "recurrentppo" else f"{base}Policy"


def instantiate_callbacks(
    specs: Sequence[tuple[str, Mapping[str, Any]]], run_dir: Path | None = None
) -> list[Any]:
    """Callbacks from ``(name, kwargs)`` specs (registry names or import paths).

    A callback whose constructor has a ``run_dir`` parameter that the spec leaves out gets the run
    directory, so result-writing callbacks know where to write.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    from critwrap import registry

    out = []
    for name, kwargs in specs:
        cls = registry.resolve("callbacks", name)
        kwargs = dict(kwargs)
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            params = {}  # type: ignore[assignment]
        if run_dir is not None and "run_dir" in params and "run_dir" not in kwargs:
            kwargs["run_dir"] = str(run_dir)
        try:
            callback = cls(**kwargs)
        except TypeError as exc:
            accepted = ", ".join(p for p in params if p != "self") or "(none)"
            raise TypeError(
                f"could not create callback {name!r} with {kwargs}: {exc}. It accepts: {accepted}"
            ) from exc
        if not isinstance(callback, BaseCallback):
            raise TypeError(
                f"callback {name!r} resolved to {cls!r}, which is not a stable_baselines3 BaseCallback"
            )
        out.append(callback)
    return out


def evaluate(
    model: Any,
    venv: Any,
    n_episodes: int,
    *,
    deterministic: bool = True,
    render: bool = False,
    on_episode: Callable[[int, float, int], None] | None = None,
) -> tuple[list[float], list[int]]:
    """Run ``n_episodes`` with SB3's ``evaluate_policy``; returns per-episode returns and lengths.

    With the Monitor outermost (as :func:`make_vec_env` does), returns are those of the full episode.
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    done_count = [0]

    def _cb(locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        if on_episode is None or not locals_.get("done"):
            return
        info = locals_.get("info", {})
        if "episode" in info:
            on_episode(done_count[0], float(info["episode"]["r"]), int(info["episode"]["l"]))
            done_count[0] += 1

    returns, lengths = evaluate_policy(
        model,
        venv,
        n_eval_episodes=n_episodes,
        deterministic=deterministic,
        render=render,
        return_episode_rewards=True,
        callback=_cb,
    )
    return [float(r) for r in returns], [int(n) for n in lengths]  # type: ignore[union-attr]


def summarize(returns: Sequence[float], lengths: Sequence[int]) -> dict[str, Any]:
    r = np.asarray(returns, dtype=np.float64)
    n = np.asarray(lengths, dtype=np.float64)
    return {
        "returns": [float(x) for x in r],
        "lengths": [int(x) for x in n],
        "mean_return": float(r.mean()) if len(r) else float("nan"),
        "std_return": float(r.std()) if len(r) else float("nan"),
        "mean_length": float(n.mean()) if len(n) else float("nan"),
        "std_length": float(n.std()) if len(n) else float("nan"),
        "n_episodes": len(r),
    }


@dataclass
class LoadedRun:
    """A trained model and what is needed to rebuild its evaluation env."""

    model: Any
    config: dict[str, Any]
    model_path: Path
    run_dir: Path | None
    vecnormalize_path: Path | None

    def make_env(self, *, seed: int | None, n_envs: int = 1, render_mode: str | None = None) -> Any:
        """The evaluation env of this run (``training=False``), wrapped like training's."""
        cfg = self.config
        skip = set(cfg.get("eval_skip_wrappers", []))
        wrappers = [(w["name"], w["kwargs"]) for w in cfg.get("wrappers", []) if w["name"] not in skip]
        hp = cfg.get("hyperparams", {})
        venv = make_vec_env(
            cfg["env"],
            n_envs=n_envs,
            seed=seed,
            training=False,
            wrappers=wrappers,
            env_kwargs=hp.get("env_kwargs"),
            render_mode=render_mode,
            max_episode_steps=cfg.get("eval_max_steps"),
        )
        return wrap_vec_env(
            venv,
            frame_stack=hp.get("frame_stack"),
            normalize=hp.get("normalize"),
            training=False,
            vecnormalize_path=self.vecnormalize_path,
        )


def load_run(
    run: str | Path | None = None,
    *,
    model_path: str | Path | None = None,
    algo: str | None = None,
    env: str | None = None,
    wrappers: Sequence[tuple[str, Mapping[str, Any]]] = (),
    device: str = "cpu",
) -> LoadedRun:
    """Load a run directory (``model.zip``, else ``best_model.zip``, else the newest checkpoint), or a
    model file given with ``algo`` and ``env``.

    Raises:
        RunNotFoundError: the run or its model is missing (the message says which files were looked for).
    """
    from critwrap.zoo.algos import canonical_algo, get_algo_class
    from critwrap.zoo.runs import RunNotFoundError, latest_checkpoint, read_json

    run_path = Path(run) if run is not None else None
    config: dict[str, Any]
    vecnorm: Path | None = None
    if run_path is not None:
        if not run_path.is_dir():
            raise RunNotFoundError(f"run directory {run_path} does not exist")
        config = dict(read_json(run_path / "config.json"))
        if algo is not None and canonical_algo(algo) != config["algo"]:
            raise ValueError(f"--algo {algo} does not match the run's algorithm {config['algo']}")
        if env is not None and env != config["env"]:
            raise ValueError(f"--env {env} does not match the run's environment {config['env']}")
        if model_path is None:
            for name in ("model.zip", "best_model.zip"):
                if (run_path / name).is_file():
                    model_path = run_path / name
                    break
        if (run_path / "vecnormalize.pkl").is_file():
            vecnorm = run_path / "vecnormalize.pkl"
        if model_path is None:
            latest = latest_checkpoint(run_path)
            if latest is None:
                from critwrap.zoo.runs import read_status

                st = read_status(run_path) or {}
                state = st.get("status", "no status.json")
                if st.get("error"):
                    state += f": {st['error']}"
                raise RunNotFoundError(
                    f"{run_path} holds no model.zip, best_model.zip or checkpoint; has training started? "
                    f"(status: {state})"
                )
            model_path = latest[1]["model"]
            vecnorm = latest[1].get("vecnormalize", vecnorm)
    else:
        if model_path is None or algo is None or env is None:
            raise ValueError("give --run RUN_DIR, or --model PATH.zip with --algo ALGO and --env ENV")
        config = {
            "algo": canonical_algo(algo),
            "env": env,
            "hyperparams": {},
            "wrappers": [{"name": n, "kwargs": dict(k)} for n, k in wrappers],
            "seed": 0,
        }
    model_path = Path(model_path)
    if not model_path.is_file():
        raise RunNotFoundError(f"model file {model_path} does not exist")
    algo_cls = get_algo_class(config["algo"])
    model = algo_cls.load(str(model_path), device=device)
    return LoadedRun(
        model=model, config=config, model_path=model_path, run_dir=run_path, vecnormalize_path=vecnorm
    )


def add_wrapper_options(parser: argparse.ArgumentParser) -> None:
    """``--wrapper`` / ``--callback`` options (repeatable ``NAME[:key=value,...]`` strings)."""
    parser.add_argument(
        "--wrapper",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="add a wrapper (registry name or import path), e.g. record-episodes:store=eps,max_episodes=5; repeatable",
    )
    parser.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="add an SB3 callback (registry name or import path); repeatable",
    )
