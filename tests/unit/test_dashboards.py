"""The Grafana dashboards (monitoring/grafana/dashboards) and their provisioning files.

- each dashboard is Grafana JSON with a stable uid and title, a data source variable that every
  panel, target and query variable uses (so it imports into any Grafana), unique panel ids;
- every PromQL expression (panel targets, query variables) selects only series the metric
  contract (meta/metrics.yml) declares (the parser of test_monitoring.py);
- every expression evaluates on a real Prometheus (Debian's ``prometheus``, started here on
  127.0.0.1 with a free port) that scrapes sample series of every declared metric, served by
  Python's http.server (counters grow at each scrape, so rates and histogram quantiles have
  data): each query succeeds and returns finite values, the Grafana variables replaced by the
  values a user would pick;
- the provisioning files hold a Prometheus data source and a file provider, and
  docs/monitoring.md names each dashboard and the provisioning paths.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_server import BINARY, Prometheus
from test_monitoring import CONTRACT, DOC, declared_series, metric_names

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "monitoring" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"

# file stem: (uid, title); the uids and titles are stable (links and bookmarks use them)
EXPECTED = {
    "flower-training-overview": ("flower-training-overview", "Flower training overview"),
    "flower-client-health": ("flower-client-health", "Flower client health"),
    "flower-gpu-health": ("flower-gpu-health", "Flower GPU health"),
}
DS_VAR = "datasource"
DS_REF = {"type": "prometheus", "uid": "${" + DS_VAR + "}"}
SCHEMA_VERSION = 42  # Grafana 12's classic dashboard model
GPU_BOARD = "flower-gpu-health"

# The sample series: the run, the GPU, the Flower version; the scrape jobs the rules expect.
RUN_ID = "4242"
GPU = "0"
SAMPLE_LABELS = {
    "run_id": RUN_ID,
    "flower_version": "1.23.0",
    "gpu": GPU,
    "UUID": "GPU-00000000-0000-0000-0000-000000000000",
    "device": "nvidia0",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "supernode-1",
}
SAMPLE_VALUES = {  # gauges not listed are 1; counters grow by this (or 1) at each scrape
    "flower_supernodes_connected": 2,
    "flower_supernodes_registered": 3,
    "flower_min_available_nodes": 2,
    "flower_last_round_loss": 0.42,
    "flower_last_round_accuracy_ratio": 0.87,
    "flower_round_current": 3,
    "DCGM_FI_DEV_GPU_UTIL": 63,
    "DCGM_FI_DEV_MEM_COPY_UTIL": 21,
    "DCGM_FI_DEV_FB_USED": 30000,
    "DCGM_FI_DEV_FB_FREE": 51000,
    "DCGM_FI_DEV_GPU_TEMP": 55,
    "DCGM_FI_DEV_POWER_USAGE": 210.5,
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 210500,
    "DCGM_FI_DEV_XID_ERRORS": 0,
}
ROUND_SECONDS = 12  # the duration of every sample round
JOBS = {"flower-exporter": "flower-superlink", "dcgm": "flower-dcgm"}
SCRAPES = 3  # scrapes of each job before the queries (rates need two)


# ------------------------------------------------------------------------------ the files


def _boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels with queries (rows hold none; a collapsed row's panels are inside it)."""
    out = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out


def _query_vars(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in board["templating"]["list"] if v["type"] == "query"]


def _var_selector(var: dict[str, Any]) -> tuple[str, str]:
    """The series selector and the label of a ``label_values(selector, label)`` variable."""
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert found, (var["name"], query)
    return found.group(1), found.group(2)


