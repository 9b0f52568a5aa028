#!/usr/bin/env bash
# Install (or upgrade in place) the AnQi edge appliance on a Debian / Raspberry Pi OS / Jetson
# (Ubuntu) node, from this checkout, the way README "Operations" describes it:
#
#   sudo bash scripts/install-appliance.sh [--central] [--no-start] [--prefix /opt/anqi]
#
# - system user `anqi` (home /var/lib/anqi, no login) in the groups video audio gpio dialout
#   (created when the image lacks them); with --central also `anqi-central`;
# - the code under PREFIX (default /opt/anqi) with its own .venv and prepared models (scripts/setup.sh);
#   an upgrade replaces code and venv, never /var/lib/anqi (the outbox and its evidence) and never
#   /etc/anqi/edge.yaml (a new example lands beside it as edge.yaml.example);
# - /etc/anqi/edge.yaml from the example on first install (mode 0640 root:anqi), /etc/anqi/credentials/
#   (0700) for the broker password read through LoadCredential=;
# - the units from systemd/ into /etc/systemd/system, enabled; a running daemon is restarted after
#   an upgrade (its outbox is taken up where it stopped).
# Idempotent: a second run with the same checkout changes nothing but the restart.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
PREFIX=/opt/anqi
CENTRAL=0
START=1
while (($#)); do
  case "$1" in
    --central) CENTRAL=1 ;;
    --no-start) START=0 ;;
    --prefix) PREFIX=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install-appliance: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "install-appliance: run as root" >&2; exit 1; }
say() { printf 'install-appliance: %s\n' "$*"; }
have_systemd() { [ -d /run/systemd/system ]; }

# 1. user and groups
for g in video audio gpio dialout; do getent group "$g" >/dev/null || groupadd --system "$g"; done
if ! id anqi >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/anqi --no-create-home --shell /usr/sbin/nologin \
    --user-group --groups video,audio,gpio,dialout anqi
  say "created user anqi"
else
  usermod -a -G video,audio,gpio,dialout anqi
fi
if [ "$CENTRAL" = 1 ] && ! id anqi-central >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/anqi-central --no-create-home --shell /usr/sbin/nologin --user-group anqi-central
  say "created user anqi-central"
fi
install -d -o anqi -g anqi -m 0750 /var/lib/anqi

# 2. code + venv: a fresh copy next to the old one, switched in with one rename, so an upgrade that
#    fails half-way leaves the running version untouched.
version=$(git -C "$SRC" describe --always --dirty 2>/dev/null || date -u +%Y%m%d%H%M%S)
stage="$PREFIX.new"
rm -rf "$stage" && mkdir -p "$stage"
if git -C "$SRC" rev-parse >/dev/null 2>&1; then
  git -C "$SRC" ls-files -z --cached --others --exclude-standard | (cd "$SRC" && xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$stage"
else
  tar -C "$SRC" --exclude=.venv --exclude=anqi-data -cf - . | tar -xf - -C "$stage"
fi
# the demo/test data beside the checkout is not part of an appliance; models/build is rebuilt
say "building $stage (version $version): Debian packages, .venv, models"
(cd "$stage" && bash scripts/setup.sh)
echo "$version" > "$stage/VERSION"
chown -R root:root "$stage" && chmod -R go-w "$stage"
if [ -d "$PREFIX" ]; then
  was=$(cat "$PREFIX/VERSION" 2>/dev/null || echo unknown)
  rm -rf "$PREFIX.old" && mv "$PREFIX" "$PREFIX.old"
  say "upgrading $was -> $version (previous kept in $PREFIX.old)"
fi
mv "$stage" "$PREFIX"
# the venv's scripts name their interpreter by absolute path: rebuild those paths for PREFIX
grep -rlI "$stage" "$PREFIX/.venv/bin" 2>/dev/null | xargs -r sed -i "s#$stage#$PREFIX#g"
grep -rlI "$stage" "$PREFIX/.venv/lib" --include='*.pth' --include='*.json' --include='__editable__*' 2>/dev/null \
  | xargs -r sed -i "s#$stage#$PREFIX#g"

# 3. configuration (never overwritten)
install -d -m 0755 /etc/anqi
install -d -m 0700 /etc/anqi/credentials
if [ ! -f /etc/anqi/edge.yaml ]; then
  install -m 0640 -o root -g anqi "$PREFIX/config/edge.example.yaml" /etc/anqi/edge.yaml
  say "wrote /etc/anqi/edge.yaml from the example: edit device_id, site, zone and relay, then run"
  say "  $PREFIX/.venv/bin/anqi-edge validate /etc/anqi/edge.yaml"
else
  install -m 0644 "$PREFIX/config/edge.example.yaml" /etc/anqi/edge.yaml.example
  say "kept /etc/anqi/edge.yaml (new example: /etc/anqi/edge.yaml.example)"
fi
[ -f /etc/anqi/credentials/mqtt-password ] || install -m 0600 /dev/null /etc/anqi/credentials/mqtt-password

# 4. units
units=(anqi-edge.service)
[ "$CENTRAL" = 1 ] && units+=(anqi-central.service)
for u in "${units[@]}"; do
  sed "s#/opt/anqi#$PREFIX#g" "$PREFIX/systemd/$u" > "/etc/systemd/system/$u"
  chmod 0644 "/etc/systemd/system/$u"
done
if have_systemd; then
  systemctl daemon-reload
  systemctl enable "${units[@]}" >/dev/null 2>&1
  if [ "$START" = 1 ]; then
    for u in "${units[@]}"; do
      if systemctl is-active -q "$u"; then
        systemctl restart "$u" && say "restarted $u"
      else
        systemctl start "$u" && say "started $u" || say "$u did not start: journalctl -u $u"
      fi
    done
  fi
else
  say "no running systemd here: units installed, start them after boot (systemctl enable --now anqi-edge)"
fi
rm -rf "$PREFIX.old"
say "done: $PREFIX ($version); logs: journalctl -u anqi-edge -o cat; health: $PREFIX/.venv/bin/anqi-edge status --config /etc/anqi/edge.yaml"
