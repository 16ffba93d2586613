#!/usr/bin/env bash
# Bake one Flower appliance image with Packer (packer/flower.pkr.hcl) and record its figures.
#   scripts/bake/bake.sh superlink|supernode
# Environment (the make target sets them):
#   FLOWER_VERSION    Flower release (1.42.0)
#   FLOWER_IMAGE_ARCHIVE  the Flower image archive (default .cache/images/flower-<v>-sklearn.tar);
#                     empty: none, the roles pull flwr/* in the guest (Packer's default)
#   BAKE_ACCELERATOR  kvm or tcg; default: kvm when the CPU has vmx/svm and /dev/kvm is there,
#                     else tcg (this project's machines: /dev/kvm is a nested PVM that stock
#                     kernels crash on, see shared reference/bake-trial.md)
#   BAKE_CPUS, BAKE_MEMORY   guest size (2, 2048)
#   BASE_IMAGE        base qcow2 (default: the one scripts/bake/base-image.sh makes)
#   ONE_CONTEXT_DEB   one-context .deb; default: the newest stand-in under .cache/one-context-standin/
#   DOCKER_SOURCE     docker role's source (default distribution: Docker's apt repository may
#                     be out of reach)
# Out: .cache/bake/output/<appliance>/flower-<appliance>.qcow2, logs in .cache/bake/logs/,
#      figures in .cache/bake/report-<appliance>.json (scripts/bake/report.sh merges them).
set -euo pipefail
# shellcheck source=scripts/bake/common.sh
source "$(dirname "$0")/common.sh"
ARCHIVE=${FLOWER_IMAGE_ARCHIVE-$REPO/.cache/images/flower-$FLOWER_VERSION-sklearn.tar}
BASE_IMAGE=${BASE_IMAGE:-$CACHE/debian-12-base.qcow2}
KEY=${BAKE_SSH_KEY:-$CACHE/keys/id_ed25519}
if [ -z "${ONE_CONTEXT_DEB+set}" ]; then
  ONE_CONTEXT_DEB=$(ls -t "$REPO"/.cache/one-context-standin/one-context*.deb 2>/dev/null | head -1 || true)
fi

for f in ${ARCHIVE:+"$ARCHIVE"} "$BASE_IMAGE" "$KEY"; do
  [ -f "$f" ] || { echo "missing: $f (make images / scripts/bake/base-image.sh)" >&2; exit 1; }
done

mkdir -p "$CACHE/logs" "$CACHE/output" "$CACHE/building" "$CACHE/tmp" "$CACHE/packer_cache"
LOG=$CACHE/logs/$APPLIANCE
OUTDIR=$CACHE/output/$APPLIANCE
IMAGE=$OUTDIR/flower-$APPLIANCE.qcow2

# Packer 1.6 cannot read packer/plugins.pkr.hcl (required_plugins), so it builds the template
# file alone; its qemu and ansible plugins are built in. A modern Packer builds the directory.
if packer version | grep -qE '^Packer v1\.[0-6]\.'; then
  TEMPLATE=$REPO/packer/flower.pkr.hcl
else
  packer init "$REPO/packer" >/dev/null
  TEMPLATE=$REPO/packer
fi

printf '\033[1m== bake %s (accelerator %s, one-context: %s; log %s.log)\033[0m\n' \
  "$APPLIANCE" "$BAKE_ACCELERATOR" "${ONE_CONTEXT_DEB:-none}" "$LOG"
start=$(date +%s.%N)
# The repo's venv first: the ansible provisioner runs its ansible-playbook.
PATH=$REPO/.venv/bin:$PATH TMPDIR=$CACHE/tmp PACKER_CACHE_DIR=$CACHE/packer_cache \
  PACKER_LOG=1 PACKER_LOG_PATH=$LOG.packer-debug.log CHECKPOINT_DISABLE=1 \
  packer build -force -timestamp-ui \
  -var "appliance=$APPLIANCE" \
  -var "base_image=$BASE_IMAGE" \
  -var "accelerator=$BAKE_ACCELERATOR" \
  -var "cpus=${BAKE_CPUS:-2}" \
  -var "memory=${BAKE_MEMORY:-2048}" \
  -var "output_dir=$CACHE/building" \
  -var "flower_version=$FLOWER_VERSION" \
  -var "flower_image_archive=$ARCHIVE" \
  -var "one_context_package=$ONE_CONTEXT_DEB" \
  -var "docker_source=${DOCKER_SOURCE:-distribution}" \
  -var "collection_dir=$REPO" \
  -var "ssh_private_key_file=$KEY" \
  -var "serial_log=$LOG.serial.log" \
  "$TEMPLATE" 2>&1 | tee "$LOG.log"
end=$(date +%s.%N)
# Built aside, so that a failed bake leaves the previous image in place.
rm -rf "$OUTDIR"
mv "$CACHE/building/$APPLIANCE" "$OUTDIR"

python3 - "$CACHE/report-$APPLIANCE.json" "$APPLIANCE" "$start" "$end" "$IMAGE" "$BAKE_ACCELERATOR" \
  "${ONE_CONTEXT_DEB:-}" <<'PY'
import json, subprocess, sys
out, appliance, start, end, image, accel, deb = sys.argv[1:]
info = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", image]))
fig = {
    "appliance": appliance,
    "accelerator": accel,
    "one_context_package": deb.rsplit("/", 1)[-1] or None,
    "bake_wall_s": round(float(end) - float(start), 1),
    "image": image,
    "virtual_size_bytes": info["virtual-size"],
    "actual_size_bytes": info["actual-size"],
    "virtual_size_gib": round(info["virtual-size"] / 2**30, 2),
    "actual_size_mib": round(info["actual-size"] / 2**20, 1),
}
json.dump(fig, open(out, "w"), indent=2)
print(json.dumps(fig, indent=2))
PY
