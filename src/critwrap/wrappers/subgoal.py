"""``SubgoalReward``: a bonus for reaching the critical states of successful episodes.

The subgoals are the states a critical-state detector picks in *successful* episodes (the top ``k``
steps of each, optionally only those scoring at least ``score_threshold``), kept as embeddings: the
detector's own per-frame features (:meth:`critwrap.detectors.base.Detector.embed`) by default, or the
output of any ``encoder`` (a callable ``frames (N, ...) -> (N, D)``). Near-duplicate subgoals (cosine
similarity at least ``threshold`` to one already kept) are merged, so a state that several successful
episodes share pays once; with ``exclude_failed=True``, candidates that a frame of a *failed* episode
also reaches are dropped (states failures visit too, such as the start views, do not mark progress).

At every step the current observation is embedded and compared with every subgoal by cosine
similarity (after subtracting the mean embedding of the episodes' frames, when the subgoals were
extracted from episodes; see :class:`SubgoalSet`). A subgoal counts as *reached* when the similarity is
at least ``threshold``; each subgoal counts at most once per episode and is forgotten at ``reset``.
Subgoals the first observation of an episode already matches count as reached from the start (no bonus).

* ``potential_based=True`` (default): the reward is ``r + gamma * (1 - terminated) * phi(s') - phi(s)``
  with ``phi`` = ``bonus`` times the summed weights of the subgoals reached so far (Ng et al., 1999; the
  form of imitation's ``ShapedRewardNet``). Over any episode that terminates, the bonuses sum to
  ``-phi(s_0)``, which no policy can change, so the optimal policy of the task is unchanged
  (``tests/test_subgoal.py`` checks this on an MDP solved exactly).
* ``potential_based=False``: ``r + bonus * (summed weights of the subgoals reached at this step)``;
  a plain bonus that *can* change the optimal policy.

``info["original_reward"]`` holds the env's reward, ``info["subgoal_bonus"]`` what was added,
``info["subgoals_reached"]`` how many subgoals this episode has reached and ``info["new_subgoals"]``
the indices reached at this step. :class:`critwrap.vec.SubgoalRewardVecEnv` is the SB3 ``VecEnv`` twin
that embeds the observations of all envs in one forward pass.

Example (pixel encoder, hand-made subgoals: the first observation of another episode)::

    >>> import numpy as np, critwrap
    >>> from critwrap.wrappers.subgoal import SubgoalReward, pixel_encoder
    >>> probe = critwrap.make("MiniGrid-Empty-5x5-v0")
    >>> goal_view = probe.reset(seed=1)[0]
    >>> env = critwrap.make("MiniGrid-Empty-5x5-v0", wrappers=[
    ...     (SubgoalReward, {"subgoals": goal_view[None], "encoder": pixel_encoder, "threshold": 0.999})])
    >>> obs, info = env.reset(seed=1)   # the first view matches already: reached from the start
    >>> env.reached.tolist(), env.potential
    ([True], 1.0)
    >>> obs, reward, terminated, truncated, info = env.step(2)   # forward: the view changes
    >>> info["original_reward"], info["subgoals_reached"]
    (0.0, 1)

With a trained detector and recorded episodes (the zoo form)::

    python -m critwrap.zoo train ppo KeyCorridor --wrapper subgoal-reward:detector=dsi_dir,episodes=eps_dir
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np

from critwrap.wrappers.base import CritwrapWrapper

if TYPE_CHECKING:  # pragma: no cover
    from critwrap.detectors.base import Detector
    from critwrap.episodes import Episode

__all__ = [
    "Encoder",
    "SubgoalReward",
    "SubgoalSet",
    "extract_subgoals",
    "format_coverage",
    "is_success",
    "pixel_encoder",
    "resolve_detector",
    "resolve_encoder",
    "shaped_rewards",
    "subgoal_coverage",
]

Encoder = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------------
# encoders, detectors, episodes
# --------------------------------------------------------------------------------------------------


def pixel_encoder(frames: np.ndarray) -> np.ndarray:
    """The frames themselves as embeddings: ``(N, ...) -> (N, prod(...))`` float32 (uint8 scaled to [0, 1]).

    A model-free encoder for exact or near-exact state matching (the "Waypoints" idea on raw pixels).
    """
    arr = np.asarray(frames)
    out = arr.reshape(len(arr), -1).astype(np.float32)
    if arr.dtype == np.uint8:
        out *= np.float32(1.0 / 255.0)
    return out


def _import_path(path: str) -> Any:
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{path!r} is not an import path; write 'package.module:function'")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"cannot import {module!r} for the encoder {path!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module!r} has no attribute {attr!r} (encoder {path!r})")
        obj = getattr(obj, part)
    return obj


def resolve_detector(
    detector: Detector | str | os.PathLike[str] | None, device: str | None = None
) -> Detector | None:
    """A :class:`~critwrap.detectors.base.Detector`, or one loaded from a saved detector directory;
    with ``device``, moved there (:meth:`~critwrap.detectors.base.Detector.to`)."""
    if detector is None:
        if device is not None:
            raise ValueError(f"detector_device={device!r} was given without a detector")
        return None
    from critwrap.detectors.base import Detector, load_detector

    if isinstance(detector, Detector):
        return detector if device is None else detector.to(device)
    if isinstance(detector, (str, os.PathLike)):
        if not Path(detector).exists():
            raise FileNotFoundError(
                f"detector {str(detector)!r} does not exist; give a directory written by detector.save(DIR) "
                "(e.g. by `python -m critwrap.zoo detect`) or a Detector object"
            )
        return load_detector(detector, device=device)
    raise TypeError(
        f"detector must be a critwrap Detector, a path to a saved detector or None, got {type(detector).__name__}"
    )


def resolve_encoder(encoder: Encoder | str | None, detector: Detector | None) -> Encoder:
    """The function that embeds frames: ``encoder`` (a callable or an import path), else ``detector.embed``."""
    if isinstance(encoder, str):
        encoder = _import_path(encoder)
    if encoder is not None:
        if not callable(encoder):
            raise TypeError(f"encoder must be callable (frames (N, ...) -> (N, D)), got {encoder!r}")
        return encoder
    if detector is None:
        raise ValueError(
            "SubgoalReward needs a detector (its embed() gives the features) or an encoder callable "
            "frames (N, ...) -> (N, D); got neither"
        )
    try:
        detector.embed  # noqa: B018 (the attribute exists on every Detector)
    except AttributeError as exc:  # pragma: no cover - every Detector has embed
        raise TypeError(f"{type(detector).__name__} has no embed() method") from exc
    return detector.embed


def _as_episodes(episodes: Any) -> list[Episode]:
    from critwrap.episodes import Episode, EpisodeStore

    if isinstance(episodes, (str, os.PathLike)):
        root = Path(episodes)
        if not (root / "store.json").is_file():
            raise FileNotFoundError(
                f"{root} is not an episode store (no store.json); record one with the record-episodes "
                "wrapper or critwrap.episodes.EpisodeStore"
            )
        return list(EpisodeStore(root, create=False))
    if isinstance(episodes, Episode):
        return [episodes]
    out = list(episodes)
    for i, ep in enumerate(out):
        if not isinstance(ep, Episode):
            raise TypeError(
                f"episode {i} is a {type(ep).__name__}; give critwrap.episodes.Episode objects, an "
                "EpisodeStore or its directory"
            )
    return out


def is_success(episode: Episode, success_above: float = 0.0) -> bool:
    """Whether an episode counts as successful: its ``label`` (else its ``episode_return``) > ``success_above``."""
    value = episode.label if episode.label is not None else episode.episode_return
    return value is not None and float(value) > success_above


def _embed(encoder: Encoder, frames: np.ndarray, what: str) -> np.ndarray:
    emb = np.asarray(encoder(frames))
    if emb.ndim != 2 or len(emb) != len(frames):
        raise ValueError(
            f"the encoder must map {what} frames {tuple(frames.shape)} to an (N, D) array with N = "
            f"{len(frames)}, got shape {emb.shape}"
        )
    if not np.isfinite(emb).all():
        raise ValueError(f"the encoder returned NaN or infinite embeddings for {what} frames")
    return emb.astype(np.float32, copy=False)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32, copy=False)


def _dedupe(emb_unit: np.ndarray, order: np.ndarray, threshold: float) -> list[int]:
    """Greedy: walk ``order`` and keep an embedding unless it matches one already kept."""
    kept: list[int] = []
    for i in order:
        if kept and float(np.max(emb_unit[kept] @ emb_unit[i])) >= threshold:
            continue
        kept.append(int(i))
    return kept


@dataclass
class SubgoalSet:
    """Subgoal embeddings, their weights and the matching rule.

    Attributes:
        embeddings: (K, D) float32 as given (before centering).
        weights: (K,) float64, one per subgoal (``phi`` sums them over the reached subgoals).
        threshold: cosine similarity at which an observation reaches a subgoal.
        center: (D,) subtracted from subgoal and observation embeddings before the cosine, or ``None``.
    """

    embeddings: np.ndarray
    weights: np.ndarray
    threshold: float
    center: np.ndarray | None = None

    def __post_init__(self) -> None:
        emb = np.asarray(self.embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2:
            raise ValueError(f"subgoal embeddings must be an array (K, D), got shape {emb.shape}")
        if len(emb) == 0:
            raise ValueError(
                "the subgoal set is empty: no subgoal embeddings were given or extracted (are there "
                "successful episodes? is k >= 1? does score_threshold leave any step?)"
            )
        if not np.isfinite(emb).all():
            raise ValueError("subgoal embeddings contain NaN or infinite values")
        self.embeddings = emb
        w = np.ones(len(emb)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if w.ndim == 0:
            w = np.full(len(emb), float(w))
        if w.shape != (len(emb),):
            raise ValueError(
                f"weights must be a number or have one entry per subgoal ({len(emb)}), got {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ValueError("subgoal weights contain NaN or infinite values")
        self.weights = w
        if not -1.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        self.threshold = float(self.threshold)
        if self.center is not None:
            self.center = np.asarray(self.center, dtype=np.float32).reshape(-1)
            if self.center.shape != (emb.shape[1],):
                raise ValueError(f"center must have shape ({emb.shape[1]},), got {self.center.shape}")
        self._unit = _unit(self._centered(emb))

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return int(self.embeddings.shape[1])

    def _centered(self, emb: np.ndarray) -> np.ndarray:
        return emb if self.center is None else emb - self.center

    def similarity(self, emb: np.ndarray) -> np.ndarray:
        """Cosine similarities (N, K) of observation embeddings (N, D) to the subgoals."""
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"observation embeddings must be (N, {self.dim}), got {emb.shape}")
        return _unit(self._centered(emb)) @ self._unit.T

    def match(self, emb: np.ndarray) -> np.ndarray:
        """Boolean (N, K): which subgoals each observation embedding reaches."""
        return self.similarity(emb) >= self.threshold


def extract_subgoals(
    detector: Detector,
    episodes: Any,
    encoder: Encoder,
    *,
    k: int | None = 3,
    score_threshold: float | None = None,
    threshold: float = 0.99,
    success_above: float = 0.0,
    center: bool = True,
    exclude_failed: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings of the critical states of the successful episodes, near-duplicates merged.

    Returns ``(embeddings (K, D), center (D,) or None)``; the center is the mean embedding of every frame
    of every given episode (successful or not) when ``center`` is true. Candidates are taken in
    decreasing detector score, and one is dropped when its (centered) cosine similarity to a kept one
    is at least ``threshold``. With ``exclude_failed``, a candidate that some frame of a failed episode
    also reaches (similarity at least ``threshold``) is dropped too: a state that failures visit as
    well does not mark progress (the start views, for instance).
    """
    emb, mean, _ = _extract_subgoals(
        detector,
        episodes,
        encoder,
        k=k,
        score_threshold=score_threshold,
        threshold=threshold,
        success_above=success_above,
        center=center,
        exclude_failed=exclude_failed,
    )
    return emb, mean


