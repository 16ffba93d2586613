"""ClientApp: local training and evaluation on this SuperNode's partition.

The partition is chosen by the SuperNode's ``--node-config``:
``partition-id=<i> num-partitions=<n>`` (defaults 0 and 1: the whole federated pool).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.linear_model import LogisticRegression

from flower_sklearn_digits import task

app = ClientApp()


def _model_from(msg: Message, context: Context) -> LogisticRegression:
    """Build the model from the run config and load the received global parameters."""
    model = task.create_model(
        local_epochs=int(context.run_config["local-epochs"]),
        c=float(context.run_config["C"]),
    )
    arrays = msg.content.array_records["arrays"]
    task.set_params(model, arrays.to_numpy_ndarrays())
    return model


def _partition(context: Context) -> task.Split:
    """Load this SuperNode's partition: (x_train, y_train, x_test, y_test)."""
    return task.load_partition(
        partition_id=int(context.node_config.get("partition-id", 0)),
        num_partitions=int(context.node_config.get("num-partitions", 1)),
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Fit the global model on the local training split.

    Replies with the new parameters (``arrays``) and ``metrics``:
    ``num-examples``, ``train_loss``, ``train_acc``.
    """
    model = _model_from(msg, context)
    x_train, y_train, _x_test, _y_test = _partition(context)
    task.fit(model, x_train, y_train)
    loss, acc = task.evaluate(model, x_train, y_train)
    metrics = MetricRecord({"num-examples": len(y_train), "train_loss": loss, "train_acc": acc})
    arrays = ArrayRecord(task.get_params(model))
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the local test split.

    Replies with ``metrics``: ``num-examples``, ``eval_loss``, ``eval_acc``.
    """
    model = _model_from(msg, context)
    _x_train, _y_train, x_test, y_test = _partition(context)
    loss, acc = task.evaluate(model, x_test, y_test)
    metrics = MetricRecord({"num-examples": len(y_test), "eval_loss": loss, "eval_acc": acc})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
