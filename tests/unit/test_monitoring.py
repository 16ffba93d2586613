"""The metric contract (meta/metrics.yml) and what the operator gets from it.

- every metric is declared once, follows Prometheus's naming conventions, and the contract
  holds at least the seeds' eleven FL metrics and eight GPU metrics;
- every metric name the alert rules (monitoring/prometheus/flower-alerts.yml) and their unit
  tests use is declared (``metric_names`` and ``declared_series`` serve test_dashboards.py
  too), and every label an annotation prints comes with those metrics;
- every alert has a severity, a summary and a description, and a promtool test case where it
  fires (with its severity) and one where it does not (promtool itself runs in make lint:
  make monitoring-lint);
- docs/monitoring.md holds the metric table rendered from the contract and names every alert.

``python tests/unit/test_monitoring.py`` writes the table into docs/monitoring.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "meta" / "metrics.yml"
RULES = REPO / "monitoring" / "prometheus" / "flower-alerts.yml"
RULE_TESTS = REPO / "monitoring" / "prometheus" / "tests" / "flower-alerts.test.yml"
DOC = REPO / "docs" / "monitoring.md"
BEGIN, END = "<!-- BEGIN METRICS (meta/metrics.yml) -->", "<!-- END METRICS -->"

TYPES = {"gauge", "counter", "histogram", "info"}
PROVIDERS = {"flower-exporter", "dcgm", "prometheus"}
SEVERITIES = {"warning", "critical"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
# PromQL words that are not metric names (keywords; function names are followed by "(").
KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _contract() -> list[dict[str, Any]]:
    return yaml.safe_load(CONTRACT.read_text())["metrics"]


def _declared() -> set[str]:
    return {m["name"] for m in _contract()}


def declared_series() -> set[str]:
    """The series names the contract declares (a histogram as its _bucket, _sum and _count)."""
    names = set()
    for m in _contract():
        if m["type"] == "histogram":
            names |= {m["name"] + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(m["name"])
    return names


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def _rule_tests() -> list[dict[str, Any]]:
    return yaml.safe_load(RULE_TESTS.read_text())["tests"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a loose parse, enough for our rules)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    # label lists of on/ignoring/by/without/group_left/group_right
    expr = re.sub(r"\b(?:on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if not call and word.lower() not in KEYWORDS:
            names.add(word)
    return names


def render_table() -> str:
    """The metric table of docs/monitoring.md."""
    where = {
        "flower-exporter": "SuperLink exporter :9101",
        "dcgm": "DCGM exporter :9400",
        "prometheus": "Prometheus",
    }
    lines = [
        "| metric | type | labels | from | meaning | value taken from |",
        "|---|---|---|---|---|---|",
    ]
    for m in _contract():
        labels = ", ".join(f"`{lab}`" for lab in m["labels"]) or "-"
        origin = where[m["provider"]] + (" (planned)" if m["status"] == "planned" else "")
        source = " ".join(m["source"].split()).replace("|", "\\|")
        help_text = m["help"].replace("|", "\\|")
        lines.append(
            f"| `{m['name']}` | {m['type']} | {labels} | {origin} | {help_text} | {source} |"
        )
    return "\n".join(lines)


def write_doc_table() -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{render_table()}\n{END}{tail}")


# ------------------------------------------------------------------------------ the contract


def test_contract_entries_complete() -> None:
    for m in _contract():
        missing = {"name", "type", "provider", "status", "help", "labels", "source"} - set(m)
        assert not missing, (m.get("name"), missing)
        assert m["type"] in TYPES, m["name"]
        assert m["provider"] in PROVIDERS, m["name"]
        assert m["status"] in {"planned", "available"}, m["name"]
        assert NAME_RE.match(m["name"]), m["name"]
        assert all(LABEL_RE.match(lab) and not lab.startswith("__") for lab in m["labels"])
        assert not {"le", "quantile"} & set(m["labels"]), m["name"]
        assert m["help"].strip() and m["source"].strip(), m["name"]


def test_contract_names_unique() -> None:
    names = [m["name"] for m in _contract()]
    assert len(names) == len(set(names))


def test_contract_naming_conventions() -> None:
    for m in _contract():
        name, kind = m["name"], m["type"]
        if m["provider"] != "flower-exporter":
            continue  # DCGM and Prometheus names are theirs
        assert name.startswith("flower_"), name
        assert name == name.lower(), name
        assert name.endswith("_total") == (kind == "counter"), name
        assert name.endswith("_info") == (kind == "info"), name
        assert not name.endswith(("_bucket", "_sum", "_count")), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
            assert m["buckets"] == sorted(m["buckets"]), name


def test_contract_holds_the_seeds_metrics() -> None:
    """The seeds' eleven FL metrics and eight GPU metrics (003 Phase 8, issue #14)."""
    contract = _contract()
    fl = {m["name"] for m in contract if m["provider"] == "flower-exporter"}
    gpu = {m["name"] for m in contract if m["provider"] == "dcgm"}
    assert len(fl) >= 11 and len(gpu) >= 8
    for name in (
        "flower_supernodes_connected",
        "flower_supernodes_registered",
        "flower_runs",
        "flower_round_current",
        "flower_rounds_completed_total",
        "flower_round_duration_seconds",
        "flower_last_round_loss",
        "flower_last_round_accuracy_ratio",
        "flower_node_failures_total",
        "flower_superlink_up",
        "flower_build_info",
    ):
        assert name in fl, name
    build_info = next(m for m in contract if m["name"] == "flower_build_info")
    assert "flower_version" in build_info["labels"]
    for name in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_XID_ERRORS",
    ):
        assert name in gpu, name


