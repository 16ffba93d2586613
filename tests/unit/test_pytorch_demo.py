"""The PyTorch demo (demo/pytorch): its ServerApp without torch, driven through Flower's own
``Strategy.start`` by an in-process grid (synthetic replies; with torch, the app's own ClientApp
training on the CPU with the offline data), its numpy-made initial weights against the torch
model, and the offline data maker and the choice of device.

The torch-free tests need flwr and numpy, the others torch too (``.venv-torch``,
``make unit-pytorch``); each is skipped where what it needs is missing, so this file also runs in
``.venv-flwr-1.42.0`` and ``.venv-flwr-1.25.0`` (no torch). The app is not installed: its
directory is put on sys.path.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from logging import INFO, WARNING
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "demo" / "pytorch"
for path in (DEMO_DIR, REPO / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import flwr_run_check  # noqa: E402  (scripts/, standard library only)

try:
    import numpy as np
    from flower_pytorch_cifar import server_app, weights
    from flower_pytorch_cifar.settings import SOURCES
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
except ImportError as err:  # flwr/numpy missing in this environment
    pytestmark = pytest.mark.skip(reason=f"demo dependencies not installed: {err}")
try:
    import torch
    from flower_pytorch_cifar import client_app, task
except ImportError as err:  # torch missing: the ServerApp's tests still run
    torch = None
    _NO_TORCH = f"torch not installed: {err}"
else:
    _NO_TORCH = ""
try:
    from flwr.supercore.task_identity import TaskIdentity
except ImportError:  # before Flower 1.42 a Message needs no ambient run id
    TaskIdentity = None

needs_torch = pytest.mark.skipif(bool(_NO_TORCH), reason=_NO_TORCH)
Client = Callable[["Message", int], "Message"]


def _run_config(**overrides: object) -> dict:
    """The app's run config (pyproject.toml) with ``overrides``."""
    with (DEMO_DIR / "pyproject.toml").open("rb") as f:
        config = tomllib.load(f)["tool"]["flwr"]["app"]["config"]
    return {**config, **overrides}


RUN_CONFIG = _run_config(**{"offline-samples": 3000})


def _context(partition_id: int, num_partitions: int) -> Context:
    node_config = {"partition-id": partition_id, "num-partitions": num_partitions}
    return Context(1, partition_id + 1, node_config, RecordDict(), dict(RUN_CONFIG))


def _message(kind: str, arrays: ArrayRecord, node: int) -> Message:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})})
    return Message(content=content, dst_node_id=node, message_type=kind)


class LoopbackGrid:
    """What Flower's ``Strategy.start`` asks of a Grid (the node ids, ``send_and_receive``),
    answered in this process: node ``i + 1`` is ``client(message, i)``."""

    def __init__(self, client: Client, num_nodes: int = 2) -> None:
        self.client, self.num_nodes = client, num_nodes

    def get_node_ids(self) -> list[int]:
        return list(range(1, self.num_nodes + 1))

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        return [self.client(msg, msg.metadata.dst_node_id - 1) for msg in messages]


def _app_client(msg: Message, partition_id: int) -> Message:
    """The demo's own ClientApp functions (torch) on partition ``partition_id`` of 2."""
    handler = client_app.train if msg.metadata.message_type == "train" else client_app.evaluate
    return handler(msg, _context(partition_id, 2))


def _synthetic_client(msg: Message, partition_id: int) -> Message:
    """Replies like the ClientApp's, without torch: training returns the weights it got;
    evaluation of round r says loss (1, 2)/r and accuracy (0.1, 0.2)*r on (100, 300) examples,
    whose weighted means are 1.75/r and 0.175*r."""
    server_round = int(msg.content["config"]["server-round"])
    examples = (100, 300)[partition_id]
    if msg.metadata.message_type == "train":
        metrics = MetricRecord({"num-examples": examples, "train_loss": 1.0})
        content = RecordDict({"arrays": msg.content["arrays"], "metrics": metrics})
    else:
        loss, acc = (1.0, 2.0)[partition_id] / server_round, (0.1, 0.2)[partition_id] * server_round
        metrics = MetricRecord({"num-examples": examples, "eval_loss": loss, "eval_acc": acc})
        content = RecordDict({"metrics": metrics})
    return Message(content=content, reply_to=msg)


