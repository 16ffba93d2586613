#!/usr/bin/env bash
# The PyTorch demo on a machine with an NVIDIA GPU, once: the driver (nvidia-smi), torch's view
# of the devices, and the demo's training on the GPU vs the CPU (bench/pytorch_gpu.py: seconds
# per round, ratio). Run from a checkout: bash bench/gpu_device_check.sh [WHEELS_DIR] [args...]
#
# The GPU machine is offline: put the wheels in WHEELS_DIR first (default .cache/gpu-wheels),
# on a machine with internet, e.g.
#   pip download -d .cache/gpu-wheels --python-version 3.11 --only-binary=:all: \
#     --index-url https://download.pytorch.org/whl/cu128 torch numpy
# (a CUDA build of torch and its nvidia-* wheels; numpy, and flwr is not needed). Extra
# arguments go to bench/pytorch_gpu.py (--rounds, --samples, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-.cache/gpu-wheels}
[ $# -gt 0 ] && shift
VENV=.cache/venv-gpu
OUT=bench/results/pytorch_gpu-$(date -u +%Y%m%dT%H%M%SZ)

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi || echo "nvidia-smi failed: the driver is not usable; the CPU only"
else
  echo "nvidia-smi not found: no NVIDIA driver here; the CPU only"
fi

echo "== venv $VENV from $WHEELS"
if [ ! -x "$VENV/bin/python" ]; then
  [ -d "$WHEELS" ] || { echo "no wheel folder $WHEELS (see the top of this script)" >&2; exit 2; }
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" torch numpy
fi
"$VENV/bin/python" -c 'import torch; print("torch", torch.__version__, "CUDA build", torch.version.cuda, "available", torch.cuda.is_available())'

echo "== bench/pytorch_gpu.py (results: $OUT.json, log: $OUT.log)"
mkdir -p bench/results
"$VENV/bin/python" bench/pytorch_gpu.py --json-out "$OUT.json" "$@" 2>&1 | tee "$OUT.log"
