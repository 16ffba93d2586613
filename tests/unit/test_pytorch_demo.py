"""The PyTorch demo (demo/pytorch): trains on the CPU with the offline data through the app's own
ClientApp functions and Flower's FedAvg aggregation, and checks the offline data maker and the
choice of device.

Needs torch and flwr (``.venv-torch``, ``make unit-pytorch``); skipped where they are missing.
The app is not installed: its directory is put on sys.path.
"""

from __future__ import annotations

import sys
from logging import INFO, WARNING
from pathlib import Path

import pytest

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo" / "pytorch"
if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))

try:
    import numpy as np
    import torch
    from flower_pytorch_cifar import client_app, task
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.serverapp.strategy import FedAvg
except ImportError as err:  # torch/flwr missing in this environment
    pytestmark = pytest.mark.skip(reason=f"demo dependencies not installed: {err}")
try:
    from flwr.supercore.task_identity import TaskIdentity
except ImportError:  # before Flower 1.42 a Message needs no ambient run id
    TaskIdentity = None

RUN_CONFIG = {
    "dataset": "offline",
    "offline-samples": 3000,
    "local-epochs": 2,
    "lr": 0.01,
    "batch-size": 32,
}


def _context(partition_id: int, num_partitions: int) -> Context:
    node_config = {"partition-id": partition_id, "num-partitions": num_partitions}
    return Context(1, partition_id + 1, node_config, RecordDict(), dict(RUN_CONFIG))


def _message(kind: str, arrays: ArrayRecord, node: int) -> Message:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})})
    return Message(content=content, dst_node_id=node, message_type=kind)


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU whatever the host has, two threads (the test machine has two cores), and the
    run and node ids that Flower 1.42 stamps on a Message (set by the SuperNode in a real run)."""
    for name in ("_run_id", "_node_id", "_task_id"):
        if TaskIdentity is not None and hasattr(TaskIdentity, name):
            monkeypatch.setattr(TaskIdentity, name, 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.set_num_threads(2)


def test_federated_training_on_cpu_rises_above_chance() -> None:
    strategy = FedAvg()
    arrays = ArrayRecord(task.get_params(task.create_model()))
    x_test, y_test = task.load_central_test("offline")
    net, cpu = task.create_model(), torch.device("cpu")
    accuracies = []
    for server_round in (1, 2, 3):
        replies = [
            client_app.train(_message("train", arrays, pid + 1), _context(pid, 2)) for pid in (0, 1)
        ]
        for reply in replies:
            assert reply.content["metrics"]["num-examples"] > 0
        arrays, _metrics = strategy.aggregate_train(server_round, replies)
        task.set_params(net, arrays.to_numpy_ndarrays())
        accuracies.append(task.evaluate(net, x_test, y_test, cpu)[1])
    assert accuracies[-1] > 0.3, accuracies  # chance is 0.1
    assert accuracies[-1] > accuracies[0], accuracies
    # The ClientApp's evaluate on a node's local test split agrees.
    reply = client_app.evaluate(_message("evaluate", arrays, 1), _context(0, 2))
    assert reply.content["metrics"]["eval_acc"] > 0.3


def test_offline_data_is_cifar_shaped_balanced_and_deterministic() -> None:
    x, y = task.make_offline(200, seed=3)
    assert x.shape == (200, *task.IMAGE_SHAPE) and x.dtype == np.float32
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(task.NUM_CLASSES))
    assert np.bincount(y).min() == 20
    x2, y2 = task.make_offline(200, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(task.make_offline(200, seed=4)[0], x)
    with pytest.raises(ValueError):
        task.make_offline(0)


def test_offline_partitions_are_disjoint_and_cover_the_pool() -> None:
    n = 600
    pool_x, _ = task.make_offline(n)
    rows: list[bytes] = []
    for pid in range(3):
        x_tr, y_tr, x_te, y_te = task.load_partition(pid, 3, offline_samples=n)
        assert len(x_tr) == len(y_tr) > 0 and len(x_te) == len(y_te) > 0
        rows += [r.tobytes() for r in torch.cat([x_tr, x_te]).numpy()]
    assert len(rows) == len(set(rows)) == n
    assert set(rows) == {r.tobytes() for r in pool_x}
    central = {r.tobytes() for r in task.load_central_test()[0].numpy()}
    assert not central & set(rows)
    with pytest.raises(ValueError):
        task.load_partition(3, 3)
    with pytest.raises(ValueError):
        task.load_partition(0, 1, dataset="mnist")


def test_params_round_trip() -> None:
    net = task.create_model()
    params = task.get_params(net)
    other = task.create_model()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    task.set_params(other, params)
    for got, want in zip(task.get_params(other), params, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        task.set_params(other, params[:-1])


def test_cpu_without_cuda_even_with_a_memory_fraction() -> None:
    env = {"FL_GPU_AVAILABLE": "NO", "FL_GPU_MEMORY_FRACTION": "0.8"}
    choice = task.choose_device(env, cuda_available=False)
    assert choice.device.type == "cpu"
    assert choice.messages == ((INFO, "training on CPU (no GPU in this container)"),)


def test_warning_when_the_appliance_announces_a_gpu_torch_does_not_see() -> None:
    env = {"FL_GPU_AVAILABLE": "YES", "FL_GPU_MEMORY_FRACTION": "0.8", "CUDA_VISIBLE_DEVICES": "0"}
    choice = task.choose_device(env, cuda_available=False)
    assert choice.device.type == "cpu"
    [(level, text)] = choice.messages
    assert level == WARNING and "FL_GPU_AVAILABLE=YES" in text and "training on CPU" in text


@pytest.mark.parametrize(
    ("fraction", "applied", "said"),
    [("0.8", [0.8], "limited to 0.8"), ("", [], "grows as needed"), ("2", [], "not in (0, 1]")],
)
def test_gpu_memory_fraction(
    monkeypatch: pytest.MonkeyPatch, fraction: str, applied: list[float], said: str
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _i: "NVIDIA Test GPU")
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, _d=None: calls.append(f)
    )
    env = {"FL_GPU_AVAILABLE": "YES", "FL_GPU_MEMORY_FRACTION": fraction}
    choice = task.choose_device(env, cuda_available=True)
    assert str(choice.device) == "cuda:0"
    assert choice.messages[0] == (INFO, "training on cuda:0 (NVIDIA Test GPU)")
    assert said in choice.messages[1][1]
    assert calls == applied


def test_server_app_builds_every_strategy_of_the_shared_settings() -> None:
    """settings.py is the sklearn demo's (a link): its make_strategy serves both ServerApps."""
    from flower_pytorch_cifar import server_app
    from flower_pytorch_cifar.settings import STRATEGIES, make_strategy, resolve

    assert server_app.make_strategy is make_strategy
    for name in STRATEGIES:
        strategy = make_strategy(resolve({"strategy": name}, {}), 1.0, 1.0)
        assert type(strategy).__name__ == name
