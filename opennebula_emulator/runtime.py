"""The objects shared by the three API servers and the ticker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .core import Cloud, CloudConfig, Hooks, Timings
from .counters import RequestCounters
from .faults import Faults, Injected
from .state import Store

if TYPE_CHECKING:
    from .oneflow import FlowEngine

log = logging.getLogger("opennebula_emulator")


class Runtime:
    def __init__(self, store: Store, config: CloudConfig, timings: Timings, hooks: Hooks) -> None:
        self.store = store
        self.config = config
        self.timings = timings
        self.hooks = hooks
        self.cloud = Cloud(store, config, timings)
        self.counters = RequestCounters()
        self.faults = Faults()
        self.flow: FlowEngine | None = None
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="one-emu-hook")
        self.options: dict[str, object] = {
            # Model Rack 3's consumed request body (OpenNebula/one#7954): JSON bodies sent as
            # application/x-www-form-urlencoded (or POST without Content-Type) are read as "".
            # The measured 7.0.2 front-end accepted such bodies, so this is off by default.
            "rack3_form_body_bug": False,
        }

    def arrive(self, api: str, key: str) -> None:
        """A request for ``key`` reached ``api``: counted, unless a fault answers it first
        (:class:`~.faults.Injected`, which the HTTP server turns into the fault)."""
        fault = self.faults.take(api, key, after=False)
        if fault is not None:
            raise Injected(fault)
        self.counters.hit(api, key)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store lock; VM events raised meanwhile are handed to the hooks afterwards."""
        with self.store.lock:
            try:
                yield
            finally:
                events = list(self.cloud.events)
                self.cloud.events.clear()
        for kind, vm in events:
            hook = self.hooks.on_vm_create if kind == "create" else self.hooks.on_vm_delete
            if hook is not None:
                self._executor.submit(self._run_hook, hook, vm)

    @staticmethod
    def _run_hook(hook, vm) -> None:
        try:
            hook(vm)
        except Exception:  # a failing hook must not kill the emulator
            log.exception("hook %r failed for VM %s", hook, vm.id)

    def tick(self) -> None:
        with self.locked():
            self.cloud.tick()
            if self.flow is not None:
                self.flow.tick()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
