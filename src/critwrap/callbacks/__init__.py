"""critwrap's Stable-Baselines3 callbacks (``BaseCallback`` subclasses), imported when first used.

Callbacks are registered in the ``critwrap.callbacks`` entry-point group; list them with
``critwrap.registry.names("callbacks")`` and load one by name with
``critwrap.registry.load("callbacks", "episode-recorder")``.

Example:
    >>> from critwrap.callbacks import EpisodeRecorderCallback
    >>> EpisodeRecorderCallback.__name__
    'EpisodeRecorderCallback'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it (modules import stable_baselines3, so they load lazily)
_LAZY: dict[str, str] = {
    "EpisodeRecorderCallback": "critwrap.callbacks.record",
    "DetectorRefresh": "critwrap.callbacks.refresh",
    "AttackEvalCallback": "critwrap.callbacks.attack",
}

__all__ = ["AttackEvalCallback", "DetectorRefresh", "EpisodeRecorderCallback"]  # keep in step with _LAZY

if TYPE_CHECKING:  # pragma: no cover
    from critwrap.callbacks.attack import AttackEvalCallback
    from critwrap.callbacks.record import EpisodeRecorderCallback
    from critwrap.callbacks.refresh import DetectorRefresh


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'critwrap.callbacks' has no attribute {name!r}")
