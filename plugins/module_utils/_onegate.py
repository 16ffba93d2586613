# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""OneGate client, as used from inside a VM.

Where the connection comes from (first one set wins, per value):

* endpoint: option ``onegate_endpoint`` -> ``$ONEGATE_ENDPOINT`` -> ``ONEGATE_ENDPOINT`` in
  one_env;
* VM id (the ``X-ONEGATE-VMID`` header): option ``onegate_vmid`` -> ``$VMID`` -> ``VMID`` in
  one_env;
* token (``X-ONEGATE-TOKEN``): option ``onegate_token`` -> the file named by option
  ``onegate_token_file`` -> ``$TOKENTXT`` -> ``TOKENTXT`` in one_env ->
  ``/run/one-context/token.txt``.

one_env (``/run/one-context/one_env``, written by one-context's ``loc-16-gen-env``) holds shell
``export VAR="value"`` lines. It is parsed as data, never executed: quotes and backslash escapes
are honoured, ``$VAR`` references are left as they are.

``PUT /vm`` (``/vms/:id``) sends the form fields ``data`` and ``type`` the way the one-apps client
does (``data=K%3DV&type=1``): ``type=1`` merges ``KEY=value`` lines into the USER_TEMPLATE,
``type=2`` deletes the one attribute named in ``data``. OneGate quotes the values itself
(``escape_attr``) and treats ``,``, ``[``, ``]``, ``\\`` and ``"`` as structure, so values carrying
them (or newlines) are refused here rather than stored mangled; publish such data base64-encoded.
"""

from __future__ import annotations

import os
import re

from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    one_value,
    template_scalar,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    HTTPClient,
    OpenNebulaError,
)

DEFAULT_ONE_ENV = "/run/one-context/one_env"
FALLBACK_ONE_ENV = "/var/run/one-context/one_env"
DEFAULT_TOKEN_FILE = "/run/one-context/token.txt"  # noqa: S105 - a path, not a secret
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ASSIGN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
FORBIDDEN_VALUE_CHARS = {
    ",": "comma",
    "[": "'['",
    "]": "']'",
    "\\": "backslash",
    '"': "double quote",
    "\n": "newline",
    "\r": "carriage return",
}


class OneGateError(OpenNebulaError):
    pass


# ------------------------------------------------------------------------------------ one_env
def parse_one_env(text):
    """Parse shell assignments (``export K="v"``, ``K=v``, ``K='v'``) without executing anything.

    Double quotes: ``\\"``, ``\\\\``, ``\\$`` and ``\\``` are unescaped, other backslashes kept,
    newlines inside the quotes kept. Single quotes: literal. Lines that are not assignments
    (comments, blank, anything else) are ignored.
    """
    result = {}
    i, n = 0, len(text)
    while i < n:
        # start of a logical line: skip blanks
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] == "\n":
            i += 1
            continue
        if text[i] == "#":
            i = _skip_line(text, i)
            continue
        if text.startswith("export", i) and i + 6 < n and text[i + 6] in " \t":
            i += 6
            while i < n and text[i] in " \t":
                i += 1
        match = _ASSIGN_RE.match(text, i)
        if not match:
            i = _skip_line(text, i)
            continue
        key = match.group(0)[:-1]
        i = match.end()
        value, i = _read_shell_word(text, i)
        result[key] = value
        i = _skip_line(text, i)
    return result


def _skip_line(text, i):
    end = text.find("\n", i)
    return len(text) if end < 0 else end + 1


def _read_shell_word(text, i):
    out = []
    n = len(text)
    while i < n and text[i] not in " \t\n;":
        char = text[i]
        if char == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                    out.append(text[i + 1])
                    i += 2
                    continue
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    i += 2  # line continuation
                    continue
                out.append(text[i])
                i += 1
            i += 1  # closing quote (or end of text)
        elif char == "'":
            end = text.find("'", i + 1)
            end = n if end < 0 else end
            out.append(text[i + 1 : end])
            i = end + 1
        elif char == "\\" and i + 1 < n:
            if text[i + 1] != "\n":
                out.append(text[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def read_one_env(path):
    """(values, problem): the parsed file, or {} and why it could not be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return parse_one_env(handle.read()), None
    except FileNotFoundError:
        return {}, f"{path} does not exist"
    except OSError as exc:
        return {}, f"{path} is not readable ({exc.strerror or exc})"


def _read_token_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip(), None
    except FileNotFoundError:
        return None, f"{path} does not exist"
    except OSError as exc:
        return None, f"{path} is not readable ({exc.strerror or exc})"


class OneGateSettings:
    def __init__(self, endpoint, vmid, token, sources):
        self.endpoint = endpoint
        self.vmid = vmid
        self.token = token
        self.sources = sources  # value name -> where it came from (never the token itself)


def onegate_settings(params, env=None):
    """Resolve endpoint, VM id and token (see the module docstring for the precedence)."""
    env = os.environ if env is None else env
    problems = []
    one_env_path = params.get("one_env_file")
    if one_env_path:
        one_env, problem = read_one_env(one_env_path)
    else:
        one_env, problem = read_one_env(DEFAULT_ONE_ENV)
        if problem and not os.path.exists(DEFAULT_ONE_ENV):
            one_env, problem = read_one_env(FALLBACK_ONE_ENV)
            if problem:
                problem = f"{DEFAULT_ONE_ENV} and {FALLBACK_ONE_ENV} do not exist"
    if problem:
        problems.append(problem)
    env_file = one_env_path or DEFAULT_ONE_ENV
    sources = {}

    def pick(name, candidates):
        for origin, value in candidates:
            if value not in (None, ""):
                sources[name] = origin
                return value
        return None

    endpoint = pick(
        "endpoint",
        [
            ("option onegate_endpoint", params.get("onegate_endpoint")),
            ("$ONEGATE_ENDPOINT", env.get("ONEGATE_ENDPOINT")),
            (env_file, one_env.get("ONEGATE_ENDPOINT")),
        ],
    )
    vmid = pick(
        "vmid",
        [
            ("option onegate_vmid", params.get("onegate_vmid")),
            ("$VMID", env.get("VMID")),
            (env_file, one_env.get("VMID")),
        ],
    )
    token_candidates = [("option onegate_token", params.get("onegate_token"))]
    if params.get("onegate_token_file"):
        value, problem = _read_token_file(params["onegate_token_file"])
        if problem:
            raise OneGateError(f"onegate_token_file: {problem}")
        token_candidates.append((params["onegate_token_file"], value))
    token_candidates += [("$TOKENTXT", env.get("TOKENTXT")), (env_file, one_env.get("TOKENTXT"))]
    token = pick("token", token_candidates)
    if token is None and not params.get("onegate_token_file"):
        value, problem = _read_token_file(DEFAULT_TOKEN_FILE)
        if problem:
            problems.append(problem)
        token = pick("token", [(DEFAULT_TOKEN_FILE, value)])

    missing = [
        label
        for label, value in (
            (
                "endpoint (onegate_endpoint, $ONEGATE_ENDPOINT, ONEGATE_ENDPOINT in one_env)",
                endpoint,
            ),
            ("VM id (onegate_vmid, $VMID, VMID in one_env)", vmid),
            ("token (onegate_token, onegate_token_file, $TOKENTXT, one_env, token.txt)", token),
        )
        if value in (None, "")
    ]
    if missing:
        why = f" ({'; '.join(problems)})" if problems else ""
        raise OneGateError(
            "OneGate settings missing: " + ", ".join(missing) + why + ". Is this a VM with "
            "CONTEXT TOKEN=YES, and does the task run as root (one_env and token.txt are 0400)?"
        )
    vmid_text = str(vmid).strip()
    if not vmid_text.isdigit():
        raise OneGateError(f"VM id must be a number, got {vmid_text!r} from {sources['vmid']}")
    return OneGateSettings(endpoint.strip(), int(vmid_text), str(token).strip(), sources)


# ------------------------------------------------------------------------ attribute handling
def normalize_attributes(attributes):
    """Validate and normalise ``{key: value}``: keys upper-cased (oned stores them so), values
    rendered as OpenNebula strings (booleans -> YES/NO)."""
    out = {}
    for key, value in (attributes or {}).items():
        name = str(key).strip().upper()
        if not KEY_RE.match(name):
            raise OneGateError(
                f"attribute name {key!r} is not valid: use letters, digits and '_' "
                "(not starting with a digit)"
            )
        if value is None:
            raise OneGateError(f"attribute {name} has no value; list it in 'remove' to delete it")
        if isinstance(value, (dict, list)):
            raise OneGateError(
                f"attribute {name}: only scalar values can be published through OneGate"
            )
        text = one_value(value)
        bad = sorted({label for char, label in FORBIDDEN_VALUE_CHARS.items() if char in text})
        if bad:
            raise OneGateError(
                f"attribute {name}: the value contains {', '.join(bad)}, which OneGate's "
                "escaping turns into template syntax; publish it base64-encoded instead"
            )
        if name in out and out[name] != text:
            raise OneGateError(f"attribute {name} is given twice with different values")
        out[name] = text
    return out


def normalize_keys(keys):
    out = []
    for key in keys or []:
        name = str(key).strip().upper()
        if not KEY_RE.match(name):
            raise OneGateError(f"attribute name {key!r} is not valid")
        if name not in out:
            out.append(name)
    return out


def compute_changes(user_template, attributes=None, remove=None):
    """What ``PUT /vm`` must do to get ``attributes`` set and ``remove`` gone.

    Returns a dict with ``set`` ({key: value} that differ), ``remove`` (keys present now),
    and ``before``/``after`` restricted to the affected keys (the diff mode view).
    """
    desired = normalize_attributes(attributes)
    drop = normalize_keys(remove)
    both = sorted(set(desired) & set(drop))
    if both:
        raise OneGateError(f"attributes both set and removed: {', '.join(both)}")
    current = {str(k).upper(): v for k, v in (user_template or {}).items()}
    to_set = {}
    for key, value in desired.items():
        if key not in current or template_scalar(current[key]) != value:
            to_set[key] = value
    to_remove = [key for key in drop if key in current]
    before, after = {}, {}
    for key in list(to_set) + to_remove:
        if key in current:
            before[key] = template_scalar(current[key])
    after.update(to_set)
    return {"set": to_set, "remove": to_remove, "before": before, "after": after}


def encode_update(attributes):
    """Body text of a ``type=1`` update: ``KEY=value`` lines (OneGate adds the quotes)."""
    return "\n".join(f"{key}={value}" for key, value in attributes.items())


# ------------------------------------------------------------------------------------ client
class OneGateClient:
    def __init__(
        self, settings, validate_certs=True, ca_path=None, timeout=30, retries=3, sleep=None
    ):
        kwargs = {}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self.settings = settings
        self.http = HTTPClient(
            settings.endpoint,
            headers={
                "X-ONEGATE-TOKEN": settings.token,
                "X-ONEGATE-VMID": str(settings.vmid),
            },
            validate_certs=validate_certs,
            ca_path=ca_path,
            timeout=timeout,
            retries=retries,
            **kwargs,
        )

    @staticmethod
    def _vm_path(vm_id):
        return "/vm" if vm_id is None else f"/vms/{int(vm_id)}"

    def get_vm(self, vm_id=None):
        _status, data = self.http.request("GET", self._vm_path(vm_id))
        if not isinstance(data, dict) or "VM" not in data:
            raise OneGateError(f"unexpected answer to GET {self._vm_path(vm_id)}: {data!r:.200}")
        return data

    def update_vm(self, attributes, vm_id=None):
        """Merge ``{key: value}`` into the USER_TEMPLATE in one request (``type=1``)."""
        if not attributes:
            return
        body = {"data": encode_update(attributes), "type": "1"}
        self.http.request("PUT", self._vm_path(vm_id), form=body)

    def delete_vm_attribute(self, key, vm_id=None):
        """Delete one USER_TEMPLATE attribute (``type=2``; the server takes one name per call)."""
        self.http.request("PUT", self._vm_path(vm_id), form={"data": key, "type": "2"})

    def get_service(self, extended=False):
        query = {"extended": "true"} if extended else None
        _status, data = self.http.request("GET", "/service", query=query)
        if not isinstance(data, dict) or "SERVICE" not in data:
            raise OneGateError(f"unexpected answer to GET /service: {data!r:.200}")
        return data

    def scale_role(self, role, cardinality):
        """``PUT /service/role/<role>`` with a JSON body (works on 6.10 and 7.0/Rack 3)."""
        self.http.request(
            "PUT", f"/service/role/{role}", json_body={"cardinality": int(cardinality)}
        )


def onegate_argument_spec():
    return {
        "onegate_endpoint": {"type": "str"},
        "onegate_vmid": {"type": "int"},
        "onegate_token": {"type": "str", "no_log": True},
        "onegate_token_file": {"type": "path", "no_log": False},
        "one_env_file": {"type": "path"},
    }
