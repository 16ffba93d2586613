"""ServerApp: FedAvg over the SuperNodes plus a centralized evaluation after every round.

Progress lines (one per line, parsed by ``scripts/flwr_run_check.py``; ``elapsed`` is seconds
since this ServerApp started the strategy, measured before the initial evaluation)::

    INITIAL loss=2.3026 accuracy=0.1000 elapsed=0.01
    ROUND 1/3 loss=0.3240 accuracy=0.9083 elapsed=10.52
    ROUND 2/3 loss=0.2410 accuracy=0.9444 elapsed=21.03
    ROUND 3/3 loss=0.2143 accuracy=0.9611 elapsed=31.55
    FINAL rounds=3 loss=0.2143 accuracy=0.9611 elapsed=31.56

``loss``/``accuracy`` are the log loss and accuracy of the global model on the held-out central
test set; they are also stored in the run's ServerApp-side metrics as ``central_loss`` and
``central_accuracy``.

Rounds, strategy, its parameters and the minimum numbers of nodes come from the run config, else
from the SuperLink appliance's training settings (see ``settings.py``). With checkpointing on,
the global model is saved every ``checkpoint_interval`` rounds as ``round-<n>.npz`` in
``<checkpoint_dir>/<run id>``, and ``checkpoint_resume`` starts from the newest one there is.
"""

from __future__ import annotations

import time
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from flower_sklearn_digits import task
from flower_sklearn_digits.settings import make_strategy, resolve

app = ServerApp()


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("*/round-*.npz"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds and log one progress line per round."""
    cfg = context.run_config
    settings = resolve(cfg)
    num_rounds = settings.num_rounds
    log(INFO, "SETTINGS %s", settings)

    model = task.create_model(local_epochs=int(cfg["local-epochs"]), c=float(cfg["C"]))
    x_test, y_test = task.load_central_test()
    checkpoints = Path(settings.checkpoint_dir)
    initial = ArrayRecord(task.get_params(model))
    if settings.checkpoint_resume and (found := latest_checkpoint(checkpoints)) is not None:
        with np.load(found) as saved:
            keys = sorted(saved.files, key=lambda k: int(k.rsplit("_", 1)[1]))  # arr_0, arr_1, ...
            initial = ArrayRecord([saved[k] for k in keys])
        log(INFO, "RESUME from %s", found)
    run_dir = checkpoints / str(context.run_id)
    t_start = time.monotonic()

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        params = arrays.to_numpy_ndarrays()
        task.set_params(model, params)
        loss, acc = task.evaluate(model, x_test, y_test)
        elapsed = time.monotonic() - t_start
        if server_round == 0:
            log(INFO, "INITIAL loss=%.4f accuracy=%.4f elapsed=%.2f", loss, acc, elapsed)
        else:
            log(
                INFO,
                "ROUND %d/%d loss=%.4f accuracy=%.4f elapsed=%.2f",
                server_round,
                num_rounds,
                loss,
                acc,
                elapsed,
            )
            if settings.checkpoint_enabled and server_round % settings.checkpoint_interval == 0:
                try:
                    run_dir.mkdir(parents=True, exist_ok=True)
                    np.savez(run_dir / f"round-{server_round}.npz", *params)
                except OSError as exc:
                    log(WARNING, "checkpoint of round %d not saved: %s", server_round, exc)
        return MetricRecord({"central_loss": loss, "central_accuracy": acc})

    strategy = make_strategy(
        settings, float(cfg["fraction-train"]), float(cfg["fraction-evaluate"])
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=num_rounds,
        evaluate_fn=central_evaluate,
    )

    final = result.evaluate_metrics_serverapp.get(num_rounds)
    if final is not None:
        loss, acc = final["central_loss"], final["central_accuracy"]
        assert isinstance(loss, float) and isinstance(acc, float)
        log(
            INFO,
            "FINAL rounds=%d loss=%.4f accuracy=%.4f elapsed=%.2f",
            num_rounds,
            loss,
            acc,
            time.monotonic() - t_start,
        )