def _exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of a dashboard."""
    out = [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in _panels(board)
        for target in panel["targets"]
    ]
    out += [(f"variable {v['name']}", _var_selector(v)[0]) for v in _query_vars(board)]
    return out


def _all_exprs() -> list[tuple[str, str, str]]:
    return [
        (stem, where, expr) for stem, board in _boards().items() for where, expr in _exprs(board)
    ]


def test_dashboards_present_with_stable_uid_and_title() -> None:
    boards = _boards()
    assert set(boards) == set(EXPECTED)
    for stem, board in boards.items():
        assert (board["uid"], board["title"]) == EXPECTED[stem]
        assert board["schemaVersion"] == SCHEMA_VERSION, stem
        assert board.get("id") is None, f"{stem}: an exported id breaks the import elsewhere"
        assert "flower" in board["tags"], stem
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    assert len({b["title"] for b in boards.values()}) == len(boards)


def test_dashboards_formatted() -> None:
    """Two-space JSON and a final newline: what the generator wrote, diffs stay readable."""
    for path in DASHBOARDS.glob("*.json"):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n", path


def test_datasource_variable_used_everywhere() -> None:
    for stem, board in _boards().items():
        ds_vars = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert [(v["name"], v["query"]) for v in ds_vars] == [(DS_VAR, "prometheus")], stem
        assert "__inputs" not in board, f"{stem}: provisioning cannot fill __inputs"
        for panel in _panels(board):
            assert panel["datasource"] == DS_REF, (stem, panel["title"])
            assert panel["targets"], (stem, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == DS_REF, (stem, panel["title"])
                assert target["expr"].strip(), (stem, panel["title"])
        for var in _query_vars(board):
            assert var["datasource"] == DS_REF, (stem, var["name"])


def test_panels_laid_out() -> None:
    for stem, board in _boards().items():
        rows = [p for p in board["panels"] if p["type"] == "row"]
        ids = [p["id"] for p in rows + _panels(board)]
        assert len(ids) == len(set(ids)), f"{stem}: panel ids not unique"
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (stem, panel["title"])
            assert panel["title"].strip(), stem
        for panel in _panels(board):
            assert panel.get("description", "").strip(), (stem, panel["title"])


def test_expressions_use_declared_metrics_only() -> None:
    declared = declared_series()
    used: set[str] = set()
    for stem, where, expr in _all_exprs():
        names = metric_names(expr)
        assert names, (stem, where)
        assert names <= declared, (stem, where, names - declared)
        used |= names
    # the plain regex finds nothing else in the files (but the contract's label names)
    contract = yaml.safe_load(CONTRACT.read_text())["metrics"]
    labels = {lab for m in contract for lab in m["labels"]}
    for path in DASHBOARDS.glob("*.json"):
        loose = set(re.findall(r"\b(?:flower_\w+|DCGM_\w+)", path.read_text()))
        assert loose <= declared | labels, (path.name, loose - declared - labels)
    # every FL and GPU metric is on some dashboard
    for m in contract:
        if m["provider"] == "prometheus":
            continue
        series = {m["name"]} if m["type"] != "histogram" else {m["name"] + "_bucket"}
        assert series & used, f"{m['name']} is on no dashboard"


def test_gpu_board_reads_dcgm_only() -> None:
    fl = {m["name"] for m in yaml.safe_load(CONTRACT.read_text())["metrics"]}
    fl = {n for n in fl if n.startswith("flower_")}
    for stem, where, expr in _all_exprs():
        names = metric_names(expr)
        if stem == GPU_BOARD:
            assert not names & fl, (where, names)
        else:
            assert not any(n.startswith("DCGM_") for n in names), (stem, where)


def test_provisioning_files() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    providers = yaml.safe_load((PROVISIONING / "dashboards.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    text = DOC.read_text()
    assert provider["options"]["path"] in text
    for where in (
        "/etc/grafana/provisioning/dashboards/",
        "/etc/grafana/provisioning/datasources/",
    ):
        assert where in text, where
    for stem, (_, title) in EXPECTED.items():
        assert f"`{stem}.json`" in text and title in text, stem


# --------------------------------------------------------------- a real Prometheus


def _exposition(provider: str, scrape: int) -> str:
    """The text exposition of every metric of the contract from ``provider`` at a scrape."""
    lines = []
    for m in yaml.safe_load(CONTRACT.read_text())["metrics"]:
        if m["provider"] != provider:
            continue
        name, kind = m["name"], m["type"]
        lines.append(f"# TYPE {name} {'gauge' if kind == 'info' else kind}")
        status = m.get("label_values", {}).get("status")
        label_sets = [{**SAMPLE_LABELS, "status": s} for s in status] if status else [SAMPLE_LABELS]
        for labels in label_sets:
            own = {k: labels[k] for k in m["labels"]}
            if kind == "histogram":
                for le in [*m["buckets"], "+Inf"]:
                    count = scrape if le == "+Inf" or le >= ROUND_SECONDS else 0
                    lines.append(f"{name}_bucket{_labels({**own, 'le': str(le)})} {count}")
                lines.append(f"{name}_sum{_labels(own)} {scrape * ROUND_SECONDS}")
                lines.append(f"{name}_count{_labels(own)} {scrape}")
            elif kind == "counter":
                lines.append(f"{name}{_labels(own)} {scrape * SAMPLE_VALUES.get(name, 1)}")
            else:
                lines.append(f"{name}{_labels(own)} {SAMPLE_VALUES.get(name, 1)}")
    return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


class _Exporters(BaseHTTPRequestHandler):
    scrapes: dict[str, int]

    def do_GET(self) -> None:
        provider = {"/flower": "flower-exporter", "/dcgm": "dcgm"}.get(self.path)
        if provider is None:
            self.send_error(404)
            return
        self.scrapes[provider] = self.scrapes.get(provider, 0) + 1
        body = _exposition(provider, self.scrapes[provider]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, str]]:
    """A Prometheus scraping the sample exporters; yields (it, the targets' instance)."""
    if not Path(BINARY).is_file():
        pytest.skip("prometheus is not installed (make bootstrap installs Debian's prometheus)")
    handler = type("Exporters", (_Exporters,), {"scrapes": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    instance = f"127.0.0.1:{server.server_address[1]}"
    paths = {"flower-exporter": "/flower", "dcgm": "/dcgm"}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "metrics_path": paths[p], "static_configs": [{"targets": [instance]}]}
            for p, job in JOBS.items()
        ],
    }
    try:
        with Prometheus(config, tmp_path_factory.mktemp("prometheus")) as prom:
            prom.wait_until(
                lambda: (prom.values("min(count_over_time(up[1m]))") or [0])[0] >= SCRAPES,
                30,
                "the sample exporters were not scraped",
            )
            yield prom, instance
    finally:
        server.shutdown()
        server.server_close()


