"""Oracle feedback at important states: :class:`FeedbackOracle` and the :class:`FeedbackLabels` it writes.

The Feedback Decision Transformer (Giladi & Katz) asks for feedback only where it matters: at the
important states of the offline data, ranked by :class:`~critwrap.detectors.rtg_gap.RTGGap` (the gap
between the best and the worst action's mean return-to-go; any other
:class:`~critwrap.detectors.base.Detector` works too). A strong agent, the *oracle*, acts greedily at
each selected step; the feedback is 1 where its action equals the logged action, else 0.

Which steps get feedback (``budget`` of them, counted in labelled steps as the official code counts its
"important state indices"):

* with an RTGGap (anything with ``important_states()`` and ``state_hashes()``): states in rank order; per
  state, ``occurrences="best-worst"`` (the official choice) labels the first step where its best action was
  logged and the first where its worst action was logged, ``"all"`` labels every step showing that state,
  an integer ``n`` labels those two and then further steps of the state in dataset order, ``n`` at most
  (the official ``notify_important_states_with_multiple_occurrences_n``, counted with the first two).
  Each label carries the state's best-return-to-go action, which the FDT loss pushes toward on negative
  feedback.
* with any other detector: the ``budget`` top-scoring steps of the whole dataset (no best action; the FDT
  loss then uses ``-log(1 - pi(a_logged))`` on negative feedback).

**Storage.** Labels are a file of their own (``.npz``, no pickle; written atomically), by default
``feedback.npz`` inside the dataset's folder, next to the episodes, so one dataset can carry several
label sets (budgets, oracles). Each label names its episode by id and step and keeps the logged action,
so :meth:`FeedbackLabels.flat_indices` can prove that the labels belong to the dataset they are used
with; labels for states that are not in it raise :class:`FeedbackMismatchError`.

Example:
    >>> import numpy as np
    >>> from critwrap.episodes import Episode
    >>> from critwrap.detectors.rtg_gap import RTGGap
    >>> from critwrap.feedback.oracle import FeedbackOracle
    >>> obs = np.array([[0.0], [1.0], [2.0]])          # at state 1.0, action 1 is followed by reward
    >>> eps = [Episode(obs, actions=[0, 1, 0], rewards=[0, 0, 1]), Episode(obs, actions=[0, 0, 0], rewards=[0, 0, 0])]
    >>> oracle = FeedbackOracle(lambda o: np.ones(len(o), dtype=int), selector=RTGGap(), budget=2)
    >>> labels = oracle.label(eps)
    >>> labels.episode_id.tolist(), labels.step.tolist(), labels.label.tolist(), labels.best_action.tolist()
    (['ep-000000', 'ep-000001'], [1, 1], [1, 0], [1, 1])
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import warnings
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from critwrap.detectors.base import Detector
from critwrap.episodes import Episode, EpisodeStore
from critwrap.feedback.data import OfflineData, load_episodes

__all__ = [
    "FEEDBACK_FORMAT",
    "FeedbackLabels",
    "FeedbackMismatchError",
    "FeedbackOracle",
    "default_feedback_path",
]

FEEDBACK_FORMAT = "critwrap.FeedbackLabels"
FEEDBACK_VERSION = 1


class FeedbackMismatchError(ValueError):
    """Feedback labels name states that are not in the dataset they are used with."""


def default_feedback_path(data: str | os.PathLike[str]) -> Path:
    """Where labels of the dataset folder ``data`` go by default: ``<data>/feedback.npz``."""
    return Path(data).expanduser() / "feedback.npz"


@dataclass
class FeedbackLabels:
    """Feedback at ``L`` labelled steps: where (episode id, step), what was logged, what the oracle did.

    Attributes:
        episode_id: (L,) episode ids (the store's, or ``ep-000000``... for other sources).
        step: (L,) step within the episode.
        action: (L,) the logged action there.
        oracle_action: (L,) the oracle's greedy action.
        label: (L,) int8, 1 when they agree, else 0.
        best_action: (L,) the best-return-to-go action of the state (-1: the selector gives none).
        score: (L,) the selector's score of the step (RTG gap for RTGGap).
        state_hash: (L,) the selector's state hash ("" when it has none).
        metadata: dataset, selector, budget, oracle, counts.
    """

    episode_id: np.ndarray
    step: np.ndarray
    action: np.ndarray
    oracle_action: np.ndarray
    label: np.ndarray
    best_action: np.ndarray
    score: np.ndarray
    state_hash: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.episode_id = np.asarray(self.episode_id, dtype=np.str_)
        self.state_hash = np.asarray(self.state_hash, dtype=np.str_)
        for name, dtype in (
            ("step", np.int64),
            ("action", np.int64),
            ("oracle_action", np.int64),
            ("label", np.int8),
            ("best_action", np.int64),
            ("score", np.float64),
        ):
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype).reshape(-1))
        n = len(self.episode_id)
        for name in ("step", "action", "oracle_action", "label", "best_action", "score", "state_hash"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"FeedbackLabels.{name} has {len(getattr(self, name))} entries, episode_id {n}"
                )
        if n and not np.isin(self.label, (0, 1)).all():
            raise ValueError("feedback labels must be 0 or 1")

    def __len__(self) -> int:
        return len(self.episode_id)

    @property
    def n_positive(self) -> int:
        return int((self.label == 1).sum())

    # ---- checking against a dataset ----------------------------------------------------------------
    def flat_indices(self, data: OfflineData) -> np.ndarray:
        """Flat step indices of the labels in ``data``; every label must name a step of it with the same
        logged action.

        Raises:
            FeedbackMismatchError: an unknown episode id, a step past the episode's end, or another
                logged action there (the labels were made for another dataset).
        """
        where = {eid: i for i, eid in enumerate(data.ids)}
        problems: list[str] = []
        flat = np.zeros(len(self), dtype=np.int64)
        for j in range(len(self)):
            eid, step = str(self.episode_id[j]), int(self.step[j])
            i = where.get(eid)
            if i is None:
                problems.append(f"episode {eid} does not exist")
                continue
            if not 0 <= step < int(data.lengths[i]):
                problems.append(f"episode {eid} has {int(data.lengths[i])} steps, no step {step}")
                continue
            flat[j] = data.starts[i] + step
            if int(data.actions[flat[j]]) != int(self.action[j]):
                problems.append(
                    f"episode {eid} step {step} logged action {int(data.actions[flat[j]])}, the label says "
                    f"{int(self.action[j])}"
                )
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            made_for = self.metadata.get("dataset")
            raise FeedbackMismatchError(
                f"{len(problems)} of {len(self)} feedback labels are for states not in this dataset "
                f"({data.source or 'given episodes'}): {shown}. The labels were made for "
                f"{made_for or 'another dataset'}; label this dataset with FeedbackOracle (or "
                "`python -m critwrap.zoo offline feedback`)."
            )
        return flat

    def check(self, source: str | os.PathLike[str] | EpisodeStore | Iterable[Episode] | OfflineData) -> None:
        """Raise :class:`FeedbackMismatchError` unless every label names a step of ``source``."""
        data = source if isinstance(source, OfflineData) else OfflineData.load(source)
        self.flat_indices(data)

    # ---- files -----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a ``.npz`` (no pickle), atomically; returns the path."""
        p = Path(path).expanduser()
        if p.suffix != ".npz":
            p = p.with_name(p.name + ".npz")
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FEEDBACK_FORMAT, "version": FEEDBACK_VERSION, **self.metadata}
        tmp = p.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{p.name}")
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    episode_id=self.episode_id,
                    step=self.step,
                    action=self.action,
                    oracle_action=self.oracle_action,
                    label=self.label,
                    best_action=self.best_action,
                    score=self.score,
                    state_hash=self.state_hash,
                    __meta__=np.array(json.dumps(meta, default=_json_default)),
                )
            os.replace(tmp, p)
        finally:
            if tmp.exists():
                tmp.unlink()
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeedbackLabels:
        """Read labels written by :meth:`save` (``allow_pickle=False``)."""
        p = Path(path).expanduser()
        if p.is_dir() and (p / "feedback.npz").is_file():
            p = p / "feedback.npz"
        if not p.is_file():
            raise FileNotFoundError(
                f"no feedback file at {p}; make one with `python -m critwrap.zoo offline feedback --data DIR "
                "--oracle RUN_DIR` (or FeedbackOracle(...).label(data).save(path))"
            )
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"][()]))
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except Exception as exc:
            raise ValueError(f"{p} is not a feedback file of critwrap ({type(exc).__name__}: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FEEDBACK_FORMAT:
            raise ValueError(f"{p} is not a feedback file of critwrap (format {meta.get('format')!r})")
        if int(meta.get("version", 0)) > FEEDBACK_VERSION:
            raise ValueError(f"{p} has feedback format version {meta['version']}; upgrade critwrap")
        missing = [k for k in ("episode_id", "step", "action", "oracle_action", "label") if k not in arrays]
        if missing:
            raise ValueError(f"{p} lacks the arrays {missing}")
        n = len(arrays["episode_id"])
        return cls(
            episode_id=arrays["episode_id"],
            step=arrays["step"],
            action=arrays["action"],
            oracle_action=arrays["oracle_action"],
            label=arrays["label"],
            best_action=arrays.get("best_action", np.full(n, -1)),
            score=arrays.get("score", np.zeros(n)),
            state_hash=arrays.get("state_hash", np.full(n, "")),
            metadata={k: v for k, v in meta.items() if k not in ("format", "version")},
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def _is_fitted(selector: Any) -> bool:
    try:
        selector.important_states(0)
    except RuntimeError:
        return False
    return True


class FeedbackOracle:
    """Label the logged action at the selected important states as agreeing (1) or not (0) with an oracle.

    Args:
        oracle_model: an SB3 model (``predict(obs, deterministic=True)``), a run directory or model file
            of ``python -m critwrap.zoo train`` (loaded with :func:`critwrap.zoo.common.load_run`), or a
            function ``observations (B, ...) -> actions (B,)``. It must take the observations as stored.
        selector: an :class:`~critwrap.detectors.rtg_gap.RTGGap` (default ``RTGGap()``; fitted on the
            dataset when not fitted yet) or any fitted :class:`~critwrap.detectors.base.Detector`.
        budget: number of labelled steps.
        occurrences: with an RTGGap, ``"best-worst"``, ``"all"`` or at most ``n`` steps of each state
            (module docstring).
        deterministic: the oracle acts greedily.
        batch_size: observations per oracle call.
    """

    def __init__(
        self,
        oracle_model: Any,
        selector: Detector | None = None,
        budget: int = 2500,
        *,
        occurrences: str | int = "best-worst",
        deterministic: bool = True,
        batch_size: int = 1024,
    ) -> None:
        if int(budget) < 1:
            raise ValueError(f"budget must be a positive number of labelled steps, got {budget}")
        if isinstance(occurrences, str) and occurrences.isdigit():
            occurrences = int(occurrences)
        if not (occurrences in ("best-worst", "all") or (isinstance(occurrences, int) and occurrences >= 1)):
            raise ValueError(
                f"occurrences must be 'best-worst', 'all' or a positive integer, got {occurrences!r}"
            )
        if selector is None:
            from critwrap.detectors.rtg_gap import RTGGap

            selector = RTGGap()
        if not isinstance(selector, Detector):
            raise TypeError(
                f"selector must be a critwrap Detector (e.g. RTGGap), got {type(selector).__name__}"
            )
        self.oracle_description = (
            repr(oracle_model) if not isinstance(oracle_model, str | os.PathLike) else os.fspath(oracle_model)
        )
        if isinstance(oracle_model, str | os.PathLike):
            oracle_model = _load_oracle(oracle_model)
        if not (hasattr(oracle_model, "predict") or callable(oracle_model)):
            raise TypeError(
                "oracle_model must be an SB3 model, a run directory / model file, or a function obs -> actions"
            )
        self.oracle_model = oracle_model
        self.selector = selector
        self.budget = int(budget)
        self.occurrences = occurrences
        self.deterministic = bool(deterministic)
        self.batch_size = int(batch_size)

    # ---- selection -----------------------------------------------------------------------------------
    def select(
        self, episodes: list[Episode], data: OfflineData
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The steps to label: flat indices, scores, best actions (-1: none) and state hashes."""
        sel = self.selector
        if hasattr(sel, "important_states") and hasattr(sel, "state_hashes"):
            if not _is_fitted(sel):
                sel.fit(episodes)
            ranked = sel.important_states(None)
            info = {s.hash: (r, s.best_action, s.worst_action, s.gap) for r, s in enumerate(ranked)}
            cands: list[tuple[int, int, int]] = []  # (rank, flat index, logged action)
            for i, ep in enumerate(episodes):
                for t, h in enumerate(sel.state_hashes(ep.observations)):
                    hit = info.get(h)
                    if hit is not None:
                        flat = int(data.starts[i]) + t
                        cands.append((hit[0], flat, int(data.actions[flat])))
            cands.sort()
            hash_of = [s.hash for s in ranked]
            chosen: list[tuple[int, int]] = []  # (rank, flat)
            if self.occurrences == "all":
                chosen = [(r, f) for r, f, _ in cands]
            else:
                per_rank: dict[int, list[tuple[int, int]]] = {}
                for r, f, a in cands:
                    per_rank.setdefault(r, []).append((f, a))
                for r in sorted(per_rank):
                    occ = per_rank[r]
                    _, best, worst, _ = info[hash_of[r]]
                    picks = []
                    for wanted in (best, worst):
                        first = next((f for f, a in occ if a == wanted), None)
                        if first is not None and first not in picks:
                            picks.append(first)
                    if not picks:
                        picks = [occ[0][0]]
                    if isinstance(self.occurrences, int):
                        taken = set(picks)
                        picks += [f for f, _ in occ if f not in taken]
                        picks = sorted(picks[: self.occurrences])
                    chosen.extend((r, f) for f in picks)
            chosen = chosen[: self.budget]
            flat_idx = np.asarray([f for _, f in chosen], dtype=np.int64)
            scores = np.asarray([info[hash_of[r]][3] for r, _ in chosen], dtype=np.float64)
            best_actions = np.asarray([info[hash_of[r]][1] for r, _ in chosen], dtype=np.int64)
            hashes = np.asarray([hash_of[r] for r, _ in chosen], dtype=np.str_)
            return flat_idx, scores, best_actions, hashes
        # any detector: the top `budget` steps by score over the whole dataset
        all_scores = np.concatenate(
            [np.asarray(s, dtype=np.float64) for s in sel.score_batch([e.observations for e in episodes])]
        )
        if all_scores.shape != (len(data),):
            raise ValueError(f"the selector returned {all_scores.shape} scores for {len(data)} steps")
        order = np.argsort(-all_scores, kind="stable")
        order = order[all_scores[order] > 0][: self.budget]
        flat_idx = np.sort(order)
        best = np.full(len(flat_idx), -1, dtype=np.int64)
        hashes = np.full(len(flat_idx), "", dtype=object)
        if hasattr(sel, "best_action") and hasattr(sel, "state_hashes"):
            for k, f in enumerate(flat_idx):
                h = sel.state_hashes(data.observations[f : f + 1])[0]
                b = sel.best_action(h)
                best[k] = -1 if b is None else int(b)
                hashes[k] = h
        return flat_idx, all_scores[flat_idx], best, np.asarray(hashes, dtype=np.str_)

    def _shortfall_note(self, n_labelled: int, n_steps: int) -> str:
        """Why fewer steps than the budget could be labelled, and what to change."""
        sel = self.selector
        head = f"only {n_labelled} of the budget of {self.budget} steps could be labelled"
        if hasattr(sel, "important_states") and hasattr(sel, "state_hashes"):
            seen = getattr(sel, "n_states_seen", None)
            n_ranked = len(sel) if isinstance(sel, Sized) else "some"
            among = f" among {seen} distinct states" if seen is not None else ""
            per_state = (
                "every logged occurrence of each"
                if self.occurrences == "all"
                else f"at most {self.occurrences} steps of each"
                if isinstance(self.occurrences, int)
                else "at most 2 steps of each (its best and worst action)"
            )
            return (
                f"{head}: the ranking has {n_ranked} important states (seen with at least two actions "
                f"and a positive return-to-go gap){among} of the {n_steps} logged steps, and "
                f"occurrences={self.occurrences!r} labels {per_state}. Observations that rarely repeat "
                "(continuous vectors, unpooled frames) give few important states: hash them coarser "
                "(RTGGap round_decimals= / pool=; zoo: --round-decimals / --pool), "
                + (
                    ""
                    if self.occurrences == "all"
                    else "label more occurrences per state (occurrences='all' or a number; zoo: "
                    "--occurrences), "
                )
                + "or log more episodes"
            )
        return (
            f"{head}: only {n_labelled} of the {n_steps} logged steps have a positive score from the "
            f"{type(sel).__name__} selector"
        )

    # ---- the oracle ----------------------------------------------------------------------------------
    def oracle_actions(self, observations: np.ndarray) -> np.ndarray:
        """The oracle's greedy actions for a batch of stored observations."""
        model = self.oracle_model
        out = []
        for s in range(0, len(observations), self.batch_size):
            chunk = observations[s : s + self.batch_size]
            if hasattr(model, "predict"):
                space = getattr(model, "observation_space", None)
                shape = getattr(space, "shape", None)
                if shape is not None and tuple(shape) != tuple(chunk.shape[1:]):
                    raise ValueError(
                        f"the oracle expects observations of shape {tuple(shape)}, the dataset stores "
                        f"{tuple(chunk.shape[1:])}: use an oracle trained on the same observation pipeline"
                    )
                actions, _ = model.predict(chunk, deterministic=self.deterministic)
            else:
                actions = model(chunk)
            out.append(np.asarray(actions).reshape(len(chunk)).astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def label(self, source: str | os.PathLike[str] | EpisodeStore | Iterable[Episode]) -> FeedbackLabels:
        """Select the important steps of ``source`` and label them with the oracle."""
        episodes, ids, store_meta = load_episodes(source)
        src = os.fspath(source) if isinstance(source, str | os.PathLike) else None
        if isinstance(source, EpisodeStore):
            src = str(source.root)
        data = OfflineData.from_episodes(episodes, ids=ids, metadata=store_meta, source=src)
        flat, scores, best, hashes = self.select(episodes, data)
        shortfall = self._shortfall_note(len(flat), len(data)) if len(flat) < self.budget else ""
        if shortfall:
            warnings.warn(shortfall, stacklevel=2)
        oracle = self.oracle_actions(data.observations[flat]) if len(flat) else np.zeros(0, dtype=np.int64)
        logged = data.actions[flat]
        ep_index = data.episode_of[flat]
        sel_cfg: Mapping[str, Any] = {}
        try:
            sel_cfg = self.selector.get_config()
        except Exception:  # pragma: no cover - a detector without a config
            sel_cfg = {}
        labels = FeedbackLabels(
            episode_id=np.asarray([ids[i] for i in ep_index], dtype=np.str_),
            step=flat - data.starts[ep_index],
            action=logged,
            oracle_action=oracle,
            label=(oracle == logged).astype(np.int8),
            best_action=best,
            score=scores,
            state_hash=hashes,
            metadata={
                "dataset": src,
                "episodes": data.n_episodes,
                "steps": len(data),
                "selector": getattr(self.selector, "registry_name", "") or type(self.selector).__name__,
                "selector_config": dict(sel_cfg),
                "budget": self.budget,
                "occurrences": self.occurrences,
                "oracle": self.oracle_description,
                "labelled": len(flat),
                "shortfall": shortfall,
                "positive": int((oracle == logged).sum()),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        return labels


def _load_oracle(path: str | os.PathLike[str]) -> Any:
    from critwrap.feedback.data import resolve_agent
    from critwrap.zoo.common import load_run

    spec = resolve_agent(path)
    return load_run(spec.run_dir, model_path=spec.model_path, algo=spec.algo, env=spec.env).model
