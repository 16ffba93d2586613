#!/usr/bin/env bash
# First step of the bake, in the guest: grow the root partition and filesystem to the disk
# Packer resized the base image to, refresh the package lists, and fetch the Flower image
# archive from Packer's HTTP server (plain HTTP on QEMU's user network: several times faster
# than an upload over SSH when the guest is emulated).
# Environment: IMAGE_DIR, ARCHIVE_NAME (empty: no archive), PACKER_HTTP_ADDR (set by Packer).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

root=$(findmnt -no SOURCE /)
disk=/dev/$(lsblk -no PKNAME "$root")
part=${root##*[!0-9]}
if command -v growpart >/dev/null; then
  # Exit code 1 with NOCHANGE: already the full disk.
  growpart "$disk" "$part" || true
  resize2fs "$root" >/dev/null 2>&1 || true
else
  echo "growpart not found (cloud-guest-utils): the root filesystem keeps the base image's size" >&2
fi
df -h /

# Cloud images often ship with empty package lists whose directory is recent: apt's
# cache_valid_time would then trust them.
apt-get -qq update

install -d -m 0700 "$IMAGE_DIR"
if [ -n "${ARCHIVE_NAME:-}" ]; then
  start=$(date +%s)
  python3 - "http://$PACKER_HTTP_ADDR/$ARCHIVE_NAME" "$IMAGE_DIR/$ARCHIVE_NAME" <<'PY'
import shutil, sys, urllib.request
url, dest = sys.argv[1:]
with urllib.request.urlopen(url) as r, open(dest, "wb") as f:
    shutil.copyfileobj(r, f, 4 << 20)
    want, got = int(r.headers["Content-Length"]), f.tell()
if got != want:
    sys.exit(f"{url}: got {got} bytes of {want}")
PY
  echo "$ARCHIVE_NAME: $(du -m "$IMAGE_DIR/$ARCHIVE_NAME" | cut -f1) MiB in $(($(date +%s) - start)) s"
fi
