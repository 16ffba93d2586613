"""The PyTorch demo's training on the CPU and on the GPU: seconds per round and their ratio.

A benchmark, not a test. It runs the demo's own functions (demo/pytorch/flower_pytorch_cifar/
task.py) on its offline data: each round trains the global model on every partition in turn
(as the SuperNodes would, one after the other), averages the weights (FedAvg) and evaluates
on the central test set. No Flower processes: what is timed is the training itself. With no
CUDA device it says so and measures the CPU only. It also prints ``nvidia-smi`` and torch's view
of the devices. Usage::

    .venv-torch/bin/python bench/pytorch_gpu.py [--rounds 3] [--samples 5000] [--json-out F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo" / "pytorch"))
from flower_pytorch_cifar import task


def devices_report() -> dict:
    """nvidia-smi's output and what torch sees."""
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi], capture_output=True, text=True, check=False, timeout=60)
        smi_out = done.stdout + done.stderr
    else:
        smi_out = "nvidia-smi: not found"
    seen = {
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "devices": [],
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_threads": torch.get_num_threads(),
        "nproc": os.cpu_count(),
    }
    for i in range(seen["device_count"]):
        props = torch.cuda.get_device_properties(i)
        seen["devices"].append(
            {"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
        )
    return {"nvidia_smi": smi_out, "torch": seen}


def run_rounds(device: torch.device, args: argparse.Namespace) -> dict:
    """``args.rounds`` FedAvg rounds over ``args.partitions`` partitions on ``device``."""
    parts = [
        task.load_partition(i, args.partitions, offline_samples=args.samples)
        for i in range(args.partitions)
    ]
    x_test, y_test = task.load_central_test()
    net = task.create_model()
    weights = task.get_params(net)
    # Warm-up (CUDA context, kernels): one batch, not timed.
    task.train(
        net, parts[0][0][:64], parts[0][1][:64], epochs=1, lr=args.lr, batch_size=32, device=device
    )
    rounds = []
    for _ in range(args.rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        updates = []
        for x_train, y_train, _x, _y in parts:
            task.set_params(net, weights)
            task.train(
                net,
                x_train,
                y_train,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                device=device,
            )
            updates.append((task.get_params(net), len(y_train)))
        total = sum(n for _p, n in updates)
        weights = [sum(p[i] * n for p, n in updates) / total for i in range(len(weights))]
        task.set_params(net, weights)
        loss, acc = task.evaluate(net, x_test, y_test, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rounds.append({"seconds": time.perf_counter() - start, "loss": loss, "accuracy": acc})
    return {
        "device": str(device),
        "rounds": rounds,
        "seconds_per_round": float(np.mean([r["seconds"] for r in rounds])),
        "final_accuracy": rounds[-1]["accuracy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--samples", type=int, default=5000, help="offline pool size")
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)

    report = devices_report()
    print(report["nvidia_smi"].rstrip())
    print("torch:", json.dumps(report["torch"], indent=1))
    choice = task.choose_device()
    for _level, text in choice.messages:
        print("app:", text)

    results = {"cpu": run_rounds(torch.device("cpu"), args)}
    if torch.cuda.is_available():
        results["cuda"] = run_rounds(torch.device("cuda:0"), args)
    else:
        print("no CUDA device: the CPU only")

    print(
        f"\nPyTorch demo, offline data: {args.rounds} rounds x {args.partitions} partitions of "
        f"{args.samples // args.partitions} images, {args.epochs} local epochs, "
        f"batch {args.batch_size}"
    )
    print(f"{'device':<24}{'s/round':>10}{'accuracy':>10}")
    for name, res in results.items():
        label = name if name == "cpu" else f"cuda ({report['torch']['devices'][0]['name']})"
        print(f"{label:<24}{res['seconds_per_round']:>10.2f}{res['final_accuracy']:>10.3f}")
    if "cuda" in results:
        ratio = results["cpu"]["seconds_per_round"] / results["cuda"]["seconds_per_round"]
        results["ratio_cpu_over_cuda"] = ratio
        print(f"ratio cpu/cuda, seconds per round: {ratio:.2f}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"host": platform.node(), "args": {k: str(v) for k, v in vars(args).items()}}
        args.json_out.write_text(json.dumps({**payload, **report, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
