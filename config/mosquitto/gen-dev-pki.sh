#!/usr/bin/env bash
# Development / test credentials for the AnQi broker: a CA, a server certificate for localhost,
# a client certificate and a random password per user, the mosquitto password file and the ACL.
# NOT for production keys (those are made and kept by the operator's own PKI).
#
#   config/mosquitto/gen-dev-pki.sh OUTDIR [USER ...]     (default users: anqi-central anqi-dev-0001)
#
# OUTDIR gets: ca.crt ca.key server.crt server.key <user>.crt <user>.key passwd acl
# and passwords/<user> (mode 600) holding each user's password, for ANQI_MQTT_PASSWORD.
set -euo pipefail
out=${1:?usage: gen-dev-pki.sh OUTDIR [USER ...]}
shift
users=("$@")
[ ${#users[@]} -gt 0 ] || users=(anqi-central anqi-dev-0001)
here=$(cd "$(dirname "$0")" && pwd)
command -v openssl >/dev/null || { echo "gen-dev-pki: openssl not found" >&2; exit 1; }
command -v mosquitto_passwd >/dev/null || [ -x /usr/bin/mosquitto_passwd ] || { echo "gen-dev-pki: mosquitto_passwd not found (Debian package mosquitto)" >&2; exit 1; }
mkdir -p "$out/passwords"
chmod 700 "$out/passwords"
cd "$out"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/O=AnQi dev/CN=AnQi dev CA" -out ca.crt

key server.key
openssl req -new -key server.key -subj "/O=AnQi dev/CN=localhost" -out server.csr
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 -extfile server.ext -out server.crt 2>/dev/null

: > passwd
chmod 600 passwd
for u in "${users[@]}"; do
  case "$u" in *[!A-Za-z0-9_.-]*|"") echo "gen-dev-pki: bad user name '$u'" >&2; exit 1;; esac
  key "$u.key"
  openssl req -new -key "$u.key" -subj "/O=AnQi dev/CN=$u" -out "$u.csr"
  printf "extendedKeyUsage=clientAuth\n" > client.ext
  openssl x509 -req -in "$u.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 -extfile client.ext -out "$u.crt" 2>/dev/null
  pw=$(openssl rand -hex 16)
  (umask 077; printf '%s' "$pw" > "passwords/$u")
  mosquitto_passwd -b passwd "$u" "$pw"
done
rm -f ./*.csr ./*.ext ca.srl
cp "$here/acl" acl
echo "gen-dev-pki: wrote CA, server and ${#users[@]} client certificate(s), passwd and acl to $out"
