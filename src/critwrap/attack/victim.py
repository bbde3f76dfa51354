"""The attacked agent: an SB3 / sb3-contrib model seen as greedy actions, differentiable outputs and importance.

:class:`Victim` wraps a trained model and gives the attack code three things:

* :meth:`Victim.act`: the greedy (deterministic) action for one observation, as ``model.predict`` gives it;
* :meth:`Victim.output`: a differentiable function of a float observation batch (in the env's layout
  and units, e.g. uint8 images as floats in [0, 255]): action logits for discrete actions (Q-values for
  DQN, mean quantiles for QR-DQN, the categorical logits for actor-critic policies), the deterministic
  action for continuous ones. FGSM / PGD differentiate it;
* :meth:`Victim.importance`: the victim's own importance of each state, the baseline the detector must
  beat: the Q-value spread (max - min over actions) for DQN / QR-DQN; minus the entropy of the action
  distribution for actor-critic policies with discrete actions and for SAC / TQC; the state value
  ``V(s)`` for actor-critic policies with continuous actions (their Gaussian's spread does not depend on
  the state); the critic's ``Q(s, mu(s))`` for TD3 / DDPG.

Example:
    >>> import numpy as np
    >>> from stable_baselines3 import DQN
    >>> from critwrap.attack.victim import Victim
    >>> victim = Victim(DQN("MlpPolicy", "CartPole-v1", learning_starts=0))
    >>> obs = np.zeros((3, 4), dtype=np.float32)
    >>> victim.kind, victim.discrete, victim.importance(obs).shape
    ('q', True, (3,))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["IMPORTANCE_METHODS", "UnsupportedVictimError", "Victim"]

IMPORTANCE_METHODS = ("auto", "q-spread", "entropy", "value")


class UnsupportedVictimError(TypeError):
    """The model (or its action / observation space) is not supported by the requested attack."""


class Victim:
    """An SB3 / sb3-contrib model under attack (see the module docstring).

    Args:
        model: a trained ``BaseAlgorithm`` (DQN, QR-DQN, PPO, A2C, TRPO, SAC, TQC, TD3, DDPG) or its policy.
            Recurrent policies are refused (their hidden state makes a step's output depend on the past).
        importance: ``"auto"`` (the rule of the module docstring), ``"q-spread"``, ``"entropy"`` or ``"value"``.
        sample: act by *sampling* from the policy's action distribution instead of greedily (actor-critic
            policies with discrete actions: PPO, A2C, TRPO). The sample at step ``t`` of the episode
            reset with seed ``s`` uses a uniform number drawn from a generator keyed by
            ``(sample_seed, s, t)`` (inverse CDF), so replaying a seed reproduces the clean episode's
            actions exactly up to the first attacked step, as the replay protocol requires. The attack
            protocols announce episodes and steps through :meth:`start_episode` / :meth:`at_step`.
            Useful where the greedy policy is much worse than the sampled one (PPO on Atari often gets
            stuck when greedy).
        sample_seed: the first key of the sampling generator.
    """

    def __init__(
        self, model: Any, importance: str = "auto", sample: bool = False, sample_seed: int = 0
    ) -> None:
        policy = getattr(model, "policy", model)
        if not (hasattr(policy, "predict") and hasattr(policy, "action_space")):
            raise TypeError(
                f"the victim must be a Stable-Baselines3 / sb3-contrib model (or its policy), got {type(model).__name__}"
            )
        self.model = model
        self.policy = policy
        if type(policy).__name__.startswith("Recurrent") or hasattr(policy, "lstm_actor"):
            raise UnsupportedVictimError(
                f"{type(policy).__name__} is recurrent: its action depends on a hidden state, which the "
                "attack code does not carry. Attack a feed-forward policy (PPO, A2C, DQN, QR-DQN, SAC, TD3...)."
            )
        self.action_space: gym.Space = policy.action_space
        self.observation_space: gym.Space = policy.observation_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if hasattr(policy, "quantile_net"):
            self.kind = "quantile"
        elif hasattr(policy, "q_net"):
            self.kind = "q"
        elif hasattr(policy, "get_distribution") and hasattr(policy, "predict_values"):
            self.kind = "actor_critic"
        elif hasattr(policy, "actor") and hasattr(getattr(policy, "actor", None), "get_action_dist_params"):
            self.kind = "sac"
        elif hasattr(policy, "actor") and hasattr(policy, "critic"):
            self.kind = "td3"
        else:
            self.kind = "other"
        if importance not in IMPORTANCE_METHODS:
            raise ValueError(f"importance must be one of {IMPORTANCE_METHODS}, got {importance!r}")
        self.importance_method = self._auto_importance() if importance == "auto" else importance
        self.sample = bool(sample)
        self.sample_seed = int(sample_seed)
        self._episode_key = 0
        self._t = 0
        if self.sample and not (self.kind == "actor_critic" and self.discrete):
            raise UnsupportedVictimError(
                f"sample=True needs an actor-critic policy with discrete actions (PPO, A2C, TRPO), got "
                f"{type(policy).__name__} with action space {self.action_space}"
            )
        if self.sample_seed < 0:
            raise ValueError(f"sample_seed must be >= 0, got {sample_seed}")

    # ---- helpers -------------------------------------------------------------------------------
    def _auto_importance(self) -> str:
        if self.kind in ("q", "quantile"):
            return "q-spread"
        if self.kind == "actor_critic":
            return "entropy" if self.discrete else "value"
        if self.kind == "sac":
            return "entropy"
        if self.kind == "td3":
            return "value"
        return "unsupported"

    @property
    def device(self) -> torch.device:
        return self.policy.device  # type: ignore[no-any-return]

    def _space_check(self) -> gym.spaces.Box:
        space = self.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise UnsupportedVictimError(
                f"gradient attacks and victim importance need Box observations, got {space}; Dict / Discrete "
                "observations are not supported (use the 'action' perturbation or a user function)"
            )
        return space

    def to_policy_layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch ``(B, *obs_shape)`` in the env's layout -> the policy's layout (HWC -> CHW where SB3 transposed)."""
        shape = tuple(self._space_check().shape)
        if tuple(x.shape[1:]) == shape:
            return x
        if x.ndim == 4 and (x.shape[3], x.shape[1], x.shape[2]) == shape:
            return x.permute(0, 3, 1, 2)
        raise ValueError(
            f"observations of shape {tuple(x.shape[1:])} do not match the victim's observation space {shape} "
            "(nor its channel-last transpose); is this the env the model was trained on?"
        )

    def start_episode(self, seed: int | None) -> None:
        """Key the sampled actions of the episode reset with ``seed`` (no effect on a greedy victim)."""
        self._episode_key = 0 if seed is None else int(seed) + 1
        if self._episode_key < 0:
            raise ValueError(f"a sampling victim needs reset seeds >= 0, got {seed}")
        self._t = 0

    def at_step(self, t: int) -> None:
        """The step index of the next :meth:`act` calls (no effect on a greedy victim)."""
        self._t = int(t)

    def act(self, obs: Any) -> Any:
        """The action for one (unbatched) observation: greedy, as ``model.predict(obs, deterministic=True)``,
        or with ``sample=True`` the keyed sample described in the class docstring."""
        if not self.sample:
            action, _ = self.policy.predict(obs, deterministic=True)
            return action
        import torch

        x = torch.as_tensor(np.asarray(obs)[None], device=self.device).float()
        with torch.no_grad():
            probs = torch.softmax(self.output(x), dim=-1)[0].double().cpu().numpy()
        u = np.random.default_rng([self.sample_seed, self._episode_key, self._t]).random()
        cdf = np.cumsum(probs)
        return np.int64(min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(probs) - 1))

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for a batch ``(B, *obs_shape)`` of observations (env layout)."""
        if self.sample:
            raise UnsupportedVictimError(
                "act_batch gives greedy actions only; a sampling victim acts per step"
            )
        actions, _ = self.policy.predict(np.asarray(obs), deterministic=True)
        return np.asarray(actions)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable output for a float batch in the env's layout and units: logits (B, n) or actions (B, d)."""
        obs = self.to_policy_layout(x)
        p = self.policy
        if self.kind == "q":
            return p.q_net(obs)  # type: ignore[no-any-return]
        if self.kind == "quantile":
            return p.quantile_net(obs).mean(dim=1)  # type: ignore[no-any-return]
        if self.kind == "actor_critic":
            dist = p.get_distribution(obs).distribution
            if self.discrete:
                return dist.logits  # type: ignore[no-any-return]
            if isinstance(self.action_space, gym.spaces.Box):
                return dist.mean  # type: ignore[no-any-return]
        if self.kind == "sac":
            mean, _, _ = p.actor.get_action_dist_params(obs)
            return mean.tanh()  # type: ignore[no-any-return]
        if self.kind == "td3":
            return p.actor(obs)  # type: ignore[no-any-return]
        raise UnsupportedVictimError(
            f"gradient attacks do not support {type(p).__name__} with action space {self.action_space}: "
            "supported are Discrete actions (DQN, QR-DQN, PPO, A2C, TRPO) and Box actions (PPO, A2C, SAC, "
            "TQC, TD3, DDPG). Use the 'action' perturbation or a user function instead."
        )

    def importance(self, obs: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The victim's importance of each observation of a batch ``(T, *obs_shape)`` -> float array (T,)."""
        import torch

        method = self.importance_method
        if method == "unsupported":
            raise UnsupportedVictimError(
                f"no victim-importance rule for {type(self.policy).__name__}; give importance='q-spread', "
                "'entropy' or 'value' explicitly where the policy supports it"
            )
        obs = np.asarray(obs)
        out: list[np.ndarray] = []
        with torch.no_grad():
            for i in range(0, len(obs), batch_size):
                x = torch.as_tensor(obs[i : i + batch_size], device=self.device).float()
                out.append(self._importance_batch(self.to_policy_layout(x), method).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def _importance_batch(self, obs: torch.Tensor, method: str) -> torch.Tensor:
        p = self.policy
        if method == "q-spread":
            if self.kind == "q":
                q = p.q_net(obs)
            elif self.kind == "quantile":
                q = p.quantile_net(obs).mean(dim=1)
            elif self.kind == "actor_critic" and self.discrete:
                q = p.get_distribution(
                    obs
                ).distribution.logits  # logit spread: the same idea for a softmax policy
            else:
                raise UnsupportedVictimError(
                    f"'q-spread' needs a value-based victim (DQN, QR-DQN), got {self.kind}"
                )
            return q.max(dim=1).values - q.min(dim=1).values
        if method == "entropy":
            if self.kind == "actor_critic":
                return -p.get_distribution(obs).entropy().reshape(len(obs), -1).sum(dim=1)
            if self.kind == "sac":
                _, log_std, _ = p.actor.get_action_dist_params(obs)
                return -log_std.sum(dim=1)
            raise UnsupportedVictimError(f"'entropy' needs an actor-critic or SAC victim, got {self.kind}")
        if method == "value":
            if self.kind == "actor_critic":
                return p.predict_values(obs).reshape(-1)
            if self.kind in ("td3", "sac"):
                action = p.actor(obs) if self.kind == "td3" else p.actor.get_action_dist_params(obs)[0].tanh()
                return p.critic.q1_forward(obs, action).reshape(-1)
            if self.kind in ("q", "quantile"):
                q = p.q_net(obs) if self.kind == "q" else p.quantile_net(obs).mean(dim=1)
                return q.max(dim=1).values
            raise UnsupportedVictimError(f"'value' is not defined for {self.kind}")
        raise ValueError(f"unknown importance method {method!r}")
