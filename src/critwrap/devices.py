"""Torch devices by name, checked: what critwrap's networks (detectors, adapters) accept as ``device``."""

from __future__ import annotations

from typing import Any


def resolve_device(device: Any, what: str = "this network") -> Any:
    """``device`` as a ``torch.device``; a ``ValueError`` naming it when torch cannot use it here.

    ``"auto"`` is SB3's: the first CUDA GPU when torch sees one, else the CPU. Unlike SB3's
    ``get_device``, an explicit ``"cuda"`` on a machine without one is an error, not a silent CPU.
    ``what`` names the caller in the messages.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {device!r} is not a torch device ('cpu', 'cuda', 'cuda:0', 'auto', ...)"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA GPU on this machine (use 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r}: torch sees no Apple MPS device on this machine (use 'cpu')")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: {what} runs on 'cpu', 'cuda[:N]' or 'mps'")
    return dev
