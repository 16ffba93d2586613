"""Data, model, device and training helpers of the ClientApp (torch; the ServerApp needs only
``weights.py``).

Two data sources, chosen by the run config's ``dataset``:

* ``offline`` (the default): a CIFAR-shaped data set (3x32x32 images, 10 classes) that this module
  *makes* at run time, deterministically from a seed: each class is a grating of its own
  orientation and spatial frequency, with a random phase, contrast, colour and position jitter
  per image, under strong Gaussian noise. No file and no download: it works on air-gapped sites
  and in tests, and a small CNN learns it in a few rounds (10 % is chance).
* ``cifar10``: the real CIFAR-10 through Flower Datasets (``uoft-cs/cifar10`` from the Hugging
  Face Hub, so the SuperNodes need the internet; ``flwr-datasets[vision]`` must be in their
  images, as it is in the ``pytorch`` variant).

Either way the layout is the sklearn demo's: a federated pool cut into ``num-partitions`` IID,
disjoint partitions (the SuperNode with ``partition-id`` i takes partition i and splits it 80/20
into local train and test data), and a central test set apart from it, which the tests and
``bench/pytorch_gpu.py`` evaluate on (the ServerApp reports the SuperNodes' evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from logging import INFO, WARNING

import numpy as np
import torch
from torch import nn

from flower_pytorch_cifar import weights
from flower_pytorch_cifar.weights import IMAGE_SHAPE, NUM_CLASSES, SEED

LOCAL_TEST_FRACTION = 0.2
CENTRAL_TEST_SAMPLES = 1000  # offline: size of the central test set
DATASETS = ("offline", "cifar10")
CIFAR10 = "uoft-cs/cifar10"

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------


class Net(nn.Module):
    """A small CNN for 3x32x32 images: three conv/ReLU/max-pool blocks, two linear layers
    (about 156,000 parameters). Its sizes are those of ``weights.py``, which makes the
    ServerApp's initial arrays without torch."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = IMAGE_SHAPE[0]
        for out_channels in weights.CONV_CHANNELS:
            conv = nn.Conv2d(in_channels, out_channels, weights.KERNEL, padding=weights.KERNEL // 2)
            blocks += [conv, nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(weights.flat_features(), weights.HIDDEN),
            nn.ReLU(),
            nn.Linear(weights.HIDDEN, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def create_model() -> Net:
    """The model with the ServerApp's initial weights (``weights.initial_params``, seeded): the
    same everywhere."""
    net = Net()
    set_params(net, weights.initial_params())
    return net


# ------------------------------------------------------------------------------------------
# Offline data
# ------------------------------------------------------------------------------------------


def make_offline(num_samples: int, seed: int = SEED, noise: float = 1.5) -> tuple[np.ndarray, ...]:
    """Make ``num_samples`` CIFAR-shaped images and their labels, the same for the same seed.

    Returns ``(x, y)``: ``x`` float32 of shape (n, 3, 32, 32), roughly zero mean and unit
    spread like normalised CIFAR-10, ``y`` int64 labels 0..9 (balanced).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    rng = np.random.default_rng(seed)
    y = np.arange(num_samples) % NUM_CLASSES
    rng.shuffle(y)
    # What makes a class: the grating's orientation (ten directions over 180 degrees) and its
    # spatial frequency (three steps); the rest varies from image to image.
    angle = y * np.pi / NUM_CLASSES + rng.normal(0.0, 0.08, num_samples)
    freq = 2.0 + 1.5 * (y % 3) + rng.normal(0.0, 0.2, num_samples)
    phase = rng.uniform(0.0, 2 * np.pi, num_samples)
    contrast = rng.uniform(0.5, 1.0, num_samples)
    colour = rng.uniform(-1.0, 1.0, (num_samples, 3))  # not a class feature
    centre = rng.uniform(-0.15, 0.15, (num_samples, 2))
    grid = (np.arange(32) + 0.5) / 32 - 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    along = (xx[None] - centre[:, :1, None]) * np.cos(angle)[:, None, None] + (
        yy[None] - centre[:, 1:, None]
    ) * np.sin(angle)[:, None, None]
    grating = np.sin(2 * np.pi * freq[:, None, None] * along + phase[:, None, None])
    x = (contrast[:, None, None, None] * grating[:, None]) * (0.5 + 0.5 * np.abs(colour))[
        :, :, None, None
    ]
    x += rng.normal(0.0, noise, x.shape)
    return x.astype(np.float32), y.astype(np.int64)


def _local_split(x: np.ndarray, y: np.ndarray) -> Split:
    """Cut one partition 80/20 into local train and test data (seeded)."""
    order = np.random.default_rng(SEED + 1).permutation(len(y))
    n_test = max(1, round(len(y) * LOCAL_TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return (
        torch.from_numpy(x[train]),
        torch.from_numpy(y[train]),
        torch.from_numpy(x[test]),
        torch.from_numpy(y[test]),
    )


@lru_cache(maxsize=2)
def _offline_pool(num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    return make_offline(num_samples, seed=SEED)


# ------------------------------------------------------------------------------------------
# CIFAR-10 (Flower Datasets; needs the internet)
# ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _federated_cifar10(num_partitions: int):
    from flwr_datasets import FederatedDataset
    from flwr_datasets.partitioner import IidPartitioner

    partitioner = IidPartitioner(num_partitions=num_partitions)
    return FederatedDataset(dataset=CIFAR10, partitioners={"train": partitioner})


def _cifar_arrays(split) -> tuple[np.ndarray, np.ndarray]:
    """A Hugging Face split of CIFAR-10 as normalised (n, 3, 32, 32) float32 and int64 labels."""
    images = np.stack([np.asarray(img.convert("RGB")) for img in split["img"]])
    x = (images.astype(np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.asarray(split["label"], np.int64)


# ------------------------------------------------------------------------------------------
# What the apps load
# ------------------------------------------------------------------------------------------


def load_partition(
    partition_id: int, num_partitions: int, dataset: str = "offline", offline_samples: int = 5000
) -> Split:
    """Return (x_train, y_train, x_test, y_test) of one SuperNode's partition, as tensors."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} not in [0, {num_partitions})")
    if dataset == "cifar10":
        partition = _federated_cifar10(num_partitions).load_partition(partition_id)
        return _local_split(*_cifar_arrays(partition))
    x, y = _offline_pool(offline_samples)
    if num_partitions > len(y):
        raise ValueError(f"num-partitions ({num_partitions}) > samples ({len(y)})")
    # IID: a seeded shuffle of the pool, cut into near-equal consecutive slices.
    mine = np.array_split(np.random.default_rng(SEED).permutation(len(y)), num_partitions)
    return _local_split(x[mine[partition_id]], y[mine[partition_id]])


def load_central_test(dataset: str = "offline") -> tuple[torch.Tensor, torch.Tensor]:
    """The central test set (tests, benchmark): offline, made with another seed than the pool;
    CIFAR-10's ``test`` split."""
    if dataset == "cifar10":
        x, y = _cifar_arrays(_federated_cifar10(1).load_split("test"))
    elif dataset == "offline":
        x, y = make_offline(CENTRAL_TEST_SAMPLES, seed=SEED + 1000)
    else:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    return torch.from_numpy(x), torch.from_numpy(y)


# ------------------------------------------------------------------------------------------
# Device
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    messages: tuple[tuple[int, str], ...]  # (logging level, text), to log in this order


def choose_device(
    environ: Mapping[str, str] | None = None, cuda_available: bool | None = None
) -> DeviceChoice:
    """CUDA device 0 when PyTorch sees one, else the CPU, and what to log about it.

    Reads the appliance's contract of the SuperNode container: ``FL_GPU_AVAILABLE`` (YES or NO),
    ``FL_GPU_MEMORY_FRACTION`` (e.g. ``0.8``; empty: memory grows as needed) and
    ``CUDA_VISIBLE_DEVICES`` (set only when GPUs are passed in). A set fraction is applied with
    ``torch.cuda.set_per_process_memory_fraction``.
    """
    environ = os.environ if environ is None else environ
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    announced = environ.get("FL_GPU_AVAILABLE", "").strip().upper() == "YES"
    if not available:
        if announced:
            visible = environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
            built = torch.version.cuda or "none (a CPU-only build)"
            text = (
                f"FL_GPU_AVAILABLE=YES but PyTorch sees no CUDA device (CUDA_VISIBLE_DEVICES="
                f"{visible}, torch {torch.__version__} built with CUDA {built}): training on CPU"
            )
            return DeviceChoice(torch.device("cpu"), ((WARNING, text),))
        return DeviceChoice(
            torch.device("cpu"), ((INFO, "training on CPU (no GPU in this container)"),)
        )
    device = torch.device("cuda:0")
    messages = [(INFO, f"training on cuda:0 ({torch.cuda.get_device_name(0)})")]
    raw = environ.get("FL_GPU_MEMORY_FRACTION", "").strip()
    if raw:
        try:
            fraction = float(raw)
        except ValueError:
            fraction = -1.0
        if 0.0 < fraction <= 1.0:
            torch.cuda.set_per_process_memory_fraction(fraction, 0)
            messages.append((INFO, f"GPU memory limited to {fraction:g} of the device"))
        else:
            messages.append(
                (
                    WARNING,
                    f"FL_GPU_MEMORY_FRACTION={raw!r} is not in (0, 1]: memory grows as needed",
                )
            )
    else:
        messages.append((INFO, "GPU memory grows as needed (FL_GPU_MEMORY_FRACTION empty)"))
    return DeviceChoice(device, tuple(messages))


# ------------------------------------------------------------------------------------------
# Parameters, training, evaluation
# ------------------------------------------------------------------------------------------


def get_params(net: nn.Module) -> list[np.ndarray]:
    """The model's state as a list of numpy arrays (state_dict order)."""
    return [v.detach().cpu().numpy().copy() for v in net.state_dict().values()]


def set_params(net: nn.Module, params: list[np.ndarray]) -> None:
    """Load arrays produced by :func:`get_params` (or aggregated by a strategy)."""
    keys = list(net.state_dict().keys())
    if len(params) != len(keys):
        raise ValueError(f"expected {len(keys)} arrays, got {len(params)}")
    net.load_state_dict(
        {k: torch.from_numpy(np.asarray(v)) for k, v in zip(keys, params, strict=True)}
    )


def train(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device,
    proximal_mu: float = 0.0,
) -> tuple[float, float]:
    """``epochs`` passes of SGD (momentum 0.9) over (x, y); with ``proximal_mu`` > 0 the FedProx
    proximal term to the received weights is added to the loss. Returns the mean training loss
    and accuracy of the last epoch."""
    net.to(device).train()
    x, y = x.to(device), y.to(device)
    anchor = [p.detach().clone() for p in net.parameters()] if proximal_mu > 0 else []
    optimiser = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    total_loss, correct = 0.0, 0
    for _epoch in range(epochs):
        total_loss, correct = 0.0, 0
        for idx in torch.randperm(len(y), generator=generator).split(batch_size):
            xb, yb = x[idx.to(device)], y[idx.to(device)]
            optimiser.zero_grad()
            out = net(xb)
            loss = criterion(out, yb)
            if anchor:
                prox = sum(
                    (p - a).pow(2).sum() for p, a in zip(net.parameters(), anchor, strict=True)
                )
                loss = loss + proximal_mu / 2 * prox
            loss.backward()
            optimiser.step()
            total_loss += loss.item() * len(yb)
            correct += int((out.argmax(1) == yb).sum())
    return total_loss / len(y), correct / len(y)


@torch.no_grad()
def evaluate(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 512
) -> tuple[float, float]:
    """Return (mean cross-entropy loss, accuracy) of ``net`` on (x, y)."""
    net.to(device).eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        out = net(xb)
        total_loss += float(criterion(out, yb))
        correct += int((out.argmax(1) == yb).sum())
    return total_loss / len(y), correct / len(y)
