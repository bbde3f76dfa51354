"""Plugin registry: critwrap's parts and third-party parts, discovered through Python entry points.

critwrap declares its own wrappers, detectors, callbacks and features extractors in the same
entry-point groups a third-party package uses (see ``pyproject.toml``)::

    [project.entry-points."critwrap.wrappers"]
    my-wrapper = "my_package.wrappers:MyWrapper"

Discovery reads entry-point metadata only: listing names imports nothing. A part is imported the
first time it is used (:func:`load`). A plugin whose module fails to import (``ImportError``,
``SyntaxError``, any exception) is reported by name, package and error and never breaks the others
or ``import critwrap``. A name claimed by two different packages is an error that names both.

Example:
    >>> from critwrap import registry
    >>> "record-episodes" in registry.names("wrappers")
    True
    >>> registry.load("wrappers", "record-episodes").__name__
    'RecordEpisodes'
"""

from __future__ import annotations

import difflib
import importlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

__all__ = [
    "GROUPS",
    "KINDS",
    "DuplicatePluginError",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "UnknownPluginError",
    "broken_distributions",
    "discover",
    "get_info",
    "load",
    "names",
    "normalize_name",
    "plugin_table",
    "refresh",
    "register",
    "resolve",
    "unregister",
]

Kind = Literal["wrappers", "detectors", "callbacks", "extractors", "buffers"]
KINDS: tuple[str, ...] = ("wrappers", "detectors", "callbacks", "extractors", "buffers")
GROUPS: dict[str, str] = {kind: f"critwrap.{kind}" for kind in KINDS}
_GROUP_KINDS: dict[str, str] = {group: kind for kind, group in GROUPS.items()}


class PluginError(Exception):
    """Base class of the registry's errors."""


