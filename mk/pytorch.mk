# The PyTorch demo (demo/pytorch): its unit test with the CPU torch of .venv-torch (made by
# scripts/bootstrap.sh), and its CPU-vs-GPU benchmark (bench/pytorch_gpu.py; on a machine with a
# GPU, bench/gpu_device_check.sh). Its framework images (supernode_framework: pytorch) are not
# built by `make test`: see demo/pytorch/README.md.
.PHONY: unit-pytorch bench-pytorch

unit-pytorch: bootstrap ## the PyTorch demo trains on the CPU with its offline data
	.venv-torch/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_pytorch_demo.py

bench-pytorch: bootstrap ## the PyTorch demo's seconds per round on the CPU (and the GPU if any)
	.venv-torch/bin/python bench/pytorch_gpu.py --json-out bench/results/pytorch_gpu.json
