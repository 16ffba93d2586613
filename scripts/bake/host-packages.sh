#!/usr/bin/env bash
# Debian packages the bake needs on this machine, installed with apt when missing (as root).
# Debian 12's packer is 1.6.6: it builds packer/flower.pkr.hcl alone (see packer/README.md).
set -euo pipefail
PACKAGES=(packer qemu-system-x86 qemu-utils debootstrap fdisk grub-pc-bin grub2-common kpartx
  genisoimage openssl python3)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
printf '\033[1m== apt-get install %s\033[0m\n' "${missing[*]}"
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
