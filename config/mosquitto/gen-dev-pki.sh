#!/usr/bin/env bash
# Development / test credentials for the AnQi broker: a CA, a server certificate for localhost,
# a client certificate and a random password per user, the mosquitto password file and the ACL.
# NOT for production keys (those are made and kept by the operator's own PKI).
#
#   config/mosquitto/gen-dev-pki.sh OUTDIR [USER ...]     (default users: anqi-central anqi-dev-0001)
#   config/mosquitto/gen-dev-pki.sh --revoke OUTDIR USER  (revoke USER's certificate: OUTDIR/crl.pem)
#
# OUTDIR gets: ca.crt ca.key server.crt server.key <user>.crt <user>.key passwd acl crl.pem
# and passwords/<user> (mode 600) holding each user's password, for ANQI_MQTT_PASSWORD.
# Every user other than anqi-central* and anqi-dispatch is a device of site $ANQI_SITE (default
# huzhou-demo): the acl gets its block (publish only anqi/v1/<site>/<user>/..., read only its acks).
# A client certificate's CN is its user: with use_identity_as_username (mosquitto-mtls.conf) the
# certificate alone says which device connects.
set -euo pipefail
ca_conf() {  # a minimal `openssl ca` setup (index of issued certificates) for the CRL
  mkdir -p "$1/ca-db"
  [ -f "$1/ca-db/index.txt" ] || : > "$1/ca-db/index.txt"
  [ -f "$1/ca-db/crlnumber" ] || echo 1000 > "$1/ca-db/crlnumber"
  cat > "$1/ca-db/ca.cnf" <<CNF
[ ca ]
default_ca = dev
[ dev ]
database = $1/ca-db/index.txt
crlnumber = $1/ca-db/crlnumber
certificate = $1/ca.crt
private_key = $1/ca.key
default_md = sha256
default_crl_days = 30
CNF
}
if [ "${1:-}" = "--revoke" ]; then
  out=${2:?usage: gen-dev-pki.sh --revoke OUTDIR USER}; u=${3:?usage: gen-dev-pki.sh --revoke OUTDIR USER}
  out=$(cd "$out" && pwd)
  ca_conf "$out"
  openssl ca -config "$out/ca-db/ca.cnf" -revoke "$out/$u.crt" 2>/dev/null
  openssl ca -config "$out/ca-db/ca.cnf" -gencrl -out "$out/crl.pem" 2>/dev/null
  echo "gen-dev-pki: revoked $u; reload mosquitto to read $out/crl.pem"
  exit 0
fi
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
site=${ANQI_SITE:-huzhou-demo}
for u in "${users[@]}"; do
  case "$u" in anqi-central*|anqi-dispatch) continue;; esac
  printf '\nuser %s\n' "$u" >> acl
  for k in event 'media/#' status heartbeat; do printf 'topic write anqi/v1/%s/%s/%s\n' "$site" "$u" "$k" >> acl; done
  printf 'topic read anqi/v1/%s/%s/ack\n' "$site" "$u" >> acl
done
# the index of issued certificates (for revocation) and an empty CRL
here_out=$(pwd)
ca_conf "$here_out"
for u in "${users[@]}"; do
  serial=$(openssl x509 -in "$u.crt" -noout -serial | cut -d= -f2)
  end=$(date -u -d "$(openssl x509 -in "$u.crt" -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
  subj=$(openssl x509 -in "$u.crt" -noout -subject -nameopt compat | sed 's/^subject=//')
  printf 'V\t%s\t\t%s\tunknown\t%s\n' "$end" "$serial" "$subj" >> ca-db/index.txt
done
openssl ca -config ca-db/ca.cnf -gencrl -out crl.pem 2>/dev/null
echo "gen-dev-pki: wrote CA, server and ${#users[@]} client certificate(s), passwd and acl to $out"
