"""Unit tests of the sklearn demo's task module and of scripts/flwr_run_check.py's parser.

The demo app is not installed: its directory is put on sys.path, and the check script is
loaded from its file. The task tests need numpy and scikit-learn (the demo's dependencies) and
are skipped where they are missing; the parser tests need only the standard library. flwr is
not needed.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "demo" / "sklearn"
CHECK_SCRIPT = REPO / "scripts" / "flwr_run_check.py"

if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))

try:
    import numpy as np
    from flower_sklearn_digits import task
except ImportError as err:  # numpy/scikit-learn missing in this environment
    _MISSING = f"demo dependencies not installed: {err}"
else:
    _MISSING = ""

needs_demo_deps = pytest.mark.skipif(bool(_MISSING), reason=_MISSING)


def _load_check_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flwr_run_check", CHECK_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


check = _load_check_module()


# ------------------------------------------------------------------------------------------
# task.py
# ------------------------------------------------------------------------------------------


@needs_demo_deps
@pytest.mark.parametrize("num_partitions", [1, 2, 3, 7])
def test_partitions_are_disjoint_and_cover_the_pool(num_partitions: int) -> None:
    n = 1437
    parts = task.partition_indices(n, num_partitions)
    assert len(parts) == num_partitions
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert len(np.unique(joined)) == n  # disjoint
    assert set(joined.tolist()) == set(range(n))  # covering
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # near-equal


@needs_demo_deps
def test_partition_indices_are_deterministic() -> None:
    a = task.partition_indices(500, 3)
    b = task.partition_indices(500, 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@needs_demo_deps
def test_load_partition_data_is_disjoint_and_covers_pool() -> None:
    x_pool, _, x_central, _ = task._split()
    rows: list[bytes] = []
    for pid in range(2):
        x_tr, y_tr, x_te, y_te = task.load_partition(pid, 2)
        assert len(x_tr) == len(y_tr) > 0 and len(x_te) == len(y_te) > 0
        assert x_tr.shape[1] == task.NUM_FEATURES
        rows += [r.tobytes() for r in np.vstack([x_tr, x_te])]
    # every pool sample is used exactly once (multiset of rows: the data has duplicate images)
    assert sorted(rows) == sorted(r.tobytes() for r in x_pool)
    central = {r.tobytes() for r in x_central}
    assert len(central) > 0
    assert len(x_pool) + len(x_central) == 1797


@needs_demo_deps
def test_load_partition_rejects_bad_ids() -> None:
    with pytest.raises(ValueError):
        task.load_partition(2, 2)
    with pytest.raises(ValueError):
        task.load_partition(-1, 2)
    with pytest.raises(ValueError):
        task.partition_indices(10, 0)


@needs_demo_deps
def test_get_set_params_round_trip() -> None:
    rng = np.random.default_rng(0)
    params = [
        rng.normal(size=(task.NUM_CLASSES, task.NUM_FEATURES)),
        rng.normal(size=task.NUM_CLASSES),
    ]
    model = task.create_model()
    task.set_params(model, params)
    out = task.get_params(model)
    assert [p.shape for p in out] == [(10, 64), (10,)]
    for got, want in zip(out, params, strict=True):
        np.testing.assert_array_equal(got, want)
    # get_params returns copies: changing them must not change the model
    out[0][0, 0] += 1.0
    assert model.coef_[0, 0] == params[0][0, 0]


@needs_demo_deps
def test_set_params_rejects_wrong_shapes() -> None:
    model = task.create_model()
    with pytest.raises(ValueError):
        task.set_params(model, [np.zeros((10, 63)), np.zeros(10)])


@needs_demo_deps
def test_untrained_model_is_uniform() -> None:
    model = task.create_model()
    x, y = task.load_central_test()
    loss, _ = task.evaluate(model, x, y)
    assert loss == pytest.approx(np.log(task.NUM_CLASSES))


@needs_demo_deps
def test_one_local_fit_improves_over_untrained_model() -> None:
    model = task.create_model(local_epochs=5, c=1.0)
    x_tr, y_tr, _, _ = task.load_partition(0, 2)
    x_te, y_te = task.load_central_test()
    loss0, acc0 = task.evaluate(model, x_te, y_te)
    task.fit(model, x_tr, y_tr)
    loss1, acc1 = task.evaluate(model, x_te, y_te)
    assert acc1 > acc0 + 0.5
    assert acc1 > 0.8
    assert loss1 < loss0


@needs_demo_deps
def test_fit_continues_from_set_params_warm_start() -> None:
    x_tr, y_tr, _, _ = task.load_partition(0, 2)
    x_te, y_te = task.load_central_test()
    first = task.create_model(local_epochs=2)
    task.fit(first, x_tr, y_tr)
    loss_first, _ = task.evaluate(first, x_te, y_te)
    second = task.create_model(local_epochs=2)
    task.set_params(second, task.get_params(first))
    task.fit(second, x_tr, y_tr)
    loss_second, _ = task.evaluate(second, x_te, y_te)
    assert loss_second < loss_first  # started from first's parameters, not from zero


@needs_demo_deps
def test_fit_emits_no_convergence_warning() -> None:
    model = task.create_model(local_epochs=1)
    x_tr, y_tr, _, _ = task.load_partition(0, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task.fit(model, x_tr, y_tr)
    assert [str(w.message) for w in caught] == []


# ------------------------------------------------------------------------------------------
# flwr_run_check.py parser and checks
# ------------------------------------------------------------------------------------------

ESC = "\x1b"
INFO = f"{ESC}[92mINFO {ESC}[0m:      "
REALISTIC_LOG = f"""Loading project configuration...
Success
{INFO}Start `flwr-serverapp` process
{INFO}Starting FedAvg strategy:
{INFO}\t├── Number of rounds: 3
{INFO}INITIAL loss=2.3026 accuracy=0.1000 elapsed=0.01
{INFO}Initial global evaluation results: {{'central_loss': 2.30, 'central_accuracy': 0.1}}
{INFO}
{INFO}[ROUND 1/3]
{INFO}configure_train: Sampled 2 nodes (out of 2)
{INFO}aggregate_train: Received 2 results and 0 failures
{INFO}\t└──> Aggregated MetricRecord: {{'train_loss': 0.3066, 'train_acc': 0.9347}}
{INFO}Global evaluation
{INFO}ROUND 1/3 loss=0.3243 accuracy=0.9083 elapsed=12.09
{INFO}\t└──> MetricRecord: {{'central_loss': 0.3242, 'central_accuracy': 0.9083}}
{INFO}[ROUND 2/3]
{INFO}ROUND 2/3 loss=0.2413 accuracy=0.9444 elapsed=24.16
{INFO}[ROUND 3/3]
{ESC}[93mWARNING {ESC}[0m:   something unrelated
{INFO}ROUND 3/3 loss=0.2141 accuracy=0.9611 elapsed=36.23
{INFO}Strategy execution finished in 36.23s
{INFO}FINAL rounds=3 loss=0.2141 accuracy=0.9611 elapsed=36.23
"""


def test_strip_ansi() -> None:
    assert check.strip_ansi(f"{ESC}[92mINFO {ESC}[0m: x") == "INFO : x"


def test_parse_realistic_log_with_ansi() -> None:
    parsed = check.parse_log(REALISTIC_LOG)
    assert [(r.round, r.total, r.loss, r.accuracy, r.elapsed) for r in parsed.rounds] == [
        (1, 3, 0.3243, 0.9083, 12.09),
        (2, 3, 0.2413, 0.9444, 24.16),
        (3, 3, 0.2141, 0.9611, 36.23),
    ]
    assert parsed.initial is not None
    assert parsed.initial.accuracy == 0.1
    # flwr's own "[ROUND n/N]" headers are not mistaken for progress lines
    assert check.parse_line(f"{INFO}[ROUND 1/3]") is None


def test_parse_line_without_elapsed_and_duplicates() -> None:
    text = "ROUND 1/2 loss=0.5 accuracy=0.8\nROUND 1/2 loss=0.4 accuracy=0.85\n"
    parsed = check.parse_log(text)
    assert len(parsed.rounds) == 1
    assert parsed.rounds[0].accuracy == 0.85
    assert parsed.rounds[0].elapsed is None


def test_check_passes_on_realistic_log() -> None:
    passed, reasons = check.check_rounds(check.parse_log(REALISTIC_LOG), 3, 0.85)
    assert passed, reasons
    assert reasons == []


def test_check_fails_when_accuracy_does_not_improve() -> None:
    text = "\n".join(
        f"{INFO}ROUND {i}/3 loss=0.2000 accuracy=0.9556 elapsed={10.0 * i}" for i in (1, 2, 3)
    )
    passed, reasons = check.check_rounds(check.parse_log(text), 3, 0.85)
    assert not passed
    assert any("did not improve" in r for r in reasons)


def test_check_fails_below_min_accuracy() -> None:
    passed, reasons = check.check_rounds(check.parse_log(REALISTIC_LOG), 3, 0.999)
    assert not passed
    assert any("min-accuracy" in r for r in reasons)


def test_check_fails_with_too_few_rounds() -> None:
    passed, reasons = check.check_rounds(check.parse_log(REALISTIC_LOG), 5, 0.85)
    assert not passed
    assert any("expected >= 5" in r for r in reasons)


def test_check_fails_without_rounds() -> None:
    passed, reasons = check.check_rounds(check.parse_log("no progress here\n"), 1, 0.5)
    assert not passed
    assert reasons


def test_single_round_compares_with_initial_model() -> None:
    text = f"{INFO}INITIAL loss=2.3 accuracy=0.1 elapsed=0.0\n{INFO}ROUND 1/1 loss=0.3 accuracy=0.9"
    assert check.check_rounds(check.parse_log(text), 1, 0.85) == (True, [])
    passed, reasons = check.check_rounds(check.parse_log("ROUND 1/1 loss=0.3 accuracy=0.9"), 1, 0.5)
    assert not passed and "cannot check improvement" in reasons[0]


def test_seconds_per_round_prefers_serverapp_stamps() -> None:
    parsed = check.parse_log(REALISTIC_LOG)
    spr, source = check.seconds_per_round(parsed, {1: 5.0, 3: 50.0}, 40.0)
    assert source == "serverapp-elapsed"
    assert spr == pytest.approx((36.23 - 0.01) / 3)
    no_stamps = check.parse_log("ROUND 1/2 loss=1 accuracy=0.5\nROUND 2/2 loss=1 accuracy=0.6")
    assert check.seconds_per_round(no_stamps, {1: 5.0, 2: 17.0}, 40.0) == (12.0, "stream-arrival")
    assert check.seconds_per_round(no_stamps, {}, 40.0) == (20.0, "flwr-ls-elapsed")


def test_federation_overrides_quote_values_for_toml() -> None:
    args = check.federation_overrides("127.0.0.1:19093", None)
    assert args == ["--federation-config", 'address="127.0.0.1:19093"']
    with pytest.raises(ValueError):
        check.federation_overrides('bad"addr', None)
