#!/usr/bin/env bash
# A private registry for the tests, as an operator's: Debian's docker-registry (distribution
# 2.8) with TLS (a test CA) and basic auth (bcrypt htpasswd). One per checkout, shared by every
# test run (FLOWER_TEST_ID) and reused: `start` does nothing when it already answers.
#   scripts/test-registry.sh start|stop|status
# Files in $FLOWER_REGISTRY_DIR (default .cache/registry): ca.crt (the test CA), username and
# password, vars.yml (the settings playbooks/build_images.yml pushes with, mode 0600), data/.
# Listens on 0.0.0.0:$FLOWER_REGISTRY_PORT (default 5443): this machine pushes to
# 127.0.0.1:<port>; the Molecule "VMs" reach it as flower-registry.test:<port> (their /etc/hosts
# points that name at the Docker host, host-gateway), a name its certificate holds.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${FLOWER_REGISTRY_DIR:-$PWD/.cache/registry}
PORT=${FLOWER_REGISTRY_PORT:-5443}
NAME=flower-registry.test
USERNAME=flower

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

answers() {  # the registry answers an authenticated request over verified TLS
  [ -f "$DIR/password" ] && curl -sf -o /dev/null --max-time 5 --cacert "$DIR/ca.crt" \
    --resolve "$NAME:$PORT:127.0.0.1" -u "$USERNAME:$(cat "$DIR/password")" "https://$NAME:$PORT/v2/"
}

running_pid() {
  local pid
  pid=$(cat "$DIR/registry.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = docker-registry ] && echo "$pid"
}

install() {
  command -v docker-registry >/dev/null && command -v htpasswd >/dev/null && return 0
  log "apt-get install docker-registry apache2-utils"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends docker-registry apache2-utils >/dev/null
  # The package's own service (plain HTTP on :5000, no auth) is not the one the tests use.
  if [ "$(cat /proc/1/comm)" = systemd ]; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
}

material() {  # test CA, server certificate, credentials, config: made once
  mkdir -p "$DIR/data"
  chmod 700 "$DIR"
  if [ ! -f "$DIR/server.crt" ]; then
    log "test registry CA and certificate in $DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=opennebula.flower test registry CA" -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$NAME" \
      -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$NAME" >"$DIR/san.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
      -days 3650 -extfile "$DIR/san.ext" -out "$DIR/server.crt" 2>/dev/null
    rm -f "$DIR/server.csr" "$DIR/san.ext"
  fi
  if [ ! -f "$DIR/password" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$DIR/password")
    echo "$USERNAME" >"$DIR/username"
    htpasswd -Bbc "$DIR/htpasswd" "$USERNAME" "$(cat "$DIR/password")" 2>/dev/null
  fi
  cat >"$DIR/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: 0.0.0.0:$PORT
  tls:
    certificate: $DIR/server.crt
    key: $DIR/server.key
auth:
  htpasswd:
    realm: opennebula.flower tests
    path: $DIR/htpasswd
YAML
  (umask 077; {
    echo "---"
    echo "# Made by scripts/test-registry.sh: where playbooks/build_images.yml pushes."
    echo "flower_images_registry: 127.0.0.1:$PORT"
    echo "flower_images_registry_username: $USERNAME"
    echo "flower_images_registry_password: $(cat "$DIR/password")"
    echo "flower_images_registry_ca_cert: |"
    sed 's/^/  /' "$DIR/ca.crt"
    echo "flower_images_push_stock: true"
  } >"$DIR/vars.yml")
}

start() {
  install
  material
  if answers; then echo "test registry: https://$NAME:$PORT (already running)"; return 0; fi
  if pid=$(running_pid); then kill "$pid"; sleep 1; fi
  log "starting the test registry on 0.0.0.0:$PORT (log: $DIR/registry.log)"
  (
    # A daemon: no descriptor of ours (the lock, a caller's pipes) stays open in it.
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec setsid /usr/bin/docker-registry serve "$DIR/config.yml"
  ) </dev/null >>"$DIR/registry.log" 2>&1 &
  echo $! >"$DIR/registry.pid"
  for _ in $(seq 1 30); do
    if answers; then echo "test registry: https://$NAME:$PORT"; return 0; fi
    sleep 1
  done
  echo "the test registry did not answer; see $DIR/registry.log" >&2
  exit 1
}

stop() {
  if pid=$(running_pid); then
    log "stopping the test registry (pid $pid)"
    kill "$pid"
  fi
  rm -f "$DIR/registry.pid"
}

case ${1:-} in
  start | stop)
    mkdir -p "$DIR"
    # One start or stop at a time: runs of several test ids share the registry.
    exec 9>"$DIR/.lock"
    flock 9
    "$1"
    ;;
  status) if answers; then echo "running: https://$NAME:$PORT"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
