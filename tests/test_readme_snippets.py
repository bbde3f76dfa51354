"""The README's Python snippets stay true to the API: each one parses, every name it imports from
critwrap (or SB3 / gymnasium) exists, and every registered wrapper or detector it names by string is
registered. The snippets need data and trained models, so they are not run here; the demo and the
unit tests run the same calls."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
CHECKED_PACKAGES = ("critwrap", "stable_baselines3", "sb3_contrib", "gymnasium")


def test_the_readme_has_python_snippets() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_parses_and_its_imports_exist(index: int) -> None:
    tree = ast.parse(BLOCKS[index], filename=f"README.md python block {index}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in CHECKED_PACKAGES:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or _is_submodule(node.module, alias.name), (
                    f"README block {index}: {node.module} has no {alias.name!r}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in CHECKED_PACKAGES:
                    importlib.import_module(alias.name)


def _is_submodule(package: str, name: str) -> bool:
    try:
        importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError:
        return False
    return True


def _registered_names_used(source: str) -> set[str]:
    """String names in ``wrappers=[...]`` lists: ``"name"`` or ``("name", {...})`` entries."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "wrappers" and isinstance(node.value, ast.List):
            for item in node.value.elts:
                if isinstance(item, ast.Tuple) and item.elts:
                    item = item.elts[0]
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    names.add(item.value)
    return names


def test_wrappers_named_in_the_readme_are_registered() -> None:
    from critwrap import registry

    used = set().union(*(_registered_names_used(b) for b in BLOCKS))
    assert used, "the README names wrappers by string"
    missing = used - set(registry.names("wrappers"))
    assert not missing, f"README names unregistered wrappers: {sorted(missing)}"


def test_the_checker_catches_a_missing_name() -> None:
    """The check above can fail: a made-up import is reported."""
    tree = ast.parse("from critwrap.detectors import NoSuchDetector")
    node = tree.body[0]
    assert isinstance(node, ast.ImportFrom) and node.module is not None
    module = importlib.import_module(node.module)
    assert not hasattr(module, "NoSuchDetector") and not _is_submodule(node.module, "NoSuchDetector")
    assert _registered_names_used('critwrap.make("X", wrappers=["no-such-wrapper"])') == {"no-such-wrapper"}


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    blocks: list[tuple[str, str]] = []
    body: list[str] | None = None
    lang = ""
    for line in text.splitlines():
        if line.startswith("```"):
            if body is None:
                body, lang = [], line[3:].strip()
            else:
                blocks.append((lang, "\n".join(body)))
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def _zoo_commands(text: str) -> list[list[str]]:
    """The argument lists of the ``python -m critwrap.zoo ...`` lines of the shell blocks (continued
    lines joined; comments, ``&&`` / ``|`` tails dropped; lines with a ``...`` placeholder skipped)."""
    import shlex

    out = []
    for lang, body in _fenced_blocks(text):
        if lang not in ("bash", "console", "sh", ""):
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            m = re.search(r"python3? -m critwrap\.zoo (.*)$", line)
            if m is None:
                continue
            cmd = re.split(r"\s+#", m.group(1))[0].split(" && ")[0].split(" | ")[0].strip()
            if "..." not in cmd:
                out.append(shlex.split(cmd))
    return out


def test_readme_zoo_commands_parse() -> None:
    """Every zoo command the README shows is accepted by the zoo's parser (subcommand, flags, choices)."""
    import contextlib
    import io

    from critwrap.zoo.__main__ import build_parser

    commands = _zoo_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 30
    parser = build_parser()
    failures = []
    for argv in commands:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code:
                failures.append(f"{' '.join(argv)}: {err.getvalue().strip().splitlines()[-1]}")
    assert not failures, "\n".join(failures)


def test_the_zoo_command_check_can_fail() -> None:
    text = "```bash\npython -m critwrap.zoo train ppo CartPole-v1 --no-such-flag 3\n```\n"
    (argv,) = _zoo_commands(text)
    from critwrap.zoo.__main__ import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
