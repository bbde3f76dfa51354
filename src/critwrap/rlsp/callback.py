"""``RLSPUpdate``: the Deep RLSP outer loop as an SB3 callback on SAC (or any off-policy algorithm).

Every ``update_every`` environment steps the callback runs one Deep RLSP iteration with the algorithm's
current policy (:meth:`critwrap.rlsp.deep_rlsp.DeepRLSP.step`: refit the inverse policy, gradient step on
``theta`` at the current horizon) and pushes the new reward and the simulated past states (episode
starts, with probability ``init_prob``) into every training env's
:class:`~critwrap.wrappers.rlsp_reward.RLSPReward` wrapper; the algorithm then goes on learning on the
new reward. Training stops when the horizon curriculum ends. Logs ``rlsp/grad_norm``,
``rlsp/last_n_grad_norm``, ``rlsp/horizon``, ``rlsp/epoch``, ``rlsp/theta_norm`` and
``rlsp/inverse_policy_loss`` through SB3's logger; with ``save_path`` the current reward (``theta``
normalised to norm 1) is saved after every iteration and at the end.

Two ways to use it:

* from Python, with a :class:`~critwrap.rlsp.deep_rlsp.DeepRLSP` (what :func:`~critwrap.rlsp.deep_rlsp.infer_reward` does);
* from the zoo, by name, with a states file: the models are trained when training starts, from the
  training env's id::

      python -m critwrap.zoo train sac InvertedPendulum-v5 --timesteps 30000 --wrapper rlsp-reward \\
          --callback rlsp-update:states=states.npy,save_path=reward.safetensors,update_every=1000 \\
          --eval-skip-wrapper rlsp-reward

The training envs need an ``rlsp-reward`` wrapper (without ``path``: the callback provides the reward).

Example:
    >>> import numpy as np
    >>> from critwrap.rlsp.callback import RLSPUpdate
    >>> from critwrap.rlsp.deep_rlsp import DeepRLSP, RLSPConfig, make_policy_env
    >>> rlsp = DeepRLSP("InvertedPendulum-v5", np.zeros((1, 4)), RLSPConfig.small())  # doctest: +SKIP
    >>> rlsp.setup()  # doctest: +SKIP
    >>> from stable_baselines3 import SAC  # doctest: +SKIP
    >>> model = SAC("MlpPolicy", make_policy_env(rlsp), learning_starts=0)  # doctest: +SKIP
    >>> model.learn(2000, callback=RLSPUpdate(rlsp, update_every=200))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from critwrap.rlsp.deep_rlsp import DeepRLSP, RLSPConfig, load_states, sb3_policy

__all__ = ["RLSPUpdate"]


class RLSPUpdate(BaseCallback):
    """Deep RLSP iterations interleaved with the algorithm's training (see the module docstring).

    Args:
        rlsp: a :class:`DeepRLSP` (set up now or on the first update). Leave it out to build one when
            training starts from ``states`` and ``config``.
        states: path of the observed states (``.npy``, ``.npz``, or an EpisodeStore folder), without ``rlsp``.
        config: :class:`RLSPConfig` fields (a mapping) changed from the preset, without ``rlsp``.
        preset: ``"fast"`` (:meth:`RLSPConfig.fast`, the default), ``"paper"`` (the original's settings
            with ``reset_solver=False``: the callback continues its algorithm) or ``"small"``, without ``rlsp``.
        update_every: environment steps (over all envs) between iterations (the original's
            ``solver_iterations``); default: ``rlsp.config.solver_iterations``.
        save_path: save the current reward there (safetensors) after every iteration.
        stop_when_done: stop training when the horizon curriculum ends (default True).
        verbose: 1 prints a line per iteration.
    """

    def __init__(
        self,
        rlsp: DeepRLSP | None = None,
        *,
        states: str | None = None,
        config: Mapping[str, Any] | None = None,
        preset: str = "fast",
        update_every: int | None = None,
        save_path: str | os.PathLike[str] | None = None,
        stop_when_done: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        if rlsp is None and states is None:
            raise ValueError("RLSPUpdate needs a DeepRLSP (rlsp=...) or a states file (states=PATH)")
        self.rlsp = rlsp
        self.states_path = states
        if preset not in ("fast", "paper", "small"):
            raise ValueError(f"preset must be 'fast', 'paper' or 'small', got {preset!r}")
        self.preset = preset
        self.config_overrides = dict(config or {})
        self._update_every = update_every
        self.save_path = save_path
        self.stop_when_done = stop_when_done
        self.last_update = 0
        self.history: list[dict[str, Any]] = []

    @property
    def update_every(self) -> int:
        if self._update_every is not None:
            return int(self._update_every)
        assert self.rlsp is not None
        return int(self.rlsp.config.solver_iterations)

    def _env_id(self) -> str:
        specs = self.training_env.get_attr("spec")
        spec = specs[0] if specs else None
        if spec is None:
            raise ValueError("RLSPUpdate cannot tell the training env's id (its spec is None); pass rlsp=...")
        return str(spec.id).removeprefix("critwrap/")

    def _init_callback(self) -> None:
        if self.rlsp is None:
            assert self.states_path is not None
            env_id = self._env_id()
            obs_space = self.training_env.observation_space
            obs_dim = int(obs_space.shape[0]) if obs_space.shape else None
            states = load_states(self.states_path, obs_dim)
            fields = {f for f in RLSPConfig.__dataclass_fields__}
            unknown = sorted(set(self.config_overrides) - fields)
            if unknown:
                raise TypeError(f"unknown Deep RLSP settings {unknown}; known: {sorted(fields)}")
            if self.preset == "paper":
                # the original's settings, except that this callback continues the algorithm it runs in
                config = RLSPConfig(**{"reset_solver": False, **self.config_overrides})
            elif self.preset == "small":
                config = RLSPConfig.small(**self.config_overrides)
            else:
                config = RLSPConfig.fast(**self.config_overrides)
            self.rlsp = DeepRLSP(env_id, states, config)
        if self.rlsp.config.reset_solver:
            raise ValueError(
                "reset_solver=True trains a new SAC for every Deep RLSP iteration, which a callback inside "
                "one algorithm's learn() cannot do; use critwrap.rlsp.deep_rlsp.infer_reward for it, or "
                "set reset_solver=False to continue this algorithm across iterations"
            )
        if not self.rlsp._ready:
            self.rlsp.setup()
        self._push()

    def _push(self) -> None:
        """Send the current reward and start states to every training env's RLSPReward wrapper."""
        assert self.rlsp is not None
        try:
            self.training_env.env_method("set_inferred_reward", self.rlsp.reward)
            self.training_env.env_method(
                "set_start_states", self.rlsp.start_states, self.rlsp.config.init_prob
            )
        except AttributeError as exc:
            raise TypeError(
                "RLSPUpdate needs an RLSPReward wrapper on the training envs (--wrapper rlsp-reward, or "
                f"critwrap.wrappers.rlsp_reward.RLSPReward): {exc}"
            ) from exc

    def _on_step(self) -> bool:
        assert self.rlsp is not None
        if self.num_timesteps - self.last_update < self.update_every:
            return True
        self.last_update = self.num_timesteps
        stats = self.rlsp.step(sb3_policy(self.model))
        self.history.append(stats)
        for key in ("grad_norm", "last_n_grad_norm", "horizon", "epoch", "theta_norm", "inverse_policy_loss"):
            self.logger.record(f"rlsp/{key}", stats[key])
        self._push()
        if self.save_path is not None:
            self.rlsp.final_reward.save(self.save_path)
        if self.verbose:
            print(
                f"RLSPUpdate at {self.num_timesteps} steps: epoch {stats['epoch']}, horizon {stats['horizon']}, "
                f"grad norm {stats['grad_norm']:.3f}, |theta| {stats['theta_norm']:.3f}"
            )
        return not (self.stop_when_done and stats["done"])

    def _on_training_end(self) -> None:
        if self.save_path is not None and self.rlsp is not None and self.rlsp._ready:
            self.rlsp.final_reward.save(self.save_path)
