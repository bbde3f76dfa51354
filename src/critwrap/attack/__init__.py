"""Adversarial attacks at critical states of any SB3 / sb3-contrib policy.

* Replay protocol (EDGE / Deep State Identifier): play a clean episode with a seed, score its frames
  with a detector, replay the seed and perturb the top-k steps (:func:`evaluate_attack`,
  :func:`replay_attack`); baselines at the same k: random steps and the victim's own importance.
* Online protocol: the :class:`CriticalAttack` wrapper attacks while the episode runs, when the
  detector's score passes a threshold, within a budget of k steps per episode;
  :func:`evaluate_online_attack` evaluates it against random and victim-importance timing.
* Perturbations: a random different action, FGSM / PGD observation perturbations against the victim,
  or a user function (:mod:`critwrap.attack.perturbations`).

Example:
    >>> import gymnasium as gym
    >>> from stable_baselines3 import PPO
    >>> from critwrap.attack import evaluate_attack, format_table
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> env = gym.make("CartPole-v1")
    >>> report = evaluate_attack(env, PPO("MlpPolicy", env), RandomDetector(seed=0), k=3, episodes=4)
    >>> print(format_table(report.table()))  # doctest: +ELLIPSIS
    | condition | k | ...
"""

from critwrap.attack.evaluate import (
    EXTRA_METHODS,
    METHODS,
    AttackReport,
    LeadChoice,
    bootstrap_ci,
    choose_lead,
    evaluate_attack,
    format_table,
)
from critwrap.attack.online import (
    calibrate_threshold,
    evaluate_online_attack,
    prefix_scores,
    run_online_episode,
)
from critwrap.attack.perturbations import (
    FGSM,
    PERTURBATIONS,
    PGD,
    CallablePerturbation,
    Perturbation,
    RandomActionPerturbation,
    make_perturbation,
)
from critwrap.attack.protocols import (
    EpisodeRecord,
    EpisodeTooShortError,
    RenderedFrames,
    ReplayDivergenceError,
    block_steps,
    detector_steps,
    get_frame,
    importance_steps,
    random_steps,
    replay_attack,
    run_episode,
    spaced_top_k,
)
from critwrap.attack.victim import UnsupportedVictimError, Victim
from critwrap.attack.wrapper import CriticalAttack

__all__ = [
    "EXTRA_METHODS",
    "FGSM",
    "METHODS",
    "PERTURBATIONS",
    "PGD",
    "AttackReport",
    "CallablePerturbation",
    "CriticalAttack",
    "EpisodeRecord",
    "EpisodeTooShortError",
    "LeadChoice",
    "Perturbation",
    "RandomActionPerturbation",
    "RenderedFrames",
    "ReplayDivergenceError",
    "UnsupportedVictimError",
    "Victim",
    "block_steps",
    "bootstrap_ci",
    "calibrate_threshold",
    "choose_lead",
    "detector_steps",
    "evaluate_attack",
    "evaluate_online_attack",
    "format_table",
    "get_frame",
    "importance_steps",
    "make_perturbation",
    "prefix_scores",
    "random_steps",
    "replay_attack",
    "run_episode",
    "run_online_episode",
    "spaced_top_k",
]