def _run_server_app(
    monkeypatch: pytest.MonkeyPatch, client: Client, run_config: dict, **environ: str
) -> list[str]:
    """The ServerApp's ``main`` over a LoopbackGrid with ``client``, the appliance's ``FL_*``
    settings ``environ`` (the others unset); returns the lines it logged."""
    for _key, env in SOURCES.values():
        monkeypatch.delenv(env, raising=False)
    for env, value in environ.items():
        monkeypatch.setenv(env, value)
    lines: list[str] = []
    monkeypatch.setattr(server_app, "log", lambda _level, msg, *args: lines.append(msg % args))
    server_app.main(LoopbackGrid(client), Context(7, 0, {}, RecordDict(), run_config))
    return lines


def _progress(lines: list[str]) -> list[str]:
    """The ROUND and FINAL lines without their ``elapsed``."""
    return [ln.split(" elapsed=")[0] for ln in lines if ln.startswith(("ROUND ", "FINAL "))]


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU whatever the host has, two threads (the test machine has two cores), and the
    run and node ids that Flower 1.42 stamps on a Message (set by the SuperNode in a real run)."""
    for name in ("_run_id", "_node_id", "_task_id"):
        if TaskIdentity is not None and hasattr(TaskIdentity, name):
            monkeypatch.setattr(TaskIdentity, name, 1)
    if torch is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        torch.set_num_threads(2)


# ------------------------------------------------------------------------------------------
# The ServerApp: no torch
# ------------------------------------------------------------------------------------------


def test_server_app_imports_without_torch() -> None:
    """A Python in which ``import torch`` fails imports the ServerApp and makes its weights."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"sys.path.insert(0, {str(DEMO_DIR)!r})\n"
        "from flower_pytorch_cifar import server_app, weights\n"
        "assert not [m for m in sys.modules if m.startswith('torch') and sys.modules[m]]\n"
        "print(sum(p.size for p in weights.initial_params()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "156074"


