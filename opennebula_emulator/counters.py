"""Request counters per API (``oned``, ``oneflow``, ``onegate``) and per method or route."""

from __future__ import annotations

import threading
from collections import Counter


class RequestCounters:
    APIS = ("oned", "oneflow", "onegate")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {api: Counter() for api in self.APIS}

    def hit(self, api: str, key: str) -> None:
        with self._lock:
            self._counts[api][key] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{"oned": {"one.vm.info": 3, ...}, "oneflow": {"GET /service/:id": 2}, ...,
        "total": {"oned": 3, ...}}``."""
        with self._lock:
            out: dict[str, dict[str, int]] = {
                api: dict(sorted(c.items())) for api, c in self._counts.items()
            }
            out["total"] = {api: sum(c.values()) for api, c in self._counts.items()}
        return out

    def reset(self) -> None:
        with self._lock:
            for counter in self._counts.values():
                counter.clear()
