"""HTTP layer: error text keeps status and server message, retries with backoff, TLS settings."""

from __future__ import annotations

import base64
import errno
import json
import socket
import ssl
import time
from http.client import RemoteDisconnected

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    HTTPClient,
    OpenNebulaHTTPError,
    backoff_delays,
    format_server_body,
    is_retryable,
)


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def test_format_plain_json_and_html_bodies():
    assert format_server_body(b"[one.document.info] Error getting document [99].") == (
        "[one.document.info] Error getting document [99]."
    )
    body = json.dumps({"message": "Internal server error", "reason": "unexpected token at ''"})
    assert format_server_body(body) == "Internal server error: unexpected token at ''"
    html = "<!DOCTYPE html><html><body><h2>Sinatra doesn't know this ditty.</h2></body></html>"
    assert format_server_body(html) == "Sinatra doesn't know this ditty."
    assert format_server_body("x" * 5000).endswith("(truncated)")


def test_error_message_has_method_url_status_and_text():
    exc = OpenNebulaHTTPError(
        "POST", "http://flow/service_template/0/action", 400,
        b"Verify that every User Input have its corresponding value defined", "Bad Request",
    )  # fmt: skip
    text = str(exc)
    assert "POST http://flow/service_template/0/action" in text
    assert "HTTP 400" in text
    assert "Verify that every User Input have its corresponding value defined" in text
    conn = OpenNebulaHTTPError("GET", "http://x/vm", None, "", "ConnectionRefusedError: nope", 4)
    assert "after 4 attempts" in str(conn) and "ConnectionRefusedError" in str(conn)


def test_backoff_delays_exponential_and_capped():
    assert backoff_delays(5, initial=1, factor=2, cap=5) == [1, 2, 4, 5, 5]
    assert backoff_delays(0) == []


def test_retry_policy():
    """Retried: idempotent methods, and whatever failed before it was sent."""
    assert is_retryable("GET", 500)
    assert is_retryable("DELETE", 503)
    assert is_retryable("PUT", None, ConnectionResetError())
    assert is_retryable("GET", None, TimeoutError())
    assert not is_retryable("GET", 404)
    assert not is_retryable("GET", None, ssl.SSLCertVerificationError())
    for status in (500, 502, 503, 504):  # OneFlow may have acted, behind a proxy too
        assert not is_retryable("POST", status)
    assert is_retryable("POST", None, ConnectionRefusedError())
    assert is_retryable("POST", None, socket.gaierror(socket.EAI_NONAME, "Name not known"))
    assert is_retryable("POST", None, OSError(errno.EHOSTUNREACH, "No route to host"))
    assert is_retryable("POST", None, OSError(errno.ENETUNREACH, "Network is unreachable"))
    # sent, the answer lost: the server may have acted
    assert not is_retryable("POST", None, TimeoutError())
    assert not is_retryable("POST", None, ConnectionResetError())
    assert not is_retryable("POST", None, RemoteDisconnected("closed"))


def test_json_body_content_type_and_basic_auth(replay):
    server = replay().add("POST", "/service/1/scale", (204, b""))
    client = HTTPClient(server.url, username="oneadmin", password="pa:ss", retries=0)
    status, data = client.request(
        "POST",
        "/service/1/scale",
        json_body={"role_name": "supernode", "cardinality": 2, "force": False},
    )
    assert (status, data) == (204, None)
    (req,) = server.requests
    assert req.headers["Content-Type"] == "application/json"
    assert req.json() == {"role_name": "supernode", "cardinality": 2, "force": False}
    expected = "Basic " + base64.b64encode(b"oneadmin:pa:ss").decode()
    assert req.headers["Authorization"] == expected


def test_json_answer_parsed_whatever_the_content_type(replay, sample):
    server = replay().add(
        "GET", "/service_template", (200, sample("oneflow-service_template-list.json"))
    )
    _, data = HTTPClient(server.url, retries=0).request("GET", "/service_template")
    assert data["DOCUMENT_POOL"]["DOCUMENT"][0]["NAME"] == "flower-fl"