def test_server_app_logs_the_federated_evaluation_and_checkpoints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _run_config(**{"num-server-rounds": 3})
    lines = _run_server_app(
        monkeypatch,
        _synthetic_client,
        config,
        FL_CHECKPOINT_ENABLED="YES",
        FL_CHECKPOINT_INTERVAL="2",
        FL_CHECKPOINT_DIR=str(tmp_path),
    )
    assert _progress(lines) == [
        "ROUND 1/3 loss=1.7500 accuracy=0.1750",
        "ROUND 2/3 loss=0.8750 accuracy=0.3500",
        "ROUND 3/3 loss=0.5833 accuracy=0.5250",
        "FINAL rounds=3 loss=0.5833 accuracy=0.5250",
    ]
    # What the run checker reads in them: three rounds, improving, above 0.5.
    parsed = flwr_run_check.parse_log("\n".join(lines))
    assert parsed.initial is None and [r.round for r in parsed.rounds] == [1, 2, 3]
    assert all(r.elapsed is not None for r in parsed.rounds)
    assert flwr_run_check.check_rounds(parsed, 3, 0.5) == (True, [])
    # Every second round: the aggregated arrays (the synthetic nodes train nothing).
    assert [p.name for p in (tmp_path / "7").iterdir()] == ["round-2.npz"]
    saved = weights.load_checkpoint(tmp_path / "7" / "round-2.npz")
    for got, want in zip(saved, weights.initial_params(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_server_app_warns_when_no_node_evaluates(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _run_config(**{"num-server-rounds": 2, "fraction-evaluate": 0.0})
    lines = _run_server_app(monkeypatch, _synthetic_client, config)
    assert _progress(lines) == []
    assert [ln.split(":")[0] for ln in lines if "no evaluation" in ln] == ["round 1", "round 2"]


def test_resume_takes_the_newest_checkpoint_of_this_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The sklearn demo's checkpoints share the directory on the SuperLink: passed over, and
    so is an unreadable file."""
    ours = [p + 1 for p in weights.initial_params()]
    weights.save_checkpoint(tmp_path / "1" / "round-3.npz", ours)
    weights.save_checkpoint(tmp_path / "2" / "round-3.npz", [np.zeros((10, 64)), np.zeros(10)])
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "round-1.npz").write_bytes(b"not a zip")
    for age, run in enumerate(("3", "2", "1")):  # run 1 oldest
        path = next((tmp_path / run).iterdir())
        os.utime(path, (1e9 - age * 100, 1e9 - age * 100))
    found = weights.latest_checkpoint(tmp_path)
    assert found is not None and found[0] == tmp_path / "1" / "round-3.npz"
    monkeypatch.setenv("FL_CHECKPOINT_RESUME", "YES")
    monkeypatch.setenv("FL_CHECKPOINT_DIR", str(tmp_path))
    settings = server_app.resolve({})
    for got, want in zip(
        server_app.initial_arrays(settings).to_numpy_ndarrays(), ours, strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert weights.latest_checkpoint(tmp_path / "none") is None


def test_initial_weights_are_seeded_float32_in_the_default_range() -> None:
    params = weights.initial_params()
    assert [p.shape for p in params] == weights.param_shapes() and weights.fits(params)
    assert all(p.dtype == np.float32 for p in params)
    for got, want in zip(weights.initial_params(), params, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(weights.initial_params(seed=1)[0], params[0])
    assert not weights.fits(params[:-1]) and not weights.fits(
        [p.astype(np.float64) for p in params]
    )


# ------------------------------------------------------------------------------------------
# With torch: the ClientApp and the model
# ------------------------------------------------------------------------------------------


@needs_torch
def test_initial_weights_are_the_torch_models() -> None:
    """Shapes and dtypes of a torch-initialised model, loadable into it, in the bounds of
    PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with its spread."""
    torch.manual_seed(0)
    fresh = task.get_params(task.Net())  # torch's own initialisation
    ours = weights.initial_params()
    assert [(p.shape, p.dtype) for p in ours] == [(p.shape, p.dtype) for p in fresh]
    net = task.Net()
    task.set_params(net, ours)
    for got, want in zip(task.get_params(net), ours, strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(task.get_params(task.create_model()), ours, strict=True):
        np.testing.assert_array_equal(got, want)
    fan_ins = [math.prod(shape[1:]) for shape in weights.weight_shapes() for _bias in (0, 1)]
    for mine, theirs, fan_in in zip(ours, fresh, fan_ins, strict=True):
        bound = 1 / math.sqrt(fan_in)
        for arr in (mine, theirs):
            assert np.abs(arr).max() <= bound * (1 + 1e-6)
            if arr.size >= 1000:  # the uniform's standard deviation, within 5 %
                assert arr.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


@needs_torch
def test_federated_training_on_cpu_rises_above_chance(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Three rounds of the ServerApp over two in-process SuperNodes running the ClientApp."""
    config = dict(RUN_CONFIG, **{"num-server-rounds": 3})
    lines = _run_server_app(
        monkeypatch,
        _app_client,
        config,
        FL_CHECKPOINT_ENABLED="YES",
        FL_CHECKPOINT_DIR=str(tmp_path),
    )
    parsed = flwr_run_check.parse_log("\n".join(lines))
    accuracies = [r.accuracy for r in parsed.rounds]
    assert len(accuracies) == 3 and "FINAL rounds=3" in "\n".join(lines)
    assert flwr_run_check.check_rounds(parsed, 3, 0.3) == (True, []), accuracies  # chance: 0.1
    # The final global model on the central test set agrees.
    net = task.create_model()
    task.set_params(net, weights.load_checkpoint(tmp_path / "7" / "round-3.npz"))
    x_test, y_test = task.load_central_test("offline")
    assert task.evaluate(net, x_test, y_test, torch.device("cpu"))[1] > 0.3


@needs_torch
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


@needs_torch
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


@needs_torch
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


@needs_torch
def test_cpu_without_cuda_even_with_a_memory_fraction() -> None:
    env = {"FL_GPU_AVAILABLE": "NO", "FL_GPU_MEMORY_FRACTION": "0.8"}
    choice = task.choose_device(env, cuda_available=False)
    assert choice.device.type == "cpu"
    assert choice.messages == ((INFO, "training on CPU (no GPU in this container)"),)


@needs_torch
def test_warning_when_the_appliance_announces_a_gpu_torch_does_not_see() -> None:
    env = {"FL_GPU_AVAILABLE": "YES", "FL_GPU_MEMORY_FRACTION": "0.8", "CUDA_VISIBLE_DEVICES": "0"}
    choice = task.choose_device(env, cuda_available=False)
    assert choice.device.type == "cpu"
    [(level, text)] = choice.messages
    assert level == WARNING and "FL_GPU_AVAILABLE=YES" in text and "training on CPU" in text


@needs_torch
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
    """settings.py is generated from the sklearn demo's: its make_strategy serves both."""
    from flower_pytorch_cifar.settings import STRATEGIES, make_strategy, resolve

    assert server_app.make_strategy is make_strategy
    for name in STRATEGIES:
        strategy = make_strategy(resolve({"strategy": name}, {}), 1.0, 1.0)
        assert type(strategy).__name__ == name
