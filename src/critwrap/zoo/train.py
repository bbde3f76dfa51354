"""``python -m critwrap.zoo train ALGO ENV``: train an SB3 / sb3-contrib agent into a run directory.

Hyperparameters come from ``zoo/hyperparams/<algo>.yml`` (see :mod:`critwrap.zoo.hyperparams`),
then ``--hp key=value`` overrides, then the dedicated options (``--timesteps``, ``--n-envs``,
``--eval-freq``, ``--eval-episodes``). Training envs are made with ``critwrap.make(env,
training=True)``, the evaluation env with ``training=False``; YAML ``env_wrapper`` and ``--wrapper``
wrappers go on both (leave one out of evaluation with ``--eval-skip-wrapper NAME``). Each env is in
a ``Monitor``, outermost, so ``rollout/ep_rew_mean`` shows the returns the agent trains on (for Atari:
per life and clipped) while evaluations (``eval/mean_reward``, ``evaluations.npz``) show game scores.
``eval_freq`` / ``--save-freq`` count environment steps over all envs. The run directory layout is
documented in :mod:`critwrap.zoo.runs`; ``--resume`` loads the newest checkpoint (with its replay
buffer and VecNormalize statistics) and trains on to the same total (or a new ``--timesteps``).

Example:
    .. code-block:: console

        python -m critwrap.zoo train ppo CartPole-v1 --timesteps 20000 --seed 1
        python -m critwrap.zoo train dqn Seaquest --timesteps 2000 --hp buffer_size=1000 --hp learning_starts=100
        python -m critwrap.zoo train dqn Seaquest --timesteps 4000 --hp buffer_size=1000 --resume
        python -m critwrap.zoo train dqn Seaquest --buffer critical-nstep --detector dsi_dir

    ``--buffer NAME[:key=value,...]`` picks a replay buffer from the ``critwrap.buffers`` registry for
    off-policy algorithms; ``--detector DIR`` is the saved detector it scores states with. A buffer that
    takes a detector but gets none (``--buffer critical-nstep`` alone) is given one learned online: a
    ``detector-refresh`` callback (DSI; on Atari a regression of the reward of 200-step windows, as in
    the Deep State Identifier's Seaquest experiment) is added unless ``--callback detector-refresh...``
    is given.

    From Python:

    >>> from critwrap.zoo.train import train
    >>> result = train("ppo", "CartPole-v1", timesteps=256, hp={"n_steps": 64}, log_dir="/tmp/runs")  # doctest: +SKIP
    >>> result.run_dir  # doctest: +SKIP
    PosixPath('/tmp/runs/default/ppo/CartPole-v1/base/seed_0')
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critwrap.zoo.runs import (
    RunNotFoundError,
    latest_checkpoint,
    read_json,
    read_status,
    run_dir,
    run_lock,
    variant_slug,
    versions,
    write_json,
    write_status,
)

__all__ = ["RunExistsError", "TrainOptions", "TrainResult", "add_parser", "run", "run_training", "train"]

NAME = "train"


class RunExistsError(FileExistsError):
    """The run directory already holds a run (and neither ``--resume`` nor ``--overwrite`` was given)."""


@dataclass
class TrainOptions:
    """Everything ``train`` takes; the CLI options map one to one (``--n-envs`` -> ``n_envs``).

    ``wrappers`` / ``callbacks`` accept spec strings (``"name:key=value"``), ``(name, kwargs)`` pairs or
    ``{name: kwargs}`` mappings; ``hp`` accepts ``key=value`` strings or a mapping. ``None`` means
    "as in the YAML entry, else the default".
    """

    algo: str
    env: str
    timesteps: int | None = None
    seed: int = 0
    n_envs: int | None = None
    wrappers: Sequence[Any] = ()
    callbacks: Sequence[Any] = ()
    hp: Sequence[str] | Mapping[str, Any] | None = None
    hyperparams: str | None = None
    log_dir: str = "runs"
    experiment: str = "default"
    variant: str | None = None
    eval_freq: int | None = None
    eval_episodes: int | None = None
    eval_max_steps: int | None = None
    eval_skip_wrappers: Sequence[str] = ()
    buffer: str | None = None
    detector: str | None = None
    save_freq: int | None = None
    keep_checkpoints: int | None = None
    resume: bool = False
    overwrite: bool = False
    device: str = "cpu"
    num_threads: int | None = None
    vec_env: str = "dummy"
    progress: bool = False
    verbose: int = 0
    command: Sequence[str] | None = None


@dataclass
class TrainResult:
    run_dir: Path
    model: Any
    num_timesteps: int
    final_eval: dict[str, Any] = field(default_factory=dict)


def _default_eval_freq(n_timesteps: int) -> int:
    return max(min(25_000, n_timesteps // 10), 1)


def _default_save_freq(n_timesteps: int) -> int:
    return max(min(100_000, n_timesteps // 10), 1)


def _spec_dicts(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    return [{"name": n, "kwargs": dict(k)} for n, k in specs]


def _spec_pairs(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(str(s["name"]), dict(s.get("kwargs") or {})) for s in specs]


def _check_wrappers(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Resolve every wrapper and bind its arguments now, before a run directory is made."""
    from critwrap.envs import normalize_wrappers

    normalize_wrappers([(n, dict(k)) for n, k in specs])


