"""ServerApp: the configured strategy over the SuperNodes, and a centralized evaluation of the
global model after every round on the central test set.

It logs the sklearn demo's progress lines (parsed by ``scripts/flwr_run_check.py``)::

    INITIAL loss=2.3086 accuracy=0.1000 elapsed=0.05
    ROUND 1/3 loss=2.2974 accuracy=0.1340 elapsed=9.80
    ...
    FINAL rounds=3 loss=0.0482 accuracy=0.9840 elapsed=30.10

Rounds, strategy, its parameters, the minimum numbers of nodes and checkpointing come from
``settings.py`` (the sklearn demo's, shared: run config, else the SuperLink appliance's ``FL_*``
environment, else built-ins). Checkpoints are ``round-<n>.npz`` files of the state_dict's arrays
in ``<checkpoint_dir>/<run id>``; ``checkpoint_resume`` starts from the newest one there is.
"""

from __future__ import annotations

import time
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from flower_pytorch_cifar import task
from flower_pytorch_cifar.settings import make_strategy, resolve

app = ServerApp()


def _initial_arrays(checkpoint_dir: Path, resume: bool) -> ArrayRecord:
    """The seeded model's weights, or with ``resume`` the newest checkpoint's."""
    saved = sorted(checkpoint_dir.glob("*/round-*.npz"), key=lambda p: p.stat().st_mtime)
    if not (resume and saved):
        return ArrayRecord(task.get_params(task.create_model()))
    with np.load(saved[-1]) as arrays:
        log(INFO, "RESUME from %s", saved[-1])
        return ArrayRecord([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def _save(path: Path, params: list[np.ndarray]) -> None:
    """A checkpoint; a failure is logged, not raised (training goes on)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, *params)
    except OSError as exc:
        log(WARNING, "checkpoint %s not saved: %s", path, exc)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds and log one progress line per round."""
    cfg = context.run_config
    settings = resolve(cfg)
    log(INFO, "SETTINGS %s", settings)
    choice = task.choose_device()  # the SuperLink's container: the CPU unless it has a GPU
    for level, text in choice.messages:
        log(level, "ServerApp evaluation: %s", text)
    net = task.create_model()
    x_test, y_test = task.load_central_test(str(cfg["dataset"]))
    run_dir = Path(settings.checkpoint_dir) / str(context.run_id)
    every = settings.checkpoint_interval
    t_start = time.monotonic()

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        params = arrays.to_numpy_ndarrays()
        task.set_params(net, params)
        loss, acc = task.evaluate(net, x_test, y_test, choice.device)
        stamp = f"loss={loss:.4f} accuracy={acc:.4f} elapsed={time.monotonic() - t_start:.2f}"
        if server_round == 0:
            log(INFO, "INITIAL %s", stamp)
        else:
            log(INFO, "ROUND %d/%d %s", server_round, settings.num_rounds, stamp)
        if server_round == settings.num_rounds:
            log(INFO, "FINAL rounds=%d %s", server_round, stamp)
        if settings.checkpoint_enabled and server_round and server_round % every == 0:
            _save(run_dir / f"round-{server_round}.npz", params)
        return MetricRecord({"central_loss": loss, "central_accuracy": acc})

    fractions = float(cfg["fraction-train"]), float(cfg["fraction-evaluate"])
    make_strategy(settings, *fractions).start(
        grid=grid,
        initial_arrays=_initial_arrays(Path(settings.checkpoint_dir), settings.checkpoint_resume),
        num_rounds=settings.num_rounds,
        evaluate_fn=central_evaluate,
    )
