"""The model's shape and weights without torch: what the ServerApp needs.

The SuperLink's image carries numpy (and scikit-learn), not torch, so the ServerApp makes the
initial weights here with numpy and keeps its checkpoints as ``.npz`` files. ``task.py`` builds
the torch model from the same constants, and ``task.create_model`` loads these same initial
weights, so a SuperNode and the SuperLink start from identical arrays.

Initialisation: PyTorch's default for ``nn.Conv2d`` and ``nn.Linear`` (``reset_parameters``:
Kaiming-uniform with ``a=sqrt(5)`` for the weight, uniform for the bias), which for both comes to
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), ``fan_in`` being the inputs of one output unit (in channels
x kernel area, or in features). Drawn from numpy's seeded generator: the same family and scale
as a fresh ``torch`` model, not the same numbers.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
CONV_CHANNELS = (16, 32, 64)  # three conv/ReLU/max-pool(2) blocks
KERNEL = 3  # 3x3 convolutions, padding 1 (the image size is kept, then halved by the pooling)
HIDDEN = 128  # units of the first linear layer
SEED = 42
DTYPE = np.float32


def flat_features() -> int:
    """Inputs of the first linear layer: the last block's channels times its pooled area."""
    side = IMAGE_SHAPE[1] // 2 ** len(CONV_CHANNELS)
    return CONV_CHANNELS[-1] * side * side


def weight_shapes() -> list[tuple[int, ...]]:
    """The weight shape of each layer, in the model's order (each weight has its bias after
    it, of shape ``(shape[0],)``: the order of the torch model's ``state_dict``)."""
    shapes: list[tuple[int, ...]] = []
    in_channels = IMAGE_SHAPE[0]
    for out_channels in CONV_CHANNELS:
        shapes.append((out_channels, in_channels, KERNEL, KERNEL))
        in_channels = out_channels
    shapes += [(HIDDEN, flat_features()), (NUM_CLASSES, HIDDEN)]
    return shapes


def param_shapes() -> list[tuple[int, ...]]:
    """The shapes of the model's arrays in ``state_dict`` order (weight, bias, weight, ...)."""
    return [s for shape in weight_shapes() for s in (shape, shape[:1])]


def initial_params(seed: int = SEED) -> list[np.ndarray]:
    """The initial weights and biases (float32, ``state_dict`` order), the same for the same
    seed."""
    rng = np.random.default_rng(seed)
    params = []
    for shape in weight_shapes():
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        params.append(rng.uniform(-bound, bound, shape).astype(DTYPE))
        params.append(rng.uniform(-bound, bound, shape[:1]).astype(DTYPE))
    return params


def fits(params: list[np.ndarray]) -> bool:
    """Whether ``params`` are arrays of this model (their number, shapes and dtype)."""
    shapes = param_shapes()
    return len(params) == len(shapes) and all(
        p.shape == s and p.dtype == DTYPE for p, s in zip(params, shapes, strict=True)
    )


def save_checkpoint(path: Path, params: list[np.ndarray]) -> None:
    """Write ``params`` to ``path`` (``np.savez``: ``arr_0``, ``arr_1``, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, *params)


def load_checkpoint(path: Path) -> list[np.ndarray]:
    """The arrays of a checkpoint written by :func:`save_checkpoint`, in order."""
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def latest_checkpoint(directory: Path) -> tuple[Path, list[np.ndarray]] | None:
    """The newest ``<run id>/round-<n>.npz`` under ``directory`` that holds this model's arrays,
    and those arrays; None when there is none. Checkpoints of another model (the sklearn demo's
    ServerApp writes to the same directory on the SuperLink appliance) are passed over, and so
    are unreadable files."""
    found = sorted(directory.glob("*/round-*.npz"), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            params = load_checkpoint(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            continue
        if fits(params):
            return path, params
    return None
