"""``Windowed``: score whole episodes with a detector trained on fixed-length windows (critwrap's addition).

The Deep State Identifier is trained on short clips: the paper's Pong detector learns from the frames
before one point is won or lost, its Seaquest detector from 200-frame windows. A detector fitted on
``width``-frame windows sees a different time scale from a whole episode of thousands of frames (its
per-frame mask is normalised over the clip it is given), so scoring a whole episode at once asks it
something it was not trained on. ``Windowed`` wraps such a detector and scores an episode the way it
was trained: windows of ``width`` frames every ``stride`` steps, the last window aligned to the
episode's end, every frame's score the mean over the windows that contain it. An episode of at most
``width`` frames is one window (scored as is).

It is a :class:`~critwrap.detectors.base.Detector` like any other, so it goes wherever a detector does
(``SubgoalReward``, ``CriticalNStepReplayBuffer``, ``CriticalAttack`` / ``zoo attack``, ``zoo detect``):

* ``fit`` fits the member on the episodes as given. Cut them into windows yourself when the member
  should learn from clips (:func:`cut_windows` cuts every episode into labelled windows; labels are the
  episode's own unless you pass a ``label`` function);
* ``score`` / ``score_batch`` score all windows of all episodes in one call of the member's
  ``score_batch`` (one batched forward pass for a DSI);
* ``embed`` is the member's (per-frame features do not depend on the window);
* ``save`` / ``load`` write one directory (the member's config in ``config.json``, its weights in
  ``weights.safetensors``; nothing is unpickled), so a saved ``Windowed`` detector is used by path
  like any other.

Example:
    >>> import numpy as np
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> det = Windowed(RandomDetector(seed=0), width=4, stride=2)
    >>> det.starts(9)  # windows [0, 4), [2, 6), [4, 8) and the last one aligned to the end, [5, 9)
    [0, 2, 4, 5]
    >>> det.score(np.zeros((9, 4, 4, 3), dtype=np.uint8)).shape
    (9,)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from critwrap.detectors.base import Detector

__all__ = ["Windowed", "cut_windows"]


class Windowed(Detector):
    """Score an episode with ``member`` on sliding windows of ``width`` frames (see the module docstring).

    Args:
        member: the detector trained on windows (fitted or not), or its saved config
            (``{"detector": registry name, "config": {...}}``).
        width: frames per window (the clip length the member was trained on).
        stride: steps between window starts (default ``width // 2``: every frame lies in about two
            windows). ``stride == width`` gives disjoint windows (plus the end-aligned last one).
        fit_on_windows: ``fit`` cuts the episodes it is given into disjoint ``width``-frame clips
            (:func:`cut_windows`: each with its episode's label, or its own rewards) before fitting the
            member, so that callers that refit on whole episodes (``DetectorRefresh``) train it on clips.
            Default ``False``: the member is fitted on the episodes as given.
        position_profile: ``width`` numbers subtracted from every window's scores by position before the
            windows are averaged (set it with :meth:`fit_position_profile`). A detector trained on clips
            that end where the outcome is decided learns where in a clip to look: its scores rise towards
            the clip's end whatever the clip shows. Averaged over overlapping windows that prior cancels
            out except at the episode's end, which only the end-aligned last window covers, so the last
            frames of every episode come out on top. Subtracting the member's mean score at each position
            (over many windows) removes it. ``None`` (default): scores are averaged as they are.
    """

    registry_name: ClassVar[str] = "windowed"

    def __init__(
        self,
        member: Detector | dict[str, Any],
        width: int,
        stride: int | None = None,
        fit_on_windows: bool = False,
        position_profile: Sequence[float] | None = None,
    ) -> None:
        from critwrap.detectors.ensemble import _member

        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width must be an integer >= 1 (frames per window), got {width!r}")
        stride = max(1, int(width) // 2) if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= width:
            raise ValueError(
                f"stride must be an integer between 1 and width={width} (a larger stride would leave frames "
                f"unscored), got {stride!r}"
            )
        self.member = _member(member)
        self.width, self.stride = int(width), int(stride)
        self.fit_on_windows = bool(fit_on_windows)
        self.position_profile: np.ndarray | None = None
        if position_profile is not None:
            prof = np.asarray(position_profile, dtype=np.float64)
            if prof.shape != (self.width,) or not np.isfinite(prof).all():
                raise ValueError(
                    f"position_profile must hold width={self.width} finite numbers, got shape {prof.shape}"
                )
            self.position_profile = prof

    def fit_position_profile(self, episodes: Iterable[Any]) -> Windowed:
        """Set :attr:`position_profile` to the member's mean score at each position of a window, over all
        full ``width``-frame windows (as :meth:`score` cuts them) of ``episodes`` (arrays of frames or
        :class:`~critwrap.episodes.Episode` objects, e.g. the detector's training games). Episodes shorter
        than ``width`` are skipped; at least one must be long enough."""
        from critwrap.episodes import Episode

        clips: list[np.ndarray] = []
        for ep in episodes:
            frames = np.asarray(ep.observations if isinstance(ep, Episode) else ep)
            if len(frames) >= self.width:
                clips.extend(frames[s : s + self.width] for s in self.starts(len(frames)))
        if not clips:
            raise ValueError(f"fit_position_profile needs an episode of at least width={self.width} frames")
        parts = np.stack([np.asarray(m, dtype=np.float64) for m in self.member.score_batch(clips)])
        self.position_profile = parts.mean(axis=0)
        return self

    def starts(self, n: int) -> list[int]:
        """First steps of the windows that cover an episode of ``n`` frames."""
        if n < 0:
            raise ValueError(f"an episode cannot have {n} frames")
        if n <= self.width:
            return [0]
        s = list(range(0, n - self.width + 1, self.stride))
        if s[-1] != n - self.width:
            s.append(n - self.width)
        return s

    @property
    def is_fitted(self) -> bool:
        """Whether the member is fitted (members without an ``is_fitted`` attribute count as fitted)."""
        return bool(getattr(self.member, "is_fitted", True))

    def fit(self, episodes: Iterable[Any], **kwargs: Any) -> Windowed:
        """Fit the member on ``episodes`` as given, or on their ``width``-frame clips with ``fit_on_windows``
        (otherwise cut them yourself with :func:`cut_windows` to train on clips)."""
        if self.fit_on_windows:
            episodes = cut_windows(episodes, self.width)
            if "val_episodes" in kwargs and kwargs["val_episodes"] is not None:
                kwargs["val_episodes"] = cut_windows(kwargs["val_episodes"], self.width)
        self.member.fit(episodes, **kwargs)
        return self

    def score(self, frames: np.ndarray) -> np.ndarray:
        return self.score_batch([np.asarray(frames)])[0]

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        episodes = [np.asarray(f) for f in episodes]
        clips: list[np.ndarray] = []
        plan: list[list[int]] = []
        for frames in episodes:
            if frames.ndim < 1:
                raise ValueError(f"frames must be an array (T, ...), got shape {frames.shape}")
            starts = self.starts(len(frames))
            plan.append(starts)
            clips.extend(frames[s : s + self.width] for s in starts)
        parts = self.member.score_batch(clips) if clips else []
        out: list[np.ndarray] = []
        i = 0
        for frames, starts in zip(episodes, plan, strict=True):
            n = len(frames)
            total, count = np.zeros(n), np.zeros(n)
            for s in starts:
                m = np.asarray(parts[i], dtype=np.float64)
                i += 1
                if m.shape != (min(self.width, n - s),):
                    raise ValueError(
                        f"the member detector returned {m.shape} scores for a window of "
                        f"{min(self.width, n - s)} frames"
                    )
                if self.position_profile is not None:
                    m = m - self.position_profile[: len(m)]
                total[s : s + len(m)] += m
                count[s : s + len(m)] += 1
            out.append((total / np.maximum(count, 1)).astype(np.float32))
        return out

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return self.member.embed(frames)

    def to(self, device: Any) -> Windowed:
        self.member.to(device)
        return self

    def get_config(self) -> dict[str, Any]:
        if not self.member.registry_name:
            raise ValueError(
                f"{type(self.member).__name__} has no registry_name; register it in the critwrap.detectors "
                "entry-point group to save it inside a Windowed detector"
            )
        return {
            "member": {"detector": self.member.registry_name, "config": self.member.get_config()},
            "width": self.width,
            "stride": self.stride,
            "fit_on_windows": self.fit_on_windows,
            "position_profile": None if self.position_profile is None else self.position_profile.tolist(),
        }

    def _get_state(self) -> dict[str, np.ndarray]:
        return self.member._get_state()

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.member._set_state(state)


def cut_windows(
    episodes: Iterable[Any],
    width: int,
    stride: int | None = None,
    label: Callable[[Any, int, int], int] | None = None,
) -> list[Any]:
    """Cut every episode into windows of ``width`` frames (``stride`` apart, default ``width``: disjoint,
    plus a last window aligned to the episode's end when the stride does not reach it, so no frame is left
    out), as :class:`critwrap.episodes.Episode` objects that :meth:`Windowed.fit` can hand to its member.

    A window's label is its episode's own (``episode.label``, possibly ``None``) unless
    ``label(episode, start, stop)`` gives one (e.g. whether a point is lost within the window); a window
    of an episode with rewards keeps its own rewards, so its return is the return within the window. Episodes shorter than ``width`` give one
    window of all their frames. An episode is an :class:`~critwrap.episodes.Episode` (its observations,
    actions and rewards are sliced) or a plain array of frames (T, ...), which then needs ``label``.
    """
    from critwrap.episodes import Episode

    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    stride = int(width) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    out: list[Any] = []
    for ep in episodes:
        is_episode = isinstance(ep, Episode)
        frames = np.asarray(ep.observations if is_episode else ep)
        own = ep.label if is_episode else None
        n = len(frames)
        starts = [0] if n <= width else list(range(0, n - width + 1, stride))
        if n > width and starts[-1] != n - width:
            starts.append(n - width)  # the last window aligned to the end, so that no frame is left out
        for s in starts:
            stop = min(n, s + width)
            lab = label(ep, s, stop) if label is not None else own
            if lab is None and not is_episode:
                raise ValueError(
                    "a plain array of frames has no label; pass label=(episode, start, stop) -> 0/1 to cut_windows"
                )
            cut = {
                key: getattr(ep, key)[s:stop]
                for key in ("actions", "rewards")
                if is_episode and getattr(ep, key) is not None
            }
            out.append(
                Episode(
                    frames[s:stop],
                    label=None if lab is None else int(lab),
                    metadata={"window": [s, stop]},
                    **cut,
                )
            )
    return out
