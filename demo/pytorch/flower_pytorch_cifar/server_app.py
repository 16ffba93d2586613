"""ServerApp: the configured strategy over the SuperNodes, with progress lines from the
SuperNodes' own evaluation. It imports no torch: the SuperLink's image needs none.

After each round's evaluation (every sampled SuperNode evaluates the new global model on its
local test split and replies ``eval_loss``/``eval_acc`` with ``num-examples``; the strategy
averages them weighted by ``num-examples``) it logs the sklearn demo's progress lines, parsed by
``scripts/flwr_run_check.py``::

    ROUND 1/3 loss=2.2214 accuracy=0.1790 elapsed=38.10
    ROUND 2/3 loss=0.1207 accuracy=0.9770 elapsed=76.52
    ROUND 3/3 loss=0.0473 accuracy=0.9880 elapsed=114.81
    FINAL rounds=3 loss=0.0473 accuracy=0.9880 elapsed=114.81

There is no ``INITIAL`` line (the initial model is not evaluated: that would take a round trip to
the SuperNodes), so the checker judges improvement from round 1 to the last round: run at least
2 rounds. ``elapsed`` is seconds since the strategy started. ``fraction-evaluate`` must leave at
least one SuperNode evaluating, or there are no progress lines.

Rounds, strategy, its parameters, the minimum numbers of nodes and checkpointing come from
``settings.py`` (generated from the sklearn demo's: run config, else the SuperLink appliance's
``FL_*`` environment, else built-ins). The initial weights are made with numpy
(``weights.py``). Checkpoints are ``round-<n>.npz`` files of the aggregated arrays in
``<checkpoint_dir>/<run id>``, written after a round's aggregation; ``checkpoint_resume`` starts
from the newest one that holds this model.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO, WARNING
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from flower_pytorch_cifar import weights
from flower_pytorch_cifar.settings import Settings, make_strategy, resolve

app = ServerApp()

# The keys of the ClientApp's evaluate reply, averaged by the strategy.
LOSS_KEY, ACCURACY_KEY = "eval_loss", "eval_acc"


def initial_arrays(settings: Settings) -> ArrayRecord:
    """The numpy-made initial weights, or with ``checkpoint_resume`` the newest checkpoint's."""
    if settings.checkpoint_resume:
        found = weights.latest_checkpoint(Path(settings.checkpoint_dir))
        if found is not None:
            log(INFO, "RESUME from %s", found[0])
            return ArrayRecord(found[1])
        log(INFO, "RESUME: no checkpoint of this model in %s", settings.checkpoint_dir)
    return ArrayRecord(weights.initial_params())


def with_progress(strategy, settings: Settings, run_dir: Path):
    """``strategy`` with its ``aggregate_train`` and ``aggregate_evaluate`` wrapped: Flower's
    ``Strategy.start`` calls them once per round, train then evaluate. The wrappers call the
    strategy's own methods and return what they return; around them they save a checkpoint
    (after train, when checkpointing is on) and log the progress lines (after evaluate).
    The wrappers are attributes of this strategy object; its class is left alone."""
    num_rounds, every = settings.num_rounds, settings.checkpoint_interval
    aggregate_train, aggregate_evaluate = strategy.aggregate_train, strategy.aggregate_evaluate
    t_start = time.monotonic()

    def train_and_save(
        server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = aggregate_train(server_round, replies)
        if arrays is not None and settings.checkpoint_enabled and server_round % every == 0:
            path = run_dir / f"round-{server_round}.npz"
            try:
                weights.save_checkpoint(path, arrays.to_numpy_ndarrays())
            except OSError as exc:  # training goes on
                log(WARNING, "checkpoint %s not saved: %s", path, exc)
        return arrays, metrics

    def evaluate_and_log(server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = aggregate_evaluate(server_round, replies)
        if metrics is None or LOSS_KEY not in metrics or ACCURACY_KEY not in metrics:
            log(
                WARNING,
                "round %d: no evaluation from the SuperNodes (%s): no progress line",
                server_round,
                metrics,
            )
            return metrics
        stamp = (
            f"loss={float(metrics[LOSS_KEY]):.4f} accuracy={float(metrics[ACCURACY_KEY]):.4f} "
            f"elapsed={time.monotonic() - t_start:.2f}"
        )
        log(INFO, "ROUND %d/%d %s", server_round, num_rounds, stamp)
        if server_round == num_rounds:
            log(INFO, "FINAL rounds=%d %s", server_round, stamp)
        return metrics

    strategy.aggregate_train = train_and_save
    strategy.aggregate_evaluate = evaluate_and_log
    return strategy


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds and log one progress line per round."""
    cfg = context.run_config
    settings = resolve(cfg)
    log(INFO, "SETTINGS %s", settings)
    strategy = make_strategy(
        settings, float(cfg["fraction-train"]), float(cfg["fraction-evaluate"])
    )
    run_dir = Path(settings.checkpoint_dir) / str(context.run_id)
    with_progress(strategy, settings, run_dir).start(
        grid=grid, initial_arrays=initial_arrays(settings), num_rounds=settings.num_rounds
    )
