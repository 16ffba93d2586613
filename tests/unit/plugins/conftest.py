"""Shared fixtures for the plugin unit tests.

* Puts the collections path on ``sys.path`` so the code imports as
  ``ansible_collections.opennebula.flower...`` (``.collections`` of the checkout; when that does
  not exist yet, a temporary tree with a link to the checkout).
* ``sample``/``sample_text``: the responses recorded from a real OpenNebula 7.0.2
  (``tests/fixtures/one-samples``, the one copy of shared/reference/one-samples, which the
  emulator tests read too).
* ``replay``: a tiny ``http.server`` that answers scripted (usually recorded) responses and records
  every request, for the tests where an HTTP round trip matters.
* ``tls``: a throw-away CA and a server certificate for 127.0.0.1 (openssl CLI).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "fixtures" / "one-samples"


def _collections_path():
    checkout = ROOT / ".collections"
    if (checkout / "ansible_collections" / "opennebula" / "flower" / "plugins").is_dir():
        return str(checkout)
    tmp = Path(tempfile.mkdtemp(prefix="flower-collections-"))
    (tmp / "ansible_collections" / "opennebula").mkdir(parents=True)
    os.symlink(ROOT, tmp / "ansible_collections" / "opennebula" / "flower")
    return str(tmp)


if "ansible_collections.opennebula.flower" not in sys.modules:
    sys.path.insert(0, _collections_path())


def load_sample(name):
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def sample():
    return load_sample


@pytest.fixture
def sample_text():
    return lambda name: (SAMPLES / name).read_text()


class Recorded:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Recorded({self.method} {self.path})"


class ReplayServer:
    """Answers ``(method, path)`` with scripted responses, in order (the last one repeats).

    A response is ``(status, body)`` where body is a dict/list (sent as JSON), str or bytes, or a
    callable taking the :class:`Recorded` request and returning such a tuple. ``(None, None)``
    closes the connection without an answer, once the request has been read.
    """

    def __init__(self, ssl_context=None):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(self.command, self.path, self.headers, body)  # case-insensitive
                server.requests.append(record)
                status, payload = server._answer(record)
                if status is None:
                    self.close_connection = True
                    return
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    data = payload.encode()
                else:
                    data = payload or b""
                self.send_response(status)
                # OneFlow/OneGate send JSON with a text/html or json content type: clients must
                # not depend on it.
                self.send_header("Content-Type", "text/html;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def add(self, method, path, *responses):
        self.routes.setdefault((method, path), []).extend(responses)
        return self

    def _answer(self, record):
        path = record.path
        queue = self.routes.get((record.method, path)) or self.routes.get(
            (record.method, path.split("?", 1)[0])
        )
        if not queue:
            return 404, "<h1>Not Found</h1>"
        response = queue[0] if len(queue) == 1 else queue.pop(0)
        if callable(response):
            response = response(record)
        return response

    def calls(self, method=None, path=None):
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def replay():
    servers = []

    def make(ssl_context=None):
        server = ReplayServer(ssl_context)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """CA + server certificate for 127.0.0.1; returns dict of paths and a server SSLContext."""
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available")
    tmp = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (tmp / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "ext.cnf")  # fmt: skip

    def server_context():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
        return context

    return {"ca": str(tmp / "ca.pem"), "server_context": server_context}


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


@pytest.fixture
def run_module(monkeypatch):
    """Run a module's ``main()`` with arguments; return (result, failed)."""
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, False)

    def fail_json(self, msg, **kwargs):
        kwargs["msg"] = msg
        raise ModuleExit(kwargs, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(main, args, check_mode=False, diff=False):
        args = dict(args)
        if check_mode:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        with patch_module_args(args), pytest.raises(ModuleExit) as info:
            main()
        return info.value.result, info.value.failed

    return run


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No OpenNebula variables from the caller's environment, and an empty HOME."""
    for name in list(os.environ):
        if name.startswith(("ONE_", "ONEFLOW_", "ONEGATE_")) or name in ("VMID", "TOKENTXT"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path
