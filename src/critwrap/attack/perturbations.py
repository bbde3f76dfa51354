"""What an attack does at an attacked step: change the action, or perturb what the victim observes.

* :class:`RandomActionPerturbation` (``"action"``): the victim's action is replaced by a uniformly random
  *different* action (Discrete action spaces), as in the EDGE / Deep State Identifier Pong attack.
* :class:`FGSM` (``"fgsm"``) and :class:`PGD` (``"pgd"``): an L-infinity-bounded observation
  perturbation computed against the victim (:class:`~critwrap.attack.victim.Victim`); the victim then acts
  on the perturbed observation (the environment's state is untouched). For discrete actions the loss is
  the cross-entropy of the victim's logits (Q-values for DQN) against its clean greedy action; for
  continuous actions the squared distance between the perturbed and the clean deterministic action
  (FGSM then starts from a small random offset, where that gradient is not zero).
  ``epsilon`` is in the observation's own units: pixel levels (0-255) for uint8 images, where it is
  rounded down to an integer and the perturbed image stays uint8. Results are clipped to the
  observation space's bounds.
* :class:`CallablePerturbation`: a user function, ``fn(obs, action, rng) -> action`` (``target="action"``)
  or ``fn(obs, rng) -> obs`` (``target="observation"``).

Example:
    >>> import numpy as np, gymnasium as gym
    >>> from critwrap.attack.perturbations import RandomActionPerturbation
    >>> p = RandomActionPerturbation()
    >>> p.check(gym.spaces.Box(0, 1, (2,)), gym.spaces.Discrete(3), victim=None)
    >>> int(p.perturb_action(1, None, np.random.default_rng(0))) in (0, 2)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from critwrap.attack.victim import UnsupportedVictimError, Victim

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FGSM",
    "PERTURBATIONS",
    "PGD",
    "CallablePerturbation",
    "Perturbation",
    "RandomActionPerturbation",
    "make_perturbation",
]


class Perturbation:
    """Base class. ``target`` is ``"action"`` (implement :meth:`perturb_action`) or ``"observation"``
    (implement :meth:`perturb_observation`); :meth:`check` raises a clear error for spaces / victims the
    perturbation cannot handle, before any episode runs."""

    target: ClassVar[str] = "action"
    needs_victim: ClassVar[bool] = False

    def check(self, observation_space: gym.Space, action_space: gym.Space, victim: Victim | None) -> None:
        if self.needs_victim and victim is None:
            raise ValueError(f"{type(self).__name__} is computed against the victim policy: give victim=")

    def perturb_action(self, action: Any, obs: Any, rng: np.random.Generator) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not perturb actions")

    def perturb_observation(
        self, obs: np.ndarray, victim: Victim, rng: np.random.Generator, observation_space: gym.Space
    ) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not perturb observations")

    def describe(self) -> str:
        return type(self).__name__


class RandomActionPerturbation(Perturbation):
    """Replace the action by a uniformly random different one (``Discrete`` action spaces only)."""

    target: ClassVar[str] = "action"

    def check(self, observation_space: gym.Space, action_space: gym.Space, victim: Victim | None) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise UnsupportedVictimError(
                f"the 'action' perturbation (a random different action) needs a Discrete action space, got "
                f"{action_space}; for continuous actions use 'fgsm' / 'pgd' or a user function"
            )
        if int(action_space.n) < 2:
            raise UnsupportedVictimError("the action space has a single action: there is no different one")
        self._n = int(action_space.n)
        self._start = int(action_space.start)

    def perturb_action(self, action: Any, obs: Any, rng: np.random.Generator) -> Any:
        n = getattr(self, "_n", None)
        if n is None:
            raise RuntimeError("call check(observation_space, action_space, victim) first")
        a = int(np.asarray(action).reshape(-1)[0]) - self._start
        other = int(rng.integers(n - 1))
        new = other + (other >= a)
        return np.asarray(new + self._start, dtype=np.asarray(action).dtype)

    def describe(self) -> str:
        return "random different action"


def _bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray, bool]:
    if not isinstance(space, gym.spaces.Box):
        raise UnsupportedVictimError(
            f"FGSM / PGD perturb Box observations (vectors or images), got {space}; Dict / Discrete "
            "observations are not supported (use the 'action' perturbation or a user function)"
        )
    integer = np.issubdtype(space.dtype, np.integer)
    return space.low.astype(np.float64), space.high.astype(np.float64), bool(integer)


class _GradientAttack(Perturbation):
    target: ClassVar[str] = "observation"
    needs_victim: ClassVar[bool] = True

    def __init__(self, epsilon: float) -> None:
        if not np.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(
                f"epsilon must be a positive number (L-inf budget in observation units), got {epsilon}"
            )
        self.epsilon = float(epsilon)

    def check(self, observation_space: gym.Space, action_space: gym.Space, victim: Victim | None) -> None:
        super().check(observation_space, action_space, victim)
        _, _, integer = _bounds(observation_space)
        if integer and self.epsilon < 1:
            raise ValueError(
                f"epsilon {self.epsilon} is below one level of the integer observations ({observation_space.dtype}): "
                "the rounded perturbation would be zero; epsilon is in observation units (e.g. 8 of 255 pixel levels)"
            )
        assert victim is not None
        if not isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
            raise UnsupportedVictimError(
                f"FGSM / PGD support Discrete and Box action spaces, got {action_space}"
            )
        victim._space_check()
        x = np.asarray(observation_space.sample())[None]
        import torch

        with torch.no_grad():
            victim.output(torch.as_tensor(x, device=victim.device).float())  # raises for unsupported victims

    def budget(self, observation_space: gym.Space) -> float:
        """The effective L-inf budget (rounded down to an integer for integer observations)."""
        _, _, integer = _bounds(observation_space)
        return float(np.floor(self.epsilon)) if integer else self.epsilon

    def _loss(self, victim: Victim, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        out = victim.output(x)
        if victim.discrete:
            return F.cross_entropy(out, target)
        return ((out - target) ** 2).sum()

    def _project(
        self, x0: torch.Tensor, x: torch.Tensor, eps: float, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        import torch

        x = torch.max(torch.min(x, x0 + eps), x0 - eps)
        return torch.max(torch.min(x, high), low)

    def _run(
        self,
        obs: np.ndarray,
        victim: Victim,
        rng: np.random.Generator,
        observation_space: gym.Space,
        steps: int,
        alpha: float,
        random_start: bool,
    ) -> np.ndarray:
        import torch

        low_np, high_np, integer = _bounds(observation_space)
        eps = self.budget(observation_space)
        obs = np.asarray(obs)
        dev = victim.device
        x0 = torch.as_tensor(obs[None], device=dev).float()
        low = torch.as_tensor(low_np[None], device=dev).float()
        high = torch.as_tensor(high_np[None], device=dev).float()
        with torch.no_grad():
            clean = victim.output(x0)
            target = clean.argmax(dim=1) if victim.discrete else clean.detach()
        if random_start:
            start = rng.uniform(-1.0, 1.0, size=x0.shape) * (eps if steps > 1 else 0.1 * eps)
            x = self._project(x0, x0 + torch.as_tensor(start, device=dev).float(), eps, low, high)
        else:
            x = x0.clone()
        best_x, best_loss = x.detach().clone(), -float("inf")
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            loss = self._loss(victim, x, target)
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = self._project(x0, x + alpha * grad.sign(), eps, low, high)
                if integer:
                    x = self._project(x0, torch.round(x), eps, low, high)
                new_loss = float(self._loss(victim, x, target))
                if new_loss > best_loss:
                    best_x, best_loss = x.detach().clone(), new_loss
        out = best_x[0].cpu().numpy()
        if integer:
            out = np.clip(np.rint(out), low_np, high_np)
        return out.astype(observation_space.dtype if observation_space.dtype is not None else obs.dtype)


class FGSM(_GradientAttack):
    """Fast gradient sign method: one step of size ``epsilon`` along the sign of the loss gradient.

    Continuous actions: the gradient of the action distance is zero at the clean observation, so the
    step starts from a uniform random offset of at most ``0.1 * epsilon``.
    """

    def perturb_observation(
        self, obs: np.ndarray, victim: Victim, rng: np.random.Generator, observation_space: gym.Space
    ) -> np.ndarray:
        eps = self.budget(observation_space)
        return self._run(obs, victim, rng, observation_space, 1, eps, random_start=not victim.discrete)

    def describe(self) -> str:
        return f"FGSM (L-inf {self.epsilon:g})"


class PGD(_GradientAttack):
    """Projected gradient descent (Madry et al.): ``steps`` sign-gradient steps of ``alpha`` (default
    ``2.5 * epsilon / steps``) from a uniform random start in the ``epsilon`` ball, projected back onto the
    ball and the observation bounds after each step; the iterate with the highest loss is returned."""

    def __init__(
        self, epsilon: float, steps: int = 10, alpha: float | None = None, random_start: bool = True
    ) -> None:
        super().__init__(epsilon)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.alpha = alpha
        self.random_start = bool(random_start)

    def perturb_observation(
        self, obs: np.ndarray, victim: Victim, rng: np.random.Generator, observation_space: gym.Space
    ) -> np.ndarray:
        eps = self.budget(observation_space)
        alpha = self.alpha if self.alpha is not None else 2.5 * eps / self.steps
        _, _, integer = _bounds(observation_space)
        if integer:
            alpha = max(alpha, 1.0)  # below one level the rounding would undo every step
        return self._run(obs, victim, rng, observation_space, self.steps, alpha, self.random_start)

    def describe(self) -> str:
        return f"PGD (L-inf {self.epsilon:g}, {self.steps} steps)"


class CallablePerturbation(Perturbation):
    """A user function: ``fn(obs, action, rng) -> action`` (``target="action"``) or
    ``fn(obs, rng) -> obs`` (``target="observation"``)."""

    def __init__(self, fn: Callable[..., Any], target: str = "action") -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if target not in ("action", "observation"):
            raise ValueError(f"target must be 'action' or 'observation', got {target!r}")
        self.fn = fn
        self.target = target  # type: ignore[misc]

    def perturb_action(self, action: Any, obs: Any, rng: np.random.Generator) -> Any:
        return self.fn(obs, action, rng)

    def perturb_observation(
        self, obs: np.ndarray, victim: Victim, rng: np.random.Generator, observation_space: gym.Space
    ) -> np.ndarray:
        return np.asarray(self.fn(obs, rng))

    def describe(self) -> str:
        return f"user function {getattr(self.fn, '__name__', type(self.fn).__name__)} ({self.target})"


PERTURBATIONS = ("action", "fgsm", "pgd")


def make_perturbation(
    spec: str | Perturbation | Callable[..., Any], *, epsilon: float | None = None, pgd_steps: int = 10
) -> Perturbation:
    """``"action"`` / ``"fgsm"`` / ``"pgd"`` (with ``epsilon``), a :class:`Perturbation`, or a callable
    (an action-replacing user function)."""
    if isinstance(spec, Perturbation):
        return spec
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in ("action", "random-action", "random_action"):
            return RandomActionPerturbation()
        if name in ("fgsm", "pgd"):
            if epsilon is None:
                raise ValueError(
                    f"the {name!r} perturbation needs epsilon (its L-inf budget in observation units, e.g. 8 "
                    "pixel levels for uint8 images, 0.05 for normalised vectors)"
                )
            return FGSM(epsilon) if name == "fgsm" else PGD(epsilon, steps=pgd_steps)
        raise ValueError(
            f"unknown perturbation {spec!r}; use one of {', '.join(PERTURBATIONS)} or a callable"
        )
    if callable(spec):
        return CallablePerturbation(spec, target="action")
    raise TypeError(f"a perturbation is a name, a Perturbation or a callable, got {type(spec).__name__}")
