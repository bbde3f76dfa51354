"""Evaluate an attack at the detector's top-k critical steps against random-k and victim-importance-k.

:func:`evaluate_attack` runs the replay protocol (:mod:`critwrap.attack.protocols`) on ``episodes``
seeded episodes: for each seed one clean episode, then one attacked replay per method (``"detector"``,
``"random"``, ``"victim"``, and on request ``"block"``: ``k`` consecutive steps at a random place, and
``"detector-spaced"``: the detector's top-k at least ``detector_min_gap`` steps apart) with
the same ``k`` and perturbation. The :class:`AttackReport` holds every
episode's return, win, number of planned and actually perturbed steps, and a summary table: mean return
with a percentile-bootstrap 95% CI, the return drop from clean (paired bootstrap CI), win rate and the
number of flipped wins (won clean, lost attacked).

Example:
    >>> import gymnasium as gym
    >>> from stable_baselines3 import DQN
    >>> from critwrap.attack import Victim, evaluate_attack
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> env = gym.make("CartPole-v1")
    >>> victim = Victim(DQN("MlpPolicy", env, learning_starts=0))
    >>> report = evaluate_attack(env, victim, RandomDetector(seed=0), k=2, episodes=3, seed=0, allow_short=True)
    >>> [row["method"] for row in report.table()]
    ['clean', 'detector', 'random', 'victim']
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.attack.perturbations import Perturbation, make_perturbation
from critwrap.attack.protocols import (
    EpisodeRecord,
    FrameSource,
    block_steps,
    detector_steps,
    importance_steps,
    random_steps,
    replay_attack,
    run_episode,
    score_frames,
)
from critwrap.attack.victim import Victim

__all__ = [
    "METHODS",
    "AttackReport",
    "LeadChoice",
    "bootstrap_ci",
    "choose_lead",
    "evaluate_attack",
    "format_table",
]

METHODS = ("detector", "random", "victim")
#: methods evaluate_attack runs only when asked: "block" attacks k consecutive steps at a uniformly random
#: offset, the control for a detector whose top-k steps cluster in time; "detector-spaced" attacks the
#: detector's top-k kept ``detector_min_gap`` steps apart (where it points, without the clustering).
EXTRA_METHODS = ("block", "detector-spaced")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap ``1 - alpha`` confidence interval of the mean."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass
class AttackReport:
    """Per-episode results of :func:`evaluate_attack` and the summary table.

    ``returns[m]``, ``n_perturbed[m]``, ``n_planned[m]`` and ``n_action_changed[m]`` are per-seed arrays
    for ``m`` in ``"clean"`` and the methods; ``win_threshold``: an episode is won when its return exceeds it.
    """

    seeds: list[int]
    k: int
    perturbation: str
    methods: list[str]
    returns: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    n_planned: dict[str, np.ndarray]
    n_perturbed: dict[str, np.ndarray]
    n_action_changed: dict[str, np.ndarray]
    win_threshold: float = 0.0
    n_boot: int = 2000
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def wins(self, method: str) -> np.ndarray:
        return np.asarray(self.returns[method] > self.win_threshold)

    def table(self) -> list[dict[str, Any]]:
        """One row per condition (``clean`` first); JSON-able."""
        clean = self.returns["clean"]
        clean_wins = self.wins("clean")
        rows = []
        for m in ["clean", *self.methods]:
            r = self.returns[m]
            lo, hi = bootstrap_ci(r, self.n_boot)
            row: dict[str, Any] = {
                "method": m,
                "k": 0 if m == "clean" else self.k,
                "episodes": len(r),
                "mean_return": float(r.mean()),
                "return_ci_low": lo,
                "return_ci_high": hi,
                "win_rate": float(self.wins(m).mean()),
                "drop": 0.0,
                "drop_ci_low": 0.0,
                "drop_ci_high": 0.0,
                "flipped_wins": 0,
                "mean_perturbed_steps": 0.0,
                "attacked_episodes": 0,
                "action_changed_rate": float("nan"),
            }
            if m != "clean":
                d = clean - r
                dlo, dhi = bootstrap_ci(d, self.n_boot)
                changed = self.n_action_changed[m].sum()
                row.update(
                    {
                        "drop": float(d.mean()),
                        "drop_ci_low": dlo,
                        "drop_ci_high": dhi,
                        "flipped_wins": int((clean_wins & ~self.wins(m)).sum()),
                        "mean_perturbed_steps": float(self.n_perturbed[m].mean()),
                        "attacked_episodes": int((self.n_perturbed[m] > 0).sum()),
                        "action_changed_rate": float(changed / max(1, self.n_perturbed[m].sum())),
                    }
                )
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "perturbation": self.perturbation,
            "win_threshold": self.win_threshold,
            "seeds": list(self.seeds),
            "seconds": self.seconds,
            "settings": self.settings,
            "table": self.table(),
            "episodes": {
                m: {
                    "returns": self.returns[m].tolist(),
                    "lengths": self.lengths[m].tolist(),
                    "n_planned": self.n_planned[m].tolist(),
                    "n_perturbed": self.n_perturbed[m].tolist(),
                    "n_action_changed": self.n_action_changed[m].tolist(),
                }
                for m in ["clean", *self.methods]
            },
        }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :meth:`AttackReport.table` rows."""
    head = "| condition | k | mean return [95% CI] | drop [95% CI] | win rate | flipped wins | perturbed steps / ep | action changed |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        changed = "" if r["method"] == "clean" else f"{r['action_changed_rate']:.2f}"
        drop = (
            ""
            if r["method"] == "clean"
            else f"{r['drop']:.3f} [{r['drop_ci_low']:.3f}, {r['drop_ci_high']:.3f}]"
        )
        lines.append(
            f"| {r['method']} | {r['k']} | {r['mean_return']:.3f} [{r['return_ci_low']:.3f}, {r['return_ci_high']:.3f}] "
            f"| {drop} | {r['win_rate']:.3f} | {r['flipped_wins'] if r['method'] != 'clean' else ''} "
            f"| {r['mean_perturbed_steps']:.2f} | {changed} |"
        )
    return "\n".join(lines)


