"""Training settings of the ServerApp: run config, else the appliance's defaults, else built-ins.

The SuperLink appliance hands its training context variables (ONEAPP_FL_NUM_ROUNDS,
ONEAPP_FL_STRATEGY, ...) to the ServerApps as environment variables of the SuperLink container
(FL_NUM_ROUNDS, FL_STRATEGY, ...). Flower passes only the run config to an app, so an app sees
them only if it reads them, as this one does. A run-config value that is set (not 0 / "")
overrides them: ``flwr run . <federation> --run-config 'num-server-rounds=5 strategy="FedProx"'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

STRATEGIES = ("FedAvg", "FedProx", "FedAdam", "Krum", "Bulyan", "FedTrimmedAvg")


@dataclass(frozen=True)
class Settings:
    num_rounds: int = 3
    strategy: str = "FedAvg"
    min_fit_clients: int = 2
    min_evaluate_clients: int = 2
    min_available_clients: int = 2
    fedprox_mu: float = 1.0
    fedadam_tau: float = 1e-9
    byzantine_clients: int = 0
    trim_ratio: float = 0.2
    checkpoint_enabled: bool = False
    checkpoint_interval: int = 1
    checkpoint_resume: bool = False
    checkpoint_dir: str = "/app/state/checkpoints"


# setting -> (run-config key or None, environment variable)
SOURCES = {
    "num_rounds": ("num-server-rounds", "FL_NUM_ROUNDS"),
    "strategy": ("strategy", "FL_STRATEGY"),
    "min_fit_clients": ("min-nodes", "FL_MIN_FIT_CLIENTS"),
    "min_evaluate_clients": ("min-nodes", "FL_MIN_EVALUATE_CLIENTS"),
    "min_available_clients": ("min-nodes", "FL_MIN_AVAILABLE_CLIENTS"),
    "fedprox_mu": ("proximal-mu", "FL_FEDPROX_MU"),
    "fedadam_tau": ("tau", "FL_FEDADAM_TAU"),
    "byzantine_clients": ("byzantine-clients", "FL_BYZANTINE_CLIENTS"),
    "trim_ratio": ("trim-ratio", "FL_TRIM_RATIO"),
    "checkpoint_enabled": (None, "FL_CHECKPOINT_ENABLED"),
    "checkpoint_interval": (None, "FL_CHECKPOINT_INTERVAL"),
    "checkpoint_resume": (None, "FL_CHECKPOINT_RESUME"),
    "checkpoint_dir": (None, "FL_CHECKPOINT_DIR"),
}


def _convert(kind: type, raw: object, where: str) -> object:
    if kind is bool:
        text = str(raw).strip().upper()
        if text not in ("YES", "NO", "TRUE", "FALSE", "1", "0"):
            raise ValueError(f"{where}={raw!r}: expected YES or NO")
        return text in ("YES", "TRUE", "1")
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}={raw!r}: expected {kind.__name__}") from exc


def resolve(run_config: Mapping[str, object], environ: Mapping[str, str] | None = None) -> Settings:
    """Each setting from the run config when set there, else the environment (``environ``,
    default ``os.environ``), else its default."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values = {}
    for name, (key, env) in SOURCES.items():
        kind = type(getattr(defaults, name))
        given = run_config.get(key) if key else None
        if given not in (None, "", 0, 0.0):
            values[name] = _convert(kind, given, key)
        elif environ.get(env, "").strip():
            values[name] = _convert(kind, environ[env].strip(), env)
    settings = Settings(**values)
    if settings.strategy not in STRATEGIES:
        raise ValueError(f"strategy {settings.strategy!r}: expected one of {', '.join(STRATEGIES)}")
    return settings


def make_strategy(settings: Settings, fraction_train: float, fraction_evaluate: float):
    """The strategy the settings name, with their parameters (a flwr.serverapp strategy;
    imported here so that this module needs only the standard library)."""
    from flwr.serverapp import strategy as strategies

    common = {
        "fraction_train": fraction_train,
        "fraction_evaluate": fraction_evaluate,
        "min_train_nodes": settings.min_fit_clients,
        "min_evaluate_nodes": settings.min_evaluate_clients,
        "min_available_nodes": settings.min_available_clients,
    }
    extra = {
        "FedProx": {"proximal_mu": settings.fedprox_mu},
        "FedAdam": {"tau": settings.fedadam_tau},
        "Krum": {"num_malicious_nodes": settings.byzantine_clients},
        "Bulyan": {"num_malicious_nodes": settings.byzantine_clients},
        "FedTrimmedAvg": {"beta": settings.trim_ratio},
    }.get(settings.strategy, {})
    return getattr(strategies, settings.strategy)(**common, **extra)