def test_5xx_is_retried_with_backoff_then_succeeds(replay):
    server = replay().add(
        "GET", "/service/1", (503, "busy"), (502, "proxy"), (200, {"DOCUMENT": {"ID": "1"}})
    )
    sleeps = Sleeps()
    client = HTTPClient(server.url, retries=3, sleep=sleeps)
    _, data = client.request("GET", "/service/1")
    assert data == {"DOCUMENT": {"ID": "1"}}
    assert sleeps == [1.0, 2.0]
    assert len(server.requests) == 3


def test_retries_exhausted_keep_last_status_and_text(replay):
    server = replay().add("GET", "/vm", (500, "Internal server error"))
    sleeps = Sleeps()
    client = HTTPClient(server.url, retries=2, sleep=sleeps)
    with pytest.raises(OpenNebulaHTTPError) as info:
        client.request("GET", "/vm")
    assert info.value.status == 500
    assert info.value.attempts == 3
    assert "Internal server error" in str(info.value)
    assert sleeps == [1.0, 2.0]


def test_post_that_may_have_reached_the_server_is_sent_once(replay):
    """502/503/504, a connection closed after the request and a read timeout: one POST each;
    the same failures of a GET are retried."""
    server = replay()
    for status in (502, 503, 504):
        server.add("POST", f"/service/{status}/scale", (status, "<h1>Bad Gateway</h1>"))
    server.add("POST", "/service/1/action", (None, None))
    server.add("POST", "/service_template/0/action", lambda r: (time.sleep(1.5), (None, None))[1])
    server.add("GET", "/service/1", (None, None), (502, "proxy"), (200, {"DOCUMENT": {"ID": "1"}}))
    sleeps = Sleeps()
    client = HTTPClient(server.url, retries=3, timeout=0.5, sleep=sleeps)
    paths = [f"/service/{s}/scale" for s in (502, 503, 504)]
    for path in [*paths, "/service/1/action", "/service_template/0/action"]:
        with pytest.raises(OpenNebulaHTTPError) as info:
            client.request("POST", path, json_body={})
        assert info.value.attempts == 1, path
    assert sleeps == []
    assert len(server.requests) == 5
    assert client.request("GET", "/service/1") == (200, {"DOCUMENT": {"ID": "1"}})
    assert sleeps == [1.0, 2.0]


def test_4xx_and_post_500_are_not_retried(replay):
    server = replay().add("GET", "/vm", (401, "Not authorized"))
    server.add("POST", "/service_template/0/action", (500, "Service cannot be scaled in state"))
    sleeps = Sleeps()
    client = HTTPClient(server.url, retries=3, sleep=sleeps)
    with pytest.raises(OpenNebulaHTTPError) as info:
        client.request("GET", "/vm")
    assert (info.value.status, info.value.server_text) == (401, "Not authorized")
    with pytest.raises(OpenNebulaHTTPError):
        client.request("POST", "/service_template/0/action", json_body={})
    assert sleeps == []
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_reported():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sleeps = Sleeps()
    client = HTTPClient(f"http://127.0.0.1:{port}", retries=2, sleep=sleeps)
    with pytest.raises(OpenNebulaHTTPError) as info:
        client.request("POST", "/service/1/scale", json_body={})
    assert info.value.status is None
    assert info.value.attempts == 3
    assert sleeps == [1.0, 2.0]


def test_tls_verification_uses_ca_path(replay, tls):
    server = replay(tls["server_context"]()).add("GET", "/vm", (200, {"VM": {"ID": "1"}}))
    # system trust store: the private CA is unknown -> fails, and is not retried
    sleeps = Sleeps()
    with pytest.raises(OpenNebulaHTTPError) as info:
        HTTPClient(server.url, retries=3, sleep=sleeps).request("GET", "/vm")
    assert info.value.status is None and "certificate" in str(info.value).lower()
    assert sleeps == []
    # ca_path reaches the TLS context
    _, data = HTTPClient(server.url, ca_path=tls["ca"], retries=0).request("GET", "/vm")
    assert data == {"VM": {"ID": "1"}}
    # validate_certs=False really disables verification
    _, data = HTTPClient(server.url, validate_certs=False, retries=0).request("GET", "/vm")
    assert data == {"VM": {"ID": "1"}}
