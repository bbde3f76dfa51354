"""Wrapper and callback specs as strings: ``NAME[:key=value,...]``.

The zoo CLI takes ``--wrapper`` / ``--callback`` options written as a registry name (or an import
path) optionally followed by a colon and comma-separated ``key=value`` arguments. Values are parsed
with ``yaml.safe_load``, so numbers, booleans, ``null``, lists and mappings work, and commas inside
``[...]``, ``{...}``, ``(...)`` or quotes do not split arguments. Scientific notation without a dot
(``1e-3``, a string in YAML 1.1) is read as a float.

The same specs appear in hyperparameter YAML (``env_wrapper:`` / ``callback:``) as a name, an import
path, a spec string, a ``{name: {kwargs}}`` mapping or a ``{name: ..., kwargs: {...}}`` mapping;
:func:`normalize_specs` turns all of them into ``(name, kwargs)`` pairs.

Example:
    >>> from critwrap.zoo.specs import parse_spec_string
    >>> parse_spec_string("record-episodes:store=eps/run1,max_episodes=10")
    ('record-episodes', {'store': 'eps/run1', 'max_episodes': 10})
    >>> parse_spec_string("my_pkg.wrappers:Shaping:steps=[3, 7],scale=1e-3,tag='a,b'")
    ('my_pkg.wrappers:Shaping', {'steps': [3, 7], 'scale': 0.001, 'tag': 'a,b'})
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = [
    "SPEC_SYNTAX",
    "SpecSyntaxError",
    "coerce_scalar",
    "format_spec",
    "normalize_spec",
    "normalize_specs",
    "parse_spec_string",
    "parse_value",
    "split_top_level",
]

SPEC_SYNTAX = "NAME[:key=value,key=value,...]"
SPEC_EXAMPLE = "record-episodes:store=episodes/seaquest,max_episodes=10"

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCI_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_OPEN = {"[": "]", "{": "}", "(": ")"}


class SpecSyntaxError(ValueError):
    """A ``NAME[:key=value,...]`` string could not be parsed."""


def _fail(spec: str, problem: str, what: str = "wrapper/callback") -> SpecSyntaxError:
    return SpecSyntaxError(
        f"malformed {what} spec {spec!r}: {problem}. Expected {SPEC_SYNTAX}, e.g. {SPEC_EXAMPLE!r} "
        "(values are YAML: numbers, true/false, null, [lists], {mappings}, 'quoted, strings'; "
        "an import path works as NAME: my_pkg.module:MyWrapper:key=value)."
    )


def coerce_scalar(value: Any) -> Any:
    """Read ``"1e-3"``-style strings (strings in YAML 1.1) as floats; anything else is returned unchanged."""
    if isinstance(value, str) and _SCI_RE.match(value.strip()):
        return float(value)
    return value


def _coerce_nested(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _coerce_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_nested(v) for v in value]
    return coerce_scalar(value)


def parse_value(text: str) -> Any:
    """Parse one value with ``yaml.safe_load`` (never ``yaml.load``), reading ``1e-3`` as a float.

    Also inside lists and mappings: ``{learning_rate: 3e-4}`` gives a float, as SB3 expects.
    """
    return _coerce_nested(yaml.safe_load(text))


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes; raises ``ValueError`` on unbalanced brackets or quotes."""
    parts: list[str] = []
    stack: list[str] = []
    quote: str | None = None
    current: list[str] = []
    for i, ch in enumerate(text):
        if quote is not None:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
        elif ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in _OPEN.values():
            if not stack or stack.pop() != ch:
                raise ValueError(f"unbalanced {ch!r} at position {i}")
        elif ch == sep and not stack:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quote is not None:
        raise ValueError(f"unclosed quote {quote}")
    if stack:
        raise ValueError(f"unclosed bracket (expected {stack[-1]!r})")
    parts.append("".join(current))
    return parts


_HEAD_RE = re.compile(r"^([A-Za-z_][\w.\-]*)(?::([A-Za-z_][\w.]*))?(?=:|$)")


def _split_name(spec: str, what: str) -> tuple[str, str | None]:
    """Separate the name (which may be an import path ``pkg.mod:Class``) from the argument string."""
    if spec.startswith(":"):
        raise _fail(spec, "the NAME before ':' is missing", what)
    match = _HEAD_RE.match(spec)
    if match is None:
        head = re.split(r":", spec, maxsplit=1)[0]
        raise _fail(
            spec,
            f"{head!r} is not a valid name (letters, digits, '-', '_', '.'; pkg.module:Class for an import path)",
            what,
        )
    head, attr = match.group(1), match.group(2)
    if attr is not None and not ("." in head or attr[:1].isupper()):
        raise _fail(
            spec, f"the text after ':' ({spec[len(head) + 1 :]!r}) is not a list of key=value pairs", what
        )
    rest = spec[match.end() :]
    return spec[: match.end()], (rest[1:] if rest.startswith(":") else None)


