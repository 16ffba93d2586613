#!/usr/bin/env bash
# Build a GRUB-bootable Debian 12 base qcow2 for the Packer bake, once (debootstrap, no nbd:
# a loop device with partitions added by partx, as in reference/bake-trial.md).
#   out:  .cache/bake/debian-12-base.qcow2   (4 GiB virtual; Packer grows it to the appliance size)
#         .cache/bake/keys/id_ed25519        the build key; root's only login in the base
# A real build may start from any Debian/Ubuntu cloud image instead (packer/README.md).
# Set REBUILD=1 to build it again. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${BAKE_CACHE:-$PWD/.cache/bake}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
OUT=$CACHE/debian-12-base.qcow2
KEY=$CACHE/keys/id_ed25519
REBUILD=${REBUILD:-0}

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

mkdir -p "$CACHE/keys"
[ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C flower-bake -f "$KEY"
if [ "$REBUILD" = 0 ] && [ -f "$OUT" ]; then
  log "base image $OUT is there (REBUILD=1 to build it again)"
  exit 0
fi

WORK=$(mktemp -d "$CACHE/base.XXXXXX")
LOOP=
cleanup() {
  set +e
  for m in dev/pts dev proc sys ""; do
    mountpoint -q "$WORK/mnt/$m" && umount "$WORK/mnt/$m"
  done
  if [ -n "$LOOP" ]; then
    partx -d "$LOOP" 2>/dev/null
    losetup -d "$LOOP"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log "debootstrap bookworm ($MIRROR; log: $CACHE/debootstrap.log)"
# cloud-guest-utils: growpart, so the bake can grow the root partition to the appliance's disk.
debootstrap --variant=minbase \
  --include=linux-image-cloud-amd64,initramfs-tools,systemd-sysv,udev,openssh-server,python3,python3-apt,sudo,grub-pc,ifupdown,isc-dhcp-client,iproute2,netbase,ca-certificates,less,procps,cloud-guest-utils,e2fsprogs \
  bookworm "$WORK/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1

R=$WORK/rootfs
echo debian >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
cat >"$R/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SRC
# Plain DHCP on the first NIC (one-context replaces this on OpenNebula).
cat >"$R/etc/network/interfaces" <<'NET'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
NET
install -d -m 0700 "$R/root/.ssh"
install -m 0600 "$KEY.pub" "$R/root/.ssh/authorized_keys"
cat >"$R/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 net.ifnames=0"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB
# The base keeps debootstrap's SSH host keys; the appliance cleanup removes them (packer/).
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/tmp/*
: >"$R/etc/machine-id"

log "disk image"
RAW=$WORK/base.raw
truncate -s 4G "$RAW"
echo ',,L,*' | sfdisk -q --label dos "$RAW"
LOOP=$(losetup -f --show "$RAW")
# This host's kernel does not scan partition tables of loop devices; partx adds them (BLKPG).
partx -a "$LOOP"
mkfs.ext4 -q -L rootfs "${LOOP}p1"
UUID=$(blkid -s UUID -o value "${LOOP}p1")
mkdir "$WORK/mnt"
mount "${LOOP}p1" "$WORK/mnt"
cp -a "$R/." "$WORK/mnt/"
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" >"$WORK/mnt/etc/fstab"
for m in dev dev/pts proc sys; do mount --bind "/$m" "$WORK/mnt/$m"; done
chroot "$WORK/mnt" grub-install --target=i386-pc "$LOOP" 2>&1 | grep -v '^Installation finished' || true
chroot "$WORK/mnt" update-grub 2>/dev/null
# No udev in the chroot: update-grub wrote root=/dev/loopNp1. Inside the guest later, udev
# exists and kernel updates regenerate grub.cfg properly.
sed -i "s|root=${LOOP}p1|root=UUID=$UUID|g" "$WORK/mnt/boot/grub/grub.cfg"
grep -q "root=UUID=$UUID" "$WORK/mnt/boot/grub/grub.cfg"
for m in sys proc dev/pts dev ""; do umount "$WORK/mnt/$m"; done
partx -d "$LOOP"
losetup -d "$LOOP"
LOOP=

log "qcow2"
qemu-img convert -c -O qcow2 "$RAW" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
qemu-img info "$OUT" | grep -E 'virtual size|disk size'
