#!/usr/bin/env bash
# Build the one-context stand-in package (Provides/Conflicts/Replaces one-context):
#   .cache/one-context-standin/one-context-standin_<VERSION>_all.deb   (path printed on stdout)
# Reproducible: same sources, same bytes (fixed mtimes, root ownership, SOURCE_DATE_EPOCH), so
# the appliance image cache can key on the package's hash.
set -euo pipefail
VERSION=0.1.0
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${OUT_DIR:-$HERE/../../.cache/one-context-standin}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
DEB=$OUT_DIR/one-context-standin_${VERSION}_all.deb
ROOT=$(mktemp -d "$OUT_DIR/.pkg.XXXXXX")
chmod 0755 "$ROOT"
trap 'rm -rf "$ROOT" "$ROOT.deb"' EXIT

install -D -m 0755 "$HERE/one-context-standin" "$ROOT/usr/sbin/one-context-standin"
install -D -m 0644 "$HERE/one-context.service" "$ROOT/lib/systemd/system/one-context.service"
install -D -m 0644 "$HERE/README.md" "$ROOT/usr/share/doc/one-context-standin/README.md"
install -d -m 0755 "$ROOT/var/lib/one-context/cdrom" "$ROOT/DEBIAN"

cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: one-context-standin
Version: $VERSION
Architecture: all
Maintainer: opennebula.flower collection <noreply@example.invalid>
Section: admin
Priority: optional
Depends: bash, coreutils, util-linux, mount
Recommends: curl
Provides: one-context
Conflicts: one-context
Replaces: one-context
Description: stand-in for OpenNebula's one-context (test appliances)
 Reads the context CD-ROM (a directory or a device labelled CONTEXT), writes
 /run/one-context/one_env like one-context's loc-16-gen-env, sets SET_HOSTNAME
 and honours REPORT_READY=YES. No network configuration, users, SSH keys,
 disk resizing or START_SCRIPT: not a replacement for one-context on real VMs.
CONTROL

cat >"$ROOT/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper enable one-context.service
  else
    mkdir -p /etc/systemd/system/multi-user.target.wants
    ln -sf /lib/systemd/system/one-context.service \
      /etc/systemd/system/multi-user.target.wants/one-context.service
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
SCRIPT
cat >"$ROOT/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper disable one-context.service
  else
    rm -f /etc/systemd/system/multi-user.target.wants/one-context.service
  fi
fi
SCRIPT
chmod 0755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/prerm"

find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
# Built aside and renamed: a reader never sees a half-written package.
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$ROOT.deb" >/dev/null
mv -f "$ROOT.deb" "$DEB"
echo "$DEB"
