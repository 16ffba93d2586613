#!/usr/bin/env bash
# Prepare this machine for `make demo` / `make test`: Debian packages, a running Docker engine,
# the Python virtual environments and the community collections (taken from the `ansible`
# wheel on PyPI, since Galaxy is not reachable). Safe to run again: every step is skipped
# when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

FLOWER_VERSION=${FLOWER_VERSION:-1.42.0}
# The oldest Flower release the collection supports (the seeds' version); tested beside the default.
FLOWER_OLDEST=1.25.0
ANSIBLE_BUNDLE_VERSION=${ANSIBLE_BUNDLE_VERSION:-12.3.0}
COLLECTIONS=(community/docker community/crypto community/general ansible/posix)
# prometheus: for promtool (make monitoring-lint); its own server is stopped and disabled.
APT_PACKAGES=(docker.io debootstrap rsync iproute2 python3-venv jq prometheus)

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]} (waits up to 10 min while another process holds the apt lock)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then quiet_prometheus; fi
}

# Debian's prometheus package starts a server of its own on :9090 when it is installed (systemd,
# or its init script where PID 1 is not systemd and no policy-rc.d says no): only its promtool
# is wanted here (a test that needs a Prometheus starts its own), so that server is stopped
# and kept from starting again.
quiet_prometheus() {
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    # What its init script's stop does, matching the process by name (its --exec needs to read
    # /proc/<pid>/exe, which root without CAP_SYS_PTRACE, as in a container, cannot).
    start-stop-daemon --stop --quiet --oknodo --retry TERM/30/KILL/5 --name prometheus \
      --pidfile /run/prometheus/prometheus.pid --remove-pidfile || true
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
}

start_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if [ "$(cat /proc/1/comm)" = systemd ]; then
    log "systemctl start docker"; systemctl start docker
  else
    # No systemd here (PID 1 is the sandbox's init): run the daemon in the background.
    log "starting dockerd (log: /var/log/dockerd.log)"
    nohup /usr/sbin/dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  echo "dockerd did not come up; see /var/log/dockerd.log" >&2; exit 1
}

make_venv() {  # make_venv DIR STAMP-TEXT PIP-ARGS...
  local dir=$1 want=$2; shift 2
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ]; then return 0; fi
  log "virtualenv $dir"
  # Updated in place when it exists: a running test may be using it.
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  # pip's failures must stop us; only its noise about this machine's local indexes is dropped.
  "$dir/bin/pip" install -q --upgrade pip 2> >(grep -v "is ignored" >&2)
  "$dir/bin/pip" install -q "$@" 2> >(grep -v "is ignored" >&2)
  echo "$want" >"$dir/.stamp"
}

extract_collections() {
  local dest=$ROOT/.collections/ansible_collections want="ansible-$ANSIBLE_BUNDLE_VERSION"
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$want" ]; then return 0; fi
  log "collections ${COLLECTIONS[*]} from ansible==$ANSIBLE_BUNDLE_VERSION"
  local tmp; tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps "ansible==$ANSIBLE_BUNDLE_VERSION" -d "$tmp" 2> >(grep -v "is ignored" >&2)
  rm -rf "$ROOT/.collections"
  .venv/bin/python - "$tmp" "$ROOT/.collections" "${COLLECTIONS[@]}" <<'PY'
import glob, sys, zipfile
tmp, dest, *names = sys.argv[1:]
with zipfile.ZipFile(glob.glob(f"{tmp}/ansible-*.whl")[0]) as whl:
    prefixes = tuple(f"ansible_collections/{n}/" for n in names)
    whl.extractall(dest, members=[m for m in whl.namelist() if m.startswith(prefixes)])
PY
  rm -rf "$tmp"
  # This checkout is the collection opennebula.flower: playbooks use the same FQCNs
  # from a checkout as from an installed collection.
  mkdir -p "$dest/opennebula"
  ln -sfn ../../.. "$dest/opennebula/flower"
  echo "$want" >"$dest/.stamp"
}

install_packages
start_docker
make_venv .venv "$(sha256sum requirements-dev.txt | cut -c1-16)" -r requirements-dev.txt
# The Flower CLI (and the demo's dependencies) apart from the toolchain: flwr pins
# cryptography<45, ansible-lint needs >=46. One per Flower version, for `make e2e-latest`.
for v in $(printf '%s\n' "$FLOWER_VERSION" "$FLOWER_OLDEST" | sort -u); do
  make_venv ".venv-flwr-$v" "flwr==$v prometheus-client" "flwr==$v" scikit-learn pytest prometheus-client
done
# The PyTorch demo's unit test and benchmark (make unit-pytorch, bench-pytorch): flwr and a CPU
# build of torch where pip's find-links has one (this project's machines: /opt/wheels), else
# PyPI's torch (a CUDA build, several GB). The demo does not import torchvision.
TORCH=torch
if pip_links=$(python3 -m pip config get global.find-links 2>/dev/null) \
    && compgen -G "$pip_links/torch-2.13.0+cpu-*.whl" >/dev/null; then
  TORCH=torch==2.13.0+cpu
fi
TORCH_VENV=("flwr==$FLOWER_VERSION" "$TORCH" pytest)
make_venv .venv-torch "${TORCH_VENV[*]}" "${TORCH_VENV[@]}"
# The oldest ansible-core that meta/runtime.yml's requires_ansible allows: the tests that must
# hold on every supported release run their playbooks with it too (see tests/integration).
ANSIBLE_OLDEST=(ansible-core==2.17.14 pyone==7.0.2)
make_venv .venv-ansible-2.17 "${ANSIBLE_OLDEST[*]}" "${ANSIBLE_OLDEST[@]}"
extract_collections
log "bootstrap done"
