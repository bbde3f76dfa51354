"""Gradient saliency of a return predictor: a frame is as critical as the predictor is sensitive to it.

The baseline the Deep State Identifier is compared with: take a trained return predictor (the DSI's
``predictor_net``), differentiate its prediction for an episode with respect to the input frames, and
score every frame by the L2 norm of its gradient, normalised per episode to [0, 1] (divided by the
episode's largest norm).

For classification the differentiated quantity is the log-probability of the predicted class
(``target="predicted"``) or of a fixed class (``target=<class index>``); for regression it is the
predicted return.

Example:
    >>> import numpy as np
    >>> from critwrap.episodes import Episode
    >>> from critwrap.detectors.saliency import ReturnSaliency
    >>> rng = np.random.default_rng(0)
    >>> eps = [Episode(rng.integers(0, 255, (10, 24, 24, 3), dtype=np.uint8), label=i % 2) for i in range(8)]
    >>> sal = ReturnSaliency(dsi_config={"channels": [4, 8, 8, 8, 8], "lstm_hidden": 8})
    >>> sal = sal.fit(eps, epochs=1, progress=False, seed=0)   # trains only the return predictor
    >>> s = sal.score(eps[0].frames)
    >>> s.shape, float(s.max()), bool((s >= 0).all())
    ((10,), 1.0, True)

Build it from a trained DSI with ``ReturnSaliency.from_dsi(dsi)`` (shares its networks) or let
:meth:`ReturnSaliency.fit` train a return predictor with the DSI's settings (the detector network is
not trained then, which is about four times faster than a full DSI fit).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from critwrap.detectors.base import Detector, DetectorFormatError
from critwrap.detectors.dsi import DSI, DSIConfig, _Layout

__all__ = ["ReturnSaliency"]


class ReturnSaliency(Detector):
    """Per-frame input-gradient norm of a DSI return predictor, normalised to [0, 1] per episode.

    Args:
        dsi: a DSI whose (trained) predictor is used; ``None`` builds an untrained one from
            ``dsi_config`` (train it with :meth:`fit`).
        dsi_config: :class:`~critwrap.detectors.dsi.DSIConfig` fields for the DSI built when ``dsi`` is
            ``None`` (e.g. smaller ``channels`` for tests).
        target: ``"predicted"`` (the log-probability of the predicted class) or a class index
            (classification); ignored for regression.
    """

    registry_name: ClassVar[str] = "saliency"

    def __init__(
        self,
        dsi: DSI | None = None,
        dsi_config: DSIConfig | dict[str, Any] | None = None,
        target: str | int = "predicted",
    ) -> None:
        if dsi is not None and dsi_config is not None:
            raise ValueError(
                "give either dsi= (a DSI to use) or dsi_config= (settings for a new one), not both"
            )
        if not (
            target == "predicted"
            or (isinstance(target, int) and not isinstance(target, bool) and target >= 0)
        ):
            raise ValueError(f"target must be 'predicted' or a class index >= 0, got {target!r}")
        self.dsi = dsi if dsi is not None else DSI(dsi_config)
        self.target = target

    @property
    def history(self) -> list[dict[str, float]]:
        """Per-epoch losses of the underlying DSI's last fit."""
        return self.dsi.history

    @property
    def fit_stats(self) -> dict[str, float]:
        """Wall time and throughput of the underlying DSI's last fit."""
        return self.dsi.fit_stats

    @classmethod
    def from_dsi(cls, dsi: DSI, target: str | int = "predicted") -> ReturnSaliency:
        """Saliency of a trained DSI's return predictor (the networks are shared, not copied)."""
        if not isinstance(dsi, DSI):
            raise TypeError(f"from_dsi needs a DSI, got {type(dsi).__name__}")
        return cls(dsi=dsi, target=target)

    def fit(  # type: ignore[override]
        self,
        episodes: Any,
        epochs: int | None = None,
        val_episodes: Any = None,
        tensorboard_log: str | os.PathLike[str] | None = None,
        progress: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> ReturnSaliency:
        """Train the return predictor only (see :meth:`DSI.fit` for the arguments)."""
        kwargs.setdefault("predictor_only", True)
        self.dsi.fit(
            episodes,
            epochs=epochs,
            val_episodes=val_episodes,
            tensorboard_log=tensorboard_log,
            progress=progress,
            seed=seed,
            **kwargs,
        )
        return self

    def score(self, frames: np.ndarray) -> np.ndarray:
        """Normalised gradient norm of every frame of one episode: float32 (T,) in [0, 1]."""
        return self.score_batch([frames])[0]

    def score_batch(self, episodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Score many episodes with one forward / backward pass per ``score_batch_frames`` frames.

        Each episode's prediction depends only on its own frames (InstanceNorm works per frame, the
        LSTM per episode), so the gradient of the summed predictions gives every episode's own gradient.
        """
        import torch

        dsi = self.dsi
        dsi._require_fitted()
        cfg = dsi.config
        assert cfg.max_length is not None
        hwc = [dsi._frames_hwc(np.asarray(f), f"episode {i}") for i, f in enumerate(episodes)]
        for i, f in enumerate(hwc):
            if len(f) > cfg.max_length:
                raise ValueError(
                    f"episode {i} has {len(f)} frames, more than the return predictor's max_length="
                    f"{cfg.max_length}; the saliency baseline can only score episodes that fit it"
                )
        if cfg.task == "classification" and isinstance(self.target, int) and self.target >= dsi.n_outputs:
            raise ValueError(
                f"target class {self.target} does not exist; the predictor has {dsi.n_outputs} classes"
            )
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(hwc)
        net = dsi.predictor_net
        # cuDNN's recurrent layers refuse a backward pass in eval mode, and train mode would turn on
        # dropout: the gradient is taken with cuDNN off (no effect on the CPU).
        with dsi._threads(), torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            net.eval()
            was = [p.requires_grad for p in net.parameters()]
            net.requires_grad_(False)
            try:
                for chunk in dsi._chunks(hwc):
                    frames = [hwc[i] for i in chunk]
                    layout = _Layout.from_lengths([len(f) for f in frames], dsi.device)
                    x = dsi._to_tensor(frames).requires_grad_(True)
                    pred = net(x, layout).float()
                    if cfg.task == "regression":
                        objective = pred.squeeze(-1)
                    else:
                        logp = pred.log_softmax(dim=1)
                        if self.target == "predicted":
                            cls_idx = logp.argmax(dim=1)
                        else:
                            cls_idx = torch.full(
                                (len(frames),), int(self.target), dtype=torch.long, device=pred.device
                            )
                        objective = logp.gather(1, cls_idx[:, None]).squeeze(1)
                    (grad,) = torch.autograd.grad(objective.sum(), x)
                    norms = grad.detach().flatten(1).norm(dim=1).cpu().numpy()
                    offsets = np.cumsum([0] + [len(f) for f in frames])
                    for j, i in enumerate(chunk):
                        g = norms[offsets[j] : offsets[j + 1]].astype(np.float32)
                        top = float(g.max())
                        out[i] = g / top if top > 0 else np.zeros_like(g)
            finally:
                for p, w in zip(net.parameters(), was):
                    p.requires_grad_(w)
        return out

    def to(self, device: Any) -> ReturnSaliency:
        """Run the wrapped DSI's predictor on ``device`` (see :meth:`critwrap.detectors.dsi.DSI.to`)."""
        self.dsi.to(device)
        return self

    # ---- persistence -----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"dsi_config": self.dsi.get_config(), "target": self.target}

    def _get_state(self) -> dict[str, np.ndarray]:
        return self.dsi._get_state()

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        try:
            self.dsi._set_state(state)
        except DetectorFormatError as exc:
            raise DetectorFormatError(f"saliency checkpoint: {exc}") from exc