def _extract_subgoals(
    detector: Detector,
    episodes: Any,
    encoder: Encoder,
    *,
    k: int | None,
    score_threshold: float | None,
    threshold: float,
    success_above: float,
    center: bool,
    exclude_failed: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """:func:`extract_subgoals`, plus the subgoals' frames (K, ...)."""
    eps = _as_episodes(episodes)
    if not eps:
        raise ValueError("no episodes given to extract subgoals from")
    good = [ep for ep in eps if is_success(ep, success_above)]
    failed = [ep for ep in eps if not is_success(ep, success_above)]
    if not good:
        raise ValueError(
            f"none of the {len(eps)} episodes is successful (label, else episode_return, > {success_above}); "
            "subgoals are taken from successful episodes only"
        )
    frames: list[np.ndarray] = []
    scores: list[float] = []
    for ep in good:
        s = np.asarray(detector.score(ep.frames), dtype=np.float64)
        steps = detector.critical_steps(scores=s, k=k, threshold=score_threshold)
        frames.extend(ep.frames[t] for t in steps)
        scores.extend(float(s[t]) for t in steps)
    if not frames:
        raise ValueError(
            f"the detector marks no critical step in the {len(good)} successful episodes (k={k}, "
            f"score_threshold={score_threshold}); lower score_threshold or raise k"
        )
    stacked = np.stack(frames)
    emb = _embed(encoder, stacked, "critical")

    def embed_all(episodes: list[Episode]) -> np.ndarray:
        parts = [
            _embed(encoder, np.asarray(ep.frames[i : i + 1024]), "episode")
            for ep in episodes
            for i in range(0, len(ep.frames), 1024)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, emb.shape[1]), np.float32)

    failed_emb = embed_all(failed) if (exclude_failed and failed) or center else None
    mean = None
    if center:
        assert failed_emb is not None
        all_emb = np.concatenate([embed_all(good), failed_emb])
        mean = all_emb.astype(np.float64).mean(0).astype(np.float32)
    unit = _unit(emb if mean is None else emb - mean)
    order = np.argsort(-np.asarray(scores), kind="stable")
    if exclude_failed and failed:
        assert failed_emb is not None
        fail_unit = _unit(failed_emb if mean is None else failed_emb - mean)
        common = (unit @ fail_unit.T).max(1) >= threshold
        order = order[~common[order]]
        if len(order) == 0:
            raise ValueError(
                f"every one of the {len(emb)} critical states of the successful episodes is also reached in a "
                f"failed episode (cosine >= {threshold}); raise threshold, raise k, or pass exclude_failed=False"
            )
    kept = _dedupe(unit, order, threshold)
    return emb[kept], mean, stacked[kept]


