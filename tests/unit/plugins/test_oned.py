"""oned reads: one infoset call for all VMs, per-range fallback, TLS settings reaching pyone."""

from __future__ import annotations

import threading
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_auth import Credentials
from ansible_collections.opennebula.flower.plugins.module_utils._oned import (
    OnedClient,
    OnedError,
    https_verify,
    id_ranges,
)


def test_id_ranges():
    assert id_ranges([5, 1, 2, 3, 200, 201, 30]) == [(1, 30), (200, 201)]
    assert id_ranges([1, 40]) == [(1, 1), (40, 40)]
    assert id_ranges([7]) == [(7, 7)]
    assert id_ranges([1, 100], gap=10) == [(1, 1), (100, 100)]


def test_https_verify_values():
    assert https_verify(True, None) is True
    assert https_verify(True, "/ca.pem") == "/ca.pem"
    assert https_verify(False, "/ca.pem") is False


class FakePool:
    def __init__(self, ids):
        self.VM = [{"ID": str(i), "NAME": f"vm{i}", "STATE": "3", "LCM_STATE": "3"} for i in ids]


class FakeServer:
    def __init__(self, refuse_infoset=False):
        self.log = []
        server = self

        class VmPool:
            def infoset(self, ids, extended):
                server.log.append(("infoset", ids, extended))
                if refuse_infoset:
                    raise xmlrpc.client.Fault(-506, "Method not found")
                return FakePool(int(i) for i in ids.split(","))

            def infoextended(self, flt, first, last, state):
                server.log.append(("infoextended", flt, first, last, state))
                return FakePool(range(first, last + 1))

        self.vmpool = VmPool()


def test_one_infoset_call_for_all_vms():
    server = FakeServer()
    client = OnedClient(None, server=server)
    vms = client.vms([3, 1, 2, 3])
    assert sorted(vms) == [1, 2, 3]
    assert server.log == [("infoset", "1,2,3", True)]
    assert client.vms([]) == {}


def test_fallback_per_range_when_infoset_is_refused():
    server = FakeServer(refuse_infoset=True)
    client = OnedClient(None, server=server)
    vms = client.vms([1, 2, 5, 300])
    assert sorted(vms) == [1, 2, 5, 300]  # only the requested ids, not 3 and 4
    assert server.log[1:] == [("infoextended", -2, 1, 5, -2), ("infoextended", -2, 300, 300, -2)]
    assert "Method not found" in client.infoset_refused
    client.vms([1])  # refused once: straight to the fallback afterwards
    assert [c[0] for c in server.log].count("infoset") == 1


# ------------------------------------------------------------- real pyone, fake oned over TLS
def start_oned(tls, sample_text, with_infoset=True):
    pool_xml = sample_text("oned-xmlrpc-one.vmpool.infoextended.xml")
    calls = []

    class Handler(SimpleXMLRPCRequestHandler):
        rpc_paths = ("/RPC2",)

        def log_message(self, *args):
            pass

    server = SimpleXMLRPCServer(("127.0.0.1", 0), Handler, allow_none=True, logRequests=False)
    server.socket = tls["server_context"]().wrap_socket(server.socket, server_side=True)

    def infoset(session, ids, extended):
        calls.append(("one.vmpool.infoset", session, ids, extended))
        return [True, pool_xml, 0]

    def infoextended(session, flt, first, last, state):
        calls.append(("one.vmpool.infoextended", session, flt, first, last, state))
        return [True, pool_xml, 0]

    if with_infoset:
        server.register_function(infoset, "one.vmpool.infoset")
    server.register_function(infoextended, "one.vmpool.infoextended")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return server, f"https://127.0.0.1:{server.server_address[1]}/RPC2", calls


@pytest.fixture
def oned(tls, sample_text):
    pytest.importorskip("pyone")
    servers = []

    def make(**kw):
        server, url, calls = start_oned(tls, sample_text, **kw)
        servers.append(server)
        return url, calls

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def test_pyone_with_ca_path_reads_all_vms_in_one_call(oned, tls):
    url, calls = oned()
    creds = Credentials(url, "oneadmin", "pa:ss", "test")
    client = OnedClient(creds, ca_path=tls["ca"], retries=0)
    vms = client.vms([1, 2, 3, 4])
    assert sorted(vms) == [1, 2, 3, 4]
    assert vms[2]["USER_TEMPLATE"]["FL_ENDPOINT"] == "10.0.0.5:9092"
    assert calls == [("one.vmpool.infoset", "oneadmin:pa:ss", "1,2,3,4", True)]


def test_pyone_tls_verification_is_real(oned, tls):
    url, _ = oned()
    creds = Credentials(url, "oneadmin", "x", "test")
    with pytest.raises(OnedError, match="infoset failed"):
        OnedClient(creds, retries=0).vms([1])  # system trust store: unknown CA
    assert sorted(OnedClient(creds, validate_certs=False, retries=0).vms([1])) == [1]


def test_pyone_fallback_against_an_oned_without_infoset(oned, tls):
    url, calls = oned(with_infoset=False)
    client = OnedClient(Credentials(url, "u", "p", "test"), ca_path=tls["ca"], retries=0)
    vms = client.vms([1, 2, 3, 4])
    assert sorted(vms) == [1, 2, 3, 4]
    assert calls == [("one.vmpool.infoextended", "u:p", -2, 1, 4, -2)]
    assert client.calls == ["one.vmpool.infoset", "one.vmpool.infoextended"]


def test_auth_errors_are_not_hidden_by_the_fallback():
    pyone = pytest.importorskip("pyone")

    class Refusing:
        class vmpool:
            @staticmethod
            def infoset(ids, extended):
                raise pyone.OneAuthenticationException(
                    "[one.vmpool.infoset] User couldn't be authenticated"
                )

    with pytest.raises(OnedError, match="authenticated"):
        OnedClient(None, server=Refusing()).vms([1])


def test_transport_errors_do_not_trigger_the_fallback():
    class Broken:
        class vmpool:
            @staticmethod
            def infoset(ids, extended):
                raise OSError("network is unreachable")

            @staticmethod
            def infoextended(*args):
                raise AssertionError("must not be called")

    with pytest.raises(OnedError, match="unreachable"):
        OnedClient(None, server=Broken(), retries=0).vms([1])
