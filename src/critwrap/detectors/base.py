"""The detector protocol: ``fit(episodes)``, ``score(frames) -> (T,)`` in [0, 1], ``critical_steps``, save / load.

A saved detector is a directory with ``config.json`` (format version, registry name, constructor
config) and ``weights.safetensors`` (numpy arrays). Loading never unpickles anything.

Example:
    >>> import numpy as np
    >>> from critwrap.detectors.baselines import RandomDetector
    >>> det = RandomDetector(seed=0)
    >>> scores = det.score(np.zeros((10, 8, 8, 3), dtype=np.uint8))
    >>> scores.shape, bool(((scores >= 0) & (scores <= 1)).all())
    ((10,), True)
    >>> det.critical_steps(scores=scores, k=3).tolist() == sorted(np.argsort(-scores)[:3].tolist())
    True
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "FIT_INFO",
    "FORMAT_VERSION",
    "Detector",
    "DetectorFormatError",
    "fitted_on",
    "load_detector",
    "write_fit_info",
]

FORMAT_VERSION = 1
#: the file beside a saved detector that says what it was fitted on (written by ``zoo detect fit``)
FIT_INFO = "fit.json"


class DetectorFormatError(ValueError):
    """A detector checkpoint is missing, corrupt, of another format version, or for another detector."""


class Detector(ABC):
    """Base class of critical-state detectors.

    Subclasses implement :meth:`score` and, if they learn, :meth:`fit`, :meth:`get_config` and
    :meth:`_get_state` / :meth:`_set_state` (numpy arrays, saved with safetensors).
    ``registry_name`` is the name under which the class is registered in ``critwrap.detectors``.
    """

    registry_name: ClassVar[str] = ""

    def fit(self, episodes: Iterable[Any], **kwargs: Any) -> Detector:
        """Learn from episodes (:class:`critwrap.episodes.Episode` or an ``EpisodeStore``). Default: no-op."""
        return self

    @abstractmethod
    def score(self, frames: np.ndarray) -> np.ndarray:
        """Importance of every step of one episode: ``frames`` (T, ...) -> float array (T,) in [0, 1]."""

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Score many episodes in one call (learned detectors batch them through the network)."""
        return [self.score(np.asarray(frames)) for frames in episodes]

    @classmethod
    def _upgrade_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Map a saved config from an older critwrap to today's settings (default: unchanged).

        Override when a new setting's default differs from what older checkpoints were trained with,
        so that they load with the behaviour they were saved with.
        """
        return config

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame features ``(T, ...) -> (T, D)`` float32, used to match subgoal states.

        Learned detectors return their own frame encoder's output; detectors without one raise
        :class:`NotImplementedError` (pass an explicit encoder to the consumer instead).
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no frame encoder; pass an encoder (a callable frames -> (T, D)) instead"
        )

    def critical_steps(
        self,
        frames: np.ndarray | None = None,
        *,
        scores: np.ndarray | None = None,
        k: int | None = None,
        threshold: float | None = None,
        lookahead: int = 0,
    ) -> np.ndarray:
        """Indices (sorted) of the critical steps: the top ``k`` scores, or those >= ``threshold``.

        Give ``frames`` (scored now) or precomputed ``scores``. With both ``k`` and ``threshold``,
        the top ``k`` among those passing the threshold. ``lookahead=n`` first replaces each score by
        the maximum over that step and the next ``n`` (:func:`critwrap.detectors.metrics.lookahead`;
        choose ``n`` with the threshold on validation episodes, e.g. ``zoo detect eval --lookahead 0 1 2``).
        """
        if (frames is None) == (scores is None):
            raise ValueError("give exactly one of frames= or scores=")
        if k is None and threshold is None:
            raise ValueError("give k= (top-k steps) and/or threshold= (steps scoring at least this)")
        s = np.asarray(self.score(np.asarray(frames)) if scores is None else scores, dtype=np.float64)
        if s.ndim != 1:
            raise ValueError(f"scores must be a 1-D array (T,), got shape {s.shape}")
        if lookahead:
            from critwrap.detectors.metrics import lookahead as look_ahead

            s = look_ahead(s, lookahead)
        idx = np.arange(len(s))
        if threshold is not None:
            idx = idx[s[idx] >= threshold]
        if k is not None:
            if k < 0:
                raise ValueError(f"k must be >= 0, got {k}")
            order = np.argsort(-s[idx], kind="stable")[:k]
            idx = idx[order]
        return np.sort(idx)

    # ---- device --------------------------------------------------------------------------------
    def to(self, device: Any) -> Detector:
        """Run on ``device`` from now on; returns ``self``. Detectors without networks run on the CPU
        only: ``"cpu"`` and ``"auto"`` (SB3's "the best device there is", which for them is the CPU) are
        accepted, anything else is a ``ValueError`` (learned detectors such as
        :class:`~critwrap.detectors.dsi.DSI` override this to move their networks)."""
        if str(device).split(":")[0] not in ("cpu", "auto"):
            raise ValueError(f"{type(self).__name__} runs on the CPU only; cannot move it to {device!r}")
        return self

    # ---- persistence -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (``type(self)(**config)`` rebuilds an untrained twin)."""
        return {}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise DetectorFormatError(
                f"{type(self).__name__} has no weights but the checkpoint holds {sorted(state)}"
            )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into the directory ``path``."""
        from safetensors.numpy import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "detector": self.registry_name or f"{type(self).__module__}:{type(self).__qualname__}",
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "config": self.get_config(),
        }
        state = {k: np.ascontiguousarray(v) for k, v in self._get_state().items()}
        tmp_w = out / "weights.safetensors.tmp"
        save_file(state, str(tmp_w))
        os.replace(tmp_w, out / "weights.safetensors")
        tmp_c = out / "config.json.tmp"
        tmp_c.write_text(json.dumps(config, indent=2))
        os.replace(tmp_c, out / "config.json")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Detector:
        """Load a detector saved with :meth:`save` (any registered detector when called on the base)."""
        return load_detector(path, expected=None if cls is Detector else cls)


def load_detector(path: str | os.PathLike[str], expected: type | None = None, device: Any = None) -> Detector:
    """Open a saved detector directory; the class is found by its registry name (no unpickling).

    ``device`` (e.g. ``"cuda"``): move the loaded detector there (:meth:`Detector.to`); by default it
    stays on the CPU, wherever it was trained."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from critwrap import registry

    root = Path(path)
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise DetectorFormatError(
            f"{root} is not a saved detector: {cfg_path} is missing (save one with detector.save(DIR))"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise DetectorFormatError(f"{cfg_path} is not valid JSON: {exc}") from exc
    version = cfg.get("format_version")
    if version != FORMAT_VERSION:
        raise DetectorFormatError(
            f"{cfg_path} has format_version {version!r}; this critwrap reads version {FORMAT_VERSION}"
        )
    cls = registry.resolve("detectors", cfg["detector"])
    if expected is not None and not issubclass(cls, expected):
        raise DetectorFormatError(f"{root} holds a {cls.__name__}, not a {expected.__name__}")
    det: Detector = cls(**cls._upgrade_config(dict(cfg.get("config", {}))))
    weights = root / "weights.safetensors"
    try:
        state = load_file(str(weights)) if weights.is_file() else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DetectorFormatError(f"{weights} is corrupt or unreadable: {exc}") from exc
    det._set_state(state)
    return det if device is None else det.to(device)


def write_fit_info(path: str | os.PathLike[str], data: str | os.PathLike[str], **info: Any) -> Path:
    """Record in a saved detector's folder which episodes it was fitted on (``fit.json``).

    ``data`` is kept as given and, when it is a folder on this machine, as an absolute path, so that
    :func:`fitted_on` finds it again from anywhere (``SubgoalReward`` extracts its subgoals from those
    episodes when it is given none)."""
    root = Path(path)
    record: dict[str, Any] = {"data": str(data), **info}
    if Path(data).exists():
        record["data_path"] = str(Path(data).resolve())
    out = root / FIT_INFO
    out.write_text(json.dumps(record, indent=1, default=str))
    return out


def fitted_on(path: str | os.PathLike[str]) -> str | None:
    """The episodes a saved detector was fitted on (from its ``fit.json``), if they are still on disk."""
    info_path = Path(path) / FIT_INFO
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError:
        return None
    for key in ("data_path", "data"):
        value = info.get(key)
        if isinstance(value, str) and value and Path(value).exists():
            return value
    return None
