#!/usr/bin/env bash
# Bake the container counterparts of the SuperLink / SuperNode QCOW2 appliances, with the same
# playbooks/bake.yml, for the emulator's container backend (opennebula_emulator/README.md):
#   local/flower-appliance-superlink:<FLOWER_VERSION>
#   local/flower-appliance-supernode:<FLOWER_VERSION>
# Each starts as a systemd container of local/debian-systemd-dind:bookworm (the Flower image
# archive bind-mounted read-only at /var/cache/flower-images), bake.yml runs against it through
# the community.docker.docker connection, and the stopped container is committed. The inner
# Docker store (/var/lib/docker) is a volume, so it is not in the image: the appliance loads
# the Flower image from the archive at boot, mounted at the same path by the container backend.
#
# Usage: scripts/build-appliance-images.sh [superlink] [supernode]     (default: both)
# Env:   FLOWER_VERSION (1.42.0), REBUILD=1 (ignore the cache), FLOWER_TEST_ID (names),
#        APPLIANCE_BASE_IMAGE (local/debian-systemd-dind:bookworm),
#        APPLIANCE_DOCKER_SOURCE (distribution: Docker's own repository is not reachable here)
# Cache: an image is kept when its label org.opennebula.flower.appliance.inputs equals the
# hash of the inputs (roles/, playbooks/, plugins/, meta/, galaxy.yml, this script, the base
# image id, the archive's name, the one-context stand-in package).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
ROOT=$PWD
FLOWER_VERSION=${FLOWER_VERSION:-1.42.0}
BASE_IMAGE=${APPLIANCE_BASE_IMAGE:-local/debian-systemd-dind:bookworm}
RUN_ID=${FLOWER_TEST_ID:-b$(date +%s%N | cut -c6-15)}
REBUILD=${REBUILD:-0}
DOCKER_SOURCE=${APPLIANCE_DOCKER_SOURCE:-distribution}
ARCHIVE_DIR=$ROOT/.cache/images
ARCHIVE=flower-$FLOWER_VERSION-sklearn.tar
IN_ARCHIVE=/var/cache/flower-images/$ARCHIVE
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
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
[ -f "$ARCHIVE_DIR/$ARCHIVE" ] || die "$ARCHIVE_DIR/$ARCHIVE is missing (make images)"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing (make images)"
[ -x .venv/bin/ansible-playbook ] || die ".venv is missing (make bootstrap)"

DEB=$(bash scripts/one-context-standin/build-deb.sh)

inputs_hash() {
  {
    find roles playbooks plugins meta -type f -not -path '*/__pycache__/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum galaxy.yml "$SELF" "$DEB"
    docker image inspect -f '{{.Id}}' "$BASE_IMAGE"
    echo "$ARCHIVE $DOCKER_SOURCE"
  } | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)

image_of() { echo "local/flower-appliance-$1:$FLOWER_VERSION"; }
TODO=()
for role in "${ROLES[@]}"; do
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
    --volume "$ARCHIVE_DIR/$ARCHIVE:$IN_ARCHIVE:ro" "${ca[@]}" \
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
  echo "  children:"
  for role in "${TODO[@]}"; do
    printf '    %s:\n      hosts:\n        %s:\n' "$role" "$(name_of "$role")"
  done
} >"$WORK/inventory.yml"

log "bake.yml on ${TODO[*]} (Flower $FLOWER_VERSION)"
bake_start=$(date +%s)
# shellcheck disable=SC1091
source .venv/bin/activate
ANSIBLE_CONFIG=$ROOT/ansible.cfg ansible-playbook -i "$WORK/inventory.yml" playbooks/bake.yml \
  -e "docker_source=$DOCKER_SOURCE" \
  -e "superlink_image_source=load superlink_image_archive=$IN_ARCHIVE" \
  -e "supernode_image_source=load supernode_image_archive=$IN_ARCHIVE" \
  -e "superlink_flower_version=$FLOWER_VERSION supernode_flower_version=$FLOWER_VERSION" \
  -e "appliance_one_context_package=$DEB"
bake_s=$(($(date +%s) - bake_start))

for role in "${TODO[@]}"; do
  c=$(name_of "$role")
  image=$(image_of "$role")
  # What a disk image should not carry: caches, logs, this machine's identity.
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
  signal=$(docker image inspect -f '{{.Config.StopSignal}}' "$image")
  [ "$signal" = "SIGRTMIN+3" ] || die "$image: STOPSIGNAL is '$signal', not SIGRTMIN+3"
  docker rm -f -v "$c" >/dev/null
  log "$image: $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)"
done
log "baked ${TODO[*]} in $(($(date +%s) - start)) s (bake.yml $bake_s s)"
