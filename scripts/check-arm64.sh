#!/usr/bin/env bash
# arm64 (Raspberry Pi 5 / Jetson class) proven on an x86 machine: build a Debian bookworm arm64
# root file system with debootstrap, run it under qemu user emulation (binfmt_misc), install the
# project there exactly as the README says (scripts/setup.sh), prepare the models and replay the
# shared clip through the whole pipeline. Prints the events and the wall time of each step.
#
#   sudo bash scripts/check-arm64.sh              # rootfs kept in /var/tmp/anqi-arm64 (reused)
#   ANQI_ARM64_ROOT=/somewhere MIRROR=http://deb.debian.org/debian sudo -E bash scripts/check-arm64.sh
#   bash scripts/check-arm64.sh --wheels          # only: which runtime wheels PyPI has for aarch64
#
# Needs root, network access to Debian's and PyPI's package servers, and the Debian packages
# debootstrap qemu-user-static binfmt-support (installed here when missing). Not part of the
# README's two commands: it takes a while (an emulated CPU runs Python about 5-20 times slower).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
ROOT=${ANQI_ARM64_ROOT:-/var/tmp/anqi-arm64}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
CLIP_REL=${CLIP:-../shared/video/bikelane-cyclists.mp4}
say() { printf '%s check-arm64: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

wheels() {
  # Which of the device runtime's binary dependencies have aarch64 wheels on PyPI (Python 3.11), for
  # bookworm's glibc 2.36 (Raspberry Pi OS and Debian bookworm): every manylinux tag up to 2_36. Without
  # 2_34, lgpio resolves to 0.0.0.2, an empty placeholder wheel (py3-none-any, lgpio.py of 0 bytes).
  local tmp; tmp=$(mktemp -d)
  for pkg in numpy onnxruntime opencv-python-headless av scipy onnx pydantic-core paho-mqtt pyserial \
             gpiozero sounddevice pyyaml click lgpio rpi-lgpio pynacl; do
    if python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
         --implementation cp --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
         --platform manylinux_2_28_aarch64 --platform manylinux_2_31_aarch64 \
         --platform manylinux_2_34_aarch64 --platform manylinux_2_36_aarch64 \
         --platform any -d "$tmp" "$pkg" >/dev/null 2>&1; then
      printf '  %-24s %s\n' "$pkg" "$(ls "$tmp" | grep -i "^${pkg//-/_}-\|^${pkg}-" | head -1)"
    else
      printf '  %-24s %s\n' "$pkg" "NO aarch64 wheel (sdist build or Debian package needed)"
    fi
  done
  rm -rf "$tmp"
}

if [ "${1:-}" = "--wheels" ]; then wheels; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "check-arm64: run as root (debootstrap, chroot, mounts)" >&2; exit 1; }

need=()
for p in debootstrap qemu-user-static binfmt-support; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "check-arm64: no binfmt_misc entry for aarch64" >&2; exit 1; }

t0=$(date +%s)
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  say "debootstrap $SUITE arm64 into $ROOT"
  rm -rf "$ROOT"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,git,sudo,dpkg-dev \
    "$SUITE" "$ROOT" "$MIRROR" >/dev/null
fi
say "rootfs ready ($(($(date +%s) - t0)) s): $(chroot "$ROOT" uname -m) $(chroot "$ROOT" python3 --version)"

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
# not /sys: onnxruntime's cpuinfo reads the x86 host's CPU topology there and crashes under qemu
for m in proc dev dev/pts; do
  mountpoint -q "$ROOT/$m" || { mount --bind "/$m" "$ROOT/$m"; mounted+=("$ROOT/$m"); }
done
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# behind a TLS-inspecting proxy the host trusts an extra CA: the guest must trust it too
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"

# The checkout as a fresh clone would have it (tracked files + the working tree's changes), and the
# shared data beside it, as in CI.
# a new copy of the tree each run; the guest's .venv is kept (setup.sh reinstalls when setup.py changed)
mkdir -p "$ROOT/opt/anqi"
find "$ROOT/opt/anqi" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
# Not models/build: the guest prepares its own models (a worktree's models/build is often a symlink to
# the main checkout's, which .gitignore's "models/build/" does not match and which dangles in the guest).
git ls-files -z --cached --others --exclude-standard | { grep -zv '^models/build$' || true; } \
  | (cd "$SRC" && xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$ROOT/opt/anqi"
if [ -d "$SRC/../shared" ]; then
  mkdir -p "$ROOT/opt/shared/video" && cp -a "$SRC/../shared/video/." "$ROOT/opt/shared/video/"
  [ -d "$SRC/../shared/faces" ] || true
fi

t1=$(date +%s)
say "installing the project as the README says (scripts/setup.sh) under emulation"
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  bash -c 'cd /opt/anqi && bash scripts/setup.sh' 2>&1 | tail -20
t2=$(date +%s)
say "set-up took $((t2 - t1)) s"

say "replaying $CLIP_REL through the whole pipeline (anqi-edge replay)"
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt bash -c "
  cd /opt/anqi && rm -rf /tmp/arm64-replay && \
  .venv/bin/python -c 'import platform, onnxruntime, cv2, numpy; print(\"python\", platform.machine(), \"onnxruntime\", onnxruntime.__version__, onnxruntime.get_available_providers(), \"opencv\", cv2.__version__, \"numpy\", numpy.__version__)' && \
  time .venv/bin/anqi-edge replay $CLIP_REL --config config/examples/bikelane-cyclists.yaml --out /tmp/arm64-replay" 2>&1 | tail -25
t3=$(date +%s)
say "events written under emulation:"
for f in "$ROOT"/tmp/arm64-replay/events/*.json; do
  [ -e "$f" ] || { say "NO EVENTS"; exit 1; }
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print("  ", e.get("violation_type"), "track", e.get("track_id"), "at", e.get("zone_distance_m"), "m, t", e.get("detail", {}).get("t_s"), "s, face", e["face"]["found"])' "$f"
done
say "replay took $((t3 - t2)) s; whole check $((t3 - t0)) s"
