"""Deep RLSP's outer loop, top to bottom: data, models, then gradient steps interleaved with SAC.

1. **Data**: transitions from random rollouts (and, with ``add_policy_rollouts_to_replay``, rollouts of
   the policy that produced the observed states with epsilon 0, 0.12 and 0.3), stepped for a fixed
   length without stopping at termination, as the original's ``ExperienceReplay``.
2. **Models**: the feature VAE (:mod:`critwrap.rlsp.features`) and the inverse dynamics
   (:mod:`critwrap.rlsp.inverse`) are fitted once on these transitions.
3. **theta** starts at the normalised sum of the observed states' features.
4. **Loop** (:class:`DeepRLSP.step`, driven by :class:`critwrap.rlsp.callback.RLSPUpdate` inside SAC's
   ``learn``): refit the inverse policy on the current policy's transitions, estimate the gradient
   (:mod:`critwrap.rlsp.gradient`), clip it to norm 10, ``theta += 0.01 * g``, then SAC goes on with the
   new reward, its episodes starting with probability 0.2 in a simulated past state, without
   termination, ``horizon * policy_horizon_factor`` steps long. The horizon grows 1 -> 30.

:class:`RLSPConfig` holds every setting; its defaults are the original's ``base`` + ``pendulum``
configuration (``run_mujoco.py``) except where noted there. :func:`infer_reward` runs everything
with SB3 SAC and returns the :class:`~critwrap.rlsp.reward.InferredReward`.

Differences from the original, all documented where they are: features are the posterior mean (not a
sample); the fast and small presets and the ``RLSPUpdate`` callback continue one SAC across iterations
(the original's base default ``reset_solver=False``), while ``RLSPConfig()`` trains a new SAC for 50 000
steps every iteration, as the original's pendulum config (``reset_solver=True``, in :func:`infer_reward`); the inverse dynamics and VAE are not
trained further during the loop (the original's MuJoCo default as well).

Example (small settings; the defaults take hours on a CPU):
    >>> import numpy as np
    >>> from critwrap.rlsp.deep_rlsp import RLSPConfig, infer_reward
    >>> cfg = RLSPConfig.small()
    >>> states = np.zeros((1, 4))
    >>> result = infer_reward("InvertedPendulum-v5", states, cfg)  # doctest: +SKIP
    >>> result.reward.save("pendulum.rlsp.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from critwrap.rlsp.features import StateVAE
from critwrap.rlsp.gradient import (
    OBS_CLIP,
    ForwardSimulator,
    HorizonCurriculum,
    PolicyFn,
    StateSetterFn,
    backward_rollouts,
    clip_by_norm,
    cosine_weights,
    forward_rollouts,
    policy_transitions,
    rlsp_gradient,
)
from critwrap.rlsp.inverse import InverseDynamics, InversePolicyMDN
from critwrap.rlsp.reward import InferredReward

__all__ = [
    "DeepRLSP",
    "RLSPConfig",
    "RLSPResult",
    "StatesError",
    "Transitions",
    "collect_transitions",
    "default_sac_kwargs",
    "infer_reward",
    "load_states",
    "sample_states_from_policy",
    "sb3_policy",
]


class StatesError(ValueError):
    """The observed states do not fit the environment (shape, dimension, values)."""


@dataclass
class RLSPConfig:
    """Every setting of Deep RLSP (defaults: the original's ``base`` + ``pendulum`` config)."""

    # gradient and curriculum
    horizon: int = 30
    horizon_curriculum: bool = True
    threshold: float = 2.0
    max_epochs_per_horizon: int = 10
    epochs: int = 1000
    learning_rate: float = 0.01
    max_grad_norm: float = 10.0
    n_trajectories: int = 200
    n_trajectories_forward_factor: float = 1.0
    reweight_gradient: bool = True
    clip_obs: float | None = OBS_CLIP
    # the policy (SAC) between gradient steps
    solver_iterations: int = 50_000
    # a fresh SAC for every iteration (the original's pendulum config; its base default is False). Only
    # infer_reward honours it: the RLSPUpdate callback continues the algorithm it runs in (its "paper"
    # preset turns it off), and the fast / small presets continue one SAC as well
    reset_solver: bool = True
    policy_horizon_factor: int = 100
    policy_episode_steps: int | None = None  # None: horizon * policy_horizon_factor
    init_prob: float = 0.2
    sac_kwargs: dict[str, Any] | None = None  # None: default_sac_kwargs(env_id)
    # data for the models
    n_rollouts_init: int = 50
    add_policy_rollouts_to_replay: bool = True
    rollout_length: int | None = None  # None: the env's max_episode_steps
    # feature VAE
    latent_dim: int = 30
    vae_layers: int = 3
    vae_layer_size: int = 512
    vae_lr: float = 1e-5
    vae_epochs: int = 100
    vae_batch_size: int = 500
    vae_prior_stdev: float = 1.0
    vae_divergence_factor: float = 0.001
    # inverse dynamics
    dynamics_hidden_size: int = 1024
    dynamics_layers: int = 5
    dynamics_lr: float = 1e-5
    dynamics_epochs: int = 100
    dynamics_batch_size: int = 500
    # inverse policy (mixture density network)
    mdn_components: int = 5
    mdn_layers: int = 3
    mdn_layer_size: int = 512
    mdn_stdev: float | None = 0.05
    mdn_lr: float = 1e-4
    mdn_epochs: int = 1
    mdn_batch_size: int = 500
    mdn_samples: int | None = None  # states per refit; None: the replay size (the original)
    # misc
    n_sim_envs: int = 32
    seed: int = 0
    verbose: int = 0

    def __post_init__(self) -> None:
        # Settings often come from the command line (``--set vae_lr=1e-5``); a string or a bool where a
        # number belongs would otherwise fail deep inside a run (or, worse, be silently truthy).
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kinds = {part.strip() for part in str(f.type).split("|")}
            if value is None and "None" in kinds:
                continue
            if "bool" in kinds:
                ok = isinstance(value, bool)
            elif "int" in kinds:
                ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            elif "float" in kinds:
                ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                if ok:
                    setattr(self, f.name, float(value))
            elif any(k.startswith("dict") for k in kinds):
                ok = isinstance(value, dict)
            else:
                ok = True
            if not ok:
                raise TypeError(
                    f"RLSPConfig.{f.name} must be {f.type}, got {value!r} ({type(value).__name__})"
                )

    @classmethod
    def small(cls, **overrides: Any) -> RLSPConfig:
        """Tiny models and budgets, for tests and smoke runs (minutes become seconds)."""
        values: dict[str, Any] = dict(
            horizon=3,
            max_epochs_per_horizon=1,
            n_trajectories=16,
            solver_iterations=200,
            reset_solver=False,
            policy_horizon_factor=10,
            n_rollouts_init=4,
            rollout_length=100,
            latent_dim=4,
            vae_layer_size=32,
            vae_lr=1e-3,
            vae_epochs=2,
            vae_batch_size=100,
            dynamics_hidden_size=32,
            dynamics_layers=2,
            dynamics_lr=1e-3,
            dynamics_epochs=2,
            dynamics_batch_size=100,
            mdn_layer_size=32,
            mdn_layers=2,
            mdn_batch_size=100,
            mdn_samples=200,
            n_sim_envs=8,
            sac_kwargs={"learning_starts": 0, "batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}},
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def fast(cls, **overrides: Any) -> RLSPConfig:
        """The CPU budget of ``benchmarks/rlsp.py`` (InvertedPendulum in minutes, not hours).

        Same algorithm, curriculum (1 -> 30), clipping, learning rate, reweighting and architectures of
        the VAE (30 x 3 x 512) and the inverse policy (5 Gaussians, 3 x 512); smaller budgets: 300 SAC
        steps between gradient steps (original: a fresh SAC for 50 000), 50 trajectories per gradient
        (200), 20 rollouts of data (50), fewer epochs with larger learning rates for the VAE (10 at
        1e-3; 100 at 1e-5) and the inverse dynamics (20 at 1e-3, 3 x 512 units; 100 at 1e-5, 5 x 1024),
        the inverse policy refitted on 5 000 states for 3 epochs at 1e-3 (the whole replay, 1 epoch at 1e-4).

        Also ``reweight_gradient=False``: the original weights each trajectory by the cosine similarity of
        its earliest state to the env's initial observation, which for InvertedPendulum is ~0 (reset noise
        of 0.01), so the weights have random signs; measured here, repeated gradient estimates at horizon
        5 and 15 then have a mean pairwise cosine of 0.01-0.06 (0.79-0.99 without the weights), noise the
        original's hundreds of epochs may average out but 30 epochs do not. And SAC's episodes between
        gradient steps last 100 steps (original: ``horizon * policy_horizon_factor`` = 3000): with
        termination ignored and a few thousand steps in all, long episodes are spent almost entirely in
        states the policy cannot recover from (measured on the true task: SAC reaches 1000 in 6000
        steps with 100-step episodes, 70 in 8000 steps with 1000-step ones).
        """
        values: dict[str, Any] = dict(
            n_trajectories=50,
            solver_iterations=300,
            reset_solver=False,
            n_rollouts_init=20,
            vae_lr=1e-3,
            vae_epochs=10,
            dynamics_hidden_size=512,
            dynamics_layers=3,
            dynamics_lr=1e-3,
            dynamics_epochs=20,
            mdn_lr=1e-3,
            mdn_epochs=3,
            mdn_samples=5000,
            reweight_gradient=False,
            policy_episode_steps=100,
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_sac_kwargs(env_id: str) -> dict[str, Any]:
    """The original's ``get_sac`` settings (stable-baselines 2), in SB3 terms.

    HalfCheetah / Ant / Swimmer: rl-baselines-zoo's values with a 256x256 network; Hopper: entropy
    0.01; anything else (InvertedPendulum): stable-baselines 2's SAC defaults (64x64 network, batches of
    64, a 50 000 replay buffer, learning rate 3e-4) with ``learning_starts=1000``.
    """
    name = env_id.split("/")[-1]
    if name.startswith(("Ant", "HalfCheetah", "Swimmer")):
        return {
            "learning_rate": 3e-4,
            "gamma": 0.98,
            "tau": 0.01,
            "ent_coef": "auto",
            "buffer_size": 1_000_000,
            "batch_size": 256,
            "learning_starts": 10_000,
            "policy_kwargs": {"net_arch": [256, 256]},
        }
    if name.startswith("Hopper"):
        return {
            "learning_rate": 3e-4,
            "ent_coef": 0.01,
            "buffer_size": 1_000_000,
            "batch_size": 256,
            "learning_starts": 1000,
            "policy_kwargs": {"net_arch": [256, 256]},
        }
    return {
        "learning_rate": 3e-4,
        "buffer_size": 50_000,
        "batch_size": 64,
        "learning_starts": 1000,
        "policy_kwargs": {"net_arch": [64, 64]},
    }


def sb3_policy(model: Any, deterministic: bool = False) -> PolicyFn:
    """A batched policy function from an SB3 model (stochastic by default, as the original's ``predict``)."""

    def _policy(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(np.asarray(obs, dtype=np.float32), deterministic=deterministic)
        return np.asarray(action, dtype=np.float64)

    return _policy


@dataclass
class Transitions:
    """``(s_t, a_t, s_{t+1})`` arrays of equal length."""

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("obs", "actions", "next_obs")))


def collect_transitions(
    make_env: Callable[[], gym.Env[Any, Any]],
    n_rollouts: int,
    length: int,
    *,
    policy: PolicyFn | None = None,
    epsilon: float = 0.0,
    seed: int = 0,
) -> Transitions:
    """``n_rollouts`` rollouts of ``length`` steps (random actions, or ``policy`` with epsilon-random
    actions), run in lockstep and stepped past termination, as the original's replay."""
    if n_rollouts <= 0:
        space = make_env().action_space
        return Transitions(np.zeros((0, 0)), np.zeros((0, *(space.shape or ()))), np.zeros((0, 0)))
    envs = [make_env() for _ in range(n_rollouts)]
    rng = np.random.default_rng(seed)
    obs = np.stack([np.asarray(e.reset(seed=seed + i)[0], dtype=np.float64) for i, e in enumerate(envs)])
    space = envs[0].action_space
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"Deep RLSP needs a continuous (Box) action space, got {space}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    out_obs, out_act, out_next = [], [], []
    for _ in range(length):
        random = rng.uniform(low, high, size=(n_rollouts, *low.shape))
        if policy is None:
            actions = random
        else:
            actions = np.asarray(policy(obs), dtype=np.float64).reshape(random.shape)
            if epsilon > 0:
                pick = rng.random(n_rollouts) < epsilon
                actions[pick] = random[pick]
        nxt = np.stack([np.asarray(e.unwrapped.step(a)[0], dtype=np.float64) for e, a in zip(envs, actions)])
        out_obs.append(obs)
        out_act.append(actions)
        out_next.append(nxt)
        obs = nxt
    for e in envs:
        e.close()
    flat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    keep = np.all(np.isfinite(flat(out_next)), axis=1) & np.all(np.isfinite(flat(out_obs)), axis=1)
    return Transitions(flat(out_obs)[keep], flat(out_act)[keep], flat(out_next)[keep])


def sample_states_from_policy(
    make_env: Callable[[], gym.Env[Any, Any]],
    policy: PolicyFn,
    n_states: int,
    *,
    seed: int = 0,
    max_steps: int | None = None,
) -> tuple[np.ndarray, list[float]]:
    """One state from each of ``n_states`` episodes of ``policy``: a uniformly random observation among
    those returned by ``step`` (as the original's ``sample_obs_from_trajectory``); also the returns.

    ``seed`` fixes the episodes, the chosen steps and torch's random numbers while the policy runs (a
    stochastic SB3 policy samples from torch's global generator; its state is restored afterwards), so
    the same policy and seed give the same states in any process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _sample_states(make_env, policy, n_states, seed, max_steps)


def _sample_states(
    make_env: Callable[[], gym.Env[Any, Any]],
    policy: PolicyFn,
    n_states: int,
    seed: int,
    max_steps: int | None,
) -> tuple[np.ndarray, list[float]]:
    rng = np.random.default_rng(seed)
    env = make_env()
    states, returns = [], []
    for i in range(int(n_states)):
        obs, _ = env.reset(seed=seed + 1000 * i)
        seen, total, steps = [], 0.0, 0
        while True:
            obs, reward, terminated, truncated, _ = env.step(policy(np.asarray(obs)[None])[0])
            seen.append(np.asarray(obs, dtype=np.float64))
            total += float(reward)
            steps += 1
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
        states.append(seen[int(rng.integers(len(seen)))])
        returns.append(total)
    env.close()
    return np.stack(states), returns


def load_states(path: str | os.PathLike[str], obs_dim: int | None = None) -> np.ndarray:
    """Observed states from a file: ``.npy`` (``(N, d)`` or ``(d,)``), ``.npz`` (key ``states`` or
    ``observations``), or a critwrap :class:`~critwrap.episodes.EpisodeStore` folder (every observation of
    every episode). With ``obs_dim``, the dimension is checked."""
    p = Path(path)
    if p.is_dir():
        from critwrap.episodes import EpisodeStore

        store = EpisodeStore(p, create=False)
        if len(store) == 0:
            raise StatesError(f"the episode store {p} holds no episodes")
        arr = np.concatenate([np.asarray(ep.observations, dtype=np.float64) for ep in store])
    elif p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as data:
            keys = [k for k in ("states", "observations") if k in data]
            if not keys:
                raise StatesError(f"{p} has no 'states' or 'observations' array (it has {sorted(data)})")
            arr = data[keys[0]]
    elif not p.exists():
        raise FileNotFoundError(f"no states file or folder at {p}")
    else:
        raise StatesError(
            f"cannot read states from {p}: expected a .npy / .npz file or an EpisodeStore folder"
        )
    return check_states(arr, obs_dim, where=str(p))


def check_states(states: Any, obs_dim: int | None, where: str = "states") -> np.ndarray:
    """``states`` as a float ``(N, d)`` array; raises :class:`StatesError` on a wrong shape or dimension."""
    arr = np.asarray(states, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or len(arr) == 0:
        raise StatesError(f"{where}: expected states of shape (N, obs_dim) or (obs_dim,), got {arr.shape}")
    if obs_dim is not None and arr.shape[1] != obs_dim:
        raise StatesError(
            f"{where}: the states have dimension {arr.shape[1]}, but this environment's observations have "
            f"dimension {obs_dim}; were they recorded in another environment?"
        )
    if not np.all(np.isfinite(arr)):
        raise StatesError(f"{where}: the states hold NaN or infinite values")
    return arr


class DeepRLSP:
    """The state of one Deep RLSP run: observed states, models, ``theta`` and the horizon curriculum.

    Args:
        env_id: Gymnasium id (a MuJoCo env whose state can be set; see :mod:`critwrap.rlsp.gradient`).
        states: observed states ``(N, obs_dim)``.
        config: settings.
        expert: the policy that produced the states, for the replay (``add_policy_rollouts_to_replay``).
        env_kwargs: passed to ``gym.make``.
        state_setter: for envs the built-in setter does not support.
        encoder / inverse_dynamics / transitions: reuse already trained parts (e.g. across runs that
            share data, as the original's ablations reuse Deep RLSP's models).

    Call :meth:`setup` (data and models), then :meth:`step` with the current policy for every iteration.
    """

    def __init__(
        self,
        env_id: str,
        states: np.ndarray,
        config: RLSPConfig | None = None,
        *,
        expert: PolicyFn | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        state_setter: StateSetterFn | None = None,
        encoder: StateVAE | None = None,
        inverse_dynamics: InverseDynamics | None = None,
        transitions: Transitions | None = None,
    ) -> None:
        self.env_id = env_id
        self.config = config or RLSPConfig()
        self.env_kwargs = dict(env_kwargs or {})
        probe = self.make_env()
        space = probe.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"Deep RLSP needs flat Box observations, {env_id} has {space}")
        if not isinstance(probe.action_space, gym.spaces.Box):
            raise TypeError(
                f"Deep RLSP needs a continuous (Box) action space, {env_id} has {probe.action_space}"
            )
        self.obs_dim = int(space.shape[0])
        self.action_space = probe.action_space
        self.max_episode_steps = int(probe.spec.max_episode_steps or 1000) if probe.spec else 1000
        probe.close()
        self.states = check_states(states, self.obs_dim, where=f"states for {env_id}")
        self.expert = expert
        self.rng = np.random.default_rng(self.config.seed)
        # fails now, with a clear message, for envs whose state cannot be set
        self.simulator = ForwardSimulator(
            self.make_env,
            self.config.n_sim_envs,
            state_setter=state_setter,
            clip=self.config.clip_obs,
            seed=self.config.seed,
        )
        self.encoder = encoder
        self.inverse_dynamics = inverse_dynamics
        self.transitions = transitions
        self.inverse_policy: InversePolicyMDN | None = None
        self.theta = np.zeros(0)
        self.initial_obs = np.zeros(self.obs_dim)
        self.curriculum = HorizonCurriculum(
            self.config.horizon,
            enabled=self.config.horizon_curriculum,
            threshold=self.config.threshold,
            max_epochs_per_horizon=self.config.max_epochs_per_horizon,
            epochs=self.config.epochs,
        )
        self.start_states = self.states.copy()
        self.history: list[dict[str, Any]] = []
        self._ready = False
        #: a tqdm bar that :meth:`step` advances (set by :func:`infer_reward` with ``progress=True``)
        self.progress_bar: Any = None
        self.writer: Any = None  # a TensorBoard SummaryWriter (infer_reward's tensorboard=)

    def make_env(self) -> gym.Env[Any, Any]:
        return gym.make(self.env_id, **self.env_kwargs)

    def log(self, message: str) -> None:
        if self.config.verbose:
            print(f"[deep-rlsp] {message}", flush=True)

    # ---- setup ------------------------------------------------------------------------------------

    def collect(self) -> Transitions:
        cfg = self.config
        length = cfg.rollout_length or self.max_episode_steps
        if cfg.add_policy_rollouts_to_replay and self.expert is not None:
            quarter = max(1, cfg.n_rollouts_init // 4)
            parts = [collect_transitions(self.make_env, quarter, length, seed=cfg.seed)]
            for j, eps in enumerate((0.0, 0.12, 0.3)):
                parts.append(
                    collect_transitions(
                        self.make_env,
                        quarter,
                        length,
                        policy=self.expert,
                        epsilon=eps,
                        seed=cfg.seed + 100 * (j + 1),
                    )
                )
            return Transitions.concat(parts)
        return collect_transitions(self.make_env, cfg.n_rollouts_init, length, seed=cfg.seed)

    def setup(self, progress: bool = False) -> None:
        """Collect transitions, fit the VAE and the inverse dynamics (unless given), initialise ``theta``.

        ``progress=True`` shows a tqdm bar over these stages (the stage running is its postfix)."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        collect = self.transitions is None and (self.encoder is None or self.inverse_dynamics is None)
        stages = [
            name
            for name, todo in (
                ("transitions", collect),
                ("VAE", self.encoder is None),
                ("inverse dynamics", self.inverse_dynamics is None),
            )
            if todo
        ]
        bar = None
        if progress and stages:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(stages), desc="Deep RLSP setup", unit="stage", dynamic_ncols=True)
        try:
            self._setup(collect, bar, t0)
        finally:
            if bar is not None:
                bar.close()

    def _setup(self, collect: bool, bar: Any, t0: float) -> None:
        cfg = self.config

        def stage(name: str) -> None:
            if bar is not None:
                bar.set_postfix_str(name)

        def done() -> None:
            if bar is not None:
                bar.update(1)

        if collect:
            stage("collecting transitions")
            self.transitions = self.collect()
            self.log(f"{len(self.transitions)} transitions in {time.perf_counter() - t0:.1f}s")
            done()
        if self.encoder is None:
            stage("fitting the state VAE")
            assert self.transitions is not None
            self.encoder = StateVAE(
                self.obs_dim,
                cfg.latent_dim,
                cfg.vae_layers,
                cfg.vae_layer_size,
                cfg.vae_prior_stdev,
                cfg.vae_divergence_factor,
            )
            loss = self.encoder.fit(
                self.transitions.obs,
                epochs=cfg.vae_epochs,
                batch_size=cfg.vae_batch_size,
                lr=cfg.vae_lr,
                seed=cfg.seed,
            )
            self.log(f"VAE loss {loss[0]:.3f} -> {loss[1]:.3f}")
            done()
        if self.inverse_dynamics is None:
            stage("fitting the inverse dynamics")
            assert self.transitions is not None
            act_dim = int(np.prod(self.action_space.shape or (1,)))
            self.inverse_dynamics = InverseDynamics(
                self.obs_dim, act_dim, cfg.dynamics_hidden_size, cfg.dynamics_layers
            )
            loss = self.inverse_dynamics.fit(
                self.transitions.obs,
                self.transitions.actions,
                self.transitions.next_obs,
                epochs=cfg.dynamics_epochs,
                batch_size=cfg.dynamics_batch_size,
                lr=cfg.dynamics_lr,
                seed=cfg.seed,
            )
            self.log(f"inverse dynamics loss {loss[0]:.4f} -> {loss[1]:.4f}")
            done()
        if self.transitions is None:
            raise ValueError("give transitions along with a pretrained encoder and inverse dynamics")
        assert isinstance(self.action_space, gym.spaces.Box)
        self.inverse_policy = InversePolicyMDN(
            self.obs_dim,
            int(np.prod(self.action_space.shape or (1,))),
            self.action_space.low,
            self.action_space.high,
            cfg.mdn_components,
            cfg.mdn_layers,
            cfg.mdn_layer_size,
            cfg.mdn_stdev,
        )
        self.theta = self.initial_theta()
        env = self.make_env()
        self.initial_obs = np.asarray(env.reset(seed=cfg.seed)[0], dtype=np.float64)
        env.close()
        self._ready = True

    def initial_theta(self) -> np.ndarray:
        """The normalised sum of the observed states' features (the AverageFeatures reward)."""
        assert self.encoder is not None
        total = self.encoder.encode(self.states).sum(axis=0)
        norm = np.linalg.norm(total)
        return total / norm if norm > 0 else total

    @property
    def reward(self) -> InferredReward:
        """The current inferred reward."""
        if self.encoder is None:
            raise RuntimeError("call setup() first")
        info = {
            "method": "deep-rlsp",
            "n_states": len(self.states),
            "epochs": self.curriculum.epoch,
            "horizon": self.curriculum.horizon,
            "config": self.config.to_dict(),
        }
        return InferredReward(self.encoder, self.theta, self.env_id, info=info)

    @property
    def final_reward(self) -> InferredReward:
        """The current reward with ``theta`` normalised to norm 1 (as the original's evaluation uses it)."""
        reward = self.reward
        norm = float(np.linalg.norm(self.theta))
        return reward.with_theta(self.theta / norm) if norm > 0 else reward

    @property
    def done(self) -> bool:
        return self.curriculum.done

    @property
    def policy_episode_steps(self) -> int:
        """Episode length of the SAC trained between gradient steps (termination is ignored)."""
        if self.config.policy_episode_steps is not None:
            return int(self.config.policy_episode_steps)
        return int(self.config.horizon * self.config.policy_horizon_factor)

    # ---- one iteration ----------------------------------------------------------------------------

    def refit_inverse_policy(self, policy: PolicyFn) -> tuple[float, float]:
        """Refit the inverse policy from scratch on ``(s', a)`` made by ``policy`` from replay states."""
        assert self.inverse_policy is not None and self.transitions is not None
        cfg = self.config
        n = len(self.transitions) if cfg.mdn_samples is None else min(cfg.mdn_samples, len(self.transitions))
        idx = self.rng.choice(len(self.transitions), size=n, replace=False)
        next_obs, actions = policy_transitions(self.transitions.obs[idx], policy, self.simulator)
        return self.inverse_policy.fit(
            next_obs,
            actions,
            epochs=cfg.mdn_epochs,
            batch_size=cfg.mdn_batch_size,
            lr=cfg.mdn_lr,
            reinitialize=True,
        )

    def gradient(self, policy: PolicyFn, horizon: int) -> dict[str, Any]:
        """Estimate the gradient at ``horizon`` (no update); returns it with the simulated trajectories."""
        assert self.inverse_policy is not None and self.inverse_dynamics is not None
        assert self.encoder is not None
        cfg = self.config
        back = backward_rollouts(
            self.states,
            cfg.n_trajectories,
            horizon,
            self.inverse_policy,
            self.inverse_dynamics,
            self.rng,
            clip=cfg.clip_obs,
        )
        n_fwd = max(1, int(cfg.n_trajectories * cfg.n_trajectories_forward_factor))
        fwd = forward_rollouts(back.earliest, n_fwd, horizon, policy, self.simulator)
        k = self.encoder.latent_dim
        fb = self.encoder.encode(back.observations.reshape(-1, self.obs_dim)).reshape(
            len(back.observations), -1, k
        )
        ff = self.encoder.encode(fwd.reshape(-1, self.obs_dim)).reshape(len(fwd), -1, k)
        wb = wf = None
        if cfg.reweight_gradient:
            wb = cosine_weights(back.earliest, self.initial_obs)
            wf = cosine_weights(fwd[:, 0], self.initial_obs)
        grad = rlsp_gradient(fb, ff, horizon, wb, wf)
        return {"grad": grad, "backward": back, "forward": fwd}

    def step(self, policy: PolicyFn) -> dict[str, Any]:
        """One Deep RLSP iteration with the current policy: refit the inverse policy, estimate the
        gradient at the current horizon, clip it, ascend, advance the curriculum. Returns statistics."""
        if not self._ready:
            self.setup()
        t0 = time.perf_counter()
        horizon = self.curriculum.horizon
        mdn_loss = self.refit_inverse_policy(policy)
        est = self.gradient(policy, horizon)
        grad = est["grad"]
        grad_norm = float(np.linalg.norm(grad))
        last_n = self.curriculum.record(grad)
        theta_before = self.theta
        self.theta = self.theta + self.config.learning_rate * clip_by_norm(grad, self.config.max_grad_norm)
        back = est["backward"]
        past = back.observations[:, 1:].reshape(-1, self.obs_dim)
        self.start_states = np.concatenate([past, self.states])
        stats = {
            "epoch": self.curriculum.epoch,
            "horizon": horizon,
            "grad_norm": grad_norm,
            "last_n_grad_norm": last_n,
            "theta_norm": float(np.linalg.norm(self.theta)),
            "theta_change": float(np.linalg.norm(self.theta - theta_before)),
            "inverse_policy_loss": float(mdn_loss[1]),
            "seconds": time.perf_counter() - t0,
            "done": self.curriculum.done,
        }
        self.history.append(stats)
        if self.writer is not None:
            for key, value in stats.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.writer.add_scalar(f"rlsp/{key}", value, stats["epoch"])
            self.writer.flush()
        if self.progress_bar is not None:
            self.progress_bar.update(1)
            self.progress_bar.set_postfix(horizon=horizon, grad_norm=f"{grad_norm:.3g}", refresh=False)
        self.log(
            f"epoch {stats['epoch']} horizon {horizon}: grad norm {grad_norm:.3f} "
            f"(last-n {stats['last_n_grad_norm']:.3f}), |theta| {stats['theta_norm']:.3f}, "
            f"inverse policy loss {mdn_loss[0]:.3f} -> {mdn_loss[1]:.3f}"
        )
        return stats


@dataclass
class RLSPResult:
    """What :func:`infer_reward` returns."""

    reward: InferredReward
    rlsp: DeepRLSP
    model: Any  # the SAC trained along (on the successive inferred rewards)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def make_policy_env(rlsp: DeepRLSP, n_envs: int = 1, seed: int = 0) -> Any:
    """The SAC training env: ``RLSPReward`` (no termination) with episodes of ``horizon * policy_horizon_factor``
    steps, starting in simulated past states with probability ``init_prob`` (set by the callback)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from critwrap.wrappers.rlsp_reward import RLSPReward

    def _thunk() -> gym.Env[Any, Any]:
        env = gym.make(rlsp.env_id, max_episode_steps=rlsp.policy_episode_steps, **rlsp.env_kwargs)
        return RLSPReward(env, ignore_termination=True)

    venv = DummyVecEnv([_thunk for _ in range(n_envs)])
    venv.seed(seed)
    return venv


def infer_reward(
    env_id: str,
    states: np.ndarray,
    config: RLSPConfig | None = None,
    *,
    expert: PolicyFn | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    save_path: str | os.PathLike[str] | None = None,
    rlsp: DeepRLSP | None = None,
    max_policy_steps: int | None = None,
    progress: bool = False,
    tensorboard: str | os.PathLike[str] | None = None,
) -> RLSPResult:
    """Run Deep RLSP with SB3 SAC on ``env_id`` from the observed ``states``; returns the inferred reward
    (``theta`` normalised to norm 1, as the original's evaluation of inferred rewards).

    SAC trains on the current inferred reward for ``solver_iterations`` steps between gradient steps
    (:class:`~critwrap.rlsp.callback.RLSPUpdate`), until the horizon curriculum ends (or
    ``max_policy_steps`` SAC steps, when given). With ``config.reset_solver`` every iteration trains a
    new SAC from scratch instead (the original's pendulum setting); ``model`` is then the last one.
    ``progress=True`` shows tqdm bars: the setup stages, then the Deep RLSP iterations (as many as
    the curriculum allows; it may end earlier) with the current horizon and gradient norm.
    ``tensorboard``: a folder for TensorBoard logs: every iteration's statistics under ``rlsp/``
    (``grad_norm``, ``horizon``, ``theta_norm``, ``theta_change``, ``inverse_policy_loss``, ...; step =
    iteration) and the SAC's own metrics under ``sac/`` (unless ``config.sac_kwargs`` sets its own log).
    """

    cfg = config or RLSPConfig()
    t0 = time.perf_counter()
    if rlsp is None:
        rlsp = DeepRLSP(env_id, states, cfg, expert=expert, env_kwargs=env_kwargs)
    if not rlsp._ready:
        rlsp.setup(progress=progress)
    venv = make_policy_env(rlsp, seed=cfg.seed)
    if cfg.sac_kwargs is None:  # the original's solver: get_sac(env, learning_starts=0)
        sac_kwargs = {**default_sac_kwargs(env_id), "learning_starts": 0}
    else:
        sac_kwargs = dict(cfg.sac_kwargs)
    # enough steps for every epoch the curriculum can take; training stops when it ends
    max_epochs = cfg.epochs
    if cfg.horizon_curriculum:
        max_epochs = min(cfg.epochs, cfg.horizon * cfg.max_epochs_per_horizon)
    if progress:
        from tqdm.auto import tqdm

        rlsp.progress_bar = tqdm(total=max_epochs, desc="Deep RLSP", unit="iter", dynamic_ncols=True)
    if tensorboard is not None:
        from torch.utils.tensorboard import SummaryWriter

        rlsp.writer = SummaryWriter(str(tensorboard))
        sac_kwargs.setdefault("tensorboard_log", str(Path(tensorboard) / "sac"))
    try:
        model = _run_loop(rlsp, venv, cfg, sac_kwargs, max_epochs, max_policy_steps, save_path)
    finally:
        if rlsp.progress_bar is not None:
            rlsp.progress_bar.close()
            rlsp.progress_bar = None
        if rlsp.writer is not None:
            rlsp.writer.close()
            rlsp.writer = None
    reward = rlsp.final_reward
    if save_path is not None:
        reward.save(save_path)
    return RLSPResult(reward, rlsp, model, list(rlsp.history), time.perf_counter() - t0)


def _run_loop(
    rlsp: DeepRLSP,
    venv: Any,
    cfg: RLSPConfig,
    sac_kwargs: dict[str, Any],
    max_epochs: int,
    max_policy_steps: int | None,
    save_path: str | os.PathLike[str] | None,
) -> Any:
    """The outer loop of :func:`infer_reward`; returns the last SAC."""
    from stable_baselines3 import SAC

    from critwrap.rlsp.callback import RLSPUpdate

    if cfg.reset_solver:
        # the original's reset_solver=True: a new SAC trained from scratch on the current reward for
        # solver_iterations steps before every gradient step (its pendulum config)
        budget = None if max_policy_steps is None else int(max_policy_steps)
        model, used, epoch = None, 0, 0
        while not rlsp.done and epoch < max_epochs:
            steps = cfg.solver_iterations if budget is None else min(cfg.solver_iterations, budget - used)
            if steps <= 0:
                break
            venv.env_method("set_inferred_reward", rlsp.reward)
            venv.env_method("set_start_states", rlsp.start_states, cfg.init_prob)
            model = SAC("MlpPolicy", venv, seed=cfg.seed + epoch, device="cpu", verbose=0, **sac_kwargs)
            model.learn(total_timesteps=steps)
            used += steps
            rlsp.step(sb3_policy(model))
            epoch += 1
            if save_path is not None:
                rlsp.final_reward.save(save_path)
        if model is None:
            model = SAC("MlpPolicy", venv, seed=cfg.seed, device="cpu", verbose=0, **sac_kwargs)
    else:
        model = SAC("MlpPolicy", venv, seed=cfg.seed, device="cpu", verbose=0, **sac_kwargs)
        callback = RLSPUpdate(rlsp, update_every=cfg.solver_iterations, save_path=save_path)
        total = cfg.solver_iterations * (max_epochs + 1)
        if max_policy_steps is not None:
            total = min(total, int(max_policy_steps))
        model.learn(total_timesteps=total, callback=callback)
    return model