def subgoal_coverage(
    detector: Detector,
    episodes: Any,
    held_out: Any = None,
    *,
    encoder: Encoder | str | None = None,
    thresholds: Sequence[float] = (0.99, 0.97, 0.95, 0.9),
    k: int | None = 3,
    score_threshold: float | None = None,
    success_above: float = 0.0,
    exclude_failed: Sequence[bool] = (False, True),
    keep_frames: bool = False,
) -> list[dict[str, Any]]:
    """How informative the subgoals ``SubgoalReward`` would extract are, per matching threshold: a guide
    to choosing ``threshold`` and ``exclude_failed`` before training (critwrap's addition).

    Subgoals are extracted from ``episodes`` as the wrapper does; matching is measured on ``held_out``
    episodes (default: ``episodes`` themselves, which flatters every number). Useful subgoals are reached
    by most successful episodes (``success_reach``), by few failed ones (``failed_reach``), and not
    at the very start (``first_hit``: median relative time ``t / (T - 1)`` of a successful episode's
    first match; near 0 means the subgoals are start views). One row per (threshold, exclude_failed):
    ``subgoals`` (K), ``success_reach``, ``failed_reach``, ``success_frames`` / ``failed_frames`` (share
    of frames matching some subgoal), ``mean_reached`` (distinct subgoals per successful episode),
    ``first_hit``, and per subgoal (in the order of ``SubgoalSet``) the share of successful and failed
    held-out episodes that reach it (``per_subgoal_success``, ``per_subgoal_failed``); ``error`` instead
    when no subgoal survives the setting. ``keep_frames=True`` adds the subgoals' observations
    (``frames``, (K, ...), not JSON-able) to look at.
    """
    eps = _as_episodes(episodes)
    test = eps if held_out is None else _as_episodes(held_out)
    embed = resolve_encoder(encoder, detector)
    good = [ep for ep in test if is_success(ep, success_above)]
    bad = [ep for ep in test if not is_success(ep, success_above)]
    if not good and not bad:
        raise ValueError("no held-out episodes to measure the subgoals on")
    good_emb = [_embed(embed, np.asarray(ep.frames), "episode") for ep in good]
    bad_emb = [_embed(embed, np.asarray(ep.frames), "episode") for ep in bad]
    rows: list[dict[str, Any]] = []
    for thr in thresholds:
        for excl in exclude_failed:
            row: dict[str, Any] = {"threshold": float(thr), "exclude_failed": bool(excl)}
            try:
                emb, center, frames = _extract_subgoals(
                    detector,
                    eps,
                    embed,
                    k=k,
                    score_threshold=score_threshold,
                    threshold=thr,
                    success_above=success_above,
                    center=True,
                    exclude_failed=excl,
                )
            except ValueError as exc:
                row["error"] = str(exc)
                rows.append(row)
                continue
            sg = SubgoalSet(emb, np.ones(len(emb)), thr, center)
            g_match = [sg.match(e) for e in good_emb]
            b_match = [sg.match(e) for e in bad_emb]
            firsts = [float(np.flatnonzero(m.any(1))[0]) / max(len(m) - 1, 1) for m in g_match if m.any()]
            row.update(
                subgoals=len(sg),
                success_reach=float(np.mean([m.any() for m in g_match])) if good else float("nan"),
                failed_reach=float(np.mean([m.any() for m in b_match])) if bad else float("nan"),
                success_frames=float(np.concatenate([m.any(1) for m in g_match]).mean())
                if good
                else float("nan"),
                failed_frames=float(np.concatenate([m.any(1) for m in b_match]).mean())
                if bad
                else float("nan"),
                mean_reached=float(np.mean([m.any(0).sum() for m in g_match])) if good else float("nan"),
                first_hit=float(np.median(firsts)) if firsts else float("nan"),
                per_subgoal_success=[float(x) for x in np.mean([m.any(0) for m in g_match], 0)]
                if good
                else [],
                per_subgoal_failed=[float(x) for x in np.mean([m.any(0) for m in b_match], 0)] if bad else [],
            )
            if keep_frames:
                row["frames"] = frames
            rows.append(row)
    return rows


