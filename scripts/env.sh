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
# torch 2.14.1 on x86_64 is a CUDA build: with its CUDA libraries the environment takes about 6.5 GB.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  free_mb=$(df -Pm "$VENV" | awk 'NR == 2 {print $4}')
  echo "disk space free for $VENV: ${free_mb} MB (the install needs about 7,000 MB)" >&2
  if [ "$free_mb" -lt 7000 ]; then
    echo "warning: probably too little disk space for torch and its CUDA libraries; free some and rerun" >&2
  fi
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir)
if [ "${1:-}" = "test" ]; then
  "${PIP[@]}" -e "$ROOT[test]"
  # The official DAVIS metric code (test-only oracle); its declared dependencies are not needed.
  "${PIP[@]}" --no-deps esdft-segmetric==0.1.0
else
  "${PIP[@]}" -e "$ROOT"
fi
export PATH="$VENV/bin:$PATH"
