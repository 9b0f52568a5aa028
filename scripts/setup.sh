#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands: Debian packages, .venv, the package
# (editable, so the CLIs are .venv/bin/anqi-edge and .venv/bin/anqi-central), then the models.
# A second run installs nothing and rebuilds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto espeak-ng sox ffmpeg libportaudio2 libasound2-plugins alsa-utils systemd)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "setup: creating .venv"; $PY -m venv .venv; }

EXTRAS="central,test"
stamp=".venv/.anqi-installed"
want="$(sha256sum setup.py | cut -c1-64) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing anqi[$EXTRAS] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi

.venv/bin/anqi-edge models prepare
