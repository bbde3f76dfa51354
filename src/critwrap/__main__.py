"""``python -m critwrap``: small utilities (``plugins``, ``info``); the experiment CLI is ``python -m critwrap.zoo``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

# the distributions whose versions a bug report needs (critwrap's own dependencies and extras)
PACKAGES = (
    "critwrap",
    "torch",
    "numpy",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "ale-py",
    "minigrid",
    "mujoco",
    "dm-control",
    "shimmy",
    "rliable",
    "imitation",
    "ray",
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def system_info(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """What a bug report needs: platform, package versions, torch's devices, rendering and the
    registered parts (as SB3's ``get_system_info``, plus critwrap's own)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "packages": {p: _version(p) for p in packages},
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "(unset)"),
    }
    try:
        import torch

        cuda = torch.cuda.is_available()
        info["torch"] = {
            "version": torch.__version__,
            "cuda_build": torch.version.cuda or "none (CPU build)",
            "cuda_available": cuda,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "mps_available": bool(torch.backends.mps.is_available()),
            "threads": torch.get_num_threads(),
            "auto_device": "cuda" if cuda else "cpu",
        }
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        info["torch"] = {"error": str(exc)}
    try:
        import ale_py.roms

        info["atari_roms"] = len(ale_py.roms.get_all_rom_ids())
    except Exception as exc:  # reported, not raised: info must always print
        info["atari_roms"] = f"unavailable ({type(exc).__name__}: {exc})"
    from critwrap import registry

    info["registered"] = {kind: len(registry.names(kind)) for kind in registry.KINDS}
    broken = registry.broken_distributions()
    if broken:
        info["broken_plugins"] = broken
    return info


def _print_info(info: dict[str, Any], indent: str = "") -> None:
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_info(value, indent + "  ")
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"{indent}{key.ljust(width)}  {shown if shown != '' else '-'}")


def _print_table(rows: list[dict[str, str]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critwrap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "plugins", help="list registered wrappers, detectors, callbacks, extractors and replay buffers"
    )
    p.add_argument("--kind", choices=["wrapper", "detector", "callback", "extractor", "buffer"], default=None)
    p.add_argument(
        "--no-check", action="store_true", help="do not import the parts (status stays 'not loaded')"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = sub.add_parser(
        "info", help="versions, devices, rendering and registered parts: paste it into a bug report"
    )
    q.add_argument("--json", action="store_true", help="print JSON")
    if not (sys.argv[1:] if argv is None else argv):  # no command: the help, with the commands
        parser.print_help()
        return 0
    args = parser.parse_args(argv)

    if args.command == "info":
        info = system_info()
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_info(info)
        return 0

    if args.command == "plugins":
        from critwrap import registry

        rows = registry.plugin_table(check=not args.no_check, kind=f"{args.kind}s" if args.kind else None)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_table(rows, ["name", "kind", "package", "status", "target"])
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