class UnknownPluginError(PluginError, KeyError):
    """No part of that kind is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicatePluginError(PluginError):
    """Two different packages claim the same name in the same group."""


class PluginLoadError(PluginError, ImportError):
    """A registered part could not be imported."""


@dataclass
class PluginInfo:
    """One registered part, as read from entry-point metadata (nothing imported)."""

    name: str
    kind: str
    value: str
    package: str
    version: str
    conflicts: list[PluginInfo] = field(default_factory=list)
    obj: Any = None  # set once loaded, or for parts registered in code
    error: str | None = None

    @property
    def status(self) -> str:
        if self.conflicts:
            others = ", ".join(f"{c.package} ({c.value})" for c in self.conflicts)
            return f"conflict: also claimed by {others}"
        if self.error is not None:
            return f"error: {self.error}"
        if self.obj is not None:
            return "loaded"
        return "not loaded"


_lock = threading.RLock()
_cache: dict[str, dict[str, PluginInfo]] | None = None
_manual: dict[str, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
_broken: dict[str, str] = {}  # package -> why its entry points could not be read


def normalize_name(name: str) -> str:
    """Registry names are case-insensitive and treat ``_`` and ``-`` alike: ``Subgoal_Reward`` -> ``subgoal-reward``."""
    return re.sub(r"[_\s]+", "-", name.strip()).lower()


def _check_kind(kind: str) -> str:
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def _distribution_entry_points() -> Iterator[tuple[str, str, metadata.EntryPoint]]:
    """``(package, version, entry point)`` of every installed distribution, one distribution at a time.

    ``importlib.metadata.entry_points()`` fails as a whole when a single distribution has a malformed
    ``entry_points.txt``; reading them one by one keeps the others and records the broken one in
    ``_broken``. Like ``entry_points()``, only the first of several same-named distributions counts.
    """
    seen: set[str] = set()
    try:
        dists = list(metadata.distributions())
    except Exception as exc:  # pragma: no cover - an unreadable sys.path entry
        _broken["<sys.path>"] = f"{type(exc).__name__}: {exc}"
        return
    for dist in dists:
        try:
            package = dist.metadata["Name"] or "<unknown>"
            version = dist.version or "?"
        except Exception:
            package, version = getattr(dist, "_path", "<unknown>"), "?"
        key = re.sub(r"[-_.]+", "-", str(package)).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            eps = [ep for ep in dist.entry_points if ep.group in _GROUP_KINDS]
        except Exception as exc:  # a malformed entry_points.txt: report it, keep the others
            _broken[str(package)] = f"unreadable entry points ({type(exc).__name__}: {exc})"
            continue
        for ep in eps:
            yield str(package), str(version), ep


def _scan() -> dict[str, dict[str, PluginInfo]]:
    found: dict[str, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
    _broken.clear()
    for package, version, ep in _distribution_entry_points():
        kind = _GROUP_KINDS[ep.group]
        key = normalize_name(ep.name)
        info = PluginInfo(name=key, kind=kind, value=ep.value, package=package, version=version)
        prior = found[kind].get(key)
        if prior is None:
            found[kind][key] = info
        elif normalize_name(prior.package) == normalize_name(package):
            # the same distribution declaring the name twice: the first one counts
            continue
        elif all(normalize_name(c.package) != normalize_name(package) for c in prior.conflicts):
            prior.conflicts.append(info)
    return found


def broken_distributions() -> dict[str, str]:
    """Installed packages whose entry-point metadata could not be read: package -> error."""
    _all(KINDS[0])  # scan if not done yet
    return dict(_broken)


def _all(kind: str) -> dict[str, PluginInfo]:
    global _cache
    _check_kind(kind)
    with _lock:
        if _cache is None:
            _cache = _scan()
        merged = dict(_cache[kind])
        merged.update(_manual[kind])
        return merged


def refresh() -> None:
    """Forget what was discovered (call after installing a plugin in a running process)."""
    global _cache
    with _lock:
        _cache = None


def discover(kind: str | None = None) -> list[PluginInfo]:
    """Every registered part (of one kind, or all), read from metadata only."""
    kinds = KINDS if kind is None else (_check_kind(kind),)
    out: list[PluginInfo] = []
    for k in kinds:
        out.extend(sorted(_all(k).values(), key=lambda info: info.name))
    return out


def names(kind: str) -> list[str]:
    """Registered names of one kind, without importing anything."""
    return sorted(_all(kind))


def get_info(kind: str, name: str) -> PluginInfo:
    """The entry for ``name``; raises :class:`UnknownPluginError` with close matches when absent."""
    table = _all(kind)
    key = normalize_name(name)
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(table)) or "(none)"
        raise UnknownPluginError(
            f"no {kind[:-1]} named {name!r} is registered.{hint} Known {kind}: {known}. "
            f"Third-party packages add names through the {GROUPS[kind]!r} entry-point group; "
            "run `python -m critwrap plugins` to see what is installed."
        )
    return table[key]


def _import_value(value: str) -> Any:
    module_name, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module_name.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def load(kind: str, name: str) -> Any:
    """Import and return the part registered as ``name`` (imported once, then cached)."""
    info = get_info(kind, name)
    if info.conflicts:
        claimants = [info, *info.conflicts]
        listing = "; ".join(f"package {c.package} {c.version} -> {c.value}" for c in claimants)
        raise DuplicatePluginError(
            f"the {kind[:-1]} name {info.name!r} is claimed by more than one package: {listing}. "
            "Uninstall one of them, or refer to the part by its import path (module:Class)."
        )
    with _lock:
        if info.obj is None:
            try:
                info.obj = _import_value(info.value)
                info.error = None
            except BaseException as exc:  # any failure of a plugin stays the plugin's
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                info.error = f"{type(exc).__name__}: {exc}"
                raise PluginLoadError(
                    f"the {kind[:-1]} {info.name!r} from package {info.package} {info.version} "
                    f"({info.value}) failed to import: {info.error}"
                ) from exc
    return info.obj


def resolve(kind: str, ref: Any) -> Any:
    """Turn a registry name or an import path (``pkg.mod:Class`` or ``pkg.mod.Class``) into the object.

    Objects that are not strings are returned unchanged, so callers can accept classes too.
    """
    if not isinstance(ref, str):
        return ref
    if ":" in ref or ("." in ref and normalize_name(ref) not in _all(kind)):
        path = ref if ":" in ref else ":".join(ref.rsplit(".", 1))
        try:
            return _import_value(path)
        except (ImportError, AttributeError) as exc:
            raise PluginLoadError(f"could not import {ref!r} (as {path!r}): {exc}") from exc
    return load(kind, ref)


def register(kind: str, name: str, obj: Any, *, package: str = "<runtime>", overwrite: bool = False) -> None:
    """Register a part in code (tests, notebooks). Entry points are the way for packages."""
    _check_kind(kind)
    key = normalize_name(name)
    with _lock:
        existing = _all(kind).get(key)
        if existing is not None and not overwrite:
            raise DuplicatePluginError(
                f"the {kind[:-1]} name {key!r} is already registered by package {existing.package} "
                f"({existing.value}); pass overwrite=True to replace it"
            )
        value = (
            obj
            if isinstance(obj, str)
            else f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', obj)}"
        )
        info = PluginInfo(name=key, kind=kind, value=value, package=package, version="")
        if not isinstance(obj, str):
            info.obj = obj
        _manual[kind][key] = info


def unregister(kind: str, name: str) -> None:
    """Remove a part registered with :func:`register`."""
    with _lock:
        _manual[_check_kind(kind)].pop(normalize_name(name), None)


def plugin_table(check: bool = True, kind: str | None = None) -> list[dict[str, str]]:
    """Rows for ``python -m critwrap plugins`` (of one kind, or all); with ``check`` every part listed is
    imported to report its status."""
    rows = []
    for info in discover(kind):
        if check and not info.conflicts and info.obj is None and info.error is None:
            try:
                load(info.kind, info.name)
            except PluginError:
                pass
        rows.append(
            {
                "name": info.name,
                "kind": info.kind[:-1],
                "package": f"{info.package} {info.version}".strip(),
                "target": info.value,
                "status": "ok" if info.obj is not None and not info.conflicts else info.status,
            }
        )
    if kind is None:
        for package, error in sorted(broken_distributions().items()):
            rows.append(
                {
                    "name": "-",
                    "kind": "-",
                    "package": package,
                    "target": "entry_points.txt",
                    "status": f"error: {error}",
                }
            )
    return rows