def parse_spec_string(spec: str, what: str = "wrapper/callback") -> tuple[str, dict[str, Any]]:
    """Parse ``NAME[:key=value,...]`` into ``(name, kwargs)``.

    Args:
        spec: the string, e.g. ``"record-episodes:store=DIR,max_episodes=5"``. NAME is a registry name
            or an import path (``pkg.mod:Class`` or ``pkg.mod.Class``).
        what: used in error messages (``"--wrapper"``, ``"--callback"``).

    Raises:
        SpecSyntaxError: with the expected syntax and an example.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _fail(str(spec), "it is empty", what)
    spec = spec.strip()
    name, args = _split_name(spec, what)
    kwargs: dict[str, Any] = {}
    if args is None or not args.strip():
        return name, kwargs
    try:
        items = split_top_level(args)
    except ValueError as exc:
        raise _fail(spec, str(exc), what) from None
    for item in items:
        if not item.strip():
            raise _fail(spec, "an empty argument (two commas in a row, or a trailing comma)", what)
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq:
            raise _fail(spec, f"argument {item.strip()!r} has no '='", what)
        if not _KEY_RE.match(key):
            raise _fail(spec, f"{key!r} is not a valid argument name (a Python identifier)", what)
        if key in kwargs:
            raise _fail(spec, f"argument {key!r} is given twice", what)
        if not raw.strip():
            raise _fail(
                spec, f"argument {key!r} has no value (write {key}=null or {key}='' if you mean it)", what
            )
        try:
            kwargs[key] = parse_value(raw.strip())
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise _fail(
                spec, f"the value of {key!r} ({raw.strip()!r}) is not valid YAML: {problem}", what
            ) from None
    return name, kwargs


def normalize_spec(item: Any, where: str = "spec") -> tuple[str, dict[str, Any]]:
    """One wrapper/callback spec in any accepted form -> ``(name, kwargs)``.

    Accepted: ``"name"``, ``"pkg.mod:Class"``, ``"name:key=value,..."``, ``{"name": {kwargs}}``,
    ``{"name": "...", "kwargs": {...}}``, ``(name, kwargs)``.
    """
    if isinstance(item, str):
        return parse_spec_string(item, what=where)
    if (
        isinstance(item, tuple | list)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], Mapping)
    ):
        return item[0], dict(item[1])
    if isinstance(item, Mapping):
        if "name" in item and set(item) <= {"name", "kwargs"}:
            kwargs = item.get("kwargs") or {}
            if not isinstance(kwargs, Mapping):
                raise SpecSyntaxError(
                    f"{where}: 'kwargs' of {item['name']!r} must be a mapping, got {kwargs!r}"
                )
            return str(item["name"]), {str(k): coerce_scalar(v) for k, v in kwargs.items()}
        if len(item) == 1:
            (name, kwargs), *_ = item.items()
            kwargs = kwargs or {}
            if not isinstance(kwargs, Mapping):
                raise SpecSyntaxError(
                    f"{where}: the arguments of {name!r} must be a mapping (name: {{key: value}}), got {kwargs!r}"
                )
            return str(name), {str(k): coerce_scalar(v) for k, v in kwargs.items()}
    raise SpecSyntaxError(
        f"{where}: cannot read {item!r} as a wrapper/callback spec. Use a name ('record-episodes'), an import "
        "path ('my_pkg.mod:MyWrapper'), a mapping {name: {key: value}} or a string " + SPEC_SYNTAX
    )


def normalize_specs(value: Any, where: str = "spec") -> list[tuple[str, dict[str, Any]]]:
    """A single spec or a list of specs (``None`` -> ``[]``) -> list of ``(name, kwargs)``."""
    if value is None:
        return []
    if isinstance(value, str | Mapping) or (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping)
    ):
        value = [value]
    if not isinstance(value, list | tuple):
        raise SpecSyntaxError(f"{where}: expected a list of wrapper/callback specs, got {value!r}")
    return [normalize_spec(item, where) for item in value]


def _format_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    if text.endswith("..."):
        text = text[: -len("...")].strip()
    try:
        ok = len(split_top_level(text)) == 1 and parse_value(text) == value and "=" not in text
    except (ValueError, yaml.YAMLError):
        ok = False
    return text if ok else json.dumps(value)


def format_spec(name: str, kwargs: Mapping[str, Any]) -> str:
    """The inverse of :func:`parse_spec_string` for JSON-able kwargs."""
    if not kwargs:
        return name
    return f"{name}:{','.join(f'{key}={_format_value(value)}' for key, value in kwargs.items())}"
