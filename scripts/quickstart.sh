#!/usr/bin/env bash
# Segment the bundled sample clip end to end: masks in out/sample/, overlay video out/sample.mp4.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
avvos segment --out out/sample --overlay out/sample.mp4 "$@"
