# Sourced by bake.sh and boot-check.sh: the appliance argument, the paths, and the accelerator
# (BAKE_ACCELERATOR, default kvm when the CPU has vmx/svm and /dev/kvm is writable, else tcg;
# this project's machines have a nested PVM /dev/kvm that stock kernels crash on, see the
# shared reference/bake-trial.md).
APPLIANCE=${1:?usage: $0 superlink|supernode}
case $APPLIANCE in superlink | supernode) ;; *) echo "unknown appliance: $APPLIANCE" >&2; exit 2 ;; esac
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
CACHE=$REPO/.cache/bake
FLOWER_VERSION=${FLOWER_VERSION:-1.42.0}
if [ -z "${BAKE_ACCELERATOR:-}" ]; then
  if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then BAKE_ACCELERATOR=kvm; else BAKE_ACCELERATOR=tcg; fi
fi
