"""RTG gap: the important states of the Feedback Decision Transformer (Giladi & Katz).

From logged episodes with actions and rewards, states are grouped by a hash of a coarse version of the
observation; for every (state, action) the discounted return-to-go is averaged; states seen with at least
two actions are ranked by the gap between their best and worst action's mean return-to-go. A big gap
means the choice of action there matters: that is where FDT asks for feedback.

Details follow ``generate_important_states.py`` of liadgiladi/feedback-decision-transformer:

* **hash**: the frame (stack) is max-pooled with kernel = stride = ``pool`` (the official 7: 84x84 ->
  12x12), after zeroing ``mask_regions`` (score / lives areas, as the official code does per game); the
  pooled bytes are hashed. Vector observations are rounded to ``round_decimals`` and hashed.
  Subclass and override :meth:`RTGGap.state_keys` for any other grouping.
* **return-to-go** ``G_t = sum_n gamma^n r_{t+n}`` within the episode (``gamma`` 0.9). With
  ``life_loss_penalty`` (a negative number) and ``life_loss_window`` ``w``, the official rule: a step
  whose episode lasts more than ``w`` further steps gets the penalty when a life is lost within steps
  ``t + life_loss_window_start .. t + w - 1``; the last ``w`` steps of an episode always get it (the
  episode end is a game over), unless its metadata says it was truncated and not terminated (then only
  life losses count). Lives come from ``episode.infos[lives_key]`` (the info after each step, a drop
  from the previous step is a life loss); without them only the episode end counts.
* **first visit**: within one episode only the first visit of a (state, action) pair adds its
  return-to-go to the average (``first_visit=True``, the official default).
* actions with fewer than ``min_samples`` samples are dropped; states left with >= 2 actions and a
  positive gap are ranked by gap (ties: the state seen first ranks first).

Not carried over from the official code: its per-game "feedback validators" (which steps may receive
feedback, e.g. only where reward is sparse), the cut at the first 500,000 transitions, the window that
de-duplicates nearby important indices, and the per-game offsets of the life-loss window (use
``life_loss_window_start``).

Example:
    >>> import numpy as np
    >>> from critwrap.episodes import Episode
    >>> from critwrap.detectors.rtg_gap import RTGGap
    >>> obs = np.array([[0.0], [1.0], [2.0]])                  # state 1.0 decides the outcome
    >>> good = Episode(obs, actions=[0, 1, 0], rewards=[0, 0, 1])
    >>> bad = Episode(obs, actions=[0, 0, 0], rewards=[0, 0, 0])
    >>> det = RTGGap(gamma=0.9).fit([good, bad])
    >>> top = det.important_states(1)[0]
    >>> top.best_action, top.worst_action, round(top.gap, 3), top.occurrences
    (1, 0, 0.9, [(0, 1), (1, 1)])
    >>> det.score(obs).tolist()
    [0.0, 1.0, 0.0]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from critwrap.detectors.base import Detector, DetectorFormatError

__all__ = ["ImportantState", "RTGGap"]

_DIGEST = 16  # bytes of a state hash


@dataclass(frozen=True)
class ImportantState:
    """One ranked state: its hash (hex), best / worst action by mean return-to-go, the gap between them,
    the mean return-to-go of each action seen there and its number of samples, and where it occurs: ``(episode, step)`` pairs, the
    episode being its position in the iterable given to :meth:`RTGGap.fit`."""

    hash: str
    best_action: int
    worst_action: int
    gap: float
    action_rtg: dict[int, float]
    action_counts: dict[int, int]
    occurrences: list[tuple[int, int]]


def _normalise_regions(regions: Any) -> list[list[int | None]]:
    out: list[list[int | None]] = []
    for region in regions or []:
        if len(region) == 2 and all(isinstance(s, slice) for s in region):
            rows, cols = region
            if rows.step not in (None, 1) or cols.step not in (None, 1):
                raise ValueError(f"mask region slices must have step 1, got {region}")
            box = [rows.start, rows.stop, cols.start, cols.stop]
        elif len(region) == 4:
            box = list(region)
        else:
            raise ValueError(
                f"a mask region is a box [row_start, row_stop, col_start, col_stop] or a pair of slices "
                f"(rows, cols), got {region!r}"
            )
        out.append([None if v is None else int(v) for v in box])
    return out


class RTGGap(Detector):
    """Rank states by the gap between their best and worst action's mean discounted return-to-go (FDT).

    Args:
        gamma: discount of the return-to-go.
        pool: max-pool kernel and stride over the two spatial axes of image observations (1: no pooling).
        mask_regions: boxes ``[row_start, row_stop, col_start, col_stop]`` (or pairs of slices) of the
            frame, in pixels, zeroed before hashing (e.g. Breakout's score: ``[[0, 6, 0, 48]]``).
        round_decimals: decimals kept when hashing vector observations.
        channels_last: layout of 3-D frames (H, W, C) vs (C, H, W); ``None`` guesses from the shape
            (a last axis of at most 4 is channels).
        first_visit: count only the first visit of a (state, action) pair per episode.
        min_samples: drop (state, action) pairs with fewer return-to-go samples than this.
        life_loss_penalty, life_loss_window, life_loss_window_start, lives_key: the optional life-loss
            penalty (see the module docstring); off while ``life_loss_penalty`` is 0.
        budget: how many top states :meth:`score` and :meth:`important_states` use (``None``: all).
    """

    registry_name: ClassVar[str] = "rtg-gap"

    def __init__(
        self,
        gamma: float = 0.9,
        pool: int = 7,
        mask_regions: Sequence[Any] | None = None,
        round_decimals: int = 2,
        channels_last: bool | None = None,
        first_visit: bool = True,
        min_samples: int = 1,
        life_loss_penalty: float = 0.0,
        life_loss_window: int = 0,
        life_loss_window_start: int = 0,
        lives_key: str = "lives",
        budget: int | None = None,
    ) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if int(pool) < 1:
            raise ValueError(f"pool must be a positive integer, got {pool}")
        if int(min_samples) < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        if int(life_loss_window) < 0 or int(life_loss_window_start) < 0:
            raise ValueError("life_loss_window and life_loss_window_start must be >= 0")
        if budget is not None and int(budget) < 1:
            raise ValueError(f"budget must be a positive integer or None, got {budget}")
        self.gamma = float(gamma)
        self.pool = int(pool)
        self.mask_regions = _normalise_regions(mask_regions)
        self.round_decimals = int(round_decimals)
        self.channels_last = channels_last
        self.first_visit = bool(first_visit)
        self.min_samples = int(min_samples)
        self.life_loss_penalty = float(life_loss_penalty)
        self.life_loss_window = int(life_loss_window)
        self.life_loss_window_start = int(life_loss_window_start)
        self.lives_key = str(lives_key)
        self.budget = None if budget is None else int(budget)
        self._clear()

    def _clear(self) -> None:
        self._hashes: list[bytes] = []  # ranked states, best gap first
        self._index: dict[bytes, int] = {}
        self._best = np.zeros(0, dtype=np.int64)
        self._worst = np.zeros(0, dtype=np.int64)
        self._gap = np.zeros(0, dtype=np.float64)
        self._act_offsets = np.zeros(1, dtype=np.int64)
        self._act_ids = np.zeros(0, dtype=np.int64)
        self._act_rtg = np.zeros(0, dtype=np.float64)
        self._act_counts = np.zeros(0, dtype=np.int64)
        self._occ_offsets = np.zeros(1, dtype=np.int64)
        self._occ_episode = np.zeros(0, dtype=np.int64)
        self._occ_step = np.zeros(0, dtype=np.int64)
        self.n_states_seen: int | None = None  # distinct states of the last fit (not saved)
        self._fitted = False

    # ---- hashing -----------------------------------------------------------------------------
    def state_keys(self, frames: np.ndarray) -> list[bytes]:
        """One hash (16 bytes) per observation of ``frames`` (T, ...). Override to group states otherwise."""
        x = np.asarray(frames)
        if x.ndim <= 2:  # vector observations (T,) or (T, D)
            v = np.round(x.reshape(len(x), -1).astype(np.float64), self.round_decimals) + 0.0
            rows = [r.tobytes() for r in v]
        else:
            rows = [r.tobytes() for r in self._pooled(x)]
        return [hashlib.blake2b(r, digest_size=_DIGEST).digest() for r in rows]

    def state_hashes(self, frames: np.ndarray) -> list[str]:
        """The hex hashes of :meth:`state_keys` (what :class:`ImportantState` and :meth:`best_action` use)."""
        return [k.hex() for k in self.state_keys(frames)]

    def _pooled(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:  # (T, H, W)
            x = x[:, None]
        elif x.ndim == 4:
            cl = self.channels_last
            if cl is None:
                if x.shape[-1] <= 4 < x.shape[1]:
                    cl = True
                elif x.shape[1] <= 4 < x.shape[-1]:
                    cl = False
                else:
                    raise ValueError(
                        f"cannot tell channels from spatial axes in frames of shape {x.shape[1:]}; "
                        "pass channels_last=True (H, W, C) or False (C, H, W)"
                    )
            if cl:
                x = np.moveaxis(x, -1, 1)
        else:
            raise ValueError(
                f"RTGGap hashes vectors (T, D) or frames (T, H, W[, C]); got shape {x.shape}. "
                "Reshape the observations or override state_keys()"
            )
        T, C, H, W = x.shape
        if self.mask_regions:
            x = x.copy()
            for r0, r1, c0, c1 in self.mask_regions:
                x[:, :, r0:r1, c0:c1] = 0
        p = self.pool
        if H < p or W < p:
            raise ValueError(f"frames of {H}x{W} pixels are smaller than the pooling kernel pool={p}")
        h, w = H // p, W // p
        x = x[:, :, : h * p, : w * p].reshape(T, C, h, p, w, p).max(axis=(3, 5))
        return np.ascontiguousarray(x)

    # ---- fitting -----------------------------------------------------------------------------
    def _check_episode(self, ep: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(ep, "observations"):
            raise TypeError(f"episode {i} is a {type(ep).__name__}, not a critwrap.episodes.Episode")
        if ep.actions is None or ep.rewards is None:
            missing = " and ".join(
                n for n, v in (("actions", ep.actions), ("rewards", ep.rewards)) if v is None
            )
            raise ValueError(
                f"RTGGap needs per-step actions and rewards; episode {i} has no {missing}. Record episodes "
                "with actions and rewards (e.g. critwrap.episodes.RecordEpisodes or `zoo record agent`)"
            )
        actions = np.asarray(ep.actions)
        if actions.ndim > 1:
            if int(np.prod(actions.shape[1:])) != 1:
                raise ValueError(
                    f"RTGGap needs discrete actions; episode {i} has actions of shape {actions.shape}"
                )
            actions = actions.reshape(len(actions))
        if actions.size and not np.all(actions == np.round(actions)):
            raise ValueError(f"RTGGap needs discrete (integer) actions; episode {i} has non-integer actions")
        return actions.astype(np.int64), np.asarray(ep.rewards, dtype=np.float64)

    def _returns_to_go(
        self, rewards: np.ndarray, lives: np.ndarray | None, ends_in_terminal: bool = True
    ) -> np.ndarray:
        T = len(rewards)
        rtg = np.zeros(T, dtype=np.float64)
        running = 0.0
        for t in range(T - 1, -1, -1):
            running = rewards[t] + self.gamma * running
            rtg[t] = running
        if self.life_loss_penalty != 0.0:
            terminal = np.zeros(T, dtype=bool)
            if lives is not None:
                lv = np.asarray(lives, dtype=np.float64).reshape(T)
                terminal[1:] = lv[1:] < lv[:-1]
            terminal[-1] = ends_in_terminal  # game over (every episode of the official data ends so)
            w, s = self.life_loss_window, self.life_loss_window_start
            for t in range(T):
                if T - t > w or not ends_in_terminal:
                    if terminal[t + s : t + w].any():
                        rtg[t] += self.life_loss_penalty
                else:
                    rtg[t] += self.life_loss_penalty
        return rtg

    def fit(self, episodes: Iterable[Any], **kwargs: Any) -> RTGGap:
        """Rank the states of ``episodes`` (Episodes with actions and rewards, or an ``EpisodeStore``)."""
        if kwargs:
            raise TypeError(f"RTGGap.fit takes no options, got {sorted(kwargs)}")
        if isinstance(episodes, Sequence):  # check everything before any work
            for i, ep in enumerate(episodes):
                self._check_episode(ep, i)
        ids: dict[bytes, int] = {}
        keys: list[bytes] = []
        sums: dict[tuple[int, int], float] = {}
        counts: dict[tuple[int, int], int] = {}
        occ_state: list[np.ndarray] = []
        occ_ep: list[np.ndarray] = []
        n_episodes = 0
        for i, ep in enumerate(episodes):
            actions, rewards = self._check_episode(ep, i)
            lives = ep.infos.get(self.lives_key) if getattr(ep, "infos", None) else None
            meta = getattr(ep, "metadata", None) or {}
            cut = bool(meta.get("truncated")) and not meta.get("terminated")
            rtg = self._returns_to_go(rewards, lives, ends_in_terminal=not cut)
            state_ids = np.empty(len(actions), dtype=np.int64)
            for t, key in enumerate(self.state_keys(ep.observations)):
                sid = ids.get(key)
                if sid is None:
                    sid = ids[key] = len(keys)
                    keys.append(key)
                state_ids[t] = sid
            seen: set[tuple[int, int]] = set()
            for t in range(len(actions)):
                pair = (int(state_ids[t]), int(actions[t]))
                if self.first_visit:
                    if pair in seen:
                        continue
                    seen.add(pair)
                sums[pair] = sums.get(pair, 0.0) + float(rtg[t])
                counts[pair] = counts.get(pair, 0) + 1
            occ_state.append(state_ids)
            occ_ep.append(np.full(len(actions), i, dtype=np.int64))
            n_episodes += 1
        if n_episodes == 0:
            raise ValueError("RTGGap.fit got no episodes")

        per_state: dict[int, list[tuple[int, float, int]]] = {}
        for (sid, action), n in counts.items():  # insertion order: first occurrence
            if n >= self.min_samples:
                per_state.setdefault(sid, []).append((action, sums[(sid, action)] / n, n))
        ranked: list[tuple[float, int, list[tuple[int, float, int]]]] = []
        for sid, acts in per_state.items():
            if len(acts) < 2:
                continue
            best = max(acts, key=lambda a: a[1])
            worst = min(acts, key=lambda a: a[1])
            gap = best[1] - worst[1]
            if gap > 0:
                ranked.append((gap, sid, sorted(acts)))
        ranked.sort(key=lambda item: (-item[0], item[1]))  # ties: the state seen first ranks first

        all_states = np.concatenate(occ_state) if occ_state else np.zeros(0, dtype=np.int64)
        all_eps = np.concatenate(occ_ep) if occ_ep else np.zeros(0, dtype=np.int64)
        all_steps = (
            np.concatenate([np.arange(len(s)) for s in occ_state])
            if occ_state
            else np.zeros(0, dtype=np.int64)
        )
        rank_of = np.full(len(keys), -1, dtype=np.int64)
        for r, (_, sid, _) in enumerate(ranked):
            rank_of[sid] = r
        occ_rank = rank_of[all_states]
        keep = occ_rank >= 0
        order = np.lexsort((all_steps[keep], all_eps[keep], occ_rank[keep]))  # by rank, then episode, step

        self._clear()
        self._hashes = [keys[sid] for _, sid, _ in ranked]
        self._index = {h: r for r, h in enumerate(self._hashes)}
        self._gap = np.asarray([g for g, _, _ in ranked], dtype=np.float64)
        self._best = np.asarray([max(a, key=lambda x: x[1])[0] for _, _, a in ranked], dtype=np.int64)
        self._worst = np.asarray([min(a, key=lambda x: x[1])[0] for _, _, a in ranked], dtype=np.int64)
        self._act_offsets = np.cumsum([0] + [len(a) for _, _, a in ranked]).astype(np.int64)
        self._act_ids = np.asarray([x[0] for _, _, a in ranked for x in a], dtype=np.int64)
        self._act_rtg = np.asarray([x[1] for _, _, a in ranked for x in a], dtype=np.float64)
        self._act_counts = np.asarray([x[2] for _, _, a in ranked for x in a], dtype=np.int64)
        self._occ_episode = all_eps[keep][order]
        self._occ_step = all_steps[keep][order]
        per_rank = (
            np.bincount(occ_rank[keep], minlength=len(ranked)) if len(ranked) else np.zeros(0, np.int64)
        )
        self._occ_offsets = np.concatenate([[0], np.cumsum(per_rank)]).astype(np.int64)
        self.n_states_seen = len(keys)
        self._fitted = True
        return self

    # ---- queries -----------------------------------------------------------------------------
    def _require_fit(self) -> None:
        if not self._fitted:
            raise RuntimeError("this RTGGap is not fitted: call fit(episodes) or RTGGap.load(path) first")

    def __len__(self) -> int:
        """Number of ranked states (seen with >= 2 actions and a positive gap)."""
        return len(self._hashes)

    def _budget(self, budget: int | None) -> int:
        b = budget if budget is not None else self.budget
        return len(self._hashes) if b is None else min(int(b), len(self._hashes))

    def important_states(self, budget: int | None = None) -> list[ImportantState]:
        """The top ``budget`` states by gap (default: the constructor's ``budget``, else all)."""
        self._require_fit()
        out = []
        for r in range(self._budget(budget)):
            a0, a1 = self._act_offsets[r], self._act_offsets[r + 1]
            o0, o1 = self._occ_offsets[r], self._occ_offsets[r + 1]
            out.append(
                ImportantState(
                    hash=self._hashes[r].hex(),
                    best_action=int(self._best[r]),
                    worst_action=int(self._worst[r]),
                    gap=float(self._gap[r]),
                    action_rtg={int(a): float(v) for a, v in zip(self._act_ids[a0:a1], self._act_rtg[a0:a1])},
                    action_counts={
                        int(a): int(n) for a, n in zip(self._act_ids[a0:a1], self._act_counts[a0:a1])
                    },
                    occurrences=[
                        (int(e), int(s)) for e, s in zip(self._occ_episode[o0:o1], self._occ_step[o0:o1])
                    ],
                )
            )
        return out

    def _rank(self, state_hash: str | bytes) -> int | None:
        key = bytes.fromhex(state_hash) if isinstance(state_hash, str) else bytes(state_hash)
        r = self._index.get(key)
        return r if r is not None and r < self._budget(None) else None

    def best_action(self, state_hash: str | bytes) -> int | None:
        """Best action (by mean return-to-go) of a ranked state, ``None`` if the state is not ranked."""
        self._require_fit()
        r = self._rank(state_hash)
        return None if r is None else int(self._best[r])

    def score(self, frames: np.ndarray) -> np.ndarray:
        """Gap of each step's state divided by the largest gap (in [0, 1]); 0 for states not ranked."""
        self._require_fit()
        out = np.zeros(len(frames), dtype=np.float64)
        top = self._gap[: self._budget(None)]
        if len(top) == 0:
            return out
        scale = float(top.max())
        for t, key in enumerate(self.state_keys(np.asarray(frames))):
            r = self._index.get(key)
            if r is not None and r < len(top):
                out[t] = top[r] / scale
        return out

    # ---- persistence -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "gamma": self.gamma,
            "pool": self.pool,
            "mask_regions": self.mask_regions,
            "round_decimals": self.round_decimals,
            "channels_last": self.channels_last,
            "first_visit": self.first_visit,
            "min_samples": self.min_samples,
            "life_loss_penalty": self.life_loss_penalty,
            "life_loss_window": self.life_loss_window,
            "life_loss_window_start": self.life_loss_window_start,
            "lives_key": self.lives_key,
            "budget": self.budget,
        }

    _STATE_KEYS: ClassVar[tuple[str, ...]] = (
        "hashes",
        "best_action",
        "worst_action",
        "gap",
        "action_offsets",
        "action_ids",
        "action_rtg",
        "action_counts",
        "occurrence_offsets",
        "occurrence_episode",
        "occurrence_step",
    )

    def _get_state(self) -> dict[str, np.ndarray]:
        if not self._fitted:
            return {}
        hashes = np.frombuffer(b"".join(self._hashes), dtype=np.uint8).reshape(len(self._hashes), _DIGEST)
        return {
            "hashes": hashes,
            "best_action": self._best,
            "worst_action": self._worst,
            "gap": self._gap,
            "action_offsets": self._act_offsets,
            "action_ids": self._act_ids,
            "action_rtg": self._act_rtg,
            "action_counts": self._act_counts,
            "occurrence_offsets": self._occ_offsets,
            "occurrence_episode": self._occ_episode,
            "occurrence_step": self._occ_step,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._clear()
        if not state:
            return
        missing = [k for k in self._STATE_KEYS if k not in state]
        if missing:
            raise DetectorFormatError(f"RTGGap checkpoint lacks {missing}")
        hashes = np.asarray(state["hashes"], dtype=np.uint8).reshape(-1, _DIGEST)
        n = len(hashes)
        if not (len(state["gap"]) == len(state["best_action"]) == len(state["worst_action"]) == n) or not (
            len(state["action_offsets"]) == len(state["occurrence_offsets"]) == n + 1
        ):
            raise DetectorFormatError("RTGGap checkpoint arrays have inconsistent lengths")
        self._hashes = [bytes(h) for h in hashes]
        self._index = {h: r for r, h in enumerate(self._hashes)}
        self._best = np.asarray(state["best_action"], dtype=np.int64)
        self._worst = np.asarray(state["worst_action"], dtype=np.int64)
        self._gap = np.asarray(state["gap"], dtype=np.float64)
        self._act_offsets = np.asarray(state["action_offsets"], dtype=np.int64)
        self._act_ids = np.asarray(state["action_ids"], dtype=np.int64)
        self._act_rtg = np.asarray(state["action_rtg"], dtype=np.float64)
        self._act_counts = np.asarray(state["action_counts"], dtype=np.int64)
        self._occ_offsets = np.asarray(state["occurrence_offsets"], dtype=np.int64)
        self._occ_episode = np.asarray(state["occurrence_episode"], dtype=np.int64)
        self._occ_step = np.asarray(state["occurrence_step"], dtype=np.int64)
        self._fitted = True
