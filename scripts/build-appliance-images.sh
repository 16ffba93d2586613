#!/usr/bin/env bash
# Bake the container counterparts of the SuperLink / SuperNode QCOW2 appliances, as a default
# Packer bake does (no image archive: the roles pull Flower's stock flwr/<component>:<version>
# and derive the images with the apps' packages), with the same playbooks/bake.yml, for the
# emulator's container backend (opennebula_emulator/README.md):
#   local/flower-appliance-superlink:<FLOWER_VERSION>
#   local/flower-appliance-supernode:<FLOWER_VERSION>
# The registry is the test registry (scripts/test-registry.sh, `make registry-images`: Flower's
# images as Docker Hub holds them), reached as flower-registry.test with its CA and login
# (docker_registries); bake.yml logs out again, so no credential is baked.
# Each bake starts as a systemd container of local/debian-systemd-dind:bookworm, bake.yml runs
# against it through the community.docker.docker connection, and the stopped container is
# committed. Its inner Docker store (/var/lib/docker) is a volume, which a commit does not keep,
# where a QCOW2 keeps its disk: the baked images are saved into the image
# (/var/lib/flower-bake/images.tar) and loaded at boot by flower-bake-images.service, before
# the boot hook runs. That unit is this stand-in's, not the appliance's.
#
# Usage: scripts/build-appliance-images.sh [superlink] [supernode]     (default: both)
# Env:   FLOWER_VERSION (1.42.0), REBUILD=1 (ignore the cache), FLOWER_TEST_ID (names),
#        APPLIANCE_BASE_IMAGE (local/debian-systemd-dind:bookworm),
#        APPLIANCE_DOCKER_SOURCE (distribution: Docker's own repository is not reachable here),
#        FLOWER_REGISTRY_PORT (5443)
# Cache: an image is kept when its label org.opennebula.flower.appliance.inputs equals the
# hash of the inputs (roles/, playbooks/, plugins/, meta/, galaxy.yml, this script, the base
# image id, the ids of the stock images the registry holds, the one-context stand-in package).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
ROOT=$PWD
FLOWER_VERSION=${FLOWER_VERSION:-1.42.0}
BASE_IMAGE=${APPLIANCE_BASE_IMAGE:-local/debian-systemd-dind:bookworm}
RUN_ID=${FLOWER_TEST_ID:-b$(date +%s%N | cut -c6-15)}
REBUILD=${REBUILD:-0}
DOCKER_SOURCE=${APPLIANCE_DOCKER_SOURCE:-distribution}
REGISTRY_DIR=$ROOT/.cache/registry
REGISTRY=flower-registry.test:${FLOWER_REGISTRY_PORT:-5443}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
SEED=/var/lib/flower-bake/images.tar
LABEL=org.opennebula.flower.appliance
ROLES=("$@")
[ ${#ROLES[@]} -gt 0 ] || ROLES=(superlink supernode)

log() { printf '\033[1m== %s\033[0m\n' "$*"; }
die() {
  echo "build-appliance-images: $*" >&2
  exit 1
}

for role in "${ROLES[@]}"; do
  case $role in superlink | supernode) ;; *) die "unknown role $role" ;; esac
done
bash scripts/test-registry.sh status >/dev/null || die "the test registry is not running (make registry-images)"
stock_ids() {
  for role in superlink supernode; do
    docker image inspect -f '{{.Id}}' "localhost/flower-$role:$FLOWER_VERSION-stock" 2>/dev/null \
      || die "localhost/flower-$role:$FLOWER_VERSION-stock is missing (make registry-images)"
  done
}
stock_ids >/dev/null
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing (make images)"
[ -x .venv/bin/ansible-playbook ] || die ".venv is missing (make bootstrap)"

DEB=$(bash scripts/one-context-standin/build-deb.sh)

inputs_hash() {
  {
    find roles playbooks plugins meta -type f -not -path '*/__pycache__/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum galaxy.yml "$SELF" "$DEB"
    docker image inspect -f '{{.Id}}' "$BASE_IMAGE"
    stock_ids
    echo "$REGISTRY $DOCKER_SOURCE"
  } | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)

image_of() { echo "local/flower-appliance-$1:$FLOWER_VERSION"; }
TODO=()
declare -A old
for role in "${ROLES[@]}"; do
  old[$role]=$(docker image inspect -f '{{.Id}}' "$(image_of "$role")" 2>/dev/null || true)
  have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL.inputs\"}}" "$(image_of "$role")" 2>/dev/null || true)
  if [ "$REBUILD" = 0 ] && [ "$have" = "$HASH" ]; then
    log "$(image_of "$role") is up to date (inputs ${HASH:0:12}; REBUILD=1 to bake it again)"
  else
    TODO+=("$role")
  fi