def _check_callbacks(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    import inspect

    from critwrap import registry

    for name, kwargs in specs:
        cls = registry.resolve("callbacks", name)
        try:
            sig = inspect.signature(cls)
        except (TypeError, ValueError):  # pragma: no cover
            continue
        extra = {"run_dir": ""} if "run_dir" in sig.parameters and "run_dir" not in kwargs else {}
        try:
            sig.bind(**kwargs, **extra)
        except TypeError as exc:
            params = ", ".join(p for p in sig.parameters if p != "self") or "(none)"
            raise TypeError(
                f"callback {name!r} does not accept {sorted(kwargs)}: {exc}. It accepts: {params}"
            ) from None


def _buffer_spec(opts: TrainOptions) -> tuple[str, dict[str, Any]] | None:
    """``--buffer NAME[:key=value]`` as ``(name, kwargs)``, with ``--detector`` as ``detector=PATH``."""
    from critwrap.zoo.specs import parse_spec_string

    if opts.buffer is None:
        if opts.detector is not None:
            raise ValueError(
                "--detector is the detector of the replay buffer: give --buffer too (e.g. --buffer critical-nstep); "
                "wrappers take theirs in the spec (--wrapper subgoal-reward:detector=DIR)"
            )
        return None
    name, kwargs = parse_spec_string(opts.buffer, "buffer")
    if opts.detector is not None:
        if "detector" in kwargs:
            raise ValueError("give the buffer's detector once: --detector DIR or --buffer NAME:detector=DIR")
        kwargs["detector"] = str(Path(opts.detector).resolve())
    return name, kwargs


def _buffer_config(
    spec: tuple[str, dict[str, Any]] | None,
    algo: str,
    algo_cls: Any,
    family: str,
    n_timesteps: int,
    callbacks: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    """Check ``--buffer`` / ``--detector`` before a run directory is made; returns the buffer's config entry
    and the callbacks to add (a ``detector-refresh`` when the buffer takes a detector and has none)."""
    import inspect

    from stable_baselines3.common.buffers import ReplayBuffer

    from critwrap import registry
    from critwrap.zoo.algos import is_off_policy

    if spec is None:
        return None, []
    name, kwargs = spec
    if not is_off_policy(algo_cls):
        raise ValueError(
            f"--buffer {name}: {algo} is on-policy and has no replay buffer; use an off-policy algorithm "
            "(dqn, qrdqn for critical-nstep)"
        )
    cls = registry.resolve("buffers", name)
    if not (isinstance(cls, type) and issubclass(cls, ReplayBuffer)):
        raise TypeError(f"--buffer {name} resolved to {cls!r}, which is not an SB3 ReplayBuffer subclass")
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(f"--buffer {name} does not take {unknown}; it takes {', '.join(params)}")
    detector = kwargs.get("detector")
    if detector is not None:
        from critwrap.detectors.base import load_detector

        load_detector(detector)  # a clear error now for a path that is not a saved detector
    extra: list[tuple[str, dict[str, Any]]] = []
    refresh_given = any(registry.normalize_name(n).endswith("detector-refresh") for n, _ in callbacks)
    if "detector" in params and detector is None and not refresh_given:
        refresh: dict[str, Any] = {"every": max(n_timesteps // 5, 1), "detector": "dsi"}
        if family == "atari":
            refresh.update(window=200, detector_kwargs={"task": "regression", "batch_size": 16})
        extra.append(("detector-refresh", refresh))
    return {"name": name, "kwargs": kwargs}, extra


def _check_rlsp_reward_has_a_source(
    wrappers: Sequence[tuple[str, Mapping[str, Any]]], callbacks: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """An ``rlsp-reward`` wrapper without ``path`` pays 0 everywhere unless ``rlsp-update`` sets its reward."""
    from critwrap import registry
    from critwrap.wrappers.rlsp_reward import RLSPReward

    def resolves_to(kind: str, name: str, cls_name: str) -> bool:
        cls = registry.resolve(kind, name)
        return isinstance(cls, type) and any(c.__name__ == cls_name for c in cls.__mro__)

    bare = [n for n, kw in wrappers if resolves_to("wrappers", n, RLSPReward.__name__) and not kw.get("path")]
    if bare and not any(resolves_to("callbacks", n, "RLSPUpdate") for n, _ in callbacks):
        raise ValueError(
            "the rlsp-reward wrapper has no path= and no rlsp-update callback sets its reward, so the agent "
            "would be trained on a reward of 0: give --wrapper rlsp-reward:path=REWARD_FILE (from `zoo rlsp`), "
            "or add --callback rlsp-update:states=STATES_FILE"
        )


def _new_config(opts: TrainOptions) -> dict[str, Any]:
    """Resolve algorithm, env, hyperparameters, wrappers and callbacks into ``config.json``'s content."""
    import critwrap
    from critwrap.zoo.algos import canonical_algo, get_algo_class
    from critwrap.zoo.hyperparams import HyperparamsError, load_hyperparams
    from critwrap.zoo.specs import normalize_specs

    algo = canonical_algo(opts.algo)
    algo_cls = get_algo_class(algo)
    resolved = critwrap.resolve_env_id(opts.env)
    cli_wrappers = normalize_specs(list(opts.wrappers), "--wrapper")
    cli_callbacks = normalize_specs(list(opts.callbacks), "--callback")
    hp = load_hyperparams(algo, opts.env, hyperparams=opts.hyperparams, overrides=opts.hp, algo_cls=algo_cls)
    raw = dict(hp.raw)
    for key, value in (
        ("n_timesteps", opts.timesteps),
        ("n_envs", opts.n_envs),
        ("eval_freq", opts.eval_freq),
        ("n_eval_episodes", opts.eval_episodes),
        ("eval_max_steps", opts.eval_max_steps),
    ):
        if value is not None:
            raw[key] = int(value)
    if "n_timesteps" not in raw:
        raise HyperparamsError(
            f"{hp.where()}: no n_timesteps; set it in the YAML entry or pass --timesteps N"
        )
    for key in ("n_timesteps", "n_envs", "n_eval_episodes", "eval_freq", "frame_stack", "eval_max_steps"):
        if key in raw:
            raw[key] = int(raw[key])
            if raw[key] < (0 if key == "eval_freq" else 1):
                raise HyperparamsError(f"{key} must be >= {0 if key == 'eval_freq' else 1}, got {raw[key]}")
    yaml_wrappers = normalize_specs(raw.get("env_wrapper"), f"{hp.where()}: env_wrapper")
    yaml_callbacks = normalize_specs(raw.get("callback"), f"{hp.where()}: callback")
    wrappers = [*yaml_wrappers, *cli_wrappers]
    callbacks = [*yaml_callbacks, *cli_callbacks]
    n_timesteps = int(raw["n_timesteps"])
    buffer, extra_callbacks = _buffer_config(
        _buffer_spec(opts), algo, algo_cls, resolved.family, n_timesteps, callbacks
    )
    callbacks.extend(extra_callbacks)
    _check_wrappers(wrappers)
    _check_callbacks(callbacks)
    _check_rlsp_reward_has_a_source(wrappers, callbacks)
    return {
        "algo": algo,
        "algo_class": f"{algo_cls.__module__}.{algo_cls.__qualname__}",
        "env": opts.env,
        "env_id": resolved.id,
        "env_family": resolved.family,
        "seed": int(opts.seed),
        "n_timesteps": n_timesteps,
        "n_envs": int(raw.get("n_envs", 1)),
        "hyperparams": raw,
        "hyperparams_file": hp.source,
        "hyperparams_entry": hp.entry,
        "overrides": hp.overrides,
        "wrappers": _spec_dicts(wrappers),
        "callbacks": _spec_dicts(callbacks),
        "cli_wrappers": _spec_dicts(cli_wrappers),
        "cli_callbacks": _spec_dicts(cli_callbacks),
        "eval_skip_wrappers": list(opts.eval_skip_wrappers),
        "buffer": buffer,
        "eval_freq": int(raw.get("eval_freq", _default_eval_freq(n_timesteps))),
        "n_eval_episodes": int(raw.get("n_eval_episodes", 5)),
        "eval_max_steps": int(raw["eval_max_steps"]) if "eval_max_steps" in raw else None,
        "save_freq": int(opts.save_freq) if opts.save_freq is not None else _default_save_freq(n_timesteps),
        "keep_checkpoints": int(opts.keep_checkpoints) if opts.keep_checkpoints is not None else 2,
        "device": opts.device,
        "vec_env": opts.vec_env,
        "log_dir": str(opts.log_dir),
        "experiment": opts.experiment,
        "variant": None,  # filled by the caller
        "command": list(opts.command) if opts.command is not None else [sys.executable, *sys.argv],
        "critwrap_version": critwrap.__version__,
    }


def _buffer_kwargs(config: Mapping[str, Any], algo_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``replay_buffer_class`` / ``replay_buffer_kwargs`` for the config's ``--buffer`` (empty without one)."""
    from critwrap import registry

    buffer = config.get("buffer")
    if not buffer:
        return {}
    if "replay_buffer_class" in algo_kwargs:
        raise ValueError(
            f"--buffer {buffer['name']} and the hyperparameter replay_buffer_class "
            f"({algo_kwargs['replay_buffer_class']}) both set the replay buffer; keep one"
        )
    kwargs = {**dict(algo_kwargs.get("replay_buffer_kwargs") or {}), **dict(buffer.get("kwargs") or {})}
    return {
        "replay_buffer_class": registry.resolve("buffers", buffer["name"]),
        "replay_buffer_kwargs": kwargs,
    }


def _action_noise(hp: Mapping[str, Any], action_space: Any, algo_cls: Any) -> Any:
    import inspect

    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    noise_type = hp.get("noise_type")
    if noise_type is None:
        return None
    if "action_noise" not in inspect.signature(algo_cls.__init__).parameters:
        raise ValueError(f"noise_type is set but {algo_cls.__name__} takes no action noise")
    shape = getattr(action_space, "shape", None)
    if not shape:
        raise ValueError(f"noise_type needs a continuous (Box) action space, got {action_space}")
    std = float(hp.get("noise_std", 0.1))
    n = int(np.prod(shape))
    if noise_type == "normal":
        return NormalActionNoise(mean=np.zeros(n), sigma=std * np.ones(n))
    return OrnsteinUhlenbeckActionNoise(mean=np.zeros(n), sigma=std * np.ones(n))


def run_training(opts: TrainOptions) -> TrainResult:
    """Train as described by ``opts``; returns the run directory, the model and the final evaluation.

    The run directory is locked while this runs (:func:`critwrap.zoo.runs.run_lock`): a second process
    on the same run fails with :class:`~critwrap.zoo.runs.RunInUseError`."""
    with contextlib.ExitStack() as stack:
        return _run_training(opts, stack)


def _run_training(opts: TrainOptions, stack: contextlib.ExitStack) -> TrainResult:
    from critwrap.zoo.algos import canonical_algo
    from critwrap.zoo.specs import normalize_specs

    algo = canonical_algo(opts.algo)
    cli_wrappers = normalize_specs(list(opts.wrappers), "--wrapper")
    cli_callbacks = normalize_specs(list(opts.callbacks), "--callback")
    buffer_spec = _buffer_spec(opts)
    slug_parts = [(f"buffer-{buffer_spec[0]}", buffer_spec[1])] if buffer_spec else []
    variant = opts.variant or variant_slug(cli_wrappers, [*slug_parts, *cli_callbacks])
    rdir = run_dir(opts.log_dir, opts.experiment, algo, opts.env, variant, opts.seed)

    if opts.resume:
        if (rdir / "config.json").is_file():
            stack.enter_context(run_lock(rdir))
        if not (rdir / "config.json").is_file():
            raise RunNotFoundError(
                f"nothing to resume: {rdir / 'config.json'} does not exist. Give the same algo, env, --seed, "
                "--experiment, --log-dir and --wrapper/--callback options as the run to resume (or --variant)."
            )
        config = dict(read_json(rdir / "config.json"))
        if opts.hp:
            from critwrap.zoo.hyperparams import parse_hp_overrides

            given = json.loads(json.dumps(parse_hp_overrides(opts.hp)))
            if given != config.get("overrides"):
                raise ValueError(
                    f"--hp {given} differs from the overrides of the run being resumed ({config.get('overrides')}); "
                    "a resumed run keeps the hyperparameters in its config.json. Start a new run (another "
                    "--experiment or --seed) to change them."
                )
        if config["algo"] != algo or config["env"] != opts.env:
            raise ValueError(
                f"{rdir} holds a {config['algo']} run on {config['env']}, not {algo} on {opts.env}"
            )
        if opts.timesteps is not None:
            config["n_timesteps"] = int(opts.timesteps)
            config["hyperparams"]["n_timesteps"] = int(opts.timesteps)
        for key, value in (("n_envs", opts.n_envs), ("n_eval_episodes", opts.eval_episodes)):
            if value is not None and int(value) != int(config[key]):
                raise ValueError(
                    f"{key} cannot change when resuming ({config[key]} in {rdir / 'config.json'})"
                )
        if opts.eval_max_steps is not None and opts.eval_max_steps != config.get("eval_max_steps"):
            raise ValueError(
                f"eval_max_steps cannot change when resuming ({config.get('eval_max_steps')} in "
                f"{rdir / 'config.json'}): the evaluations so far were made with it"
            )
        for key, value in (
            ("eval_freq", opts.eval_freq),
            ("save_freq", opts.save_freq),
            ("keep_checkpoints", opts.keep_checkpoints),
        ):
            if value is not None:
                config[key] = int(value)
        if latest_checkpoint(rdir) is None:  # before the run's status is touched: keep its own error
            prev = read_status(rdir) or {}
            why = f"; it {prev['status']} with {str(prev['error']).rstrip('.')}" if prev.get("error") else ""
            raise RunNotFoundError(
                f"cannot resume {rdir}: no checkpoint in {rdir / 'checkpoints'}{why}. A run trained with "
                "--save-freq 0, or one that stopped before its first checkpoint, cannot be resumed: start it "
                "again with --overwrite"
            )
        config.setdefault("resumed", []).append({"command": list(opts.command or sys.argv)})
    else:
        config = _new_config(opts)
        config["variant"] = variant
        stack.enter_context(run_lock(rdir))  # after the config checks: a bad request leaves no trace
        if rdir.exists() and any(rdir.iterdir()):
            if not opts.overwrite:
                status = read_status(rdir)
                state = f" (status: {status.get('status')})" if status else ""
                raise RunExistsError(
                    f"{rdir} already holds a run{state}. Pass --resume to continue it, --overwrite to start "
                    "again, or choose another --seed / --experiment / --variant."
                )
            shutil.rmtree(rdir)
    rdir.mkdir(parents=True, exist_ok=True)
    write_json(rdir / "config.json", config)
    write_json(rdir / "versions.json", versions())
    previous = read_status(rdir) if opts.resume else None
    status = write_status(
        rdir, "running", previous=previous, num_timesteps=0, total_timesteps=config["n_timesteps"]
    )
    try:
        return _train_in(rdir, config, opts, status)
    except BaseException as exc:
        err = f"{type(exc).__name__}: {exc}"
        write_status(rdir, "failed", error=err, previous=status, traceback=traceback.format_exc())
        raise


def _train_in(rdir: Path, config: dict[str, Any], opts: TrainOptions, status: dict[str, Any]) -> TrainResult:
    import torch
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from critwrap.zoo.algos import get_algo_class, is_off_policy
    from critwrap.zoo.callbacks import ZooCheckpointCallback, ZooEvalCallback
    from critwrap.zoo.common import (
        EVAL_SEED_OFFSET,
        default_policy,
        evaluate,
        instantiate_callbacks,
        make_vec_env,
        summarize,
        wrap_vec_env,
    )
    from critwrap.zoo.hyperparams import build_algo_kwargs, resolve_object

    if opts.num_threads is not None:
        torch.set_num_threads(int(opts.num_threads))
    algo = config["algo"]
    algo_cls = get_algo_class(algo)
    hp: dict[str, Any] = config["hyperparams"]
    seed = int(config["seed"])
    n_envs = int(config["n_envs"])
    total = int(config["n_timesteps"])
    wrappers = _spec_pairs(config["wrappers"])
    skip = set(config.get("eval_skip_wrappers", []))
    eval_wrappers = [(n, k) for n, k in wrappers if n not in skip]
    where = f"{config.get('hyperparams_file')} (entry {config.get('hyperparams_entry')!r})"

    resume_from = None
    if opts.resume:
        resume_from = latest_checkpoint(rdir)
        if resume_from is None:
            raise RunNotFoundError(
                f"cannot resume {rdir}: no checkpoint in {rdir / 'checkpoints'} (was --save-freq 0?)"
            )

    train_env = make_vec_env(
        config["env"],
        n_envs=n_envs,
        seed=seed,
        training=True,
        wrappers=wrappers,
        env_kwargs=hp.get("env_kwargs"),
        vec_env=config.get("vec_env", "dummy"),
    )
    train_env = wrap_vec_env(
        train_env,
        frame_stack=hp.get("frame_stack"),
        normalize=hp.get("normalize"),
        training=True,
        vecnormalize_path=resume_from[1].get("vecnormalize") if resume_from else None,
    )
    eval_env = make_vec_env(
        config["env"],
        n_envs=1,
        seed=seed + EVAL_SEED_OFFSET,
        training=False,
        wrappers=eval_wrappers,
        env_kwargs=hp.get("env_kwargs"),
        max_episode_steps=config.get("eval_max_steps"),
    )
    eval_env = wrap_vec_env(
        eval_env, frame_stack=hp.get("frame_stack"), normalize=hp.get("normalize"), training=False
    )

    tb = str(rdir / "tb")
    verbose = min(int(opts.verbose), 2)
    try:
        if resume_from is not None:
            _steps, files = resume_from
            model = algo_cls.load(
                str(files["model"]), env=train_env, device=opts.device, tensorboard_log=tb, verbose=verbose
            )
            if is_off_policy(algo_cls) and "replay_buffer" in files:
                model.load_replay_buffer(str(files["replay_buffer"]))
            detector_path = ((config.get("buffer") or {}).get("kwargs") or {}).get("detector")
            if detector_path is not None and callable(getattr(model.replay_buffer, "set_detector", None)):
                # saved buffers drop their detector (it holds torch modules); reattach it
                model.replay_buffer.set_detector(detector_path, rescore=False)
            model.set_random_seed(seed + int(model.num_timesteps))
            print(f"Resuming {rdir} from {files['model'].name} at {model.num_timesteps} timesteps")
        else:
            if "policy" not in hp:
                hp["policy"] = default_policy(algo, train_env.observation_space)
                write_json(rdir / "config.json", config)
            policy = hp["policy"]
            policy = resolve_object(policy, "policy") if "." in policy or ":" in policy else policy
            kwargs = build_algo_kwargs(hp, algo_cls, where)
            kwargs.update(_buffer_kwargs(config, kwargs))
            noise = _action_noise(hp, train_env.action_space, algo_cls)
            if noise is not None:
                kwargs["action_noise"] = noise
            try:
                model = algo_cls(
                    policy,
                    train_env,
                    seed=seed,
                    device=opts.device,
                    verbose=verbose,
                    tensorboard_log=tb,
                    **kwargs,
                )
            except TypeError as exc:
                raise TypeError(
                    f"could not create {algo_cls.__name__} with the hyperparameters of {where}: {exc}"
                ) from exc

        n_eval = int(config["n_eval_episodes"])
        callbacks: list[Any] = []
        eval_cb = None
        if int(config["eval_freq"]) > 0:
            eval_cb = ZooEvalCallback(
                eval_env,
                log_dir=rdir,
                n_eval_episodes=n_eval,
                eval_freq=max(int(config["eval_freq"]) // n_envs, 1),
                deterministic=True,
                verbose=verbose,
                warn=False,
            )
            if resume_from is not None:
                eval_cb.load_history(up_to=int(model.num_timesteps))
            callbacks.append(eval_cb)
        ckpt_cb = None
        if int(config["save_freq"]) > 0:
            ckpt_cb = ZooCheckpointCallback(
                save_freq=max(int(config["save_freq"]) // n_envs, 1),
                save_path=rdir / "checkpoints",
                keep=int(config.get("keep_checkpoints", 2)),
                verbose=verbose,
            )
            callbacks.append(ckpt_cb)
        callbacks.extend(instantiate_callbacks(_spec_pairs(config["callbacks"]), run_dir=rdir))

        remaining = total - int(model.num_timesteps)
        if remaining > 0:
            try:
                with warnings.catch_warnings():
                    # the evaluation env is always a DummyVecEnv, also with --vec-env subproc
                    warnings.filterwarnings(
                        "ignore", message="Training and eval env are not of the same type"
                    )
                    model.learn(
                        total_timesteps=remaining,
                        callback=CallbackList(callbacks),
                        tb_log_name=algo,
                        reset_num_timesteps=resume_from is None,
                        progress_bar=bool(opts.progress),
                    )
            except KeyboardInterrupt:
                if ckpt_cb is not None and getattr(ckpt_cb, "model", None) is not None:
                    path = ckpt_cb.save_now()
                    print(f"Interrupted: saved {path}; continue with --resume", file=sys.stderr)
                raise
        else:
            print(f"{rdir} already has {model.num_timesteps} >= {total} timesteps; nothing to train")

        model.save(rdir / "model.zip")
        vecnorm = model.get_vec_normalize_env()
        if vecnorm is not None:
            vecnorm.save(str(rdir / "vecnormalize.pkl"))
        if ckpt_cb is not None:
            # a checkpoint of the end state; it replaces one saved by the callback at the same step, whose
            # replay buffer lacks that step's transition (SB3 calls callbacks before storing it)
            if getattr(ckpt_cb, "model", None) is None:
                ckpt_cb.init_callback(model)
            ckpt_cb.save_now()

        if vecnorm is not None:
            sync_envs_normalization(train_env, eval_env)
        torch.manual_seed(seed + EVAL_SEED_OFFSET)
        eval_env.seed(seed + EVAL_SEED_OFFSET)
        returns, lengths = evaluate(model, eval_env, n_eval, deterministic=True)
        final = summarize(returns, lengths)
        final.update(
            {
                "deterministic": True,
                "seed": seed + EVAL_SEED_OFFSET,
                "num_timesteps": int(model.num_timesteps),
            }
        )
        write_json(rdir / "final_eval.json", final)
        best = eval_cb.best_mean_reward if eval_cb is not None else float("-inf")
        if not (rdir / "best_model.zip").is_file() or final["mean_return"] > best:
            model.save(rdir / "best_model.zip")
        write_status(
            rdir, "finished", previous=status, num_timesteps=int(model.num_timesteps), total_timesteps=total
        )
        return TrainResult(
            run_dir=rdir, model=model, num_timesteps=int(model.num_timesteps), final_eval=final
        )
    finally:
        train_env.close()
        eval_env.close()


def train(algo: str, env: str, **options: Any) -> TrainResult:
    """Train ``algo`` on ``env``; keyword arguments are the fields of :class:`TrainOptions`."""
    return run_training(TrainOptions(algo=algo, env=env, **options))


# ------------------------------------------------------------------------------------------- CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from critwrap.zoo.common import add_wrapper_options

    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        help="train an agent (SB3 / sb3-contrib) with YAML hyperparameters",
        description=__doc__.split("\n\n")[0]
        + "\n\nAlgorithms: a2c, ars, ddpg, dqn, ppo, qrdqn, recurrentppo, sac, td3, tqc, trpo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "algo", help="algorithm: a2c, ars, ddpg, dqn, ppo, qrdqn, recurrentppo, sac, td3, tqc, trpo"
    )
    p.add_argument(
        "env", help="environment: short name (Seaquest, KeyCorridor) or Gymnasium id (CartPole-v1)"
    )
    p.add_argument(
        "--timesteps", "-n", type=int, default=None, help="total timesteps (overrides n_timesteps)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-envs", type=int, default=None, help="number of training envs (overrides n_envs)")
    p.add_argument(
        "--vec-env", choices=["dummy", "subproc"], default="dummy", help="DummyVecEnv or SubprocVecEnv"
    )
    add_wrapper_options(p)
    p.add_argument(
        "--buffer",
        default=None,
        metavar="NAME[:key=value,...]",
        help="replay buffer from the critwrap.buffers registry (off-policy algorithms), e.g. critical-nstep:n_max=5",
    )
    p.add_argument(
        "--detector",
        default=None,
        metavar="DIR",
        help="saved detector for --buffer (without it, critical-nstep learns one online with detector-refresh)",
    )
    p.add_argument(
        "--eval-skip-wrapper",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this wrapper out of evaluation envs (e.g. record-episodes); repeatable",
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter (YAML value; dotted keys for nesting: policy_kwargs.net_arch=[64,64])",
    )
    p.add_argument(
        "--hyperparams", default=None, metavar="DIR", help="directory of <algo>.yml files, or one .yml file"
    )
    p.add_argument("--log-dir", default="runs", help="root of the result store (default: runs)")
    p.add_argument("--experiment", default="default", help="experiment name (default: default)")
    p.add_argument(
        "--variant",
        default=None,
        help="variant directory name (default: base, or a slug of --wrapper/--callback)",
    )
    p.add_argument("--eval-freq", type=int, default=None, help="evaluate every N timesteps (0: never)")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default 5)")
    p.add_argument(
        "--eval-max-steps",
        type=int,
        default=None,
        metavar="N",
        help="end each evaluation episode after N steps (default: the env's own limit; e.g. 4500 for "
        "Atari's 5 minutes of play, where a greedy untrained policy can otherwise play 27000 steps)",
    )
    p.add_argument(
        "--save-freq",
        type=int,
        default=None,
        help="checkpoint every N timesteps (0: never; default: total/10)",
    )
    p.add_argument(
        "--keep-checkpoints", type=int, default=None, help="keep the newest N checkpoints (0: all; default 2)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint")
    p.add_argument(
        "--overwrite", action="store_true", help="delete an existing run in the same directory first"
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument(
        "--num-threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SB3 progress bar (default: on a terminal)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="SB3 verbosity (-v, -vv)")
    return p


def run(args: argparse.Namespace) -> int:
    opts = TrainOptions(
        algo=args.algo,
        env=args.env,
        timesteps=args.timesteps,
        seed=args.seed,
        n_envs=args.n_envs,
        wrappers=args.wrapper,
        callbacks=args.callback,
        hp=args.hp,
        hyperparams=args.hyperparams,
        log_dir=args.log_dir,
        experiment=args.experiment,
        variant=args.variant,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        eval_max_steps=args.eval_max_steps,
        eval_skip_wrappers=args.eval_skip_wrapper,
        buffer=args.buffer,
        detector=args.detector,
        save_freq=args.save_freq,
        keep_checkpoints=args.keep_checkpoints,
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        num_threads=args.num_threads,
        vec_env=args.vec_env,
        progress=sys.stdout.isatty() if args.progress is None else args.progress,
        verbose=args.verbose,
        command=getattr(args, "command_line", None),
    )
    result = run_training(opts)
    fe = result.final_eval
    asked = int(getattr(result.model, "_total_timesteps", 0) or 0)
    extra = ""
    if asked and result.num_timesteps > asked and hasattr(result.model, "n_steps"):
        n_envs = int(getattr(result.model, "n_envs", 1))
        extra = (
            f" (asked for {asked}: {type(result.model).__name__} collects whole rollouts of n_steps x n_envs = "
            f"{int(result.model.n_steps) * n_envs} steps)"
        )
    print(
        f"Trained {result.num_timesteps} timesteps{extra} -> {result.run_dir}\n"
        f"Final evaluation ({fe['n_episodes']} episodes): return {fe['mean_return']:.2f} +- {fe['std_return']:.2f}, "
        f"length {fe['mean_length']:.1f}"
    )
    return 0
