"""Deep RLSP (Lindner, Shah, Abbeel, Dragan, ICLR 2021): rewards inferred from observed states.

One file per piece of the algorithm:

* :mod:`~critwrap.rlsp.features`: the state VAE whose encoder gives the features ``f(s)``;
* :mod:`~critwrap.rlsp.inverse`: inverse dynamics and the mixture-density inverse policy;
* :mod:`~critwrap.rlsp.gradient`: backward / forward simulation, the gradient estimator, reweighting,
  clipping, the horizon curriculum, and which envs can be simulated from a given state;
* :mod:`~critwrap.rlsp.deep_rlsp`: the outer loop (:class:`DeepRLSP`, :func:`infer_reward`);
* :mod:`~critwrap.rlsp.callback`: :class:`RLSPUpdate`, the outer loop as an SB3 callback;
* :mod:`~critwrap.rlsp.reward`: the saved inferred reward (safetensors + JSON config, format version);
* :mod:`~critwrap.rlsp.baselines`: the AverageFeatures and Waypoints ablations;
* :mod:`~critwrap.rlsp.gail`: the GAIL baseline from the same states (state-only, SB3 off-policy).

The reward is used through the ``rlsp-reward`` wrapper (:class:`critwrap.wrappers.rlsp_reward.RLSPReward`).

Example:
    .. code-block:: console

        python -m critwrap.zoo rlsp --env InvertedPendulum-v5 --states expert_run_dir --n-states 1 --out r.safetensors
        python -m critwrap.zoo train sac InvertedPendulum-v5 --wrapper rlsp-reward:path=r.safetensors \\
            --eval-skip-wrapper rlsp-reward
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DeepRLSP",
    "GAILUpdate",
    "InferredReward",
    "RLSPConfig",
    "RLSPUpdate",
    "average_features_reward",
    "infer_reward",
    "load_reward",
    "train_gail",
    "waypoints_reward",
]

_LAZY = {
    "DeepRLSP": "critwrap.rlsp.deep_rlsp",
    "RLSPConfig": "critwrap.rlsp.deep_rlsp",
    "infer_reward": "critwrap.rlsp.deep_rlsp",
    "InferredReward": "critwrap.rlsp.reward",
    "load_reward": "critwrap.rlsp.reward",
    "RLSPUpdate": "critwrap.rlsp.callback",
    "average_features_reward": "critwrap.rlsp.baselines",
    "waypoints_reward": "critwrap.rlsp.baselines",
    "GAILUpdate": "critwrap.rlsp.gail",
    "train_gail": "critwrap.rlsp.gail",
}

if TYPE_CHECKING:  # pragma: no cover
    from critwrap.rlsp.baselines import average_features_reward, waypoints_reward
    from critwrap.rlsp.callback import RLSPUpdate
    from critwrap.rlsp.deep_rlsp import DeepRLSP, RLSPConfig, infer_reward
    from critwrap.rlsp.gail import GAILUpdate, train_gail
    from critwrap.rlsp.reward import InferredReward, load_reward


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'critwrap.rlsp' has no attribute {name!r}")
