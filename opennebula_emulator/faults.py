"""Injected faults: a request answered 502/503/504, or its connection closed without an answer,
the way a reverse proxy or a network fails. By default the request is handled first, so the
client cannot tell whether it was done (the case a client must not repeat blindly)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

KINDS = ("502", "503", "504", "drop")
APIS = ("oned", "oneflow", "onegate")


@dataclass
class Fault:
    """``times`` requests of ``route`` on ``api`` (as the counters name them: ``POST
    /service/:id/scale``, or an XML-RPC method such as ``one.template.instantiate``) get ``kind``:
    ``502``/``503``/``504`` (a proxy's error page) or ``drop`` (the connection is closed without
    an answer). ``after``: the request is handled before (default), else never."""

    api: str
    route: str
    kind: str = "502"
    times: int = 1
    after: bool = True
    fired: int = 0

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"fault api {self.api!r}: one of {', '.join(APIS)}")
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r}: one of {', '.join(KINDS)}")
        if not self.route or int(self.times) < 1:
            raise ValueError("a fault needs a route and times >= 1")
        self.times = int(self.times)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``[before:]API:ROUTE[=KIND][*TIMES]``, e.g.
        ``oneflow:POST /service_template/:id/action=502*2`` or ``oned:one.vm.allocate=drop``."""
        after = not spec.startswith("before:")
        api, _, rest = spec.removeprefix("before:").partition(":")
        rest, _, times = rest.partition("*")
        route, _, kind = rest.partition("=")
        return cls(api, route.strip(), kind or "502", int(times or 1), after)


class Injected(Exception):
    """Raised when a fault answers a request before it is handled."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.kind)
        self.fault = fault


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, api: str, route: str, after: bool) -> Fault | None:
        """The fault this request gets now (before or after it is handled), or None."""
        with self._lock:
            for fault in self._faults:
                if (fault.api, fault.route, fault.after) == (api, route, after) and (
                    fault.fired < fault.times
                ):
                    fault.fired += 1
                    return fault
        return None

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return [asdict(f) for f in self._faults]
