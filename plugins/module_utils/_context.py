# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""The appliances' context variables: validation, role variables and OneFlow user inputs.

Everything is driven by ``meta/context_variables.yml`` (the spec), which callers load and pass
in as parsed data (``load_spec`` checks its shape), so this file needs nothing but the standard
library.

* ``validate(spec, env, role)`` -> ``(values, errors)``: converts the context texts of the
  variables ``role`` reads (unset or empty: the default), checks them and the rules between them,
  and lists every problem at once. Each error names the variable, the given value (a secret's
  value never: its length only) and what is allowed. Unknown ``ONEAPP_FL_*`` names are errors
  too (a typo must not silently become the default).
* ``to_role_vars(spec, values, role)``: the role variables (``superlink_*``, ``supernode_*``,
  ``tls_*``) those values set.
* ``user_inputs(spec, role=None, schema="7.0")``: ``{NAME: "O|type|description|params|default"}``
  for a OneFlow service template (``user_inputs`` in 7.0, ``custom_attrs`` in 6.10, see
  ``USER_INPUTS_FIELD``).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import math
import re

ROLES = ("superlink", "supernode")
TYPES = ("string", "integer", "float", "boolean", "list", "enum", "address", "pem", "keyvalue")
PREFIXES = ("ONEAPP_FL_", "ONEAPP_FLOWER_")
USER_INPUTS_FIELD = {"7.0": "user_inputs", "6.10": "custom_attrs"}
ENTRY_KEYS = frozenset(
    {
        "name",
        "type",
        "default",
        "roles",
        "category",
        "description",
        "maps_to",
        "note",
        "choices",
        "min",
        "max",
        "pattern",
        "pattern_help",
        "pem_kind",
        "items",
        "secret",
        "aliases",
        "mandatory",
        "oneflow_roles",
        "examples",
    }
)

_NAME_RE = re.compile(r"^ONEAPP_[A-Z0-9_]+$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_DNS_SAN_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----")
_TOML_BARE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class SpecError(ValueError):
    """The spec itself is malformed."""


