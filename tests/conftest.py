"""Shared test setup: headless rendering, and a registry that every test leaves as it found it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Headless defaults (CI sets MUJOCO_GL=egl too); set before any test imports mujoco or pygame.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


@pytest.fixture(autouse=True)
def _sb3_logdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models built without a log folder log to a test temp dir, not ``/tmp/SB3-<date>`` (SB3's default)."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3log")))


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Rescan entry points before the test and forget whatever it discovered or registered after it.

    Use it in tests that put fake distributions on ``sys.path`` or call ``registry.register``, so
    that the tests after them see the installed plugins only.
    """
    from critwrap import registry

    registry.refresh()
    manual_before = {kind: dict(table) for kind, table in registry._manual.items()}
    try:
        yield
    finally:
        for kind, table in registry._manual.items():
            table.clear()
            table.update(manual_before[kind])
        registry.refresh()
