# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""HTTP plumbing shared by the OneFlow and OneGate clients.

* Requests go through ``ansible.module_utils.urls.Request``, so ``validate_certs`` and ``ca_path``
  end up in the TLS context that urllib really uses.
* JSON bodies are always sent with ``Content-Type: application/json`` (OneFlow/OneGate 7.0 on
  Rack 3 answer 500 ``unexpected token at ''`` to form-encoded JSON); form bodies (OneGate
  ``PUT /vm``) are sent as ``application/x-www-form-urlencoded``.
* Errors become :class:`OpenNebulaHTTPError`, which keeps the method, the URL, the HTTP status and
  the server's response text (plain text, or the ``message``/``reason`` of a JSON error body).
* Failed requests are retried with exponential backoff when sending them again cannot do
  anything twice (see :func:`is_retryable`).
"""

from __future__ import annotations

import errno
import json
import re
import socket
import ssl
import time
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import ConnectionError as AnsibleConnectionError
from ansible.module_utils.urls import Request, SSLValidationError

USER_AGENT = "opennebula.flower (Ansible)"
MAX_BODY_IN_MESSAGE = 2000
IDEMPOTENT_METHODS = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")


class OpenNebulaError(Exception):
    """Base class of every error the collection's clients raise."""


class OpenNebulaHTTPError(OpenNebulaError):
    """A request failed: HTTP error status, or no answer at all (``status`` is None)."""

    def __init__(self, method, url, status=None, body="", reason=None, attempts=1):
        self.method = method
        self.url = url
        self.status = status
        self.body = body if isinstance(body, str) else _decode(body)
        self.reason = reason
        self.attempts = attempts
        super().__init__(self.message)

    @property
    def server_text(self):
        """The server's answer, reduced to the useful text (JSON message/reason, or plain text)."""
        return format_server_body(self.body)

    @property
    def message(self):
        where = f"{self.method} {self.url}"
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        if self.status is None:
            return f"{where} failed{tries}: {self.reason or 'no response'}"
        text = self.server_text
        head = f"{where} failed{tries}: HTTP {self.status}"
        if self.reason and not text:
            head += f" {self.reason}"
        return f"{head}: {text}" if text else head


def _decode(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data)


_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


def format_server_body(body):
    """Reduce an error body to one readable string, never dropping the server's message.

    OneFlow/OneGate errors are plain text; uncaught OneFlow exceptions are JSON
    ``{"message": ..., "reason": ...}``; unknown routes get Sinatra's HTML page.
    """
    text = _decode(body).strip()
    if not text:
        return ""
    if text[0] in "{[":
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and ("message" in data or "reason" in data):
            parts = [str(data[k]) for k in ("message", "reason") if data.get(k) not in (None, "")]
            text = ": ".join(parts)
        elif data is not None:
            text = json.dumps(data, sort_keys=True)
    elif text.lstrip().lower().startswith(("<!doctype", "<html", "<h1")):
        text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", text)).strip()
    if len(text) > MAX_BODY_IN_MESSAGE:
        text = text[:MAX_BODY_IN_MESSAGE] + "... (truncated)"
    return text


def backoff_delays(retries, initial=1.0, factor=2.0, cap=30.0):
    """Delays (seconds) slept before each of ``retries`` retries: initial, initial*factor, ..."""
    delays = []
    delay = float(initial)
    for _attempt in range(max(0, int(retries))):
        delays.append(min(delay, float(cap)))
        delay *= float(factor)
    return delays


# Connection failures that leave the request unsent: refused, no route, no such address.
_NOT_SENT_ERRNOS = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)


def not_sent(reason):
    """Whether a request without an answer never left this machine (so the server did nothing)."""
    if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):  # gaierror: DNS
        return True
    return isinstance(reason, OSError) and reason.errno in _NOT_SENT_ERRNOS