# --------------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="a"} == 0', {"up"}),
        (
            "rate(flower_x_total[5m]) / on (instance, job) flower_y > 0.5",
            {"flower_x_total", "flower_y"},
        ),
        ("(a unless changes(a[30m]) > 0) and (b offset 30m)", {"a", "b"}),
        ('sum by (gpu) (DCGM_FI_DEV_FB_USED{gpu=~"0|1"})', {"DCGM_FI_DEV_FB_USED"}),
        # the dashboards' (test_dashboards.py): Grafana variables, histograms, vector()
        (
            'histogram_quantile(0.9, sum by (le) (rate(x_bucket{instance=~"$instance"}'
            "[$__rate_interval])))",
            {"x_bucket"},
        ),
        ('count(a{gpu=~"$gpu"} > 0) or vector(0)', {"a"}),
        ("rate(e[$__rate_interval]) / 1000", {"e"}),
    ],
)
def test_metric_names_parser(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_rules_use_declared_metrics_only() -> None:
    declared = _declared()
    used: set[str] = set()
    for rule in _alerts():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= declared, (rule["alert"], names - declared)
        used |= names
    # the brief's plain regex finds nothing else
    loose = set(re.findall(r"\b(?:flower_\w+|DCGM_\w+)", RULES.read_text()))
    assert loose <= declared, loose - declared
    assert used


def test_rule_tests_use_declared_metrics_only() -> None:
    declared = _declared()
    for case in _rule_tests():
        for series in case["input_series"]:
            name = series["series"].split("{", 1)[0].strip()
            assert name in declared, name


def test_annotation_labels_come_with_the_metrics() -> None:
    by_name = {m["name"]: m for m in _contract()}
    for rule in _alerts():
        have = set(TARGET_LABELS)
        for name in metric_names(rule["expr"]):
            have |= set(by_name[name]["labels"])
        printed = set()
        for text in rule["annotations"].values():
            printed |= set(re.findall(r"\$labels\.(\w+)", text))
        assert printed <= have, (rule["alert"], printed - have)


def test_alerts_have_severity_and_annotations() -> None:
    alerts = _alerts()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    assert len(alerts) >= 8
    for rule in alerts:
        assert rule["alert"].startswith("Flower"), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_seeds_alerts_present() -> None:
    """Training stalled, client dropout above 50 %, GPU memory above 95 %, GPU above 90 °C."""
    by_name = {a["alert"]: a for a in _alerts()}
    assert "30m" in by_name["FlowerTrainingStalled"]["expr"]
    assert "> 0.5" in by_name["FlowerSuperNodeDropoutHigh"]["expr"]
    assert "> 95" in by_name["FlowerGPUMemoryHigh"]["expr"]
    assert "> 90" in by_name["FlowerGPUTemperatureCritical"]["expr"]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: dict[str, set[str]] = {}
    quiet: set[str] = set()
    for case in _rule_tests():
        for check in case.get("alert_rule_test", []):
            exp = check.get("exp_alerts") or []
            if exp:
                firing.setdefault(check["alertname"], set()).update(
                    e["exp_labels"]["severity"] for e in exp
                )
                for e in exp:
                    assert {"summary", "description"} <= set(e.get("exp_annotations", {}))
            else:
                quiet.add(check["alertname"])
    for rule in _alerts():
        name = rule["alert"]
        assert name in firing, f"{name}: no test case where it fires"
        assert name in quiet, f"{name}: no test case where it does not fire"
        assert firing[name] == {rule["labels"]["severity"]}, name


def test_rule_tests_load_the_shipped_rules() -> None:
    files = yaml.safe_load(RULE_TESTS.read_text())["rule_files"]
    assert [(RULE_TESTS.parent / f).resolve() for f in files] == [RULES.resolve()]


# ---------------------------------------------------------------------------------- the docs


def test_doc_table_rendered_from_contract() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == render_table(), "run: python tests/unit/test_monitoring.py"


def test_doc_names_every_alert() -> None:
    text = DOC.read_text()
    missing = [a["alert"] for a in _alerts() if f"`{a['alert']}`" not in text]
    assert missing == []


if __name__ == "__main__":
    write_doc_table()
    sys.exit(0)
