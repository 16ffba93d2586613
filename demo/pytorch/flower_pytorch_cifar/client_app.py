"""ClientApp: local training and evaluation on this SuperNode's partition, on its GPU if any.

The partition is chosen by the SuperNode's ``--node-config``:
``partition-id=<i> num-partitions=<n>`` (defaults 0 and 1: the whole federated pool).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import log

from flower_pytorch_cifar import task

app = ClientApp()


def _setup(msg: Message, context: Context) -> tuple[task.Net, task.Split, task.DeviceChoice]:
    """The model with the received global weights, this node's data and its device (logged)."""
    choice = task.choose_device()
    for level, text in choice.messages:
        log(level, text)
    net = task.create_model()
    task.set_params(net, msg.content.array_records["arrays"].to_numpy_ndarrays())
    cfg = context.run_config
    data = task.load_partition(
        partition_id=int(context.node_config.get("partition-id", 0)),
        num_partitions=int(context.node_config.get("num-partitions", 1)),
        dataset=str(cfg["dataset"]),
        offline_samples=int(cfg["offline-samples"]),
    )
    return net, data, choice


def _reply(
    msg: Message,
    kind: str,
    examples: int,
    loss: float,
    acc: float,
    arrays: ArrayRecord | None = None,
) -> Message:
    """The reply: ``metrics`` {num-examples, <kind>_loss, <kind>_acc}, and ``arrays`` if given."""
    content = RecordDict(
        {
            "metrics": MetricRecord(
                {"num-examples": examples, f"{kind}_loss": loss, f"{kind}_acc": acc}
            )
        }
    )
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the global model on the local training split.

    Replies with the new weights (``arrays``) and ``metrics``: ``num-examples``, ``train_loss``,
    ``train_acc``. Under FedProx the strategy's ``proximal-mu`` adds the proximal term.
    """
    net, (x_train, y_train, _x_test, _y_test), choice = _setup(msg, context)
    cfg = context.run_config
    config = msg.content.config_records.get("config")
    mu = float(config["proximal-mu"]) if config is not None and "proximal-mu" in config else 0.0
    loss, acc = task.train(
        net,
        x_train,
        y_train,
        epochs=int(cfg["local-epochs"]),
        lr=float(cfg["lr"]),
        batch_size=int(cfg["batch-size"]),
        device=choice.device,
        proximal_mu=mu,
    )
    return _reply(msg, "train", len(y_train), loss, acc, ArrayRecord(task.get_params(net)))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the local test split.

    Replies with ``metrics``: ``num-examples``, ``eval_loss``, ``eval_acc``.
    """
    net, (_x_train, _y_train, x_test, y_test), choice = _setup(msg, context)
    loss, acc = task.evaluate(net, x_test, y_test, choice.device)
    return _reply(msg, "eval", len(y_test), loss, acc)
