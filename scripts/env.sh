#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv and install avvos into it.
# Usage: source scripts/env.sh [test]   — "test" also installs what the test suite needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if [ "${1:-}" = "test" ]; then
  "${PIP[@]}" -e "$ROOT[test]"
  # The official DAVIS metric code (test-only oracle); its declared dependencies are not needed.
  "${PIP[@]}" --no-deps esdft-segmetric==0.1.0
else
  "${PIP[@]}" -e "$ROOT"
fi
export PATH="$VENV/bin:$PATH"