# ------------------------------------------------------------------------------------ the spec
def load_spec(data):
    """Check the parsed ``meta/context_variables.yml`` and return its list of variables."""
    if not isinstance(data, dict) or not isinstance(data.get("variables"), list):
        raise SpecError("the spec must be a mapping with a 'variables' list")
    problems = []
    seen = set()
    for index, entry in enumerate(data["variables"]):
        where = f"variables[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not a mapping")
            continue
        name = entry.get("name")
        where = f"{where} ({name})"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.append(f"{where}: name must be ONEAPP_ followed by A-Z, 0-9 and _")
        for alias in [name, *entry.get("aliases", [])]:
            if alias in seen:
                problems.append(f"{where}: {alias} is defined twice")
            seen.add(alias)
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(unknown)}")
        kind = entry.get("type")
        if kind not in TYPES:
            problems.append(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
        if kind == "enum" and not entry.get("choices"):
            problems.append(f"{where}: an enum needs choices")
        if entry.get("choices") and kind != "enum":
            problems.append(f"{where}: choices are only for enums")
        if any("," in str(c) or "|" in str(c) for c in entry.get("choices") or []):
            problems.append(f"{where}: choices cannot contain ',' or '|' (OneFlow list syntax)")
        if kind == "pem" and entry.get("pem_kind") not in ("CERTIFICATE", "PRIVATE KEY"):
            problems.append(f"{where}: pem_kind must be CERTIFICATE or PRIVATE KEY")
        if kind == "list" and entry.get("items") not in (None, "san", "cidr"):
            problems.append(f"{where}: items must be san or cidr (or absent)")
        if not isinstance(entry.get("default"), str):
            problems.append(f"{where}: default must be the context text (a string)")
        roles = entry.get("roles")
        if not roles or not isinstance(roles, list) or set(roles) - set(ROLES):
            problems.append(f"{where}: roles must be a list of {', '.join(ROLES)}")
            roles = []
        description = entry.get("description")
        if not isinstance(description, str) or not description.strip():
            problems.append(f"{where}: no description")
        elif "|" in description or "\n" in description.strip():
            problems.append(f"{where}: the description must be one line without '|'")
        maps_to = entry.get("maps_to")
        if maps_to is None:
            if not entry.get("note"):
                problems.append(f"{where}: maps_to is null, so a note must say what consumes it")
        elif not isinstance(maps_to, dict) or set(maps_to) - set(roles):
            problems.append(f"{where}: maps_to must map some of its roles to role variables")
        oneflow_roles = entry.get("oneflow_roles", roles)
        if not isinstance(oneflow_roles, list) or set(oneflow_roles) - set(roles):
            problems.append(f"{where}: oneflow_roles must be a list of some of its roles")
        if entry.get("secret") and oneflow_roles:
            problems.append(f"{where}: a secret is never a OneFlow user input (oneflow_roles: [])")
        examples = entry.get("examples")
        if (
            not isinstance(examples, dict)
            or not examples.get("valid")
            or not examples.get("invalid")
        ):
            problems.append(f"{where}: examples need at least one valid and one invalid value")
    if problems:
        raise SpecError("; ".join(problems))
    return data["variables"]


def _variables(spec):
    return spec["variables"] if isinstance(spec, dict) else spec


def for_role(spec, role):
    return [v for v in _variables(spec) if role is None or role in v["roles"]]


def oneflow_roles(var):
    """The roles of which the variable is a OneFlow user input (``oneflow_roles``, default: all
    its roles). Any VM of a service reads its siblings' CONTEXT through OneGate, so a secret is
    never one, and a value one role cannot use on a OneFlow VM is left to the others."""
    return list(var.get("oneflow_roles", var["roles"]))


# ------------------------------------------------------------------------------- conversions
class _Invalid(Exception):
    def __init__(self, reason, allowed):
        super().__init__(reason)
        self.reason = reason
        self.allowed = allowed


def allowed_text(var):
    """What the variable accepts, in words (used in errors and the docs)."""
    kind = var["type"]
    lo, hi = var.get("min"), var.get("max")
    if kind in ("integer", "float"):
        noun = "an integer" if kind == "integer" else "a number"
        if lo is not None and hi is not None:
            return f"{noun} from {lo} to {hi}"
        if lo is not None:
            return f"{noun} >= {lo}"
        if hi is not None:
            return f"{noun} <= {hi}"
        return noun
    if kind == "boolean":
        return "YES or NO"
    if kind == "enum":
        return "one of " + ", ".join(str(c) for c in var["choices"])
    if kind == "string":
        return var.get("pattern_help") or "any text"
    if kind == "address":
        return "host:port (IPv6 in brackets), port 1-65535"
    if kind == "pem":
        return f"a PEM {var['pem_kind'].lower()}, as text or base64-encoded"
    if kind == "list":
        if var.get("items") == "san":
            return "comma-separated IP:<address>, DNS:<name>, or plain addresses and names"
        if var.get("items") == "cidr":
            return (
                "comma-separated IPv4 or IPv6 networks or addresses (10.0.0.0/24, 192.0.2.7, "
                "fd00::/64), or nic_networks (the networks of the VM's NICs)"
            )
        return "comma-separated values"
    if kind == "keyvalue":
        return "space-separated key=value (keys: letters, digits, - and _; TOML values)"
    return "?"


def _convert(var, text):
    kind = var["type"]
    allowed = allowed_text(var)
    if kind == "string":
        pattern = var.get("pattern")
        if pattern and not re.search(pattern, text):
            raise _Invalid("does not match", allowed)
        return text
    if kind == "integer":
        if not _INT_RE.match(text):
            raise _Invalid("not an integer", allowed)
        return _bounded(var, int(text), allowed)
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise _Invalid("not a number", allowed) from None
        if not math.isfinite(number):
            raise _Invalid("not a finite number", allowed)
        return _bounded(var, number, allowed)
    if kind == "boolean":
        if text.upper() not in ("YES", "NO"):
            raise _Invalid("not a boolean", allowed)
        return text.upper() == "YES"
    if kind == "enum":
        if text not in [str(c) for c in var["choices"]]:
            close = difflib.get_close_matches(text, [str(c) for c in var["choices"]], 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _Invalid(f"not a choice{hint}", allowed)
        return text
    if kind == "address":
        return _address(text, allowed)
    if kind == "pem":
        return _pem(var, text, allowed)
    if kind == "list":
        items = [item.strip() for item in text.split(",") if item.strip()]
        check = {"san": _san_ok, "cidr": _cidr_ok}.get(var.get("items"))
        bad = [item for item in items if check and not check(item)]
        if bad:
            raise _Invalid("bad item " + ", ".join(repr(b) for b in bad), allowed)
        return items
    if kind == "keyvalue":
        return _keyvalue(text, allowed)
    raise _Invalid(f"unknown type {kind}", allowed)


def _bounded(var, number, allowed):
    lo, hi = var.get("min"), var.get("max")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise _Invalid("out of range", allowed)
    return number


def _host_ok(host):
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    if re.match(r"^[\d.]+$", host):
        try:
            ipaddress.IPv4Address(host)
            return True
        except ValueError:
            return False
    return bool(_HOSTNAME_RE.match(host))


def _address(text, allowed):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _Invalid("not host:port", allowed)
    if not _host_ok(host):
        raise _Invalid(f"{host!r} is not a host name or an IP address", allowed)
    return text


def _san_ok(item):
    kind, sep, value = item.partition(":")
    if sep and kind.upper() == "IP":
        try:
            ipaddress.ip_address(value)
            return True
        except ValueError:
            return False
    if sep and kind.upper() == "DNS":
        return bool(_DNS_SAN_RE.match(value))
    if sep:
        try:
            ipaddress.IPv6Address(item)  # a plain IPv6 address has colons too
            return True
        except ValueError:
            return False
    try:
        ipaddress.ip_address(item)
        return True
    except ValueError:
        return bool(_DNS_SAN_RE.match(item))


def _cidr_ok(item):
    if item == "nic_networks":
        return True
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False
    return True


def _pem(var, text, allowed):
    pem = text
    if "-----BEGIN" not in text:
        try:
            pem = base64.b64decode("".join(text.split()), validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            raise _Invalid("neither PEM nor base64", allowed) from None
    blocks = _PEM_RE.findall(pem)
    if not blocks:
        raise _Invalid("holds no complete PEM block", allowed)
    wanted = var["pem_kind"]
    first = blocks[0][0]
    if wanted == "PRIVATE KEY" and not first.endswith("PRIVATE KEY"):
        raise _Invalid(f"holds a {first.lower()}, not a private key", allowed)
    if wanted == "CERTIFICATE" and first != "CERTIFICATE":
        raise _Invalid(f"holds a {first.lower()}, not a certificate", allowed)
    return text


def _toml_value(raw):
    if re.match(r"^[+-]?\d+$", raw):
        return int(raw)
    if raw in ("true", "false"):
        return raw == "true"
    try:
        if re.match(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$", raw):
            return float(raw)
    except ValueError:  # pragma: no cover - the regular expression guarantees a float
        pass
    return None


_PAIR_RE = re.compile(
    r"""\s*(?P<key>[^\s=]*)=(?P<raw>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"']*)(?=\s|$)"""
)


def _keyvalue(text, allowed):
    result = {}
    position, text = 0, text.strip()
    while position < len(text):
        match = _PAIR_RE.match(text, position)
        if not match:
            token = text[position:].split()[0]
            raise _Invalid(f"{token!r} is not key=value", allowed)
        key, raw = match.group("key"), match.group("raw")
        position = match.end()
        if not _KEY_RE.match(key):
            raise _Invalid(f"key {key!r} is not allowed", allowed)
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            result[key] = raw[1:-1].replace('\\"', '"') if raw[0] == '"' else raw[1:-1]
            continue
        value = _toml_value(raw)
        if value is None:
            if not _TOML_BARE.match(raw):
                raise _Invalid(f"value of {key!r} ({raw!r}) is not a TOML scalar", allowed)
            value = raw  # a bare word: taken as a string
        result[key] = value
    return result


def _shown(var, text):
    if var.get("secret"):
        return f"<secret, {len(text)} characters>"
    return repr(text if len(text) <= 80 else text[:77] + "...")


# --------------------------------------------------------------------------------- validation
def validate(spec, env, role):
    """Convert and check the context ``env`` (name -> text) for ``role``.

    Returns ``(values, errors)``: ``values`` maps every variable of the role to its converted
    value (the default where unset or empty; ``None`` where that is empty too), ``errors`` lists
    every problem found.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    variables = _variables(spec)
    known = {}
    for var in variables:
        known[var["name"]] = var
        for alias in var.get("aliases") or []:
            known[alias] = var
    errors = []
    for name in sorted(env):
        if name.startswith(PREFIXES) and name not in known:
            close = difflib.get_close_matches(name, list(known), 1, 0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            errors.append(f"{name}: unknown context variable{hint}")
    values = {}
    for var in for_role(variables, role):
        name = var["name"]
        text, given_as = None, name
        for candidate in [name, *(var.get("aliases") or [])]:
            if env.get(candidate) not in (None, ""):
                text, given_as = env[candidate], candidate
                break
        if text is None:
            if var.get("mandatory") and var["default"] == "":
                errors.append(f"{name}: required; allowed: {allowed_text(var)}")
                values[name] = None
                continue
            text = var["default"]
        if not isinstance(text, str):
            text = str(text)
        text = text.strip()
        if text == "":
            values[name] = None
            continue
        try:
            values[name] = _convert(var, text)
        except _Invalid as exc:
            label = name if given_as == name else f"{given_as} (alias of {name})"
            errors.append(f"{label}={_shown(var, text)}: {exc.reason}; allowed: {exc.allowed}")
            values[name] = None
    errors.extend(_cross_checks(values, role))
    return values, errors


def _cross_checks(values, role):
    errors = []
    v = values.get
    if role == "superlink":
        fit, evaluate, available = (
            v("ONEAPP_FL_MIN_FIT_CLIENTS"),
            v("ONEAPP_FL_MIN_EVALUATE_CLIENTS"),
            v("ONEAPP_FL_MIN_AVAILABLE_CLIENTS"),
        )
        if None not in (fit, evaluate, available) and available < max(fit, evaluate):
            errors.append(
                f"ONEAPP_FL_MIN_AVAILABLE_CLIENTS={available}: smaller than "
                f"ONEAPP_FL_MIN_FIT_CLIENTS={fit} or ONEAPP_FL_MIN_EVALUATE_CLIENTS={evaluate}; "
                "allowed: at least both of them"
            )
        byzantine = v("ONEAPP_FL_BYZANTINE_CLIENTS")
        if v("ONEAPP_FL_STRATEGY") == "Bulyan" and None not in (fit, byzantine):
            if fit < 4 * byzantine + 3:
                errors.append(
                    f"ONEAPP_FL_MIN_FIT_CLIENTS={fit}: Bulyan with ONEAPP_FL_BYZANTINE_CLIENTS="
                    f"{byzantine} needs at least {4 * byzantine + 3} (4 x byzantine + 3)"
                )
        if v("ONEAPP_FL_CHECKPOINT_RESUME") and not v("ONEAPP_FL_CHECKPOINT_ENABLED"):
            errors.append(
                "ONEAPP_FL_CHECKPOINT_RESUME=YES: needs ONEAPP_FL_CHECKPOINT_ENABLED=YES; "
                "allowed: NO, or enable checkpointing"
            )
        provided = {
            name: v(name) is not None
            for name in (
                "ONEAPP_FL_SSL_CA_CERTFILE",
                "ONEAPP_FL_SSL_CERTFILE",
                "ONEAPP_FL_SSL_KEYFILE",
            )
        }
        if any(provided.values()) and not all(provided.values()):
            missing = ", ".join(name for name, given in provided.items() if not given)
            errors.append(
                f"operator certificates: {missing} missing; allowed: all three of "
                "ONEAPP_FL_SSL_CA_CERTFILE, ONEAPP_FL_SSL_CERTFILE and ONEAPP_FL_SSL_KEYFILE, "
                "or none (the SuperLink makes its own CA)"
            )
    tls_names = [
        name
        for name in ("ONEAPP_FL_SSL_CA_CERTFILE", "ONEAPP_FL_SSL_CERTFILE", "ONEAPP_FL_SSL_KEYFILE")
        if v(name) is not None
    ]
    if tls_names and v("ONEAPP_FL_TLS_ENABLED") is False:
        errors.append(
            f"ONEAPP_FL_TLS_ENABLED=NO: {', '.join(tls_names)} given but TLS is off; "
            "allowed: YES, or leave the certificates empty"
        )
    if v("ONEAPP_FL_NODE_AUTH_ENABLED") and v("ONEAPP_FL_TLS_ENABLED") is False:
        errors.append(
            "ONEAPP_FL_NODE_AUTH_ENABLED=YES: SuperNode authentication needs TLS, but "
            "ONEAPP_FL_TLS_ENABLED=NO; allowed: NO, or turn TLS on"
        )
    return errors


# ------------------------------------------------------------------------------ role variables
def to_role_vars(spec, values, role):
    """The role variables the validated ``values`` set for ``role``.

    A ``maps_to`` target ``var.key`` sets one key of the dict variable ``var``.
    Unset (``None``) values set nothing, so the role defaults apply. With TLS on, ``tls_side``
    is set (server on the SuperLink, client on a SuperNode) and operator certificates switch the
    tls role to ``tls_ca_mode: provided``.
    """
    result = {}
    for var in for_role(spec, role):
        target = (var.get("maps_to") or {}).get(role)
        value = values.get(var["name"])
        if target and value is not None:
            # "superlink_training.num_rounds": a key of a dict variable.
            name, _dot, key = target.partition(".")
            if key:
                result.setdefault(name, {})[key] = value
            else:
                result[name] = value
    if values.get("ONEAPP_FL_TLS_ENABLED"):
        result["tls_side"] = "server" if role == "superlink" else "client"
        if role == "superlink" and values.get("ONEAPP_FL_SSL_CERTFILE") is not None:
            result["tls_ca_mode"] = "provided"
    return result


def secret_values(spec, values):
    """Only the secrets of ``values`` that are set (the rest unset)."""
    secrets = {var["name"] for var in _variables(spec) if var.get("secret")}
    return {k: (v if k in secrets else None) for k, v in values.items()}


def mask(spec, values):
    """``values`` with every secret that is set replaced (for results and logs)."""
    secrets = {var["name"] for var in _variables(spec) if var.get("secret")}
    return {k: ("********" if k in secrets and v is not None else v) for k, v in values.items()}


# ------------------------------------------------------------------------------- user inputs
def _user_input_type(var):
    kind = var["type"]
    lo, hi = var.get("min"), var.get("max")
    if kind == "integer":
        return ("range", f"{lo}..{hi}") if lo is not None and hi is not None else ("number", "")
    if kind == "float":
        if lo is not None and hi is not None:
            return "range-float", f"{lo}..{hi}"
        return "number-float", ""
    if kind == "boolean":
        return "boolean", ""
    if kind == "enum":
        return "list", ",".join(str(c) for c in var["choices"])
    if kind == "pem":
        return "text64", ""
    return "text", ""


def user_input(var):
    """One OneFlow user input: ``M|type|description|params|default``."""
    kind, params = _user_input_type(var)
    mandatory = "M" if var.get("mandatory") else "O"
    description = " ".join(var["description"].replace("|", "/").split())
    return f"{mandatory}|{kind}|{description}|{params or ' '}|{var['default']}"


def user_inputs(spec, role=None, schema="7.0"):
    """``{NAME: spec}`` for the OneFlow user inputs of ``role`` (all roles when None).

    The strings are the same for OpenNebula 7.0 and 6.10; the template field differs
    (``USER_INPUTS_FIELD[schema]``: ``user_inputs`` in 7.0, ``custom_attrs`` in 6.10).
    """
    if schema not in USER_INPUTS_FIELD:
        raise ValueError(f"schema must be one of {', '.join(USER_INPUTS_FIELD)}, not {schema!r}")
    return {
        var["name"]: user_input(var)
        for var in _variables(spec)
        if oneflow_roles(var) and (role is None or role in oneflow_roles(var))
    }


def user_inputs_section(spec, role=None, schema="7.0"):
    """``{"user_inputs": {...}}`` (7.0) or ``{"custom_attrs": {...}}`` (6.10)."""
    return {USER_INPUTS_FIELD[schema]: user_inputs(spec, role, schema)}
