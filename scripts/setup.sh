#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands: Debian packages, .venv, the package
# (editable, so the CLIs are .venv/bin/anqi-edge and .venv/bin/anqi-central), then the models.
# A second run installs nothing and rebuilds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# gir1.2-gst-rtsp-server-1.0 + gstreamer1.0-*: a real RTSP camera on loopback for the capture tests
# chromium + chromium-driver + fonts-wqy-microhei: the web faces are tested in a real browser with CJK glyphs
APT_PACKAGES=(mosquitto espeak-ng sox ffmpeg libportaudio2 libasound2-plugins alsa-utils systemd
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  chromium chromium-driver fonts-wqy-microhei)
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

quiet_pip() { grep -v -e "^WARNING: Location" -e "BuildBackendWarning" -e "^ *!!" -e "^ *\*\*\*" -e "Please be careful" -e "name as your package" -e "with strategy, WheelFile" -e "^ *$" || true; }

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "setup: creating .venv"; $PY -m venv .venv; }

EXTRAS="edge,central,test"
stamp=".venv/.anqi-installed"
want="$(sha256sum setup.py | cut -c1-64) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing anqi[$EXTRAS] into .venv"
  # pip's own chatter (mirror-location warnings, editable-build notices) is filtered; errors still show.
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet_pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]" 2>&1 | quiet_pip
  echo "$want" > "$stamp"
fi

.venv/bin/anqi-edge models prepare
