"""The ablations of Deep RLSP: AverageFeatures and Waypoints (same features, same observed states).

* :func:`average_features_reward`: ``theta`` = the normalised sum of the observed states' features, i.e.
  Deep RLSP's starting point without any gradient step (``ablation_AverageFeatures.py``).
* :func:`waypoints_reward`: ``r(s) = max_i w_i . f(s)`` with ``w_i = f(s_i) / |f(s_i)|`` for each observed
  state ``s_i`` (``ablation_Waypoints.py``; the paper calls it the maximum cosine similarity, the code
  does not normalise ``f(s)``, and neither does this).

Both return an :class:`~critwrap.rlsp.reward.InferredReward`, saved and used exactly like Deep RLSP's
(``RLSPReward`` wrapper). The original ran these with the encoder trained in the Deep RLSP run whose
states they use; pass that encoder (``result.rlsp.encoder``).

**GAIL** (the paper's other baseline) is in :mod:`critwrap.rlsp.gail`: the ``imitation`` package, which
the original used, cannot be installed beside critwrap (its release 1.0.1 pins ``gymnasium~=0.29.1``
and ``stable-baselines3~=2.2.1``), so critwrap has its own state-only GAIL for SB3's off-policy
algorithms. Unlike these two, it yields a policy, not a reward.

Example:
    >>> import numpy as np
    >>> from critwrap.rlsp.features import StateVAE
    >>> from critwrap.rlsp.baselines import average_features_reward, waypoints_reward
    >>> vae = StateVAE(input_dim=4, latent_dim=3, layer_size=8)
    >>> states = np.random.default_rng(0).normal(size=(2, 4))
    >>> avg = average_features_reward(vae, states, "InvertedPendulum-v5")
    >>> bool(np.isclose(np.linalg.norm(avg.theta), 1.0))
    True
    >>> waypoints_reward(vae, states, "InvertedPendulum-v5")(states).shape
    (2,)
"""

from __future__ import annotations

import numpy as np

from critwrap.rlsp.features import StateVAE
from critwrap.rlsp.reward import InferredReward

__all__ = ["average_features_reward", "waypoints_reward"]


def _features(encoder: StateVAE, states: np.ndarray) -> np.ndarray:
    f = np.atleast_2d(encoder.encode(np.atleast_2d(np.asarray(states, dtype=np.float64))))
    if len(f) == 0:
        raise ValueError("no observed states given")
    return f


def average_features_reward(encoder: StateVAE, states: np.ndarray, env_id: str) -> InferredReward:
    """``theta = sum_i f(s_i) / |sum_i f(s_i)|``: the AverageFeatures ablation."""
    total = _features(encoder, states).sum(axis=0)
    norm = float(np.linalg.norm(total))
    theta = total / norm if norm > 0 else total
    return InferredReward(
        encoder,
        theta,
        env_id,
        info={"method": "average-features", "n_states": len(np.atleast_2d(states))},
    )


def waypoints_reward(encoder: StateVAE, states: np.ndarray, env_id: str) -> InferredReward:
    """``r(s) = max_i f(s_i) . f(s) / |f(s_i)|``: the Waypoints ablation."""
    f = _features(encoder, states)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    waypoints = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    return InferredReward(
        encoder,
        None,
        env_id,
        kind="waypoints",
        waypoints=waypoints,
        info={"method": "waypoints", "n_states": len(f)},
    )
