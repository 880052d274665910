#!/usr/bin/env bash
# Install the Debian packages that the live-capture and microphone tests need (idempotent).
#   libportaudio2       PortAudio, which the Python package sounddevice loads at import time
#   pulseaudio          a private daemon with a null sink serves as the virtual microphone in tests
#   pulseaudio-utils    pactl / paplay, to configure that daemon and play test signals into it
#   libasound2-plugins  the ALSA "pulse" PCM, through which PortAudio reaches PulseAudio
#   xvfb, xdotool       a virtual X display and input events, for the live window test
#   chromium            the real browser the web demo tests drive with Playwright (never a downloaded one)
# Packages already installed are not fetched again; nothing runs when all are present.
# Usage: bash scripts/system_deps.sh   (as root, or with sudo available)
set -euo pipefail
PACKAGES=(libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins xvfb xdotool chromium)
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages already present: ${PACKAGES[*]}"
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "need root to install: ${missing[*]} (run as root or install sudo)" >&2
    exit 1
  fi
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
