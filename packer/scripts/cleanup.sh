#!/usr/bin/env bash
# Last step of the bake, in the guest: leave nothing of the build machine in the image, so
# every VM made from it starts fresh (its own machine-id, SSH host keys, logs, leases).
# The appliance role's cleanup (appliance_cleanup=true) already removed the image archive
# directory, its one-context .deb copy and the SSH host keys, ran apt-get clean and emptied
# /etc/machine-id; this does the rest, whatever the base image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

rm -rf "$IMAGE_DIR"
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
command -v cloud-init >/dev/null && cloud-init clean --logs --seed || true

# SSH host keys: made again at first boot, before sshd starts. A unit of its own, ordered
# before ssh.service: Debian's ssh.service runs `sshd -t` first, which fails without keys.
rm -f /etc/ssh/ssh_host_*
cat >/etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate the SSH host keys of a new VM
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
UNIT
systemctl enable ssh-host-keys.service
# The build key: one-context installs the VM owner's key (SSH_PUBLIC_KEY) at boot.
if [ "${REMOVE_BUILD_KEY:-true}" = true ]; then
  home=$(getent passwd "$BUILD_USER" | cut -d: -f6)
  rm -f "$home/.ssh/authorized_keys"
fi

# Identity: an empty machine-id (the role) makes systemd create a new one at first boot.
rm -f /var/lib/dbus/machine-id
rm -f /var/lib/systemd/random-seed /var/lib/dhcp/*.leases

# Logs, temporary files, shell history.
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
rm -rf /var/log/journal/*
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /var/tmp/* /root/.bash_history /root/.cache /root/.ansible

# Unused blocks back to the qcow2 (disk_discard = unmap), then compression drops them.
sync
fstrim -av
