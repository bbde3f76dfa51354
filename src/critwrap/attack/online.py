"""Evaluate the online protocol: attack while the episode runs, when a score passes a threshold.

:func:`evaluate_online_attack` is the evaluation routine of the online protocol that
:class:`~critwrap.attack.wrapper.CriticalAttack` implements as a wrapper. For each seed it plays one clean
episode, then one attacked episode per method, each deciding *during* the episode, from what it has seen
so far, which steps to attack (at most ``k`` per episode):

* ``"detector"``: the detector scores the frames so far (``detector.score(frames[:t + 1])``, or the last
  ``window`` of them) and the step is attacked when the score of the current frame reaches ``threshold``.
  Unlike the replay protocol, the score never sees the future of the episode, and after a perturbation
  the detector keeps scoring the perturbed episode, so later attacks follow what actually happens.
* ``"victim"``: the step is attacked when the victim's own importance of the current observation (Q-value
  spread, policy entropy or value: :meth:`Victim.importance`) reaches ``victim_threshold``.
* ``"random"``: as many steps as the detector attacked in the same seed (``k`` when the detector is not
  evaluated), drawn uniformly from the steps of the clean episode before it starts: the same number of
  perturbations at uninformed times.

``min_gap`` (default 1: none) is a cooldown for the detector and victim methods: after an attacked step,
the next ``min_gap - 1`` steps are not attacked whatever their score, so that a smooth score that stays
above the threshold does not spend the whole budget on one run of consecutive steps (the online
counterpart of the replay protocol's ``"detector-spaced"``). ``delay`` (default 0) makes the detector's
method attack that many steps after the step whose score passed the threshold (the replay protocol's
negative ``lead``).

Thresholds left as ``None`` are calibrated on ``calibration_episodes`` clean episodes of seeds disjoint
from the evaluation seeds: the ``1 - rate`` quantile of the per-step scores, with ``rate`` (default
``k / mean clean episode length``) the share of steps that should pass, so that a clean episode has about
``k`` candidate steps. The thresholds and the calibration seeds are kept in ``report.settings``.

Cost: scoring every prefix costs O(T^2) frame encodings per episode of T steps (calibration included);
for long episodes (Atari) pass ``window`` (O(T * window)).

Every attacked step is counted from what was actually perturbed (``n_perturbed`` per episode; an episode
where the score never passed the threshold counts as attacked 0 times, and ``attacked_episodes`` in the
table says how many were attacked at all).

Example:
    >>> import gymnasium as gym
    >>> from stable_baselines3 import DQN
    >>> from critwrap.attack import Victim
    >>> from critwrap.attack.online import evaluate_online_attack
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> env = gym.make("CartPole-v1")
    >>> victim = Victim(DQN("MlpPolicy", env, learning_starts=0))
    >>> report = evaluate_online_attack(env, victim, RandomDetector(seed=0), k=2, episodes=3, calibration_episodes=2)
    >>> report.settings["protocol"]
    'online'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.attack.evaluate import METHODS, AttackReport, detector_spread, flat_detector_check
from critwrap.attack.perturbations import Perturbation, make_perturbation
from critwrap.attack.protocols import (
    EpisodeRecord,
    FrameSource,
    run_episode,
    run_online_episode,
    score_frames,
)
from critwrap.attack.victim import Victim

__all__ = ["calibrate_threshold", "evaluate_online_attack", "prefix_scores", "run_online_episode"]

ShouldAttack = Callable[[int, EpisodeRecord], bool]


def prefix_scores(detector: Any, frames: Sequence[np.ndarray], window: int | None = None) -> np.ndarray:
    """The causal score of every frame: frame ``t`` scored with ``frames[:t + 1]`` (or its last ``window``)."""
    out = np.empty(len(frames), dtype=np.float64)
    for t in range(len(frames)):
        lo = 0 if window is None else max(0, t + 1 - window)
        scores = score_frames(detector, np.stack(frames[lo : t + 1]))
        out[t] = scores[-1]
    return out


def calibrate_threshold(scores: Sequence[np.ndarray], rate: float) -> float:
    """The ``1 - rate`` quantile of all per-step scores (``-inf`` when ``rate >= 1``: every step passes)."""
    if not 0.0 < rate:
        raise ValueError(f"rate (the share of steps that pass) must be > 0, got {rate}")
    flat = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores])
    if flat.size == 0:
        raise ValueError("no scores to calibrate a threshold on")
    if rate >= 1.0:
        return float("-inf")
    return float(np.quantile(flat, 1.0 - rate))


def _planned_rule(plan: set[int]) -> ShouldAttack:
    """Attack exactly the steps in ``plan`` (the random method's uninformed timing)."""

    def rule(t: int, rec: EpisodeRecord) -> bool:
        return t in plan

    return rule


def evaluate_online_attack(
    env: gym.Env[Any, Any],
    victim: Victim | Any,
    detector: Any,
    *,
    k: int,
    perturbation: str | Perturbation | Callable[..., Any] = "action",
    episodes: int = 100,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    frames: FrameSource = "observations",
    epsilon: float | None = None,
    threshold: float | None = None,
    victim_threshold: float | None = None,
    rate: float | None = None,
    calibration_episodes: int = 20,
    calibration_seed: int | None = None,
    window: int | None = None,
    win_threshold: float = 0.0,
    n_boot: int = 2000,
    progress: Callable[[int, int], None] | None = None,
    min_gap: int = 1,
    delay: int = 0,
) -> AttackReport:
    """The online-protocol comparison over ``episodes`` seeds ``seed, seed + 1, ...`` (module docstring).

    Args:
        env: a Gymnasium env (it need not be deterministic: nothing is replayed).
        victim: a :class:`Victim` or an SB3 model.
        detector: anything with ``score(frames) -> (T,)``; may be ``None`` without ``"detector"`` in ``methods``.
        k: the budget: at most ``k`` attacked steps per episode.
        perturbation: ``"action"``, ``"fgsm"``, ``"pgd"`` (with ``epsilon``), a Perturbation or a callable.
        methods: any of ``"detector"``, ``"random"``, ``"victim"``.
        frames: what the detector scores (see :func:`critwrap.attack.protocols.get_frame`).
        threshold / victim_threshold: attack when the detector's / victim's score is at least this;
            ``None``: calibrated on clean episodes (see ``rate``).
        rate: share of a clean episode's steps whose score should pass a calibrated threshold
            (default ``k / mean clean length``).
        calibration_episodes / calibration_seed: the clean episodes thresholds are calibrated on, seeds
            ``calibration_seed, +1, ...`` (default: right after the evaluation seeds, so disjoint from them).
        window: the detector scores only the last ``window`` frames (``None``: the whole episode so far).
        win_threshold: an episode is won when its return is above this.
        progress: called as ``progress(done, total)`` after each evaluation seed.
        min_gap: the detector and victim methods attack no two steps closer than this (a cooldown; 1: none).
        delay: the detector's method attacks ``delay`` steps after the step whose score passed the threshold
            (critwrap's addition; the online counterpart of the replay protocol's negative lead: the score
            of step ``t - delay``, computed from the frames up to it, decides step ``t``). Default 0.
    """
    t0 = time.perf_counter()
    if not isinstance(victim, Victim):
        victim = Victim(victim)
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1 attacked steps, got {k}")
    k = int(k)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if "detector" in methods and detector is None:
        raise ValueError("the 'detector' method needs a detector")
    if window is not None and int(window) < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    if rate is not None and not 0.0 < rate:
        raise ValueError(f"rate must be > 0, got {rate}")
    if int(min_gap) != min_gap or min_gap < 1:
        raise ValueError(f"min_gap must be an integer >= 1 steps, got {min_gap}")
    gap = int(min_gap)
    if isinstance(delay, bool) or int(delay) != delay or delay < 0:
        raise ValueError(
            f"delay must be an integer >= 0 steps (the online protocol cannot attack before a frame it has "
            f"not seen), got {delay!r}"
        )
    delay = int(delay)
    pert = make_perturbation(perturbation, epsilon=epsilon)
    pert.check(env.observation_space, env.action_space, victim)
    if "victim" in methods:
        victim.importance(np.asarray(env.observation_space.sample())[None])  # fail early, before any episode

    need_det = "detector" in methods and threshold is None
    need_vic = "victim" in methods and victim_threshold is None
    cal_seed = int(seed) + int(episodes) if calibration_seed is None else int(calibration_seed)
    cal_seeds: list[int] = []
    det_scores: list[np.ndarray] = []
    if need_det or need_vic:
        if calibration_episodes < 1:
            raise ValueError(
                f"calibration_episodes must be >= 1 when a threshold is left to calibrate, got {calibration_episodes}"
            )
        cal_seeds = [cal_seed + i for i in range(calibration_episodes)]
        vic_scores, lengths_cal = [], []
        for s in cal_seeds:
            rec = run_episode(env, victim, seed=s, frames=frames, keep_frames=need_det)
            lengths_cal.append(rec.length)
            if need_det:
                det_scores.append(prefix_scores(detector, rec.frames, window))
            if need_vic:
                vic_scores.append(victim.importance(np.stack([np.asarray(o) for o in rec.observations])))
        use_rate = float(rate) if rate is not None else k / float(np.mean(lengths_cal))
        if need_det:
            threshold = calibrate_threshold(det_scores, use_rate)
        if need_vic:
            victim_threshold = calibrate_threshold(vic_scores, use_rate)
    else:
        use_rate = float("nan") if rate is None else float(rate)

    def detector_rule(t: int, rec: EpisodeRecord) -> bool:
        hi = len(rec.frames) - delay  # the frames up to step t - delay
        if hi < 1:
            return False
        lo = 0 if window is None else max(0, hi - int(window))
        scores = score_frames(detector, np.stack(rec.frames[lo:hi]))
        return bool(scores[-1] >= float(threshold))  # type: ignore[arg-type]

    def victim_rule(t: int, rec: EpisodeRecord) -> bool:
        imp = victim.importance(np.asarray(rec.observations[-1])[None])
        return bool(float(np.asarray(imp)[0]) >= float(victim_threshold))  # type: ignore[arg-type]

    def cooled(rule: ShouldAttack) -> ShouldAttack:
        if gap <= 1:
            return rule

        def gated(t: int, rec: EpisodeRecord) -> bool:  # the score is not even computed during the cooldown
            return (not rec.planned_steps or t - rec.planned_steps[-1] >= gap) and rule(t, rec)

        return gated

    seeds = [seed + i for i in range(episodes)]
    names = ["clean", *methods]
    returns: dict[str, list[float]] = {m: [] for m in names}
    lengths: dict[str, list[int]] = {m: [] for m in names}
    planned: dict[str, list[int]] = {m: [] for m in names}
    perturbed: dict[str, list[int]] = {m: [] for m in names}
    changed: dict[str, list[int]] = {m: [] for m in names}
    # the detector runs first so that random can match its number of attacks in the same seed
    order = sorted(methods, key=lambda m: {"detector": 0, "victim": 1, "random": 2}[m])
    for s in seeds:
        clean = run_episode(env, victim, seed=s, frames=frames, keep_frames=False)
        returns["clean"].append(clean.episode_return)
        lengths["clean"].append(clean.length)
        planned["clean"].append(0)
        perturbed["clean"].append(0)
        changed["clean"].append(0)
        n_det: int | None = None
        for m in order:
            j = methods.index(m)
            gen = np.random.default_rng([int(s), 2, j, k])
            if m == "detector":
                rule: ShouldAttack = cooled(detector_rule)
                use_frames: FrameSource | None = frames
            elif m == "victim":
                rule, use_frames = cooled(victim_rule), None
            else:
                n = k if n_det is None else n_det
                n = min(n, clean.length)
                plan = set(
                    np.random.default_rng([int(s), 1, k]).choice(clean.length, size=n, replace=False).tolist()
                )
                rule, use_frames = _planned_rule(plan), None
            rec = run_online_episode(
                env, victim, seed=s, k=k, should_attack=rule, perturbation=pert, rng=gen, frames=use_frames
            )
            if rec.perturbed_steps != rec.planned_steps:  # never report an unattacked step as attacked
                raise RuntimeError(
                    f"seed {s}, {m}: decided {rec.planned_steps}, but perturbed {rec.perturbed_steps}"
                )
            if (
                m != "random"
                and gap > 1
                and len(rec.planned_steps) > 1
                and min(np.diff(rec.planned_steps)) < gap
            ):
                raise RuntimeError(f"seed {s}, {m}: attacked {rec.planned_steps}, closer than min_gap={gap}")
            if m == "detector":
                n_det = rec.n_perturbed
            returns[m].append(rec.episode_return)
            lengths[m].append(rec.length)
            planned[m].append(len(rec.planned_steps))
            perturbed[m].append(rec.n_perturbed)
            changed[m].append(int(np.sum(rec.action_changed)))
        if progress is not None:
            progress(len(returns["clean"]), len(seeds))

    return AttackReport(
        seeds=seeds,
        k=k,
        perturbation=pert.describe(),
        methods=methods,
        returns={m: np.asarray(v, dtype=np.float64) for m, v in returns.items()},
        lengths={m: np.asarray(v) for m, v in lengths.items()},
        n_planned={m: np.asarray(v) for m, v in planned.items()},
        n_perturbed={m: np.asarray(v) for m, v in perturbed.items()},
        n_action_changed={m: np.asarray(v) for m, v in changed.items()},
        win_threshold=float(win_threshold),
        n_boot=n_boot,
        seconds=time.perf_counter() - t0,
        settings={
            "protocol": "online",
            "threshold": None if threshold is None else float(threshold),
            "victim_threshold": None if victim_threshold is None else float(victim_threshold),
            "rate": use_rate,
            "calibration_seeds": cal_seeds,
            "window": window,
            "min_gap": gap,
            "delay": delay,
            "random_matches": "detector" if "detector" in methods else "k",
            "victim_importance": victim.importance_method,
            "victim_sample": victim.sample,
            # the calibration episodes' causal scores: a flat detector is flagged as in the replay protocol
            **(flat_detector_check([detector_spread(x) for x in det_scores if x.size]) if det_scores else {}),
        },
    )
