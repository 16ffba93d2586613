#!/usr/bin/env bash
# Build the local base images without a registry (debootstrap + docker import), once:
#   local/debian:bookworm                 python3 + venv: the base of the Flower images built in tests
#   local/debian-systemd:bookworm         a systemd "VM" (Molecule platforms)
#   local/debian-systemd-dind:bookworm    the same with docker.io (VMs that run Flower containers)
# Set REBUILD=1 to build them again.
set -euo pipefail
cd "$(dirname "$0")/../images/base"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REBUILD=${REBUILD:-0}

have() { [ "$REBUILD" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

if ! have local/debian:bookworm; then
  rootfs=$(mktemp -d /var/tmp/flower-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "== debootstrap bookworm ($MIRROR)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >/var/tmp/flower-debootstrap.log
  cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SRC
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* "$rootfs"/var/log/*.log
  : >"$rootfs/etc/machine-id"
  tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - local/debian:bookworm
fi
have local/debian-systemd:bookworm \
  || docker build -q -t local/debian-systemd:bookworm -f Dockerfile.systemd .
have local/debian-systemd-dind:bookworm \
  || docker build -q -t local/debian-systemd-dind:bookworm -f Dockerfile.dind .
docker image ls 'local/debian*'
