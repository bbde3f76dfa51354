"""Running attacked episodes: one episode with a planned set of attacked steps, and the replay protocol.

The **replay protocol** (EDGE's, used by the Deep State Identifier's Pong attack):

1. :func:`run_episode` plays a clean episode from ``env.reset(seed=seed)`` with the victim's greedy
   actions and keeps its frames (what the detector scores), observations and the victim's importance;
2. a step selector picks ``k`` steps: :func:`detector_steps` (the detector's top-k), :func:`random_steps`
   :func:`block_steps` (``k`` consecutive steps at a random place, the control for a clustered ranking)
   or :func:`importance_steps` (the victim's own top-k);
3. :func:`replay_attack` replays the same seed and perturbs exactly those steps. Until the first attacked
   step the replay must reproduce the clean run observation for observation; otherwise the env is not
   deterministic given its seed and a :class:`ReplayDivergenceError` says so.

Every :class:`EpisodeRecord` says which steps were actually perturbed (``perturbed_steps``): a planned
step the attacked episode never reached (it ended earlier) is not counted.

Example:
    >>> import gymnasium as gym
    >>> from stable_baselines3 import DQN
    >>> from critwrap.attack import RandomActionPerturbation, Victim, random_steps, replay_attack, run_episode
    >>> env = gym.make("CartPole-v1")
    >>> victim = Victim(DQN("MlpPolicy", env, learning_starts=0))
    >>> clean = run_episode(env, victim, seed=3)
    >>> steps = random_steps(clean, k=2, rng=0)
    >>> attacked = replay_attack(env, victim, clean, steps, RandomActionPerturbation(), rng=0)
    >>> attacked.n_perturbed
    2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from critwrap.attack.perturbations import Perturbation
from critwrap.attack.victim import Victim

__all__ = [
    "EpisodeRecord",
    "EpisodeTooShortError",
    "FrameSource",
    "RenderedFrames",
    "ReplayDivergenceError",
    "attacked_action",
    "block_steps",
    "detector_steps",
    "get_frame",
    "importance_steps",
    "parse_size",
    "random_steps",
    "replay_attack",
    "resize_frame",
    "run_episode",
    "run_online_episode",
    "score_frames",
    "spaced_top_k",
]

FrameSource = str | Callable[[gym.Env[Any, Any], Any], np.ndarray]


def parse_size(text: str | int | Sequence[int]) -> tuple[int, int]:
    """``84`` / ``"84"`` -> (84, 84); ``"84x126"`` or ``(84, 126)`` -> (height, width)."""
    if isinstance(text, int | np.integer) and not isinstance(text, bool):
        size: tuple[int, ...] = (int(text), int(text))
    elif isinstance(text, str):
        parts = text.lower().split("x")
        try:
            size = tuple(int(p) for p in parts) if len(parts) == 2 else (int(parts[0]),) * 2
        except ValueError:
            raise ValueError(f"a frame size is H or HxW in pixels (84, 84x126), got {text!r}") from None
    elif isinstance(text, Sequence):
        size = tuple(int(v) for v in text)
    else:
        raise ValueError(f"a frame size is H or HxW in pixels (84, 84x126), got {text!r}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"a frame size is H or HxW with positive sides, got {text!r}")
    return size[0], size[1]


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` (H, W[, C]) resized to ``size`` = (height, width) with area averaging (OpenCV)."""
    import cv2

    arr = np.asarray(frame)
    if arr.shape[:2] == tuple(size):
        return arr
    return np.asarray(cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_AREA))


class RenderedFrames:
    """A frame source: ``env.render()`` (an ``rgb_array`` env), resized to ``size`` when given.

    The detector of a victim whose observations are vectors scores rendered frames; at the env's own
    render size (CartPole: 400x600) a DSI trains slowly, so record and attack with the same smaller
    size (``zoo record agent --record frames --frame-size 84``, ``zoo attack --frames render:84``).
    """

    needs_render = True

    def __init__(self, size: tuple[int, int] | str | int | None = None) -> None:
        self.size = None if size is None else parse_size(size)

    def __call__(self, env: gym.Env[Any, Any], obs: Any) -> np.ndarray:
        frame = env.render()
        if not isinstance(frame, np.ndarray):
            raise ValueError(
                f"rendered frames need env.render() to return an array (make the env with "
                f"render_mode='rgb_array'), got {type(frame).__name__}"
            )
        return np.array(frame if self.size is None else resize_frame(frame, self.size), copy=True)

    def __repr__(self) -> str:
        return f"RenderedFrames(size={self.size})"


