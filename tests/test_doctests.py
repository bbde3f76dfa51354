"""The runnable examples in critwrap's docstrings (``>>>``) are tests too: run every module's doctests.

Modules that need an optional dependency this environment lacks (``ray``, ``minari``...) are skipped,
not failed; examples marked ``# doctest: +SKIP`` need data or time a unit test does not have.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest

import critwrap


def _sb3_has_nstep_discounts() -> bool:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    return "discounts" in ReplayBufferSamples._fields


# modules whose examples need more than an import: (check, why); see tests/test_buffers.py for the same rule
NEEDS = {"critwrap.buffers": (_sb3_has_nstep_discounts, "the n-step buffer needs stable-baselines3 >= 2.7")}

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(critwrap.__path__, "critwrap.") if ".__main__" not in m.name
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra that is not installed
        pytest.skip(f"{name} needs {exc.name or exc}")
    if name in NEEDS and not NEEDS[name][0]():
        pytest.skip(NEEDS[name][1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testmod(
            module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples of {name} failed (see above)"
    )


def test_the_modules_are_found_and_their_examples_run() -> None:
    assert {"critwrap.callbacks.attack", "critwrap.wrappers.subgoal", "critwrap.zoo.runs"} <= set(MODULES)
    result = doctest.testmod(importlib.import_module("critwrap.zoo.runs"), verbose=False)
    assert result.attempted >= 2 and result.failed == 0  # the examples are found, not just "no failures"
