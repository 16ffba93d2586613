"""Unit tests of the sklearn demo's task module and of scripts/flwr_run_check.py's parser.

The demo app is not installed: its directory is put on sys.path, and the check script is
loaded from its file. The task tests need numpy and scikit-learn (the demo's dependencies) and
are skipped where they are missing; the parser tests need only the standard library. flwr is
not needed.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
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


def test_no_improvement_required_on_request():
    text = "ROUND 1/2 loss=0.2 accuracy=0.9611\nROUND 2/2 loss=0.2 accuracy=0.9528\n"
    passed, reasons = check.check_rounds(check.parse_log(text), 2, 0.85)
    assert not passed and "did not improve" in reasons[0]
    assert check.check_rounds(check.parse_log(text), 2, 0.85, improvement=False) == (True, [])


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


# ------------------------------------------------------------------------------------------
# flwr_run_check.py: flwr CLI generations (1.25 pyproject federations, >= 1.26 connections)
# ------------------------------------------------------------------------------------------

LS_HELP_125 = (
    " Usage: flwr ls [OPTIONS] [APP] [FEDERATION]" + " " * 36 + "\n\n"
    " List the details of one provided run ID or all runs (alias: ls).\n"
)
LS_HELP_141 = f"""
 {ESC}[1mUsage: flwr ls [OPTIONS] [SUPERLINK]{ESC}[0m

╭─ Arguments ──────────────────────╮
│   superlink      [SUPERLINK]     │
"""
LOG_HELP_141 = " Usage: flwr log [OPTIONS] RUN_ID [SUPERLINK]\n"

DEMO_PYPROJECT = """[project]
name = "demo"
version = "1.0.0"

[tool.flwr.app]
publisher = "ops"

[tool.flwr.app.config]
num-server-rounds = 3

[tool.flwr.federations]
default = "local"

# plain text
[tool.flwr.federations.local]
address = "127.0.0.1:9093"
insecure = true

[ tool.flwr.federations."tls" ]  # spaces and a quoted key
address = "superlink:9093"
root-certificates = "certs/ca.crt"

[tool.flwr.federations.sim.options]
num-supernodes = 10

[tool.other]
kept = true
"""


def test_parse_flwr_version() -> None:
    assert check.parse_flwr_version("Flower version: 1.41.0\n") == (1, 41, 0)
    assert check.parse_flwr_version(f"{ESC}[1mFlower version: 1.25.0{ESC}[0m") == (1, 25, 0)
    assert check.parse_flwr_version("no version here") is None


def test_usage_arguments() -> None:
    assert check.usage_arguments(LS_HELP_125) == ["APP", "FEDERATION"]
    assert check.usage_arguments(LS_HELP_141) == ["SUPERLINK"]
    assert check.usage_arguments(LOG_HELP_141) == ["RUN_ID", "SUPERLINK"]
    assert check.usage_arguments("Error: no such command") is None


def test_cli_generation_from_usage_then_version() -> None:
    detect = check.uses_superlink_connections
    assert detect(["APP", "FEDERATION"], (1, 25, 0)) is False
    assert detect(["SUPERLINK"], (1, 41, 0)) is True
    # the usage line wins over the version ...
    assert detect(["SUPERLINK"], None) is True
    assert detect(["APP", "FEDERATION"], (1, 99)) is False
    # ... which decides only when the usage line says nothing
    assert detect(None, (1, 26, 0)) is True
    assert detect([], (1, 25, 0)) is False
    assert detect(None, None) is False


def test_strip_federations_keeps_everything_else() -> None:
    out = check.strip_federations(DEMO_PYPROJECT)
    assert "federations" not in out
    assert "9093" not in out and "num-supernodes" not in out
    data = tomllib.loads(out)
    assert data["tool"]["flwr"]["app"]["config"] == {"num-server-rounds": 3}
    assert data["tool"]["other"] == {"kept": True}
    assert data["project"]["name"] == "demo"
    assert check.strip_federations("[project]\nname = 'x'\n") == "[project]\nname = 'x'\n"


def test_superlink_connection_from_federation_and_overrides(tmp_path: Path) -> None:
    feds = tomllib.loads(DEMO_PYPROJECT)["tool"]["flwr"]["federations"]
    conn = check.superlink_connection
    # pyproject federation as it is
    assert conn(feds["local"], tmp_path, None, None) == {
        "address": "127.0.0.1:9093",
        "insecure": True,
    }
    # --address on top
    assert conn(feds["local"], tmp_path, "127.0.0.1:8000", None)["address"] == "127.0.0.1:8000"
    # relative root-certificates resolved against the app dir, as flwr's migration does
    tls = conn(feds["tls"], tmp_path, None, None)
    assert tls["root-certificates"] == str((tmp_path / "certs" / "ca.crt").resolve())
    assert conn(feds["tls"], tmp_path, None, "/etc/ca.pem")["root-certificates"] == "/etc/ca.pem"
    # simulation federation: the local SuperLink
    assert conn(feds["sim"], tmp_path, None, None) == {
        "options": {"num-supernodes": 10},
        "address": ":local:",
    }
    # no federation in pyproject: --address alone, or the user's own Flower configuration
    assert conn(None, tmp_path, "10.0.0.5:8000", None) == {"address": "10.0.0.5:8000"}
    assert conn(None, tmp_path, None, None) is None
    # the input table is not modified
    assert feds["local"]["address"] == "127.0.0.1:9093"


def test_flower_config_toml_round_trips() -> None:
    text = check.flower_config_toml(
        "my fed",
        {
            "address": "127.0.0.1:8000",
            "insecure": True,
            "root-certificates": 'C:\\certs\\"ca".pem',
            "options": {"num-supernodes": 10, "backend": {"client-resources": {"num-cpus": 0.5}}},
        },
    )
    assert "options.backend.client-resources.num-cpus = 0.5" in text
    data = tomllib.loads(text)
    assert data["superlink"]["default"] == "my fed"
    assert data["superlink"]["my fed"] == {
        "address": "127.0.0.1:8000",
        "insecure": True,
        "root-certificates": 'C:\\certs\\"ca".pem',
        "options": {"num-supernodes": 10, "backend": {"client-resources": {"num-cpus": 0.5}}},
    }
    with pytest.raises(ValueError):
        check.flower_config_toml("x", {"address": None})


def test_command_lines_of_both_cli_generations() -> None:
    old = check.FlwrCli(
        "flwr",
        "1.25.0",
        False,
        ["/app", "local"],
        ["/app", "local"],
        check.federation_overrides("127.0.0.1:9093", None),
    )
    fed = ["--federation-config", 'address="127.0.0.1:9093"']
    assert old.run_cmd("num-server-rounds=1") == [
        "flwr", "run", "/app", "local", "--format", "json", *fed,
        "--run-config", "num-server-rounds=1",
    ]  # fmt: skip
    assert old.ls_cmd("7") == [
        "flwr", "ls", "/app", "local", "--run-id", "7", "--format", "json", *fed,
    ]  # fmt: skip
    assert old.log_cmd("7", follow=True) == ["flwr", "log", "7", "/app", "local", "--stream", *fed]
    new = check.FlwrCli("flwr", "1.41.0", True, ["/work/app", "local"], ["local"])
    assert new.run_cmd(None) == ["flwr", "run", "/work/app", "local", "--format", "json"]
    assert new.ls_cmd("7") == ["flwr", "ls", "local", "--run-id", "7", "--format", "json"]
    assert new.log_cmd("7", follow=False) == ["flwr", "log", "7", "local", "--show"]


FAKE_FLWR = """#!/bin/sh
# stands in for flwr: `--version` and `ls --help` of the generation in $FAKE_GEN
if [ "$1" = "--version" ]; then echo "Flower version: $FAKE_VERSION"; exit 0; fi
if [ "$FAKE_GEN" = new ]; then echo " Usage: flwr ls [OPTIONS] [SUPERLINK]";
else echo " Usage: flwr ls [OPTIONS] [APP] [FEDERATION]"; fi
"""


@pytest.mark.parametrize(
    ("gen", "version", "address"),
    [("old", "1.25.0", "127.0.0.1:9093"), ("new", "1.41.0", "127.0.0.1:8000")],
)
def test_detect_cli_prepares_temp_home_and_app_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gen: str, version: str, address: str
) -> None:
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("")
    (app / ".flwr").mkdir()
    (app / "pyproject.toml").write_text(DEMO_PYPROJECT)
    flwr = tmp_path / "flwr"
    flwr.write_text(FAKE_FLWR)
    flwr.chmod(0o755)
    monkeypatch.setenv("FAKE_GEN", gen)
    monkeypatch.setenv("FAKE_VERSION", version)
    work = tmp_path / "work"
    work.mkdir()

    cli = check.detect_cli(str(flwr), app, "local", address, None, work)

    assert cli.version == version
    assert (app / "pyproject.toml").read_text() == DEMO_PYPROJECT  # never modified
    if gen == "old":
        assert not cli.connections
        assert cli.run_target == [str(app.resolve()), "local"] == cli.admin_target
        assert cli.overrides == ["--federation-config", f'address="{address}"']
        assert cli.env == {}
        assert not (work / "app").exists()
        return
    assert cli.connections
    copy = work / "app"
    assert cli.run_target == [str(copy), "local"]
    assert cli.admin_target == ["local"]
    assert cli.overrides == []
    assert cli.cwd == str(work)
    assert (copy / "pkg" / "__init__.py").is_file()
    assert not (copy / ".flwr").exists()
    assert "federations" not in (copy / "pyproject.toml").read_text()
    home = Path(cli.env["FLWR_HOME"])
    assert home.parent == work
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["superlink"] == {
        "default": "local",
        "local": {"address": address, "insecure": True},
    }


def test_detect_cli_uses_the_users_connection_only_if_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(DEMO_PYPROJECT)
    flwr = tmp_path / "flwr"
    flwr.write_text(FAKE_FLWR)
    flwr.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FAKE_GEN", "new")
    monkeypatch.setenv("FAKE_VERSION", "1.41.0")
    monkeypatch.setenv("FLWR_HOME", str(home))
    (tmp_path / "w1").mkdir()
    with pytest.raises(check.CliError, match="no Flower configuration"):
        check.detect_cli(str(flwr), app, "prod", None, None, tmp_path / "w1")
    assert not (home / "config.toml").exists()
    (home / "config.toml").write_text('[superlink.prod]\naddress = "10.0.0.5:8000"\n')
    (tmp_path / "w2").mkdir()
    cli = check.detect_cli(str(flwr), app, "prod", None, None, tmp_path / "w2")
    assert cli.env == {}  # the user's FLWR_HOME, untouched
    assert cli.admin_target == ["prod"]
    assert cli.run_target == [str(tmp_path / "w2" / "app"), "prod"]  # still a copy
