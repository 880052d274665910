#!/usr/bin/env bash
# Run the whole test suite (installs avvos and the test tools into .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh test
python -m pytest "$@"