class ReplayDivergenceError(RuntimeError):
    """The replay of a seed differed from the clean run before the first attacked step."""


class EpisodeTooShortError(ValueError):
    """More steps were asked for than the episode has."""


@dataclass
class EpisodeRecord:
    """One played episode.

    Attributes:
        seed: the seed given to ``env.reset``.
        observations: the observation at the start of every step (T, ...), as the env returned it (clean).
        frames: what the detector scores, one per step (T, ...): the observations, or rendered frames.
        actions: the actions executed (T, ...).
        rewards: (T,).
        planned_steps: the steps chosen for attack (sorted; empty for a clean run).
        perturbed_steps: the steps where the perturbation was actually applied.
        action_changed: per perturbed step, whether the executed action differs from the victim's clean
            greedy action there.
        max_obs_change: the largest L-inf change an observation perturbation made (0 for action attacks).
        terminated / truncated: how the episode ended.
    """

    seed: int | None
    observations: list[Any]
    frames: list[np.ndarray]
    actions: list[Any]
    rewards: list[float]
    planned_steps: list[int] = field(default_factory=list)
    perturbed_steps: list[int] = field(default_factory=list)
    action_changed: list[bool] = field(default_factory=list)
    max_obs_change: float = 0.0
    terminated: bool = False
    truncated: bool = False

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def n_perturbed(self) -> int:
        return len(self.perturbed_steps)

    def frames_array(self) -> np.ndarray:
        return np.stack(self.frames)