def _substitute(expr: str, board: dict[str, Any], instance: str, run_id: str = RUN_ID) -> str:
    """The expression as Grafana sends it, each variable at the value a user picks."""
    values = {"instance": instance, "run_id": run_id, "gpu": GPU}
    for var in board["templating"]["list"]:
        if var["type"] in ("custom", "interval", "constant"):
            values[var["name"]] = var["current"]["value"]
    builtins = {"__rate_interval": "1m", "__interval": "15s", "__range": "1m"}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        found = builtins.get(name, values.get(name))
        assert found is not None, f"no test value for the variable {name}"
        return found

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def test_sample_exposition_covers_the_contract() -> None:
    text = _exposition("flower-exporter", 1) + _exposition("dcgm", 1)
    served = {line.split("{")[0].split()[0] for line in text.splitlines() if line[0] != "#"}
    assert served == declared_series() - {"up"}


@pytest.mark.parametrize(
    ("stem", "where", "expr"), _all_exprs(), ids=[f"{s}: {w}" for s, w, _ in _all_exprs()]
)
def test_expression_evaluates_with_data(
    prometheus: tuple[str, str], stem: str, where: str, expr: str
) -> None:
    prom, instance = prometheus
    board = _boards()[stem]
    sent = _substitute(expr, board, instance)
    answer = prom.query(sent)
    assert answer["status"] == "success", (sent, answer.get("error"))
    result = answer["data"]["result"]
    assert result, f"{stem} / {where}: no data for {sent}"
    for sample in result:
        assert math.isfinite(float(sample["value"][1])), (sent, sample)
    if where.startswith("variable "):
        label = _var_selector(
            next(v for v in _query_vars(board) if where == f"variable {v['name']}")
        )[1]
        assert all(label in sample["metric"] for sample in result), (sent, label)