def is_retryable(method, status, reason=None):
    """Whether a failed request may be sent again, i.e. whether repeating it cannot act twice.

    * Idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS): on any 5xx, and on any failure without
      an answer except TLS verification failures (not transient).
    * Other methods (POST: instantiate, scale, actions, template create): only when the connection
      failed before the request was sent (:func:`not_sent`). A POST that may have reached the
      server (any 5xx, 502/503/504 from a proxy included, a read timeout, a reset after sending)
      is not repeated: the caller looks at the server's state before it tries again.
    """
    if method.upper() in IDEMPOTENT_METHODS:
        if status is not None:
            return 500 <= status < 600
        return not isinstance(reason, (ssl.SSLCertVerificationError, SSLValidationError))
    return status is None and not_sent(reason)


class HTTPClient:
    """A small REST client bound to one base URL (injectable, so tests can point it anywhere)."""

    def __init__(
        self,
        base_url,
        username=None,
        password=None,
        headers=None,
        validate_certs=True,
        ca_path=None,
        timeout=30,
        retries=3,
        backoff_initial=1.0,
        backoff_factor=2.0,
        backoff_cap=30.0,
        sleep=time.sleep,
        user_agent=USER_AGENT,
    ):
        if not base_url:
            raise OpenNebulaError("no base URL given")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.retries = retries
        self.backoff = (backoff_initial, backoff_factor, backoff_cap)
        self.sleep = sleep
        self.user_agent = user_agent
        self.requests_sent = []  # (method, path) of every attempt; handy in tests and debugging
        auth = {}
        if username is not None or password is not None:
            auth = {
                "url_username": username or "",
                "url_password": password or "",
                "force_basic_auth": True,
            }
        self._request = Request(
            headers=self.headers,
            timeout=timeout,
            validate_certs=validate_certs,
            ca_path=ca_path,
            http_agent=user_agent,
            follow_redirects="safe",
            use_netrc=False,
            **auth,
        )

    def url(self, path, query=None):
        url = self.base_url + "/" + path.lstrip("/")
        if query:
            url += "?" + urlencode(query)
        return url

    def request(self, method, path, json_body=None, form=None, query=None, raw_body=None):
        """Send one request (with retries); return ``(status, data)``.

        ``data`` is the decoded JSON answer, the text when it is not JSON, or None when empty.
        """
        method = method.upper()
        url = self.url(path, query)
        headers = {"Accept": "application/json"}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urlencode(form).encode("utf-8")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif raw_body is not None:
            data = raw_body if isinstance(raw_body, bytes) else str(raw_body).encode("utf-8")
            headers["Content-Type"] = "text/plain"

        delays = backoff_delays(self.retries, *self.backoff)
        attempt = 0
        while True:
            attempt += 1
            self.requests_sent.append((method, path))
            status, body, reason = None, "", None
            try:
                resp = self._request.open(method, url, data=data, headers=headers)
                status = resp.getcode()
                body = resp.read()
                return status, _parse_body(body)
            except HTTPError as exc:
                status = exc.code
                reason = exc.reason
                try:
                    body = exc.read()
                except Exception:  # the body is best effort
                    body = ""
            except URLError as exc:
                reason = exc.reason
            except (AnsibleConnectionError, HTTPException, OSError) as exc:  # OSError: timeouts too
                reason = exc
            if attempt > len(delays) or not is_retryable(method, status, reason):
                raise OpenNebulaHTTPError(
                    method, url, status, body, _reason_text(reason), attempts=attempt
                )
            self.sleep(delays[attempt - 1])


def _reason_text(reason):
    if reason is None:
        return None
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed ({reason}); set ca_path to the CA that signed "
            "the server certificate, or validate_certs=false"
        )
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)


def _parse_body(body):
    text = _decode(body)
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_details(exc):
    """Extra ``fail_json`` fields for an HTTP error (status and the server's text stay visible)."""
    if isinstance(exc, OpenNebulaHTTPError):
        return {
            "method": exc.method,
            "url": exc.url,
            "status": exc.status,
            "server_message": exc.server_text,
        }
    return {}
