# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""Reading VMs from oned over XML-RPC with pyone (optional dependency).

OneFlow stores only ID/NAME per node, so IPs and USER_TEMPLATE keys (READY, FL_*) come from oned.
All VMs of a service are read in **one** call, ``one.vmpool.infoset("<id>,<id>,...", true)``
(oned ``VirtualMachinePoolInfoSet``, signature ``A:ssb`` in 7.x: session, comma-separated ids,
extended). When oned refuses that call (an older oned without it, or a proxy that only allows some
methods) the VMs are read per id range with ``one.vmpool.infoextended(-2, first, last, -2)``
(all VMs the user can see, in any state, DONE included as infoset returns them), one call per
run of ids with gaps of at most :data:`RANGE_GAP`, keeping only the requested ids.
Authentication/authorization failures are not retried that way: they would fail the same.

TLS: pyone posts with ``requests`` and passes its ``https_verify`` to ``requests``' ``verify``, so
``validate_certs=false`` -> ``False`` and ``ca_path`` -> the CA bundle path really apply.
"""

from __future__ import annotations

import time
import traceback
import xmlrpc.client

from ansible_collections.opennebula.flower.plugins.module_utils._one_auth import oned_credentials
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    OpenNebulaError,
    backoff_delays,
)

try:
    import pyone

    HAS_PYONE = True
    PYONE_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised where pyone is absent
    pyone = None
    HAS_PYONE = False
    PYONE_IMPORT_ERROR = traceback.format_exc()

RANGE_GAP = 32


class OnedError(OpenNebulaError):
    pass


def https_verify(validate_certs=True, ca_path=None):
    """Value for pyone's ``https_verify`` (requests' ``verify``)."""
    if not validate_certs:
        return False
    return ca_path or True


def id_ranges(ids, gap=RANGE_GAP):
    """Sorted ids -> [(first, last), ...], splitting where two ids are more than ``gap`` apart."""
    ordered = sorted(set(int(i) for i in ids))
    ranges = []
    for vm_id in ordered:
        if ranges and vm_id - ranges[-1][1] <= gap:
            ranges[-1] = (ranges[-1][0], vm_id)
        else:
            ranges.append((vm_id, vm_id))
    return ranges


def _is_auth_error(exc):
    if pyone is None:
        return False
    return isinstance(exc, (pyone.OneAuthenticationException, pyone.OneAuthorizationException))


def _is_refusal(exc):
    """oned answered, but not with the VMs: an XML-RPC fault (unknown method) or an OpenNebula
    error other than authentication/authorization. Transport and TLS errors are not refusals."""
    if isinstance(exc, xmlrpc.client.Fault):
        return True
    if pyone is not None and isinstance(exc, pyone.OneException):
        return not _is_auth_error(exc)
    return False


def _transient(exc):
    try:
        import requests
    except ImportError:  # pragma: no cover
        return isinstance(exc, (ConnectionError, xmlrpc.client.ProtocolError))
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return exc.errcode >= 500
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def vm_to_dict(vm):
    """pyone VM object (or a dict) -> the dict :func:`vm_summary` reads."""
    if isinstance(vm, dict):
        return vm
    return {
        "ID": getattr(vm, "ID", None),
        "NAME": getattr(vm, "NAME", None),
        "STATE": getattr(vm, "STATE", None),
        "LCM_STATE": getattr(vm, "LCM_STATE", None),
        "TEMPLATE": dict(getattr(vm, "TEMPLATE", None) or {}),
        "USER_TEMPLATE": dict(getattr(vm, "USER_TEMPLATE", None) or {}),
    }


class OnedClient:
    def __init__(
        self,
        credentials,
        validate_certs=True,
        ca_path=None,
        timeout=None,
        retries=3,
        sleep=time.sleep,
        server=None,
    ):
        """``server``: an object with pyone's interface (tests inject fakes); default pyone."""
        self.retries = retries
        self.sleep = sleep
        self.calls = []  # XML-RPC method names actually called
        self.infoset_refused = None
        if server is None:
            if not HAS_PYONE:
                raise OnedError("pyone is required to read VMs from oned")
            server = pyone.OneServer(
                credentials.url,
                session=credentials.session,
                timeout=timeout,
                https_verify=https_verify(validate_certs, ca_path),
            )
        self.one = server

    def _call(self, name, func, *args):
        delays = backoff_delays(self.retries)
        attempt = 0
        while True:
            attempt += 1
            self.calls.append(name)
            try:
                return func(*args)
            except Exception as exc:
                if attempt > len(delays) or not _transient(exc):
                    raise
                self.sleep(delays[attempt - 1])

    def vms(self, ids):
        """{id: VM dict} for ``ids`` (VMs oned does not return are simply absent)."""
        wanted = sorted(set(int(i) for i in ids))
        if not wanted:
            return {}
        if self.infoset_refused:  # refused once: do not ask again on every poll
            return self._vms_by_range(wanted)
        try:
            pool = self._call(
                "one.vmpool.infoset",
                self.one.vmpool.infoset,
                ",".join(str(i) for i in wanted),
                True,
            )
            self.infoset_refused = False
        except Exception as exc:
            if not _is_refusal(exc):
                raise OnedError(f"one.vmpool.infoset failed: {exc}") from exc
            self.infoset_refused = str(exc)
            return self._vms_by_range(wanted)
        return self._select(pool, wanted)

    def vm_action(self, action, vm_id):
        """``one.vm.action(action, vm_id)`` (e.g. ``resume``), sent once: repeating an action
        whose answer was lost would be refused for the VM's new state."""
        self.calls.append("one.vm.action")
        try:
            return self.one.vm.action(action, int(vm_id))
        except Exception as exc:
            raise OnedError(f"one.vm.action({action!r}, {vm_id}) failed: {exc}") from exc

    def _vms_by_range(self, wanted):
        found = {}
        for first, last in id_ranges(wanted):
            try:
                pool = self._call(
                    "one.vmpool.infoextended",
                    self.one.vmpool.infoextended,
                    -2,
                    first,
                    last,
                    -2,
                )
            except Exception as exc:
                raise OnedError(
                    f"one.vmpool.infoextended(-2, {first}, {last}, -2) failed: {exc}"
                ) from exc
            found.update(self._select(pool, wanted))
        return found

    @staticmethod
    def _select(pool, wanted):
        vms = getattr(pool, "VM", None)
        if vms is None and isinstance(pool, dict):
            vms = pool.get("VM")
        out = {}
        for vm in vms or []:
            data = vm_to_dict(vm)
            try:
                vm_id = int(data.get("ID"))
            except (TypeError, ValueError):
                continue
            if vm_id in wanted:
                out[vm_id] = data
        return out


def client_from_params(params, env=None, server=None):
    """oned client from module parameters (see ``_one_auth`` for the precedence)."""
    return OnedClient(
        oned_credentials(params, env),
        validate_certs=params.get("validate_certs", True),
        ca_path=params.get("ca_path"),
        timeout=params.get("request_timeout"),
        retries=params.get("retries", 3),
        server=server,
    )