FLAT_SPREAD = 0.01


def detector_spread(scores: np.ndarray) -> float:
    """How much a detector's scores vary within one episode: their range over their largest magnitude
    (0 for constant scores; scale-free, so it applies to masks in (0, 1) and to unbounded scores)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = float(np.max(np.abs(scores)))
    return float(np.ptp(scores) / top) if top > 0 else 0.0


def flat_detector_check(spreads: Sequence[float], tol: float = FLAT_SPREAD) -> dict[str, Any]:
    """Warn when the detector's scores are nearly constant within the clean episodes (median
    :func:`detector_spread` below ``tol``): its top-k is then decided by tiny differences (window edges,
    numerical noise), so the "detector" row measures the perturbation, not the detector."""
    median = float(np.median(spreads))
    flat = median < tol
    if flat:
        warnings.warn(
            f"the detector's scores are nearly constant within the clean episodes (median relative range "
            f"{median:.2g} < {tol:g}): its top-k steps are close to arbitrary, so the 'detector' row does not "
            "test where it points; check the detector (e.g. retrain it) before reading the comparison",
            RuntimeWarning,
            stacklevel=3,
        )
    return {"detector_spread_median": median, "detector_flat": flat}


def evaluate_attack(
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
    win_threshold: float = 0.0,
    allow_short: bool = False,
    n_boot: int = 2000,
    clean_runs: Sequence[EpisodeRecord] | None = None,
    rankers: Mapping[str, Callable[[EpisodeRecord], np.ndarray]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    detector_lead: int = 0,
    detector_min_gap: int = 5,
) -> AttackReport:
    """The replay-protocol comparison over ``episodes`` seeds ``seed, seed + 1, ...``.

    Args:
        env: a Gymnasium env, deterministic given its reset seed (checked on every replay).
        victim: a :class:`Victim` or an SB3 model.
        detector: a :class:`critwrap.detectors.base.Detector` (anything with ``score(frames) -> (T,)``);
            may be ``None`` when ``"detector"`` is not among ``methods``.
        k: attacked steps per episode (the same for every method).
        perturbation: ``"action"``, ``"fgsm"``, ``"pgd"`` (with ``epsilon``), a Perturbation or a callable.
        methods: any of ``"detector"``, ``"random"``, ``"victim"`` (the default: all three),
            ``"block"`` (:func:`~critwrap.attack.protocols.block_steps`) and ``"detector-spaced"`` (the
            detector's top-k at least ``detector_min_gap`` steps apart; ``detector_steps``' ``min_gap``).
        frames: what the detector scores (see :func:`critwrap.attack.protocols.get_frame`).
        win_threshold: an episode is won when its return is above this (Pong: 0; MiniGrid: 0).
        allow_short: attack every step of episodes shorter than ``k`` (else :class:`EpisodeTooShortError`).
        clean_runs: clean episodes already played (their seeds are replayed), e.g. to share them across k.
        rankers: more methods, by name: ``fn(clean_episode) -> scores (T,)``; their top-k steps are attacked
            (e.g. another detector, or an oracle reference).
        progress: called as ``progress(done, total)`` after each seed.
        detector_lead: the detector's method attacks this many steps before each top-scored frame
            (:func:`~critwrap.attack.protocols.detector_steps`' ``lead``; 2 is the original Pong attack
            script's alignment; negative: that many steps after it, choose it with :func:`choose_lead`);
            also for ``"detector-spaced"``. Random, victim and ranker steps are not shifted.
        detector_min_gap: the minimum spacing of ``"detector-spaced"``'s steps (>= 2; default 5). Episodes
            too short to fit ``k`` steps that far apart get the next best steps regardless; their number is
            ``report.settings["detector_spaced_unmet"]`` (with a warning).
    """
    t0 = time.perf_counter()
    if not isinstance(victim, Victim):
        victim = Victim(victim)
    rankers = dict(rankers or {})
    known = (*METHODS, *EXTRA_METHODS)
    unknown = [m for m in methods if m not in known]
    if unknown or not (methods or rankers):
        raise ValueError(f"methods must be a subset of {known} (or give rankers), got {list(methods)}")
    clash = sorted(set(rankers) & {"clean", *known})
    if clash:
        raise ValueError(f"ranker names must differ from 'clean' and {known}, got {clash}")
    methods = [*methods, *rankers]
    if isinstance(detector_lead, bool) or int(detector_lead) != detector_lead:
        raise ValueError(f"detector_lead must be an integer number of steps, got {detector_lead!r}")
    uses_detector = [m for m in methods if m in ("detector", "detector-spaced")]
    if uses_detector and detector is None:
        raise ValueError(f"the {uses_detector[0]!r} method needs a detector")
    if "detector-spaced" in methods and (int(detector_min_gap) != detector_min_gap or detector_min_gap < 2):
        raise ValueError(f"detector_min_gap must be an integer >= 2 steps, got {detector_min_gap}")
    if episodes < 1 and clean_runs is None:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    pert = make_perturbation(perturbation, epsilon=epsilon)
    pert.check(env.observation_space, env.action_space, victim)
    if "victim" in methods:
        victim.importance(np.asarray(env.observation_space.sample())[None])  # fail early, before any episode
    seeds = [c.seed for c in clean_runs] if clean_runs is not None else [seed + i for i in range(episodes)]
    names = ["clean", *methods]
    returns: dict[str, list[float]] = {m: [] for m in names}
    lengths: dict[str, list[int]] = {m: [] for m in names}
    planned: dict[str, list[int]] = {m: [] for m in names}
    perturbed: dict[str, list[int]] = {m: [] for m in names}
    changed: dict[str, list[int]] = {m: [] for m in names}
    det_spread: list[float] = []
    spaced_unmet = 0
    for i, s in enumerate(seeds):
        clean = (
            clean_runs[i]
            if clean_runs is not None
            else run_episode(env, victim, seed=s, frames=frames, keep_frames=bool(uses_detector))
        )
        det_scores: np.ndarray | None = None
        if uses_detector:
            det_scores = score_frames(detector, clean.frames_array())
            if det_scores.size:
                det_spread.append(detector_spread(det_scores))
        returns["clean"].append(clean.episode_return)
        lengths["clean"].append(clean.length)
        for m in names[:1]:
            planned[m].append(0)
            perturbed[m].append(0)
            changed[m].append(0)
        for j, m in enumerate(methods):
            if m in ("detector", "detector-spaced"):
                gap = int(detector_min_gap) if m == "detector-spaced" else 1
                steps = detector_steps(
                    clean, k, scores=det_scores, allow_short=allow_short, lead=detector_lead, min_gap=gap
                )
                if gap > 1 and len(steps) > 1 and int(np.min(np.diff(steps))) < gap:
                    spaced_unmet += 1
            elif m in rankers:
                steps = detector_steps(
                    clean, k, scores=np.asarray(rankers[m](clean)), allow_short=allow_short
                )
            elif m == "random":
                steps = random_steps(
                    clean, k, np.random.default_rng([int(s or 0), 1, k]), allow_short=allow_short
                )
            elif m == "block":
                steps = block_steps(
                    clean, k, np.random.default_rng([int(s or 0), 3, k]), allow_short=allow_short
                )
            else:
                steps = importance_steps(clean, k, victim, allow_short=allow_short)
            rec = replay_attack(
                env, victim, clean, steps, pert, rng=np.random.default_rng([int(s or 0), 2, j, k])
            )
            reached = [t for t in steps if t < rec.length]
            if rec.perturbed_steps != reached:  # never report an unattacked step as attacked
                raise RuntimeError(
                    f"seed {s}, {m}: planned steps {steps}, reached {reached}, but perturbed {rec.perturbed_steps}"
                )
            returns[m].append(rec.episode_return)
            lengths[m].append(rec.length)
            planned[m].append(len(steps))
            perturbed[m].append(rec.n_perturbed)
            changed[m].append(int(np.sum(rec.action_changed)))
        if progress is not None:
            progress(i + 1, len(seeds))

    def arr(d: dict[str, list[Any]]) -> dict[str, np.ndarray]:
        return {m: np.asarray(v) for m, v in d.items()}

    settings: dict[str, Any] = {
        "protocol": "replay",
        "allow_short": allow_short,
        "victim_importance": victim.importance_method,
        "victim_sample": victim.sample,
        "detector_lead": int(detector_lead),
    }
    if "detector-spaced" in methods:
        settings["detector_min_gap"] = int(detector_min_gap)
        settings["detector_spaced_unmet"] = spaced_unmet
        if spaced_unmet:
            warnings.warn(
                f"{spaced_unmet} of {len(seeds)} episodes were too short to fit k={k} steps "
                f"{detector_min_gap} apart; 'detector-spaced' attacked the next best steps there regardless",
                RuntimeWarning,
                stacklevel=2,
            )
    if det_spread:
        settings.update(flat_detector_check(det_spread))
    return AttackReport(
        seeds=[int(s) if s is not None else -1 for s in seeds],
        k=int(k),
        perturbation=pert.describe(),
        methods=list(methods),
        returns={m: np.asarray(v, dtype=np.float64) for m, v in returns.items()},
        lengths=arr(lengths),
        n_planned=arr(planned),
        n_perturbed=arr(perturbed),
        n_action_changed=arr(changed),
        win_threshold=float(win_threshold),
        n_boot=n_boot,
        seconds=time.perf_counter() - t0,
        settings=settings,
    )


@dataclass
class LeadChoice:
    """What :func:`choose_lead` measured: the chosen ``lead`` and, per candidate lead, the return drop of
    the detector's top-``k`` attack on every calibration episode (``drops[lead]``, in seed order)."""

    lead: int
    k: int
    seeds: list[int]
    drops: dict[int, np.ndarray]

    def mean_drops(self) -> dict[int, float]:
        return {lead: float(np.mean(d)) for lead, d in self.drops.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "lead": self.lead,
            "k": self.k,
            "seeds": list(self.seeds),
            "mean_drops": {str(lead): m for lead, m in self.mean_drops().items()},
            "drops": {str(lead): d.tolist() for lead, d in self.drops.items()},
        }


def choose_lead(
    env: gym.Env[Any, Any],
    victim: Victim | Any,
    detector: Any,
    *,
    k: int,
    leads: Sequence[int] = (-4, -3, -2, -1, 0, 1, 2),
    episodes: int = 50,
    seed: int = 0,
    clean_runs: Sequence[EpisodeRecord] | None = None,
    perturbation: str | Perturbation | Callable[..., Any] = "action",
    epsilon: float | None = None,
    frames: FrameSource = "observations",
    allow_short: bool = True,
) -> LeadChoice:
    """Choose the detector's ``lead`` (critwrap's addition) on calibration episodes: the one whose top-``k``
    attack costs the victim the most return on average (ties: the first in ``leads``).

    A detector trained to explain outcomes marks where an outcome shows, which need not be the step where
    a perturbation decides it (the original Pong script attacks 2 steps earlier; on MinAtar Breakout the
    windowed DSI marks the ball a few rows above the paddle, before the victim's decisive moves). The
    calibration episodes (seeds ``seed, seed + 1, ...``, or ``clean_runs``) must not be the evaluated ones,
    or the evaluation is biased towards the detector; pass the result's ``lead`` to
    :func:`evaluate_attack` (``detector_lead``). Only the detector's method is replayed, once per lead.
    """
    leads = [int(x) for x in leads]
    if not leads or len(set(leads)) != len(leads):
        raise ValueError(f"leads must be distinct integers, at least one, got {leads}")
    if not isinstance(victim, Victim):
        victim = Victim(victim)
    if clean_runs is None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        clean_runs = [
            run_episode(env, victim, seed=seed + i, frames=frames, keep_frames=True) for i in range(episodes)
        ]
    drops: dict[int, np.ndarray] = {}
    for lead in leads:
        rep = evaluate_attack(
            env,
            victim,
            detector,
            k=k,
            perturbation=perturbation,
            epsilon=epsilon,
            methods=("detector",),
            frames=frames,
            allow_short=allow_short,
            n_boot=10,
            clean_runs=clean_runs,
            detector_lead=lead,
        )
        drops[lead] = rep.returns["clean"] - rep.returns["detector"]
    means = {lead: float(np.mean(d)) for lead, d in drops.items()}
    best = max(leads, key=lambda lead: (means[lead], -leads.index(lead)))
    if means[best] <= 0:
        warnings.warn(
            f"choose_lead: at no lead in {leads} did the detector's top-{k} attack lower the victim's mean "
            f"return on the {len(clean_runs)} calibration episodes (best mean drop {means[best]:.3g}, at lead "
            f"{best}); the chosen lead is only the one that helps the victim least, not one that harms it",
            RuntimeWarning,
            stacklevel=2,
        )
    return LeadChoice(lead=best, k=int(k), seeds=[int(c.seed or 0) for c in clean_runs], drops=drops)
