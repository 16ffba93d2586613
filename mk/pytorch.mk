# The PyTorch demo (demo/pytorch): its unit test with the CPU torch of .venv-torch (made by
# scripts/bootstrap.sh), and its CPU-vs-GPU benchmark (bench/pytorch_gpu.py; on a machine with a
# GPU, bench/gpu_device_check.sh). Its framework images (supernode_framework: pytorch) are not
# built by `make test`: see demo/pytorch/README.md.
.PHONY: unit-pytorch bench-pytorch demo-pytorch-app

unit-pytorch: bootstrap ## the PyTorch demo trains on the CPU with its offline data
	.venv-torch/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_pytorch_demo.py

bench-pytorch: bootstrap ## the PyTorch demo's seconds per round on the CPU (and the GPU if any)
	.venv-torch/bin/python bench/pytorch_gpu.py --json-out bench/results/pytorch_gpu.json

# flwr build leaves symbolic links (flower_pytorch_cifar/settings.py) out of a FAB: the App to
# `flwr run` is this copy with the link resolved.
demo-pytorch-app: ## demo/pytorch with its links resolved, in .cache/demo-pytorch (flwr run that)
	rm -rf .cache/demo-pytorch && mkdir -p .cache
	cp -rL demo/pytorch .cache/demo-pytorch