def score_frames(detector: Any, frames: Any) -> np.ndarray:
    """``detector.score(frames)`` as float64 of shape ``(T,)``, with a clear error when the detector cannot
    score these frames (a detector trained on other observations) or returns another shape."""
    arr = np.asarray(frames)
    try:
        scores = np.asarray(detector.score(arr), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(
            f"the detector {type(detector).__name__} cannot score this env's frames ({len(arr)} frames of shape "
            f"{tuple(arr.shape[1:])}, dtype {arr.dtype}): {exc}. Use a detector trained on the frames it will "
            "score (the same observations, preprocessing and frame stack), or choose what it scores with "
            "frames= ('observations', 'render' or a callable; zoo attack --frames)"
        ) from exc
    if scores.shape != (len(arr),):
        raise ValueError(
            f"the detector {type(detector).__name__} returned scores of shape {scores.shape} for {len(arr)} "
            f"frames; expected ({len(arr)},)"
        )
    return scores


def get_frame(env: gym.Env[Any, Any], obs: Any, frames: FrameSource) -> np.ndarray:
    """The frame the detector sees for ``obs``: ``"observations"`` (the observation itself), ``"render"``
    (``env.render()``, needs ``render_mode="rgb_array"``) or ``fn(env, obs) -> array``."""
    if callable(frames):
        return np.asarray(frames(env, obs))
    if frames == "observations":
        if isinstance(obs, dict):
            raise TypeError("dict observations cannot be scored as frames: use frames='render' or a callable")
        return np.array(obs, copy=True)
    if frames == "render":
        frame = env.render()
        if not isinstance(frame, np.ndarray):
            raise ValueError(
                f"frames='render' needs env.render() to return an array (make the env with "
                f"render_mode='rgb_array'), got {type(frame).__name__}"
            )
        return np.array(frame, copy=True)
    raise ValueError(
        f"frames must be 'observations', 'render' or a callable (env, obs) -> array, got {frames!r}"
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def attacked_action(
    rec: EpisodeRecord,
    t: int,
    obs: Any,
    victim: Victim,
    perturbation: Perturbation,
    rng: np.random.Generator,
    obs_space: gym.Space,
) -> Any:
    """The action executed at an attacked step ``t`` (recorded in ``rec``): the victim's action on the
    perturbed observation, or the perturbed action."""
    clean_action = victim.act(obs)
    if perturbation.target == "observation":
        adv = perturbation.perturb_observation(np.asarray(obs), victim, rng, obs_space)
        change = float(np.max(np.abs(adv.astype(np.float64) - np.asarray(obs, dtype=np.float64))))
        rec.max_obs_change = max(rec.max_obs_change, change)
        action = victim.act(adv)
    else:
        action = perturbation.perturb_action(clean_action, obs, rng)
    rec.perturbed_steps.append(t)
    rec.action_changed.append(not _same(action, clean_action))
    return action


def run_online_episode(
    env: gym.Env[Any, Any],
    victim: Victim,
    *,
    seed: int | None,
    k: int,
    should_attack: Callable[[int, EpisodeRecord], bool],
    perturbation: Perturbation | None,
    rng: np.random.Generator | int | None = None,
    frames: FrameSource | None = "observations",
    max_steps: int | None = None,
) -> EpisodeRecord:
    """Play one episode from ``env.reset(seed=seed)`` with the victim's actions (greedy, or keyed samples), attacking step ``t``
    when ``should_attack(t, record_so_far)`` is true and fewer than ``k`` steps were attacked.

    ``record_so_far`` holds the observations (and, unless ``frames`` is ``None``, the frames) up to and
    including step ``t``; an attacked step is added to its ``planned_steps`` and ``perturbed_steps``.
    """
    if int(k) < 0:
        raise ValueError(f"k (attacked steps per episode) must be >= 0, got {k}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    obs_space = env.observation_space
    obs, _ = env.reset(seed=seed)
    victim.start_episode(seed)
    rec = EpisodeRecord(seed=seed, observations=[], frames=[], actions=[], rewards=[])
    t = 0
    while True:
        victim.at_step(t)
        rec.observations.append(np.array(obs, copy=True) if not isinstance(obs, dict) else dict(obs))
        if frames is not None:
            rec.frames.append(get_frame(env, obs, frames))
        if rec.n_perturbed < k and should_attack(t, rec):
            if perturbation is None:
                raise ValueError("a step was chosen for attack but no perturbation was given")
            rec.planned_steps.append(t)
            action = attacked_action(rec, t, obs, victim, perturbation, gen, obs_space)
        else:
            action = victim.act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        rec.actions.append(np.array(action, copy=True))
        rec.rewards.append(float(reward))
        t += 1
        if terminated or truncated or (max_steps is not None and t >= max_steps):
            rec.terminated, rec.truncated = bool(terminated), bool(truncated)
            break
    return rec


def run_episode(
    env: gym.Env[Any, Any],
    victim: Victim,
    *,
    seed: int | None,
    attack_steps: Sequence[int] = (),
    perturbation: Perturbation | None = None,
    rng: np.random.Generator | int | None = None,
    reference: EpisodeRecord | None = None,
    frames: FrameSource = "observations",
    keep_frames: bool = True,
    max_steps: int | None = None,
) -> EpisodeRecord:
    """Play one episode from ``env.reset(seed=seed)`` with the victim's actions (greedy, or keyed samples), perturbing the
    steps in ``attack_steps``.

    With ``reference`` (the clean run of the same seed), the observations up to and including the first
    attacked step must equal the reference's, else :class:`ReplayDivergenceError`.
    """
    planned = sorted({int(s) for s in attack_steps})
    if planned and perturbation is None:
        raise ValueError("attack_steps were given without a perturbation")
    if planned and planned[0] < 0:
        raise ValueError(f"attack steps must be >= 0, got {planned[0]}")
    planned_set = set(planned)
    check_until = planned[0] if (planned and reference is not None) else -1

    def planned_rule(t: int, rec: EpisodeRecord) -> bool:
        if t <= check_until and reference is not None:
            if t >= len(reference.observations) or not _same(rec.observations[t], reference.observations[t]):
                raise ReplayDivergenceError(
                    f"replaying seed {seed} diverged from the clean run at step {t}, before the first attacked "
                    f"step {check_until}: the environment is not deterministic given its seed (sticky actions, "
                    "unseeded randomness, a stochastic policy?). The replay protocol needs a deterministic env; "
                    "make it deterministic (e.g. ALE repeat_action_probability=0) or use the online protocol."
                )
        return t in planned_set

    rec = run_online_episode(
        env,
        victim,
        seed=seed,
        k=len(planned),
        should_attack=planned_rule,
        perturbation=perturbation,
        rng=rng,
        frames=frames if keep_frames else None,
        max_steps=max_steps,
    )
    rec.planned_steps = planned
    return rec


def _check_k(clean: EpisodeRecord, k: int, allow_short: bool) -> int:
    if k < 1:
        raise ValueError(f"k must be >= 1 attacked steps, got {k}")
    if k > clean.length:
        if not allow_short:
            raise EpisodeTooShortError(
                f"k={k} steps asked for, but the clean episode of seed {clean.seed} has only {clean.length} steps; "
                "lower k, or pass allow_short=True to attack every step of shorter episodes (recorded as such)"
            )
        return clean.length
    return k


def detector_steps(
    clean: EpisodeRecord,
    k: int,
    detector: Any = None,
    *,
    scores: np.ndarray | None = None,
    allow_short: bool = False,
    lead: int = 0,
    min_gap: int = 1,
) -> list[int]:
    """The top-``k`` steps of the clean episode by the detector's score (``detector.score(frames)``).

    ``lead``: attack the step ``lead`` steps *before* each top-scored frame (frames closer than ``lead``
    to the start cannot be chosen). ``0`` (default) attacks the action taken at the critical frame. The
    Deep State Identifier's Pong attack script scores the frames after each action and perturbs the
    action two steps before the top-scored frame, i.e. ``lead=2`` in this indexing: a detector trained
    to explain outcomes marks the frames where the outcome shows, which come after the decisive action.
    A negative ``lead`` (critwrap's addition) attacks ``-lead`` steps *after* each top-scored frame
    (frames closer than ``-lead`` to the end cannot be chosen): a detector that marks the moment an
    outcome becomes predictable can point before the step where one wrong action decides it. Choose the
    lead on calibration episodes that are not evaluated (:func:`critwrap.attack.choose_lead`).

    ``min_gap``: keep the chosen steps at least this many steps apart (greedy non-maximum suppression:
    steps are taken by score, skipping any closer than ``min_gap`` to one already taken). A detector's
    scores are smooth in time, so its plain top-k tends to be one run of consecutive steps; spacing tests
    *where* it points rather than the damage of ``k`` moves in a row. When fewer than ``k`` steps fit
    under the gap, the rest are the next best by score regardless of the gap, so that every method
    attacks ``k`` steps (check with ``min(np.diff(steps)) >= min_gap``; :func:`evaluate_attack` counts
    such episodes). ``1`` (default): no spacing.
    """
    if isinstance(lead, bool) or int(lead) != lead:
        raise ValueError(f"lead must be an integer number of steps, got {lead!r}")
    lead = int(lead)
    if int(min_gap) != min_gap or min_gap < 1:
        raise ValueError(f"min_gap must be an integer >= 1 steps, got {min_gap}")
    if scores is None:
        if detector is None:
            raise ValueError("give a detector or precomputed scores")
        scores = score_frames(detector, clean.frames_array())
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (clean.length,):
        raise ValueError(
            f"the detector returned scores of shape {scores.shape} for an episode of {clean.length} steps"
        )
    if lead == 0:
        k = _check_k(clean, k, allow_short)
        return spaced_top_k(scores, k, int(min_gap))
    usable = clean.length - abs(lead)
    if usable < 1 or k > usable:
        if k < 1:
            raise ValueError(f"k must be >= 1 attacked steps, got {k}")
        if not allow_short or usable < 1:
            raise EpisodeTooShortError(
                f"k={k} steps with lead={lead} asked for, but the clean episode of seed {clean.seed} has only "
                f"{clean.length} steps ({max(usable, 0)} frames can be led); lower k or |lead|"
                + (", or pass allow_short=True" if usable >= 1 else "")
            )
        k = usable
    if k < 1:
        raise ValueError(f"k must be >= 1 attacked steps, got {k}")
    if lead > 0:
        return spaced_top_k(scores[lead:], k, int(min_gap))  # frame lead + i -> step i
    return [i - lead for i in spaced_top_k(scores[:lead], k, int(min_gap))]  # frame i -> step i - lead


def spaced_top_k(scores: np.ndarray, k: int, min_gap: int = 1) -> list[int]:
    """The indices of the ``k`` highest ``scores``, at least ``min_gap`` apart where possible, sorted.

    Greedy non-maximum suppression in score order (ties: the earlier step first); if fewer than ``k``
    indices fit under the gap, the remaining ones are the next best by score. ``min_gap=1``: the plain top-k.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if k < 1 or k > len(scores):
        raise ValueError(f"k must be between 1 and {len(scores)} (the number of scores), got {k}")
    order = np.argsort(-scores, kind="stable")
    if min_gap <= 1:
        return sorted(order[:k].tolist())
    chosen: list[int] = []
    blocked = np.zeros(len(scores), dtype=bool)
    for t in order.tolist():
        if not blocked[t]:
            chosen.append(t)
            blocked[max(0, t - min_gap + 1) : t + min_gap] = True
            if len(chosen) == k:
                return sorted(chosen)
    taken = set(chosen)
    chosen.extend(t for t in order.tolist() if t not in taken)
    return sorted(chosen[:k])


def random_steps(
    clean: EpisodeRecord, k: int, rng: np.random.Generator | int | None = None, *, allow_short: bool = False
) -> list[int]:
    """``k`` distinct steps of the clean episode, uniformly at random."""
    k = _check_k(clean, k, allow_short)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return sorted(gen.choice(clean.length, size=k, replace=False).tolist())


def block_steps(
    clean: EpisodeRecord, k: int, rng: np.random.Generator | int | None = None, *, allow_short: bool = False
) -> list[int]:
    """``k`` consecutive steps of the clean episode at a uniformly random offset.

    The control for a clustered ranking: a detector's top-k steps tend to lie next to one another (its
    scores are smooth in time), and ``k`` wrong moves in a row can hurt where ``k`` scattered ones do
    not; this baseline attacks as densely as possible, at a place chosen without looking at the episode.
    """
    k = _check_k(clean, k, allow_short)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    start = int(gen.integers(0, clean.length - k + 1))
    return list(range(start, start + k))


def importance_steps(
    clean: EpisodeRecord,
    k: int,
    victim: Victim,
    *,
    importance: np.ndarray | None = None,
    allow_short: bool = False,
) -> list[int]:
    """The top-``k`` steps by the victim's own importance (:meth:`Victim.importance` of the observations)."""
    k = _check_k(clean, k, allow_short)
    if importance is None:
        importance = victim.importance(np.stack([np.asarray(o) for o in clean.observations]))
    return sorted(np.argsort(-np.asarray(importance), kind="stable")[:k].tolist())


def replay_attack(
    env: gym.Env[Any, Any],
    victim: Victim,
    clean: EpisodeRecord,
    steps: Sequence[int],
    perturbation: Perturbation,
    *,
    rng: np.random.Generator | int | None = None,
    frames: FrameSource = "observations",
    keep_frames: bool = False,
) -> EpisodeRecord:
    """Replay ``clean``'s seed and perturb exactly ``steps``; checks the replay up to the first attacked step."""
    if not steps:
        raise ValueError("no steps to attack")
    if max(steps) >= clean.length:
        raise EpisodeTooShortError(
            f"attack step {max(steps)} is beyond the clean episode of seed {clean.seed} ({clean.length} steps)"
        )
    perturbation.check(env.observation_space, env.action_space, victim)
    rec = run_episode(
        env,
        victim,
        seed=clean.seed,
        attack_steps=steps,
        perturbation=perturbation,
        rng=rng,
        reference=clean,
        frames=frames,
        keep_frames=keep_frames,
    )
    if rec.n_perturbed < 1:  # the first planned step is always reached: the replay equals the clean run there
        raise RuntimeError(
            f"internal error: no step of seed {clean.seed} was perturbed although {steps} were planned"
        )
    return rec
