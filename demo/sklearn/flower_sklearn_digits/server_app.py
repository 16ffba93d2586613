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
"""

from __future__ import annotations

import time
from logging import INFO

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_sklearn_digits import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds of FedAvg and log one progress line per round."""
    cfg = context.run_config
    num_rounds = int(cfg["num-server-rounds"])
    min_nodes = int(cfg["min-nodes"])

    model = task.create_model(local_epochs=int(cfg["local-epochs"]), c=float(cfg["C"]))
    x_test, y_test = task.load_central_test()
    t_start = time.monotonic()

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        task.set_params(model, arrays.to_numpy_ndarrays())
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
        return MetricRecord({"central_loss": loss, "central_accuracy": acc})

    strategy = FedAvg(
        fraction_train=float(cfg["fraction-train"]),
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(task.get_params(model)),
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
