"""Support for the emulator tests: clients for the three APIs, the recorded samples, and
normalisers for the values that legitimately differ between a
recording and a replay (timestamps, random ids, ports, monitoring numbers)."""

from __future__ import annotations

import http.client
import json
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opennebula_emulator import Emulator, Timings  # noqa: E402

SAMPLES = ROOT / "tests" / "fixtures" / "one-samples"
ADMIN = ("oneadmin", "password")


def sample_text(name: str) -> str:
    return (SAMPLES / name).read_text()


def sample_json(name: str) -> Any:
    return json.loads(sample_text(name))


def fast_timings(**overrides: float) -> Timings:
    timings = Timings.fast()
    for key, value in overrides.items():
        setattr(timings, key, value)
    return timings


# ------------------------------------------------------------------------------ normalising
# Values that differ between the recording (2026-11, ports 2633/2474/5030) and a replay:
#  - epoch timestamps (STIME, LAST_POLL, history times, registration_time, start_time, log),
#  - MONITORING figures (random dummy-driver numbers), OS/UUID (random),
#  - ONEGATE_ENDPOINT (the emulator listens on an ephemeral port),
#  - TOKEN_PASSWORD (random per user).
_TIME_TAGS = "LAST_POLL|STIME|ETIME|PSTIME|PETIME|RSTIME|RETIME|ESTIME|EETIME"


def norm_xml(text: str) -> str:
    text = re.sub(rf"<({_TIME_TAGS})>\d+</\1>", r"<\1>T</\1>", text)
    text = re.sub(
        r"<MONITORING>(.*?)</MONITORING>",
        lambda m: (
            "<MONITORING>"
            + re.sub(r"<!\[CDATA\[\d+\]\]>", "<![CDATA[N]]>", m.group(1))
            + "</MONITORING>"
        ),
        text,
        flags=re.S,
    )
    text = re.sub(r"<UUID><!\[CDATA\[[0-9a-f-]+\]\]></UUID>", "<UUID><![CDATA[U]]></UUID>", text)
    text = re.sub(
        r"<ONEGATE_ENDPOINT><!\[CDATA\[[^\]]*\]\]></ONEGATE_ENDPOINT>",
        "<ONEGATE_ENDPOINT><![CDATA[E]]></ONEGATE_ENDPOINT>",
        text,
    )
    text = re.sub(
        r"<TOKEN_PASSWORD><!\[CDATA\[[0-9a-f]+\]\]>", "<TOKEN_PASSWORD><![CDATA[P]]>", text
    )
    return re.sub(r'"(registration_time|start_time|timestamp)":\d+', r'"\1":0', text)


def norm_json(obj: Any) -> Any:
    """Zero the timestamps of OneFlow bodies and normalise VM hashes (OneGate extended)."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key in ("registration_time", "start_time", "timestamp") and isinstance(value, int):
                out[key] = 0
            elif key in (
                "LAST_POLL",
                "STIME",
                "ETIME",
                "PSTIME",
                "PETIME",
                "RSTIME",
                "RETIME",
            ) and isinstance(value, str):
                out[key] = "T"
            elif key == "MONITORING" and isinstance(value, dict):
                out[key] = {k: "N" if v.isdigit() else v for k, v in value.items()}
            elif key == "UUID":
                out[key] = "U"
            elif key == "ONEGATE_ENDPOINT":
                out[key] = "E"
            else:
                out[key] = norm_json(value)
        return out
    if isinstance(obj, list):
        return [norm_json(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------- clients
class Http:
    """Raw HTTP so that tests see status, headers and bytes exactly."""

    def __init__(self, base: str) -> None:
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            payload = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=payload, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()


class Flow(Http):
    def __init__(self, base: str, auth: tuple[str, str] | None = ADMIN) -> None:
        super().__init__(base)
        self.auth = auth

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str | None = "application/json",
        raw: bytes | str | None = None,
        auth: tuple[str, str] | bool | None = True,
    ) -> tuple[int, dict[str, str], str]:
        import base64

        headers: dict[str, str] = {}
        creds = self.auth if auth is True else auth or None
        if creds:
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            )
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None and ctype:
            headers["Content-Type"] = ctype
        status, hdrs, payload = self.request(method, path, data, headers)
        return status, hdrs, payload.decode()

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, _, text = self.call(method, path, body)
        assert status in (200, 201), (status, text)
        return json.loads(text)


class Gate(Http):
    """OneGate client sending what the one-apps ``onegate`` client sends (§5.3)."""

    def __init__(self, emu: Emulator, vm_id: int) -> None:
        super().__init__(emu.onegate_url)
        self.emu = emu
        self.vm_id = vm_id

    def headers(self, token: str | None = None, vmid: str | None = None) -> dict[str, str]:
        return {
            "X-ONEGATE-TOKEN": token
            if token is not None
            else (self.emu.vm_token(self.vm_id) or ""),
            "X-ONEGATE-VMID": vmid if vmid is not None else str(self.vm_id),
            "Authorization": "Basic Og==",
            "User-Agent": "OpenNebula 6.10.0 (Ruby)",
            "Accept": "*/*",
        }

    def call(
        self,
        method: str,
        path: str,
        body: str | None = None,
        ctype: str | None = None,
        **hdr: str | None,
    ) -> tuple[int, dict[str, str], str]:
        headers = self.headers(hdr.get("token"), hdr.get("vmid"))
        for drop in [k for k, v in hdr.items() if v is None and k in ("token", "vmid")]:
            headers.pop({"token": "X-ONEGATE-TOKEN", "vmid": "X-ONEGATE-VMID"}[drop])
        if ctype:
            headers["Content-Type"] = ctype
        status, hdrs, payload = self.request(method, path, body, headers)
        return status, hdrs, payload.decode()

    def update(
        self, data: str, kind: int = 1, path: str = "/vm"
    ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode({"data": data, "type": kind})
        return self.call("PUT", path, body, "application/x-www-form-urlencoded")


# ---------------------------------------------------------------------------------- fixtures


FLOWER_TEMPLATE: dict[str, Any] = sample_json("oneflow-service_template-create-request.json")
FLOWER_INPUTS: dict[str, Any] = {
    "user_inputs_values": {"FL_ROUNDS": "5", "FL_STRATEGY": "FedProx"},
    "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "lab-a"}}],
}
