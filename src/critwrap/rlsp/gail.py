"""GAIL from observed states: the Deep RLSP paper's other baseline, for SB3's off-policy algorithms.

The paper compares Deep RLSP with GAIL given the same 1, 10 or 50 observed states (no actions). The
``imitation`` package, which the original used, cannot be installed beside critwrap (its release 1.0.1
pins ``gymnasium~=0.29.1`` and ``stable-baselines3~=2.2.1``), so critwrap has its own, small,
state-only GAIL, written after ``imitation``'s ``GAIL`` (Ho & Ermon 2016, with a discriminator that
sees only states, as GAIfO / the paper's setting):

* :class:`StateDiscriminator`: an MLP ``D(s)`` giving the logit of "this state is an observed one";
* the policy's reward for a step is ``-log(1 - D(s'))`` (``softplus(logit(s'))``, ``imitation``'s
  GAIL reward), computed from the *current* discriminator when a batch is sampled
  (:class:`GAILReplayBuffer`), so rewards in the replay buffer never go stale (as in DAC, Kostrikov et
  al. 2019, the off-policy form of GAIL);
* :class:`GAILUpdate`: an SB3 callback that, when the algorithm starts learning and then every
  ``update_every`` steps, trains the discriminator
  for ``disc_updates`` steps of binary cross-entropy: observed states (sampled with replacement)
  against the states the policy visited in its last ``update_every`` steps (``imitation``: generator
  rounds, then a few discriminator updates on that round's data; the defaults, 50 updates every 100
  steps, give half a discriminator step per environment step, DAC gives one), and logs ``gail/*`` to
  SB3's logger;
* :func:`train_gail`: SAC + the two above on ``env_id`` with the env's reward replaced and its
  termination ignored (the :class:`~critwrap.wrappers.rlsp_reward.RLSPReward` wrapper without a reward,
  as Deep RLSP's evaluation), returning the trained policy, whose **true** return is what the paper
  reports.

Where this differs from ``imitation``: SAC instead of PPO / stable-baselines 2's SAC as the generator,
rewards relabelled at sampling time (on-policy GAIL recomputes them per rollout), no reward
normalisation. By default no regulariser is added (the original baseline had none);
``grad_penalty=10`` adds DAC's gradient penalty (Kostrikov et al. 2019, after Gulrajani et al. 2017):
``lambda * (|grad_x logit(x)| - 1)^2`` at random points ``x`` between observed and policy states, which
keeps the discriminator from separating a handful of observed states perfectly (its reward would
then be about zero wherever the policy goes, as measured on HalfCheetah).

Example:
    >>> import numpy as np
    >>> from critwrap.rlsp.gail import StateDiscriminator
    >>> disc = StateDiscriminator(obs_dim=4, hidden=(8,))
    >>> disc.reward_np(np.zeros((3, 4))).shape
    (3,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

__all__ = ["GAILReplayBuffer", "GAILUpdate", "StateDiscriminator", "train_gail"]


class RunningNorm(nn.Module):
    """Inputs standardised by the running mean and variance of every batch seen in training mode
    (``imitation``'s ``RunningNorm``, the default input layer of its GAIL reward net); fixed in eval mode."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                flat = x.reshape(-1, x.shape[-1])
                n, mean, var = flat.shape[0], flat.mean(0), flat.var(0, unbiased=False)
                total = self.count + n
                delta = mean - self.mean
                new_mean = self.mean + delta * n / total
                m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
                self.mean.copy_(new_mean)
                self.var.copy_(m2 / total)
                self.count.copy_(total)
        return (x - self.mean) / torch.sqrt(self.var + self.eps)


class StateDiscriminator(nn.Module):
    """``D(s)``: an MLP on flat observations returning the logit that ``s`` is an observed state.

    Args:
        obs_dim: size of the observation vector.
        hidden: widths of the hidden layers (ReLU, as ``imitation``'s default reward MLP).
        normalize_input: standardise the inputs by running statistics of the training batches
            (:class:`RunningNorm`, as ``imitation``'s reward nets do by default); off by default.
    """

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64), normalize_input: bool = False) -> None:
        super().__init__()
        if obs_dim <= 0:
            raise ValueError(f"obs_dim must be positive, got {obs_dim}")
        self.obs_dim = int(obs_dim)
        self.norm = RunningNorm(self.obs_dim) if normalize_input else None
        layers: list[nn.Module] = []
        width = self.obs_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"the discriminator takes observations of size {self.obs_dim}, got {tuple(obs.shape)}"
            )
        return self.logit_of_normalized(self.normalized(obs.float()))

    def normalized(self, obs: torch.Tensor) -> torch.Tensor:
        """The input layer: ``obs`` standardised (updating the statistics in training mode), or as is."""
        return obs if self.norm is None else self.norm(obs)

    def logit_of_normalized(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def reward(self, obs: torch.Tensor) -> torch.Tensor:
        """GAIL's reward ``-log(1 - D(s)) = softplus(logit(s))`` (non-negative)."""
        return F.softplus(self.forward(obs))

    def reward_np(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.reward(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)).numpy()


class GAILReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` whose sampled rewards are ``discriminator.reward(next_obs)``, computed at
    sampling time from the current discriminator (the stored env rewards are not used).

    Use through ``replay_buffer_class=GAILReplayBuffer``; :class:`GAILUpdate` attaches its
    discriminator at the start of training. Sampling before a discriminator is attached is an error.
    """

    discriminator: StateDiscriminator | None = None

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        samples = super()._get_samples(batch_inds, env)
        if self.discriminator is None:
            raise RuntimeError(
                "GAILReplayBuffer has no discriminator: train with the GAILUpdate callback, which attaches one"
            )
        with torch.no_grad():
            rewards = self.discriminator.reward(samples.next_observations.float().cpu())
        return samples._replace(
            rewards=rewards.reshape(-1, 1).to(samples.rewards.device, samples.rewards.dtype)
        )


class GAILUpdate(BaseCallback):
    """Train a :class:`StateDiscriminator` on observed states vs the policy's recent states.

    Args:
        expert_states: ``(N, obs_dim)`` observed states (``N`` may be 1).
        discriminator: the discriminator to train (default: a new 64x64 MLP).
        update_every: environment steps (all envs together) between discriminator rounds.
        disc_updates: gradient steps per round.
        batch_size: states of each kind per gradient step.
        learning_rate: Adam's learning rate.
        grad_penalty: weight of DAC's gradient penalty (0: none, as the original baseline; DAC: 10).
        seed: seeds the sampling of expert states and of the discriminator's initial weights.
    """

    def __init__(
        self,
        expert_states: np.ndarray,
        discriminator: StateDiscriminator | None = None,
        *,
        update_every: int = 100,
        disc_updates: int = 50,
        batch_size: int = 256,
        learning_rate: float = 3e-4,
        grad_penalty: float = 0.0,
        seed: int = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        states = np.asarray(expert_states, dtype=np.float32)
        if states.ndim == 1:
            states = states[None]
        if states.ndim != 2 or len(states) == 0:
            raise ValueError(f"expert_states must have shape (N, obs_dim) with N >= 1, got {states.shape}")
        if not np.all(np.isfinite(states)):
            raise ValueError("expert_states contain NaN or infinite values")
        if update_every < 1 or disc_updates < 1 or batch_size < 1:
            raise ValueError("update_every, disc_updates and batch_size must be >= 1")
        if not np.isfinite(grad_penalty) or grad_penalty < 0:
            raise ValueError(f"grad_penalty must be a finite number >= 0, got {grad_penalty}")
        self.grad_penalty = float(grad_penalty)
        self.expert_states = states
        if discriminator is None:
            torch.manual_seed(seed)
            discriminator = StateDiscriminator(states.shape[1])
        if discriminator.obs_dim != states.shape[1]:
            raise ValueError(
                f"the discriminator takes observations of size {discriminator.obs_dim}, "
                f"the expert states have size {states.shape[1]}"
            )
        self.discriminator = discriminator.eval()  # training mode only inside update()
        self.update_every = int(update_every)
        self.disc_updates = int(disc_updates)
        self.batch_size = int(batch_size)
        self.optimizer = torch.optim.Adam(discriminator.parameters(), lr=learning_rate)
        self._rng = np.random.default_rng(seed)
        self._last_update = 0
        self.history: list[dict[str, float]] = []

    def _init_callback(self) -> None:
        buffer = getattr(self.model, "replay_buffer", None)
        if not isinstance(buffer, GAILReplayBuffer):
            raise TypeError(
                "GAILUpdate needs an off-policy algorithm (SAC, TD3, DDPG, DQN) created with "
                f"replay_buffer_class=GAILReplayBuffer; {type(self.model).__name__} has "
                f"{type(buffer).__name__ if buffer is not None else 'no replay buffer'}"
            )
        venv = self.model.get_env()
        if isinstance(venv, VecNormalize):
            raise ValueError("GAILUpdate does not support VecNormalize: the expert states are not normalised")
        space = self.model.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"GAILUpdate needs flat vector observations (a 1-D Box), got {space}")
        if space.shape[0] != self.expert_states.shape[1]:
            raise ValueError(
                f"expert states have size {self.expert_states.shape[1]}, the env's observations {space.shape[0]}"
            )
        buffer.discriminator = self.discriminator
        self._last_update = self.num_timesteps

    def _policy_states(self, buffer: GAILReplayBuffer, count: int) -> np.ndarray:
        n_envs = buffer.n_envs
        rows = min(max(1, count // n_envs), buffer.size())
        idx = (buffer.pos - 1 - np.arange(rows)) % buffer.buffer_size
        return buffer.observations[idx].reshape(-1, self.expert_states.shape[1]).astype(np.float32)

    def update(self) -> dict[str, float]:
        """One discriminator round on the expert states vs the last ``update_every`` policy states."""
        buffer = getattr(self.model, "replay_buffer", None)
        assert isinstance(buffer, GAILReplayBuffer)
        if buffer.size() == 0:
            return {}
        recent = self._policy_states(buffer, self.update_every)
        disc = self.discriminator
        losses, acc_e, acc_p, penalties = [], [], [], []
        disc.train()  # input statistics (if any) follow the training batches only
        for _ in range(self.disc_updates):
            e = torch.as_tensor(
                self.expert_states[self._rng.integers(len(self.expert_states), size=self.batch_size)]
            )
            p = torch.as_tensor(recent[self._rng.integers(len(recent), size=self.batch_size)])
            logit_e, logit_p = disc(torch.cat([e, p])).split(len(e))
            loss = F.binary_cross_entropy_with_logits(
                logit_e, torch.ones_like(logit_e)
            ) + F.binary_cross_entropy_with_logits(logit_p, torch.zeros_like(logit_p))
            if self.grad_penalty > 0:
                penalty = self._gradient_penalty(e, p)
                loss = loss + self.grad_penalty * penalty
                penalties.append(penalty.item())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
            acc_e.append(float((logit_e > 0).float().mean()))
            acc_p.append(float((logit_p < 0).float().mean()))
        disc.eval()
        with torch.no_grad():
            reward_e = float(disc.reward(torch.as_tensor(self.expert_states)).mean())
            reward_p = float(disc.reward(torch.as_tensor(recent)).mean())
        stats = {
            "disc_loss": float(np.mean(losses)),
            "expert_accuracy": float(np.mean(acc_e)),
            "policy_accuracy": float(np.mean(acc_p)),
            "reward_expert": reward_e,
            "reward_policy": reward_p,
        }
        if penalties:
            stats["grad_penalty"] = float(np.mean(penalties))
        for key, value in stats.items():
            self.logger.record(f"gail/{key}", value)
        self.history.append({"timesteps": float(self.num_timesteps), **stats})
        return stats

    def _gradient_penalty(self, expert: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """DAC's ``mean((|grad_x logit(x)|_2 - 1)^2)`` at ``x = a * expert + (1 - a) * policy``, ``a ~ U(0, 1)``;
        with input normalisation, ``x`` is the standardised input (so the penalty does not depend on
        the observations' units) and the statistics are not updated by these points."""
        disc = self.discriminator
        alpha = torch.as_tensor(self._rng.random((len(expert), 1)), dtype=expert.dtype)
        mixed = alpha * expert + (1 - alpha) * policy
        if disc.norm is not None:
            with torch.no_grad():
                disc.norm.eval()
                mixed = disc.norm(mixed)
                disc.norm.train(disc.training)
        mixed = mixed.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(disc.logit_of_normalized(mixed).sum(), mixed, create_graph=True)
        return ((grad.norm(dim=1) - 1) ** 2).mean()

    def _on_step(self) -> bool:
        if self.num_timesteps < getattr(self.model, "learning_starts", 0):
            return True
        if not self.history or self.num_timesteps - self._last_update >= self.update_every:
            self._last_update = self.num_timesteps
            self.update()
        return True


class _StderrProgress(BaseCallback):
    """A tqdm bar over environment steps, written to stderr."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc = total, desc
        self.bar: Any = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train_gail(
    env_id: str,
    states: np.ndarray,
    total_timesteps: int,
    *,
    sac_kwargs: dict[str, Any] | None = None,
    train_episode_steps: int | None = None,
    seed: int = 0,
    update_every: int = 100,
    disc_updates: int = 50,
    disc_batch_size: int = 256,
    disc_learning_rate: float = 3e-4,
    disc_hidden: Sequence[int] = (64, 64),
    grad_penalty: float = 0.0,
    normalize_input: bool = False,
    env: gym.Env[Any, Any] | VecEnv | None = None,
    progress: bool = False,
) -> tuple[Any, GAILUpdate]:
    """SAC trained by state-only GAIL from ``states`` for ``total_timesteps`` steps.

    The env (``gym.make(env_id, max_episode_steps=train_episode_steps)`` unless ``env`` is given) is
    wrapped in :class:`~critwrap.wrappers.rlsp_reward.RLSPReward` without a reward: its own reward is
    replaced (by the discriminator's, in the buffer) and its termination ignored, exactly as Deep
    RLSP's rewards are evaluated; the true reward stays in ``info["true_reward"]``.

    ``grad_penalty`` (default 0, the original baseline) weighs DAC's gradient penalty on the
    discriminator (:class:`GAILUpdate`); ``normalize_input`` standardises its inputs
    (:class:`RunningNorm`, ``imitation``'s default); ``progress`` shows a tqdm bar on stderr.

    Returns ``(model, callback)``: the SAC policy, and the callback holding the discriminator and its
    per-round statistics (``callback.history``).
    """
    from stable_baselines3 import SAC

    from critwrap.wrappers.rlsp_reward import RLSPReward

    if env is None:
        make_kwargs: dict[str, Any] = {}
        if train_episode_steps is not None:
            make_kwargs["max_episode_steps"] = int(train_episode_steps)
        env = RLSPReward(gym.make(env_id, **make_kwargs), ignore_termination=True, warn_unset=False)
    states = np.atleast_2d(np.asarray(states, dtype=np.float32))
    torch.manual_seed(seed)
    callback = GAILUpdate(
        states,
        StateDiscriminator(states.shape[1], disc_hidden, normalize_input=normalize_input),
        update_every=update_every,
        disc_updates=disc_updates,
        batch_size=disc_batch_size,
        learning_rate=disc_learning_rate,
        grad_penalty=grad_penalty,
        seed=seed,
    )
    kwargs: dict[str, Any] = dict(sac_kwargs or {})
    if kwargs.get("learning_starts", 100) < 1:
        kwargs["learning_starts"] = 1
    model = SAC("MlpPolicy", env, seed=seed, device="cpu", replay_buffer_class=GAILReplayBuffer, **kwargs)
    callbacks: list[BaseCallback] = [callback]
    if progress:  # a plain tqdm bar on stderr (SB3's rich bar prints to stdout, where the zoo's JSON goes)
        callbacks.append(_StderrProgress(int(total_timesteps), "GAIL"))
    model.learn(int(total_timesteps), callback=CallbackList(callbacks))
    return model, callback