def format_coverage(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`subgoal_coverage`'s rows as a fixed-width table."""
    head = (
        f"{'threshold':>9}  {'excl':>5}  {'K':>3}  {'succ reach':>10}  {'fail reach':>10}  "
        f"{'succ frames':>11}  {'fail frames':>11}  {'reached':>7}  {'first hit':>9}"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['threshold']:>9g}  {r['exclude_failed']!s:>5}  no subgoals: {r['error']}")
            continue
        lines.append(
            f"{r['threshold']:>9g}  {r['exclude_failed']!s:>5}  {r['subgoals']:>3}  {r['success_reach']:>10.2f}  "
            f"{r['failed_reach']:>10.2f}  {r['success_frames']:>11.2f}  {r['failed_frames']:>11.2f}  "
            f"{r['mean_reached']:>7.2f}  {r['first_hit']:>9.2f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# the reward, shared by the wrapper and its VecEnv twin
# --------------------------------------------------------------------------------------------------


def shaped_rewards(
    rewards: np.ndarray,
    reached: np.ndarray,
    matches: np.ndarray,
    terminated: np.ndarray,
    weights: np.ndarray,
    *,
    bonus: float,
    potential_based: bool,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step for N envs: ``(shaped (N,), reached after (N, K), newly reached (N, K))``.

    ``reached`` (N, K) are the subgoals reached before the step, ``matches`` (N, K) those the new
    observation matches, ``terminated`` (N,) whether the step ended the episode in a terminal state
    (truncation is not termination: ``phi(s')`` still counts there).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    new = matches & ~reached
    after = reached | new
    if potential_based:
        phi_before = bonus * (reached @ weights)
        phi_after = bonus * (after @ weights)
        not_done = 1.0 - np.asarray(terminated, dtype=np.float64)
        shaped = rewards + gamma * not_done * phi_after - phi_before
    else:
        shaped = rewards + bonus * (new @ weights)
    return shaped, after, new


class _SubgoalCore:
    """What the wrapper and the VecEnv twin share: arguments, the detector, encoder and subgoal set."""

    detector: Detector | None
    encoder_fn: Encoder
    subgoal_set: SubgoalSet

    def _setup(
        self,
        observation_space: gym.Space[Any],
        who: str,
        detector: Detector | str | os.PathLike[str] | None,
        episodes: Any,
        subgoals: Any,
        encoder: Encoder | str | None,
        threshold: float,
        bonus: float,
        weights: Any,
        potential_based: bool,
        gamma: float,
        k: int | None,
        score_threshold: float | None,
        success_above: float,
        exclude_failed: bool = False,
        detector_device: str | None = None,
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(
                f"{who} needs array observations (a Box space) to embed, got {observation_space}; for "
                "MiniGrid use the 'minigrid-image' wrapper first (critwrap.make does)"
            )
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if not np.isfinite(float(bonus)):
            raise ValueError(f"bonus must be a finite number, got {bonus}")
        if k is not None and int(k) < 1:
            raise ValueError(f"k must be >= 1 (critical steps per successful episode) or None, got {k}")
        self._who = who
        self.obs_shape = tuple(observation_space.shape)
        self.obs_dtype = observation_space.dtype
        self.threshold = float(threshold)
        self.bonus = float(bonus)
        self.potential_based = bool(potential_based)
        self.gamma = float(gamma)
        self.k = None if k is None else int(k)
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.success_above = float(success_above)
        self.exclude_failed = bool(exclude_failed)
        self._user_encoder = encoder is not None
        self._explicit = None if subgoals is None else np.asarray(subgoals)
        if episodes is None and subgoals is None and isinstance(detector, str | os.PathLike):
            from critwrap.detectors.base import fitted_on

            episodes = fitted_on(detector)
            if episodes is not None:
                warnings.warn(
                    f"{who}: no episodes= given, so the subgoals come from the episodes the detector was "
                    f"fitted on ({episodes}, named in {Path(detector) / 'fit.json'}); pass episodes= to "
                    "choose others",
                    stacklevel=3,
                )
        self._episodes_source = episodes
        self.detector_device = detector_device
        self.detector = resolve_detector(detector, detector_device)
        self.encoder_fn = resolve_encoder(encoder, self.detector)
        self.subgoal_set = self._build(self.detector, episodes, self._explicit, weights)

    # ---- building the subgoal set ----------------------------------------------------------------
    def _check_encoder(self, encoder: Encoder) -> int:
        """Embed one blank observation; a detector for other frames fails here, with a clear message."""
        probe = np.zeros((1, *self.obs_shape), dtype=self.obs_dtype)
        try:
            emb = _embed(encoder, probe, "observation")
        except NotImplementedError as exc:
            raise ValueError(f"{self._who}: {exc}") from exc
        except Exception as exc:
            raise ValueError(
                f"{self._who}: the encoder/detector cannot embed this env's observations of shape "
                f"{self.obs_shape} ({self.obs_dtype}): {exc}. Use a detector trained on frames of that "
                "shape (the env's own observations, e.g. recorded with the record-episodes wrapper)"
            ) from exc
        return int(emb.shape[1])

    def _check_frames(self, episodes: list[Episode]) -> None:
        for i, ep in enumerate(episodes):
            if tuple(ep.frames.shape[1:]) != self.obs_shape:
                raise ValueError(
                    f"{self._who}: episode {i} has frames of shape {tuple(ep.frames.shape[1:])} but the env's "
                    f"observations have shape {self.obs_shape}; subgoals must come from episodes recorded "
                    "in the same observation space"
                )

    def _build(
        self, detector: Detector | None, episodes: Any, explicit: np.ndarray | None, weights: Any
    ) -> SubgoalSet:
        encoder = self.encoder_fn
        dim = self._check_encoder(encoder)
        parts: list[np.ndarray] = []
        center = None
        if explicit is not None:
            emb = np.asarray(explicit)
            if emb.shape == self.obs_shape:  # one observation
                emb = emb[None]
            if emb.size == 0:
                raise ValueError(
                    f"{self._who}: the subgoal set is empty: subgoals= has no entries {emb.shape}"
                )
            if emb.shape[1:] == self.obs_shape:  # observations: embed them
                emb = _embed(encoder, emb.astype(self.obs_dtype), "subgoal")
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim == 1:
                emb = emb[None]
            if emb.ndim != 2 or emb.shape[1] != dim:
                raise ValueError(
                    f"{self._who}: subgoals must be embeddings (K, {dim}) (the encoder's output size) or "
                    f"observations (K, *{self.obs_shape}); got an array of shape {np.asarray(explicit).shape}"
                )
            parts.append(emb)
        if episodes is not None:
            if detector is None:
                raise ValueError(
                    f"{self._who}: episodes were given but no detector to find their critical states; pass "
                    "detector=DIR (a saved detector) or give subgoals= directly"
                )
            eps = _as_episodes(episodes)
            self._check_frames(eps)
            emb, center = extract_subgoals(
                detector,
                eps,
                encoder,
                k=self.k,
                score_threshold=self.score_threshold,
                threshold=self.threshold,
                success_above=self.success_above,
                center=True,
                exclude_failed=self.exclude_failed,
            )
            parts.append(emb)
        if not parts:
            raise ValueError(
                f"{self._who}: the subgoal set is empty: give episodes= (with a detector) to extract "
                "subgoals from, or subgoals= (embeddings or observations). (A detector saved by `zoo detect "
                "fit` names the episodes it was fitted on in its fit.json, and they are used when episodes= "
                "is left out.)"
            )
        return SubgoalSet(np.concatenate(parts), weights, self.threshold, center)

    # ---- hot swap ----------------------------------------------------------------------------------
    def _set_detector(self, detector: Detector | str | os.PathLike[str], episodes: Any = None) -> None:
        # a saved detector's path loads onto detector_device; a Detector object stays where it is
        from critwrap.detectors.base import Detector

        det = resolve_detector(detector, None if isinstance(detector, Detector) else self.detector_device)
        if det is None:
            raise ValueError("set_detector needs a detector")
        source = self._episodes_source if episodes is None else episodes
        if source is None:
            raise ValueError("set_detector needs episodes to extract subgoals from (none were given before)")
        encoder = self.encoder_fn if self._user_encoder else resolve_encoder(None, det)
        explicit = self._explicit if self._user_encoder else None
        old = self.detector, self.encoder_fn
        self.detector, self.encoder_fn = det, encoder
        try:
            new_set = self._build(det, source, explicit, None)
        except Exception:
            self.detector, self.encoder_fn = old
            raise
        self._episodes_source = source
        self.subgoal_set = new_set

    def _set_subgoals(self, embeddings: Any, weights: Any = None) -> None:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None]
        dim = self._check_encoder(self.encoder_fn)
        if emb.ndim != 2 or emb.shape[1] != dim:
            raise ValueError(
                f"subgoal embeddings must be (K, {dim}) (the encoder's output size), got {emb.shape}"
            )
        self.subgoal_set = SubgoalSet(emb, weights, self.threshold, None)

    def _match(self, frames: np.ndarray) -> np.ndarray:
        return self.subgoal_set.match(_embed(self.encoder_fn, frames, "observation"))


# --------------------------------------------------------------------------------------------------
# the wrapper
# --------------------------------------------------------------------------------------------------


class SubgoalReward(CritwrapWrapper, gym.Wrapper[Any, Any, Any, Any], _SubgoalCore):
    """Reward for reaching critical states of successful episodes (potential-based by default).

    Args:
        env: an env with array (``Box``) observations, e.g. images.
        detector: a :class:`~critwrap.detectors.base.Detector` or the directory of a saved one; it picks
            the critical steps of ``episodes`` and, without ``encoder``, embeds frames
            (:meth:`~critwrap.detectors.base.Detector.embed`).
        episodes: :class:`~critwrap.episodes.Episode` objects, an ``EpisodeStore`` or its directory;
            the successful ones (``label``, else ``episode_return``, > ``success_above``) give the subgoals.
        subgoals: extra subgoals: embeddings (K, D), or observations (K, *obs_shape) which are embedded
            (an array whose trailing shape is the observation shape is read as observations).
        encoder: a callable ``frames (N, ...) -> (N, D)`` or its import path (``"pkg.mod:fn"``); default
            ``detector.embed``. :func:`pixel_encoder` matches raw pixels.
        threshold: cosine similarity at which an observation reaches a subgoal (and at which two
            extracted subgoals are merged).
        bonus: the value of a subgoal (times its weight).
        weights: one weight per subgoal, or a number for all (default 1).
        potential_based: ``r + gamma * (1 - terminated) * phi(s') - phi(s)`` (keeps the optimal policy);
            ``False``: ``r + bonus * weight`` at the step a subgoal is reached.
        gamma: the discount of the potential-based form (use the agent's).
        k: critical steps taken from each successful episode (the detector's top ``k``); ``None``: all
            steps passing ``score_threshold``.
        score_threshold: only steps the detector scores at least this high.
        success_above: an episode is successful when its label (else return) is above this.
        exclude_failed: drop candidate subgoals that a frame of a failed episode also reaches (states
            failures visit too, such as the start views, do not mark progress).
        detector_device: move the detector there (``"cuda"``, ``"cuda:1"``; a ``DSI`` can, see
            :meth:`critwrap.detectors.dsi.DSI.to`) so that every step's frames are embedded on that
            device; a saved detector given to :meth:`set_detector` later is loaded there too. ``None``
            (default): leave it where it is (a saved one loads on the CPU).

    Hot swap (what :class:`critwrap.callbacks` ``DetectorRefresh`` calls during training):

    * :meth:`set_detector` ``(detector, episodes=None)``: use another detector and re-extract the
      subgoals from ``episodes`` (default: the episodes given before);
    * :meth:`set_subgoals` ``(embeddings, weights=None)``: replace the subgoals by these embeddings
      (raw cosine, no centering).

    Both take effect at the next step; the subgoals reached in the running episode are forgotten then.

    Raises:
        ValueError: at construction, when the detector / encoder cannot embed the env's observations
            (frames of another shape), episodes have frames of another shape, or the subgoal set is empty.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        detector: Detector | str | None = None,
        episodes: Any = None,
        subgoals: Any = None,
        encoder: Encoder | str | None = None,
        threshold: float = 0.99,
        bonus: float = 1.0,
        weights: Any = None,
        potential_based: bool = True,
        gamma: float = 0.99,
        k: int | None = 3,
        score_threshold: float | None = None,
        success_above: float = 0.0,
        exclude_failed: bool = False,
        detector_device: str | None = None,
    ) -> None:
        CritwrapWrapper.__init__(
            self,
            detector=detector,
            episodes=episodes,
            subgoals=subgoals,
            encoder=encoder,
            threshold=threshold,
            bonus=bonus,
            weights=weights,
            potential_based=potential_based,
            gamma=gamma,
            k=k,
            score_threshold=score_threshold,
            success_above=success_above,
            exclude_failed=exclude_failed,
            detector_device=detector_device,
        )
        gym.Wrapper.__init__(self, env)
        self._setup(
            env.observation_space,
            "SubgoalReward",
            detector,
            episodes,
            subgoals,
            encoder,
            threshold,
            bonus,
            weights,
            potential_based,
            gamma,
            k,
            score_threshold,
            success_above,
            exclude_failed,
            detector_device,
        )
        self._reached = np.zeros(len(self.subgoal_set), dtype=bool)

    @property
    def reached(self) -> np.ndarray:
        """Which subgoals this episode has reached (a copy)."""
        return self._reached.copy()

    @property
    def potential(self) -> float:
        """``phi`` of the current state: ``bonus`` times the summed weights of the reached subgoals."""
        return float(self.bonus * (self._reached @ self.subgoal_set.weights))

    def set_detector(self, detector: Detector | str, episodes: Any = None) -> None:
        """Use ``detector`` from now on and re-extract the subgoals from ``episodes`` (default: as before)."""
        self._set_detector(detector, episodes)
        self._reached = np.zeros(len(self.subgoal_set), dtype=bool)

    def set_subgoals(self, embeddings: Any, weights: Any = None) -> None:
        """Replace the subgoals by ``embeddings`` (K, D) with ``weights`` (default 1 each)."""
        self._set_subgoals(embeddings, weights)
        self._reached = np.zeros(len(self.subgoal_set), dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._reached = self._match(np.asarray(obs)[None])[0]
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        matches = self._match(np.asarray(obs)[None])
        shaped, after, new = shaped_rewards(
            np.array([float(reward)]),
            self._reached[None],
            matches,
            np.array([bool(terminated)]),
            self.subgoal_set.weights,
            bonus=self.bonus,
            potential_based=self.potential_based,
            gamma=self.gamma,
        )
        self._reached = after[0]
        value = float(shaped[0])
        info = {
            **info,
            "original_reward": float(reward),
            "subgoal_bonus": value - float(reward),
            "subgoals_reached": int(after[0].sum()),
            "new_subgoals": [int(i) for i in np.flatnonzero(new[0])],
        }
        return obs, value, terminated, truncated, info
