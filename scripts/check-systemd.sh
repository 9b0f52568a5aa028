#!/usr/bin/env bash
# The appliance under a real systemd: boot a Debian bookworm container with systemd as PID 1
# (systemd-nspawn -b), install the project with scripts/install-appliance.sh exactly as an
# installer would, and check the unit:
#   1. anqi-edge reaches `active (running)` only after READY=1 (Type=notify);
#   2. journald holds its logfmt lines;
#   3. a daemon that stops pinging (SIGSTOP) is killed by the watchdog and restarted;
#   4. ExecStartPre (`anqi-edge validate`) refuses a broken config: the unit fails, nothing runs;
#   5. the hardening leaves the daemon its state dir, its config, /dev/snd and serial devices;
#   6. an upgrade in place (install-appliance.sh again) keeps the outbox and the config.
#
#   sudo bash scripts/check-systemd.sh [--prepare-only]
#   ANQI_NSPAWN_ROOT=/var/tmp/anqi-nspawn (default; the rootfs is made by debootstrap once and reused)
#
# Prints one `ok`/`FAIL` line per check; exits non-zero on the first failure. tests/test_systemd.py
# runs it when the rootfs exists (slow: minutes), and skips with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
ROOT=${ANQI_NSPAWN_ROOT:-/var/tmp/anqi-nspawn}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MACHINE=anqi-check-$$
say() { printf '%s check-systemd: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "check-systemd: run as root" >&2; exit 1; }
for p in debootstrap systemd-container; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
done
if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
  say "debootstrap bookworm with systemd into $ROOT"
  rm -rf "$ROOT"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-venv,python3-pip,ca-certificates,git,sudo,procps,iproute2 \
    bookworm "$ROOT" "$MIRROR" >/dev/null
fi
[ "${1:-}" = "--prepare-only" ] && { say "rootfs ready: $ROOT"; exit 0; }

# A throw-away copy of the prepared rootfs per run (the prepared one stays clean).
RUN=$(mktemp -d /var/tmp/anqi-nspawn-run.XXXX)
cp -a "$ROOT/." "$RUN/"
mkdir -p "$RUN/root/anqi-src"
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - 2>/dev/null | tar -xf - -C "$RUN/root/anqi-src"
[ -d "$SRC/../shared/video" ] && mkdir -p "$RUN/root/shared" && cp -a "$SRC/../shared/video" "$RUN/root/shared/"
cp -L /etc/resolv.conf "$RUN/etc/resolv.conf"
# behind a TLS-inspecting proxy the host trusts an extra CA: the guest must trust it too
cp -L /etc/ssl/certs/ca-certificates.crt "$RUN/etc/ssl/certs/ca-certificates.crt"
echo "$MACHINE" > "$RUN/etc/hostname"

say "booting $MACHINE (systemd-nspawn -b)"
systemd-nspawn -q -b -D "$RUN" --machine "$MACHINE" --register=no --keep-unit >"$RUN.console" 2>&1 &
NSPAWN=$!
cleanup() {
  kill "$NSPAWN" 2>/dev/null || true; wait "$NSPAWN" 2>/dev/null || true
  rm -rf "$RUN" "$RUN.console"
}
trap cleanup EXIT

# the container's PID 1 is systemd-nspawn's child
leader=""
for _ in $(seq 100); do
  leader=$(pgrep -P "$NSPAWN" -x systemd || true)
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || { tail -30 "$RUN.console"; fail "container did not boot"; }
inside() { nsenter -t "$leader" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$@"; }
for _ in $(seq 150); do
  state=$(inside systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
ok "container booted with systemd as PID 1 ($(inside systemctl --version | head -1), state $state)"

say "installing with scripts/install-appliance.sh (Debian packages, .venv, models: a few minutes)"
inside bash -c 'cd /root/anqi-src && bash scripts/install-appliance.sh --no-start' | tail -5
# a site config: a camera that is not there yet (the daemon must run and keep retrying), no broker
inside python3 - <<'EOF'
import re
p = "/etc/anqi/edge.yaml"
s = open(p).read()
s = re.sub(r"(?m)^(\s*uri:\s*)rtsp://\S+", r"\1rtsp://127.0.0.1:9/stream1", s, count=1)
open(p, "w").write(s)
EOF
inside /opt/anqi/.venv/bin/anqi-edge validate /etc/anqi/edge.yaml >/dev/null 2>&1 || inside /opt/anqi/.venv/bin/anqi-edge validate /etc/anqi/edge.yaml | tail -5

# 1. Type=notify: active only after READY=1
inside systemctl start anqi-edge || true
for _ in $(seq 300); do
  st=$(inside systemctl show -p ActiveState,SubState --value anqi-edge | paste -sd/)
  [ "$st" = "active/running" ] && break
  [ "$st" = "failed/failed" ] && break
  sleep 0.2
done
[ "$st" = "active/running" ] || { inside journalctl -u anqi-edge --no-pager | tail -30; fail "anqi-edge not active (running): $st"; }
ok "anqi-edge active (running) after READY=1 (Type=notify; $(inside systemctl show -p MainPID --value anqi-edge) runs as $(inside ps -o user= -p "$(inside systemctl show -p MainPID --value anqi-edge)"))"

# 2. journald: logfmt lines
sleep 2
lines=$(inside journalctl -u anqi-edge -o cat --no-pager | grep -c 'msg=' || true)
[ "$lines" -gt 0 ] || { inside journalctl -u anqi-edge --no-pager | tail -20; fail "no logfmt lines in the journal"; }
ok "journald has $lines logfmt lines, e.g. $(inside journalctl -u anqi-edge -o cat --no-pager | grep 'msg=' | head -1 | cut -c1-120)"

# 5. hardening vs devices and state
pid=$(inside systemctl show -p MainPID --value anqi-edge)
inside test -d /var/lib/anqi || fail "no state dir"
inside bash -c "ls -l /proc/$pid/root/var/lib/anqi >/dev/null && grep -q 'ProtectSystem=strict' /etc/systemd/system/anqi-edge.service" || fail "state dir"
groups=$(inside ps -o supgrp= -p "$pid")
for g in video audio dialout; do [[ ",$groups," == *",$g,"* ]] || fail "daemon lacks group $g ($groups)"; done
ok "daemon runs with groups $groups (camera, audio, serial), ProtectSystem=strict with /var/lib/anqi writable"

# 3. watchdog: freeze the daemon, systemd kills and restarts it
restarts0=$(inside systemctl show -p NRestarts --value anqi-edge)
inside kill -STOP "$pid"
say "daemon $pid frozen (SIGSTOP); waiting for the watchdog (WatchdogSec=$(inside systemctl show -p WatchdogUSec --value anqi-edge))"
for _ in $(seq 600); do
  new=$(inside systemctl show -p MainPID --value anqi-edge)
  n=$(inside systemctl show -p NRestarts --value anqi-edge)
  st=$(inside systemctl show -p ActiveState,SubState --value anqi-edge | paste -sd/)
  [ "$n" -gt "$restarts0" ] && [ "$new" != "$pid" ] && [ "$new" != 0 ] && [ "$st" = "active/running" ] && break
  sleep 0.2
done
[ "$n" -gt "$restarts0" ] || fail "watchdog did not restart the frozen daemon"
inside journalctl --no-pager | grep -q -i 'anqi-edge.service: watchdog timeout' || fail "no watchdog line in the journal"
ok "watchdog killed the frozen daemon and restarted it (pid $pid -> $new, NRestarts $n)"

# 6. upgrade in place keeps outbox and config
inside bash -c 'echo keep > /var/lib/anqi/upgrade-marker && chown anqi:anqi /var/lib/anqi/upgrade-marker; echo "# site edit" >> /etc/anqi/edge.yaml'
inside bash -c 'cd /root/anqi-src && bash scripts/install-appliance.sh' | tail -3
inside test -f /var/lib/anqi/upgrade-marker || fail "upgrade lost /var/lib/anqi"
inside grep -q '# site edit' /etc/anqi/edge.yaml || fail "upgrade overwrote /etc/anqi/edge.yaml"
st=$(inside systemctl show -p ActiveState,SubState --value anqi-edge | paste -sd/)
[ "$st" = "active/running" ] || fail "not running after the upgrade: $st"
ok "upgrade in place: outbox dir and edited config kept, daemon restarted ($st)"

# 4. a broken config never starts
inside systemctl stop anqi-edge
inside bash -c "sed -i 's/^  far_m: .*/  far_m: 5/' /etc/anqi/edge.yaml"
inside systemctl start anqi-edge 2>/dev/null && fail "a broken config started" || true
st=$(inside systemctl show -p ActiveState,Result --value anqi-edge | paste -sd/)
msg=$(inside journalctl -u anqi-edge -o cat --no-pager | grep -m1 'far_m' || true)
[ -n "$msg" ] || fail "ExecStartPre gave no message naming the field"
ok "broken config refused by ExecStartPre ($st): $msg"
say "all checks passed"