done
[ ${#TODO[@]} -gt 0 ] || exit 0

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flower-appliance-bake.XXXXXX")
CONTAINERS=()
cleanup() {
  set +e
  for c in "${CONTAINERS[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1; done
  rm -rf "$WORK"
}
trap cleanup EXIT

name_of() { echo "flower-appliance-bake-$1-$RUN_ID"; }
start=$(date +%s)
for role in "${TODO[@]}"; do
  c=$(name_of "$role")
  CONTAINERS+=("$c")
  ca=()
  [ -f "$CA_BUNDLE" ] && ca=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")
  log "start $c from $BASE_IMAGE"
  docker run --detach --name "$c" --label "$LABEL.bake=$RUN_ID" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE \
    --security-opt seccomp=unconfined --cgroupns private \
    --tmpfs /run --tmpfs /run/lock --volume /var/lib/docker --stop-signal SIGRTMIN+3 \
    --add-host "${REGISTRY%:*}:host-gateway" "${ca[@]}" \
    "$BASE_IMAGE" >/dev/null
done
for role in "${TODO[@]}"; do
  c=$(name_of "$role")
  state=$(timeout 120 docker exec "$c" systemctl is-system-running --wait 2>/dev/null || true)
  case $state in running | degraded) ;; *) die "$c: systemd did not come up ($state)" ;; esac
done

{
  echo "all:"
  echo "  vars:"
  echo "    ansible_connection: community.docker.docker"
  echo "    ansible_python_interpreter: /usr/bin/python3"
  echo "    docker_registries:"
  echo "      - address: $REGISTRY"
  echo "        username: $(cat "$REGISTRY_DIR/username")"
  echo "        password: $(cat "$REGISTRY_DIR/password")"
  echo "        ca_cert: |"
  sed 's/^/          /' "$REGISTRY_DIR/ca.crt"
  echo "  children:"
  for role in "${TODO[@]}"; do
    printf '    %s:\n      hosts:\n        %s:\n' "$role" "$(name_of "$role")"
  done
} >"$WORK/inventory.yml"
chmod 600 "$WORK/inventory.yml"

log "bake.yml on ${TODO[*]} (Flower $FLOWER_VERSION)"
bake_start=$(date +%s)
# shellcheck disable=SC1091
source .venv/bin/activate
ANSIBLE_CONFIG=$ROOT/ansible.cfg ansible-playbook -i "$WORK/inventory.yml" playbooks/bake.yml \
  -e "docker_source=$DOCKER_SOURCE" \
  -e "superlink_image_registry=$REGISTRY supernode_image_registry=$REGISTRY" \
  -e "superlink_build_ca_bundle=$CA_BUNDLE supernode_build_ca_bundle=$CA_BUNDLE" \
  -e "superlink_flower_version=$FLOWER_VERSION supernode_flower_version=$FLOWER_VERSION" \
  -e "appliance_one_context_package=$DEB"
bake_s=$(($(date +%s) - bake_start))

for role in "${TODO[@]}"; do
  c=$(name_of "$role")
  image=$(image_of "$role")
  # The disk a QCOW2 keeps (see the top), then what a disk image should not carry: caches,
  # logs, this machine's identity.
  docker exec "$c" sh -c "mkdir -p ${SEED%/*} && docker save -o $SEED \$(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>')"
  docker exec -i "$c" sh -c 'cat >/etc/systemd/system/flower-bake-images.service && systemctl enable -q flower-bake-images' <<UNIT
[Unit]
Description=Docker images of the bake (a stand-in for the disk a QCOW2 keeps)
Requires=docker.service
After=docker.service
Before=flower-appliance.service
ConditionPathExists=$SEED

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/docker load -q -i $SEED

[Install]
WantedBy=multi-user.target
UNIT
  docker exec "$c" sh -c 'apt-get clean; rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/* /root/.ansible;
    touch -d @0 /var/lib/apt/lists; journalctl --rotate --vacuum-time=1s >/dev/null 2>&1;
    rm -rf /var/log/journal/*; : >/etc/machine-id'
  docker stop --time 60 "$c" >/dev/null
  # `docker commit --change` cannot set STOPSIGNAL: the container's (from the base) is kept.
  docker commit \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    --change "LABEL $LABEL.inputs=$HASH $LABEL.role=$role $LABEL.flower-version=$FLOWER_VERSION" \
    --message "bake.yml ($role, Flower $FLOWER_VERSION)" \
    "$c" "$image" >/dev/null
  # The image this one replaces, untagged now, goes (each holds a GB of saved images).
  [ -z "${old[$role]}" ] || docker image rm "${old[$role]}" >/dev/null 2>&1 || true
  signal=$(docker image inspect -f '{{.Config.StopSignal}}' "$image")
  [ "$signal" = "SIGRTMIN+3" ] || die "$image: STOPSIGNAL is '$signal', not SIGRTMIN+3"
  docker rm -f -v "$c" >/dev/null
  log "$image: $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)"
done
log "baked ${TODO[*]} in $(($(date +%s) - start)) s (bake.yml $bake_s s)"
