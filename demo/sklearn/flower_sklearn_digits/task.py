"""Data, model and helpers shared by the ServerApp and the ClientApp.

Everything here is offline: the digits data set (1,797 8x8 images, 10 classes) ships inside
scikit-learn, so no download happens at run time.

Data layout (deterministic, independent of the node):

* a fixed stratified split puts ``TEST_FRACTION`` of the samples into a held-out *central* test
  set, used only by the ServerApp's centralized evaluation;
* the remaining samples form the *federated* pool. It is shuffled once with a fixed seed and cut
  into ``num-partitions`` IID, disjoint, near-equal partitions; SuperNode ``partition-id`` gets
  partition number ``partition-id``. Each partition is split again into local train/test parts
  (``LOCAL_TEST_FRACTION``) for the ClientApp's ``train`` and ``evaluate``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

NUM_CLASSES = 10
NUM_FEATURES = 64
SEED = 42
TEST_FRACTION = 0.2
LOCAL_TEST_FRACTION = 0.2

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@lru_cache(maxsize=1)
def _split() -> Split:
    """Return (X_pool, y_pool, X_central_test, y_central_test), pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float64) / 16.0
    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    return x_pool, y_pool, x_test, y_test


def partition_indices(num_samples: int, num_partitions: int) -> list[np.ndarray]:
    """Shuffle ``range(num_samples)`` with a fixed seed and cut it into IID partitions."""
    if num_partitions < 1:
        raise ValueError(f"num-partitions must be >= 1, got {num_partitions}")
    if num_partitions > num_samples:
        raise ValueError(f"num-partitions ({num_partitions}) > samples ({num_samples})")
    order = np.random.default_rng(SEED).permutation(num_samples)
    return list(np.array_split(order, num_partitions))


def load_partition(partition_id: int, num_partitions: int) -> Split:
    """Return (X_train, y_train, X_test, y_test) of one SuperNode's partition."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} not in [0, {num_partitions})")
    x_pool, y_pool, _x_test, _y_test = _split()
    idx = partition_indices(len(y_pool), num_partitions)[partition_id]
    x_train, x_test, y_train, y_test = train_test_split(
        x_pool[idx], y_pool[idx], test_size=LOCAL_TEST_FRACTION, random_state=SEED
    )
    return x_train, y_train, x_test, y_test


def load_central_test() -> tuple[np.ndarray, np.ndarray]:
    """Return the held-out test set used by the ServerApp's centralized evaluation."""
    _x_pool, _y_pool, x_test, y_test = _split()
    return x_test, y_test


def create_model(local_epochs: int = 5, c: float = 1.0) -> LogisticRegression:
    """Multinomial L2 logistic regression; ``warm_start`` so fit() continues from the
    parameters set by :func:`set_params` (the global model) instead of starting over."""
    model = LogisticRegression(C=c, max_iter=local_epochs, warm_start=True, solver="lbfgs")
    set_initial_params(model)
    return model


def set_initial_params(model: LogisticRegression) -> None:
    """Give an unfitted model zero parameters and the class list, so it can predict/evaluate."""
    model.classes_ = np.arange(NUM_CLASSES)
    model.coef_ = np.zeros((NUM_CLASSES, NUM_FEATURES))
    model.intercept_ = np.zeros(NUM_CLASSES)


def get_params(model: LogisticRegression) -> list[np.ndarray]:
    """Model parameters as a list of numpy arrays: [coef (10, 64), intercept (10,)]."""
    return [np.array(model.coef_, copy=True), np.array(model.intercept_, copy=True)]


def set_params(model: LogisticRegression, params: list[np.ndarray]) -> None:
    """Load parameters produced by :func:`get_params` (or by FedAvg) into ``model``."""
    coef, intercept = params
    if coef.shape != (NUM_CLASSES, NUM_FEATURES) or intercept.shape != (NUM_CLASSES,):
        raise ValueError(f"unexpected parameter shapes {coef.shape}, {intercept.shape}")
    model.classes_ = np.arange(NUM_CLASSES)
    model.coef_ = np.array(coef, dtype=np.float64, copy=True)
    model.intercept_ = np.array(intercept, dtype=np.float64, copy=True)


def fit(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> None:
    """Run ``max_iter`` lbfgs iterations from the current parameters.

    Stopping before convergence is the point of a federated round, so scikit-learn's
    ConvergenceWarning is silenced here (it would otherwise spam the SuperNode logs).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)


def evaluate(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (log loss, accuracy) of ``model`` on (x, y)."""
    proba = model.predict_proba(x)
    loss = float(log_loss(y, proba, labels=model.classes_))
    acc = float(accuracy_score(y, model.classes_[np.argmax(proba, axis=1)]))
    return loss, acc
