#!/usr/bin/env bash
# Set up a development environment in .venv: critwrap (editable, with the dev, mujoco, dmc, ray, box2d and
# minatar extras) and the example plugin. Idempotent and non-interactive: run it again after pulling; it does nothing
# when neither pyproject.toml has changed since the last successful run.
#
#   ./scripts/setup.sh && .venv/bin/python -m pytest -q
#
# Environment: PYTHON (default python3, must be >= 3.10) creates the venv; VENV (default .venv);
# SETUP_FORCE=1 reinstalls even when nothing changed.
#
# torch is installed first and pinned: these machines carry the CPU build of torch 2.13.0 as a local
# wheel, while an unpinned torch pulled in by the package would download the multi-GB CUDA build.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_PIN="torch==2.13.0"
STAMP="$VENV/.critwrap-setup-stamp"

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Quiet and non-interactive: pip's output goes to a log, shown (less the noise of missing local
# index folders) only when pip fails.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
LOG="$VENV/setup-pip.log"
pip_install() {
    if ! "$VENV/bin/python" -m pip install "$@" >>"$LOG" 2>&1; then
        printf 'setup: error: pip install %s failed; the end of %s:\n' "$*" "$LOG" >&2
        grep -v -e '^WARNING: Location .* is ignored' -e '^\s*$' "$LOG" | tail -n 40 >&2
        exit 1
    fi
}

# ---- the virtual environment ----------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "$VENV is broken (its python does not run); recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found; install Python >= 3.10 or set PYTHON=/path/to/python3"
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
        || fail "$("$PYTHON" -V 2>&1) is too old: critwrap needs Python >= 3.10 (set PYTHON=python3.11, say)"
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV" || fail "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi
"$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || fail "$VENV has $("$VENV/bin/python" -V 2>&1); critwrap needs >= 3.10: remove $VENV and rerun with PYTHON=python3.11"

# ---- nothing to do? ---------------------------------------------------------------------------------
fingerprint="$(cat pyproject.toml plugins/critwrap-example/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ "${SETUP_FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$fingerprint" ]] \
    && "$VENV/bin/python" -c 'import critwrap, critwrap_example, torch' >/dev/null 2>&1; then
    say "$VENV is up to date ($("$VENV/bin/python" -V 2>&1), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
    exit 0
fi
rm -f "$STAMP"
: >"$LOG"

# ---- packages ---------------------------------------------------------------------------------------
say "upgrading pip"
pip_install --upgrade pip

say "installing $TORCH_PIN (CPU build) first"
pip_install "$TORCH_PIN"

# ray (the sweep's distributed backend, tested against the local one) adds ~20 s and ~400 MB
say "installing critwrap (editable) with the dev, mujoco, dmc, ray, box2d and minatar extras"
pip_install -e ".[dev,mujoco,dmc,ray,box2d,minatar]"

say "installing the example plugin (editable)"
pip_install -e plugins/critwrap-example

# the pin held: nothing above replaced torch with another build
"$VENV/bin/python" - "$TORCH_PIN" <<'PY' || fail "torch is not $TORCH_PIN after the install (see above)"
import sys
import torch
want = sys.argv[1].split("==")[1]
sys.exit(0 if torch.__version__.split("+")[0] == want else f"torch {torch.__version__} installed, want {want}")
PY
"$VENV/bin/python" -c 'import critwrap, critwrap_example' || fail "critwrap does not import after the install"

echo "$fingerprint" > "$STAMP"
say "done: $("$VENV/bin/python" -V 2>&1), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), in $ROOT/$VENV"
say "run the tests with: .venv/bin/python -m pytest -q"
