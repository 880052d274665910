#!/usr/bin/env bash
# Run the whole test suite (installs avvos and the test tools into .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages for the live camera/microphone tests (PortAudio, a private PulseAudio daemon).
bash scripts/system_deps.sh || echo "warning: system packages missing; the microphone tests will be skipped" >&2
source scripts/env.sh test
python -m pytest "$@"
