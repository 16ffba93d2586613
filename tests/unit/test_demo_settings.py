"""The demo ServerApp's training settings: run config over the appliance's FL_* environment
over built-in defaults (standard library only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo" / "sklearn"
if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))

from flower_sklearn_digits.settings import Settings, resolve  # noqa: E402

# What pyproject.toml declares: unset values are 0 or "".
PYPROJECT = {
    "num-server-rounds": 0,
    "strategy": "",
    "min-nodes": 0,
    "proximal-mu": 0.0,
    "tau": 0.0,
    "byzantine-clients": 0,
    "trim-ratio": 0.0,
}
APPLIANCE = {
    "FL_NUM_ROUNDS": "7",
    "FL_STRATEGY": "FedProx",
    "FL_MIN_FIT_CLIENTS": "3",
    "FL_FEDPROX_MU": "0.5",
    "FL_CHECKPOINT_ENABLED": "YES",
    "FL_CHECKPOINT_INTERVAL": "2",
}


def test_built_in_defaults_without_appliance():
    assert resolve(PYPROJECT, {}) == Settings()


def test_appliance_environment_gives_the_defaults():
    settings = resolve(PYPROJECT, APPLIANCE)
    assert settings.num_rounds == 7
    assert settings.strategy == "FedProx"
    assert settings.fedprox_mu == 0.5
    assert settings.min_fit_clients == 3
    assert settings.min_evaluate_clients == 2  # not set: built-in
    assert settings.checkpoint_enabled is True
    assert settings.checkpoint_interval == 2


def test_run_config_overrides_the_appliance():
    cfg = {**PYPROJECT, "num-server-rounds": 2, "strategy": "Krum", "min-nodes": 4}
    settings = resolve(cfg, APPLIANCE)
    assert (settings.num_rounds, settings.strategy) == (2, "Krum")
    assert settings.min_fit_clients == settings.min_available_clients == 4


@pytest.mark.parametrize(
    ("cfg", "env", "fragment"),
    [
        ({"strategy": "FedSGD"}, {}, "strategy 'FedSGD'"),
        ({}, {"FL_NUM_ROUNDS": "three"}, "FL_NUM_ROUNDS='three'"),
        ({}, {"FL_CHECKPOINT_RESUME": "latest"}, "FL_CHECKPOINT_RESUME='latest'"),
    ],
)
def test_bad_values_name_their_source(cfg, env, fragment):
    with pytest.raises(ValueError, match=fragment):
        resolve({**PYPROJECT, **cfg}, env)
