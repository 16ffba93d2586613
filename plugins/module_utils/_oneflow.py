# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""OneFlow REST client and the service-template schema helpers.

Schemas. OneFlow 6.10 and 7.0 store different template bodies (roles ``vm_template`` +
``vm_template_contents`` string + ``custom_attrs*`` in 6.10; ``type`` + ``template_id`` +
``template_contents`` object + ``user_inputs*`` in 7.0). There is no version route, so the server's
schema is read off the bodies it returns: a stored 7.0 body always has roles with ``type`` /
``template_id`` (7.0 converts 6.x bodies when it stores them), a 6.10 body roles with
``vm_template``. :func:`body_schema` does that for one body, :func:`detect_schema` for a pool.
Modules accept either schema as input and send the server's (:func:`to_schema`). When the server
holds no template or service yet the schema is unknown and the input is sent as written
(a 6.10-style body is accepted by both servers).

Instantiate. 7.0 merges ``user_inputs_values`` and ``roles`` matched by ``name``; 6.10 merges
``custom_attrs_values`` and ``roles`` by index, so the 6.10 ``roles`` list holds every template
role in order, each with its ``name`` (6.10's input check finds role values by name)
(:func:`build_instantiate_merge`). Every declared
user input gets a value (given, else the spec's default, else "" for optional ones): 7.0 answers
400 when one is missing, even for optional inputs.
"""

from __future__ import annotations

import copy
import re
import time

from ansible_collections.opennebula.flower.plugins.module_utils._one_auth import (
    oneflow_credentials,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    SERVICE_FAILED_STATES,
    one_value,
    role_state_name,
    service_state_name,
    to_int,
    vm_summary,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    HTTPClient,
    OpenNebulaError,
    OpenNebulaHTTPError,
)

SCHEMA_70 = "7.0"
SCHEMA_610 = "6.10"
SCHEMAS = (SCHEMA_610, SCHEMA_70)


class OneFlowError(OpenNebulaError):
    pass


# ======================================================================= template text (6.10)
_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]+")


class _TemplateParser:
    """Parser for OpenNebula template text (``vm_template_contents`` of 6.10).

    ``KEY = value`` / ``KEY = "value"`` / ``KEY = [ A = "x", B = y ]``; ``#`` comments; repeated
    keys become lists. Values stay strings, vectors become dicts.
    """

    def __init__(self, text):
        self.text = text or ""
        self.pos = 0

    def error(self, message):
        line = self.text.count("\n", 0, self.pos) + 1
        return OneFlowError(f"template text, line {line}: {message}")

    def skip(self, newlines=True):
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            else:
                break

    def key(self):
        match = _KEY_RE.match(self.text, self.pos)
        if not match:
            raise self.error(f"attribute name expected at {self.text[self.pos : self.pos + 20]!r}")
        self.pos = match.end()
        return match.group(0)

    def expect(self, char):
        self.skip()
        if self.pos >= len(self.text) or self.text[self.pos] != char:
            raise self.error(f"{char!r} expected")
        self.pos += 1

    def quoted(self):
        self.pos += 1  # opening quote
        out = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in '"\\':
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.error("unterminated string")

    def bare(self, stops):
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos].strip()

    def scalar(self, stops):
        self.skip(newlines=False)
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            return self.quoted()
        return self.bare(stops)

    def vector(self):
        self.pos += 1  # '['
        out = {}
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.pos += 1
                return out
            key = self.key()
            self.expect("=")
            self.skip()
            value = self.scalar(",]\n")
            _add(out, key, value)
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
            elif self.pos < len(self.text) and self.text[self.pos] == "]":
                continue
            else:
                raise self.error("',' or ']' expected in vector")

    def parse(self):
        out = {}
        while True:
            self.skip()
            if self.pos >= len(self.text):
                return out
            key = self.key()
            self.expect("=")
            self.skip(newlines=False)
            if self.pos < len(self.text) and self.text[self.pos] == "[":
                value = self.vector()
            else:
                value = self.scalar("\n")
            _add(out, key, value)


def _add(mapping, key, value):
    if key in mapping:
        if isinstance(mapping[key], list):
            mapping[key].append(value)
        else:
            mapping[key] = [mapping[key], value]
    else:
        mapping[key] = value


def parse_template_text(text):
    """OpenNebula template text -> dict (see :class:`_TemplateParser`)."""
    return _TemplateParser(text).parse()


def _quote(value):
    text = one_value(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_template_text(contents):
    """dict -> OpenNebula template text; lists become repeated attributes."""
    lines = []
    for key, value in (contents or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                parts = []
                for sub_key, sub_value in item.items():
                    if isinstance(sub_value, (dict, list)):
                        raise OneFlowError(
                            f"template_contents {key}/{sub_key}: vectors cannot nest in 6.10 "
                            "template text"
                        )
                    parts.append(f"{sub_key}={_quote(sub_value)}")
                lines.append(f"{key}=[" + ",".join(parts) + "]")
            else:
                lines.append(f"{key}={_quote(item)}")
    return "\n".join(lines)


# ============================================================================ schema handling
ROLE_V7_ONLY = ("type", "template_id", "template_contents", "user_inputs", "user_inputs_values")
ROLE_V610_ONLY = ("vm_template", "vm_template_contents", "custom_attrs", "custom_attrs_values")
INT_ROLE_KEYS = ("cardinality", "min_vms", "max_vms", "cooldown", "template_id", "vm_template")


def body_schema(body):
    """The schema a template/service body is written in, or None when it does not tell."""
    roles = (body or {}).get("roles") or []
    roles = [r for r in roles if isinstance(r, dict)]
    if roles and all(("vm_template" in r or "vm_template_contents" in r) for r in roles):
        return SCHEMA_610
    if any(k in r for r in roles for k in ("type", "template_id", "template_contents")):
        return SCHEMA_70
    if "user_inputs" in (body or {}) or "user_inputs_values" in (body or {}):
        return SCHEMA_70
    if "custom_attrs" in (body or {}) or "custom_attrs_values" in (body or {}):
        return SCHEMA_610
    return None


def detect_schema(documents):
    """Schema of the server that stored these DOCUMENTs (templates or services), or None."""
    for doc in documents or []:
        schema = body_schema(document_body(doc))
        if schema:
            return schema
    return None


def _rename(mapping, old, new):
    if old in mapping:
        value = mapping.pop(old)
        if new not in mapping:
            mapping[new] = value


def to_v7(body):
    """6.10 (or mixed) template body -> 7.0 schema; a 7.0 body comes back unchanged (a copy)."""
    out = copy.deepcopy(body)
    _rename(out, "custom_attrs", "user_inputs")
    _rename(out, "custom_attrs_values", "user_inputs_values")
    for role in out.get("roles") or []:
        _rename(role, "vm_template", "template_id")
        _rename(role, "custom_attrs", "user_inputs")
        _rename(role, "custom_attrs_values", "user_inputs_values")
        if "vm_template_contents" in role:
            text = role.pop("vm_template_contents")
            parsed = parse_template_text(text) if isinstance(text, str) else dict(text or {})
            if parsed:
                merged = dict(role.get("template_contents") or {})
                merged.update(parsed)
                role["template_contents"] = merged
        role.setdefault("type", "vm")
        if "template_id" in role and to_int(role["template_id"]) is not None:
            role["template_id"] = to_int(role["template_id"])
    return out


def to_v610(body):
    """7.0 template body -> 6.10 schema (virtual-router roles cannot be expressed: error)."""
    out = copy.deepcopy(body)
    _rename(out, "user_inputs", "custom_attrs")
    _rename(out, "user_inputs_values", "custom_attrs_values")
    for role in out.get("roles") or []:
        kind = role.pop("type", "vm")
        if kind != "vm":
            raise OneFlowError(
                f"role {role.get('name')!r} has type {kind!r}: only 'vm' roles exist in "
                "OpenNebula 6.10"
            )
        _rename(role, "template_id", "vm_template")
        _rename(role, "user_inputs", "custom_attrs")
        _rename(role, "user_inputs_values", "custom_attrs_values")
        if "template_contents" in role:
            contents = role.pop("template_contents")
            if contents and "vm_template_contents" not in role:
                role["vm_template_contents"] = dump_template_text(contents)
    return out


def to_schema(body, schema):
    if schema == SCHEMA_70:
        return to_v7(body)
    if schema == SCHEMA_610:
        return to_v610(body)
    return copy.deepcopy(body)


def _canonical_contents(contents):
    if isinstance(contents, str):
        contents = parse_template_text(contents)
    out = {}
    for key, value in (contents or {}).items():
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            value = value[0]
        out[key] = _canonical_leaf(value)
    return out


def _canonical_leaf(value):
    if isinstance(value, dict):
        return {k: _canonical_leaf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical_leaf(v) for v in value]
    return one_value(value)


def _without_none(mapping):
    return {k: v for k, v in mapping.items() if v is not None}


def normalize_template(body, schema=None):
    """Canonical form of a template body for "does anything differ" comparisons.

    Both sides go through the same steps: converted to one schema, server-managed keys dropped
    (``registration_time``), the server's defaults filled in (``deployment: none``,
    ``description: ""``, role ``cardinality: 0``), numeric strings of integer fields turned into
    ints, template contents compared as strings (a one-element vector list equals the vector),
    input values as strings.
    """
    schema = schema or body_schema(body) or SCHEMA_70
    out = _without_none(to_schema(body or {}, schema))
    for key in ("registration_time", "state", "start_time", "log"):
        out.pop(key, None)
    out.setdefault("deployment", "none")
    out.setdefault("description", "")
    for key in ("user_inputs_values", "custom_attrs_values"):
        if isinstance(out.get(key), dict):
            out[key] = {k: one_value(v) for k, v in out[key].items()}
    roles = []
    for role in out.get("roles") or []:
        role = _without_none(dict(role))
        for key in ("nodes", "state", "last_vmname", "scale_way"):
            role.pop(key, None)
        role.setdefault("cardinality", 0)
        for key in INT_ROLE_KEYS:
            if key in role and to_int(role[key]) is not None:
                role[key] = to_int(role[key])
        for key in ("template_contents", "vm_template_contents"):
            if key in role:
                contents = _canonical_contents(role.pop(key))
                if contents:
                    role["template_contents"] = contents
        for key in ("user_inputs_values", "custom_attrs_values"):
            if isinstance(role.get(key), dict):
                role[key] = {k: one_value(v) for k, v in role[key].items()}
        roles.append(role)
    out["roles"] = roles
    return out


def template_differences(current, desired, schema=None):
    """Top-level keys (and ``roles[i].key``) whose normalised values differ."""
    schema = schema or body_schema(current) or body_schema(desired) or SCHEMA_70
    left, right = normalize_template(current, schema), normalize_template(desired, schema)
    diffs = []
    for key in sorted(set(left) | set(right)):
        if key == "roles":
            continue
        if left.get(key) != right.get(key):
            diffs.append(key)
    lroles, rroles = left.get("roles", []), right.get("roles", [])
    if len(lroles) != len(rroles):
        diffs.append("roles")
    else:
        for index, lrole in enumerate(lroles):
            rrole = rroles[index]
            for key in sorted(set(lrole) | set(rrole)):
                if lrole.get(key) != rrole.get(key):
                    diffs.append(f"roles[{index}].{key}")
    return diffs


# ============================================================================== user inputs
def parse_user_input_spec(spec):
    """``M|type|description|params|default`` (or 3 fields) -> dict."""
    parts = str(spec).split("|")
    info = {
        "mandatory": parts[0].strip().upper() == "M",
        "type": parts[1].strip() if len(parts) > 1 else None,
        "description": parts[2] if len(parts) > 2 else "",
        "params": parts[3] if len(parts) > 3 else None,
        "default": "|".join(parts[4:]) if len(parts) > 4 else None,
    }
    return info


def resolve_user_inputs(declared, given, where="service"):
    """Values for every declared input: given, else default, else "" when optional.

    Returns ``(values, missing)``; undeclared given keys are passed through (OneFlow accepts
    them and they land in the VM template).
    """
    declared = declared or {}
    given = {str(k): v for k, v in (given or {}).items()}
    values, missing = {}, []
    for key, spec in declared.items():
        if key in given:
            values[key] = one_value(given[key])
            continue
        info = parse_user_input_spec(spec)
        if info["default"] is not None and info["default"] != "":
            values[key] = info["default"]
        elif info["mandatory"]:
            missing.append(f"{where}: {key}")
        else:
            values[key] = ""
    for key, value in given.items():
        if key not in values:
            values[key] = one_value(value)
    return values, missing


def password_values(template_body, user_inputs=None, role_user_inputs=None):
    """The values given for the template's ``password`` user inputs (service or role level):
    they must never reach a log."""
    body = to_v7(template_body)
    levels = [(body.get("user_inputs"), user_inputs)] + [
        (role.get("user_inputs"), (role_user_inputs or {}).get(role.get("name")))
        for role in body.get("roles") or []
    ]
    return [
        one_value(given[key])
        for declared, given in levels
        for key, spec in (declared or {}).items()
        if given
        and key in given
        and parse_user_input_spec(spec)["type"] == "password"
        and one_value(given[key]) != ""
    ]


# ============================================================================== cardinalities
def role_bounds(role):
    low = to_int(role.get("min_vms"))
    high = to_int(role.get("max_vms"))
    return (0 if low is None else low), high


def check_cardinalities(roles, desired, force=False):
    """Problems with ``desired`` ({role: cardinality}) against the roles' min_vms/max_vms.

    Every message names the role, the requested cardinality and the allowed range. With
    ``force`` (OneFlow's ``force`` flag) only unknown roles and negative numbers are errors.
    """
    by_name = {r.get("name"): r for r in roles or []}
    problems = []
    for name, value in (desired or {}).items():
        role = by_name.get(name)
        if role is None:
            known = ", ".join(str(n) for n in by_name) or "none"
            problems.append(f"role {name!r} does not exist (roles: {known})")
            continue
        number = to_int(value)
        if number is None or number < 0:
            problems.append(f"role {name!r}: cardinality {value!r} is not a whole number >= 0")
            continue
        if force:
            continue
        low, high = role_bounds(role)
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        if number < low or (high is not None and number > high):
            problems.append(
                f"role {name!r}: requested cardinality {number} is outside the allowed range "
                f"{allowed} (min_vms..max_vms)"
            )
    return problems


# ============================================================================== instantiate
def build_instantiate_merge(
    template_body,
    name=None,
    user_inputs=None,
    role_user_inputs=None,
    networks=None,
    cardinalities=None,
    force=False,
):
    """``merge_template`` for ``POST /service_template/:id/action`` (perform instantiate).

    Raises :class:`OneFlowError` listing every problem (unknown roles, missing mandatory inputs,
    cardinalities outside min/max, unknown networks) before anything is sent.
    """
    schema = body_schema(template_body) or SCHEMA_70
    body = to_v7(template_body)  # read declarations in one vocabulary
    roles = body.get("roles") or []
    role_names = [r.get("name") for r in roles]
    role_user_inputs = role_user_inputs or {}
    cardinalities = cardinalities or {}
    problems = []
    for role in role_user_inputs:
        if role not in role_names:
            problems.append(f"role_user_inputs: role {role!r} does not exist in the template")
    problems += check_cardinalities(roles, cardinalities, force=force)

    merge = {}
    if name:
        merge["name"] = name
    values, missing = resolve_user_inputs(body.get("user_inputs"), user_inputs, "service")
    role_entries = []
    for role in roles:
        rname = role.get("name")
        entry = {}
        if rname in cardinalities and to_int(cardinalities[rname]) is not None:
            entry["cardinality"] = to_int(cardinalities[rname])
        if role.get("user_inputs") or rname in role_user_inputs:
            rvalues, rmissing = resolve_user_inputs(
                role.get("user_inputs"), role_user_inputs.get(rname), f"role {rname}"
            )
            missing += rmissing
            if rvalues:
                entry["user_inputs_values"] = rvalues
        role_entries.append((rname, entry))
    if missing:
        problems.append("mandatory user inputs without a value: " + ", ".join(missing))

    if networks:
        declared = body.get("networks") or {}
        unknown = [n for n in networks if declared and n not in declared]
        if unknown:
            problems.append(
                f"networks {', '.join(map(repr, unknown))} are not declared by the template "
                f"(declared: {', '.join(declared) or 'none'})"
            )
        merge["networks_values"] = [
            {net: {k: one_value(v) for k, v in (spec or {}).items()}}
            for net, spec in networks.items()
        ]
    if problems:
        raise OneFlowError("; ".join(problems))

    if schema == SCHEMA_70:
        if values:
            merge["user_inputs_values"] = values
        merge_roles = [dict({"name": n}, **e) for n, e in role_entries if e]
        if merge_roles:
            merge["roles"] = merge_roles
    else:
        # 6.10: custom_attrs_values; roles are deep-merged by position, but the server's input
        # check looks each role up by name, so every role is listed, in order, with its name.
        if values:
            merge["custom_attrs_values"] = values
        if any(e for _name, e in role_entries):
            merge["roles"] = [
                dict(
                    {"name": n},
                    **{
                        ("custom_attrs_values" if k == "user_inputs_values" else k): v
                        for k, v in e.items()
                    },
                )
                for n, e in role_entries
            ]
    return merge, schema


def instantiate_body(merge):
    return {"action": {"perform": "instantiate", "params": {"merge_template": merge}}}


# ================================================================================ documents
def pool_documents(data):
    """``{"DOCUMENT_POOL": {"DOCUMENT": [...]}}`` -> list (the pool is ``{}`` when empty)."""
    pool = (data or {}).get("DOCUMENT_POOL") if isinstance(data, dict) else None
    docs = (pool or {}).get("DOCUMENT") if isinstance(pool, dict) else None
    if docs is None:
        return []
    return docs if isinstance(docs, list) else [docs]


def document_body(doc):
    body = ((doc or {}).get("TEMPLATE") or {}).get("BODY")
    return body if isinstance(body, dict) else {}


def service_state(doc):
    return to_int(document_body(doc).get("state"))


def service_node_ids(doc):
    """{role name: [VM ids]} from the service's nodes."""
    out = {}
    for role in document_body(doc).get("roles") or []:
        ids = []
        for node in role.get("nodes") or []:
            vm_id = to_int(node.get("deploy_id"))
            if vm_id is not None:
                ids.append(vm_id)
        out[role.get("name")] = ids
    return out


def service_log(doc, count=10):
    log = document_body(doc).get("log") or []
    return [
        {
            "timestamp": e.get("timestamp"),
            "severity": e.get("severity"),
            "message": e.get("message"),
        }
        for e in log[-count:]
        if isinstance(e, dict)
    ]


def service_errors(doc, count=3):
    return [e["message"] for e in service_log(doc, 50) if e.get("severity") == "E"][-count:]


def _node_vm(node):
    info = node.get("vm_info") or {}
    vm = info.get("VM") if isinstance(info, dict) else None
    return vm if isinstance(vm, dict) else {"ID": node.get("deploy_id")}


def service_summary(doc, vms=None, prefix="FL_"):
    """Return structure of a OneFlow service DOCUMENT.

    ``vms`` maps VM id -> oned VM dict (see :func:`vm_summary`); VMs missing there are described
    from what OneFlow stores in the node (id and name only; state fields are None).
    """
    vms = vms or {}
    body = document_body(doc)
    state = to_int(body.get("state"))
    roles = {}
    for role in body.get("roles") or []:
        rstate = to_int(role.get("state"))
        members = []
        for node in role.get("nodes") or []:
            vm_id = to_int(node.get("deploy_id"))
            source = vms.get(vm_id) if vm_id is not None else None
            members.append(vm_summary(source if source is not None else _node_vm(node), prefix))
        roles[role.get("name")] = {
            "name": role.get("name"),
            "cardinality": to_int(role.get("cardinality")),
            "state": role_state_name(rstate),
            "state_id": rstate,
            "min_vms": to_int(role.get("min_vms")),
            "max_vms": to_int(role.get("max_vms")),
            "template_id": to_int(role.get("template_id", role.get("vm_template"))),
            "vm_ids": [m["id"] for m in members],
            "vms": members,
        }
    return {
        "id": to_int(doc.get("ID")),
        "name": doc.get("NAME") or body.get("name"),
        "state": service_state_name(state),
        "state_id": state,
        "failed": state in SERVICE_FAILED_STATES,
        "schema": body_schema(body),
        "owner": doc.get("UNAME"),
        "group": doc.get("GNAME"),
        "start_time": to_int(body.get("start_time")),
        "user_inputs_values": body.get("user_inputs_values", body.get("custom_attrs_values")) or {},
        "roles": roles,
        "log": service_log(doc),
    }


def onegate_service_summary(data, prefix="FL_"):
    """Return structure of OneGate ``GET /service`` (plain or ``extended``)."""
    service = (data or {}).get("SERVICE") or {}
    state = to_int(service.get("state"))
    roles = {}
    for role in service.get("roles") or []:
        rstate = to_int(role.get("state"))
        members = [vm_summary(_node_vm(node), prefix) for node in role.get("nodes") or []]
        roles[role.get("name")] = {
            "name": role.get("name"),
            "cardinality": to_int(role.get("cardinality")),
            "state": role_state_name(rstate),
            "state_id": rstate,
            "vm_ids": [m["id"] for m in members],
            "vms": members,
        }
    return {
        "id": to_int(service.get("id")),
        "name": service.get("name"),
        "state": service_state_name(state),
        "state_id": state,
        "roles": roles,
    }


def cardinalities_of(doc):
    return {
        r.get("name"): to_int(r.get("cardinality")) for r in document_body(doc).get("roles") or []
    }


# =================================================================================== client
class OneFlowClient:
    def __init__(self, http):
        self.http = http

    @staticmethod
    def _document(data, what):
        if isinstance(data, dict) and isinstance(data.get("DOCUMENT"), dict):
            return data["DOCUMENT"]
        raise OneFlowError(f"unexpected answer to {what}: {data!r:.300}")

    # templates
    def list_templates(self):
        _status, data = self.http.request("GET", "/service_template")
        return pool_documents(data)

    def get_template(self, template_id):
        _status, data = self.http.request("GET", f"/service_template/{int(template_id)}")
        return self._document(data, f"GET /service_template/{template_id}")

    def create_template(self, body):
        _status, data = self.http.request("POST", "/service_template", json_body=body)
        return self._document(data, "POST /service_template")

    def update_template(self, template_id, body):
        path = f"/service_template/{int(template_id)}"
        _status, data = self.http.request("PUT", path, json_body=body)
        if isinstance(data, dict) and "DOCUMENT" in data:
            return data["DOCUMENT"]
        return self.get_template(template_id)

    def delete_template(self, template_id, delete_type=None):
        body = {"delete_type": delete_type} if delete_type else None
        self.http.request("DELETE", f"/service_template/{int(template_id)}", json_body=body)

    def instantiate(self, template_id, merge):
        path = f"/service_template/{int(template_id)}/action"
        _status, data = self.http.request("POST", path, json_body=instantiate_body(merge))
        return self._document(data, f"POST {path}")

    # services
    def list_services(self):
        _status, data = self.http.request("GET", "/service")
        return pool_documents(data)

    def get_service(self, service_id, missing_ok=False):
        try:
            _status, data = self.http.request("GET", f"/service/{int(service_id)}")
        except OpenNebulaHTTPError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise
        return self._document(data, f"GET /service/{service_id}")

    def delete_service(self, service_id):
        self.http.request("DELETE", f"/service/{int(service_id)}")

    def scale(self, service_id, role, cardinality, force=False):
        body = {"role_name": role, "cardinality": int(cardinality), "force": bool(force)}
        self.http.request("POST", f"/service/{int(service_id)}/scale", json_body=body)

    def action(self, service_id, perform, params=None):
        action = {"perform": perform}
        if params is not None:
            action["params"] = params
        self.http.request(
            "POST", f"/service/{int(service_id)}/action", json_body={"action": action}
        )

    def recover(self, service_id, delete=False):
        self.action(service_id, "recover", {"delete": True} if delete else None)


def find_by_name(documents, name, skip_states=()):
    """Documents named ``name`` (services in ``skip_states``, e.g. DONE, are left out)."""
    out = []
    for doc in documents:
        if doc.get("NAME") != name and document_body(doc).get("name") != name:
            continue
        if skip_states and service_state(doc) in skip_states:
            continue
        out.append(doc)
    return out


def named(documents, name, what, skip_states=(), hint=""):
    """The one document named ``name`` (None when there is none); several is an error."""
    matches = find_by_name(documents, name, skip_states)
    if len(matches) > 1:
        ids = ", ".join(str(d.get("ID")) for d in matches)
        raise OneFlowError(f"several {what} are named {name!r} (ids {ids}){hint}")
    return matches[0] if matches else None


def ambiguous(exc):
    """Whether a failed request may have been done all the same: no answer, or a 5xx."""
    return isinstance(exc, OpenNebulaHTTPError) and (exc.status is None or exc.status >= 500)


# Failures that tell nothing of the request's fate: no answer, or a proxy's gateway error. A 500
# is OneFlow's own answer (a refusal such as "cannot be scaled in state"): not sent again.
UNKNOWN_FATE = (None, 502, 503, 504)


def send_once(what, send, find, warn, retries, wait, sleep=time.sleep):
    """``send()`` a request that must not be done twice (a POST that instantiates, scales or
    creates; the HTTP layer does not repeat those) and return its answer.

    After a failure that leaves open whether the server did it (:func:`ambiguous`), waits ``wait``
    seconds and asks ``find()`` for what the request would have made: what it finds is returned.
    Else a request whose fate is unknown (:data:`UNKNOWN_FATE`) is sent again, ``retries`` times
    at most, and any other failure is raised. ``warn`` tells which happened.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            result = send()
        except OpenNebulaHTTPError as exc:
            if not ambiguous(exc):
                raise
            sleep(wait)
            found = find()
            if found is not None:
                warn(f"{what}: {exc}; it was done all the same")
                return found
            if exc.status not in UNKNOWN_FATE or attempts > retries:
                raise
            warn(f"{what}: {exc}; it was not done, sending it again")
            continue
        return result


def client_from_params(params, env=None, sleep=None):
    """OneFlow client from module parameters (see ``_one_auth`` for the precedence)."""
    creds = oneflow_credentials(params, env)
    kwargs = {"sleep": sleep} if sleep is not None else {}
    http = HTTPClient(
        creds.url,
        username=creds.username,
        password=creds.password,
        validate_certs=params.get("validate_certs", True),
        ca_path=params.get("ca_path"),
        timeout=params.get("request_timeout") or 30,
        retries=params.get("retries", 3),
        **kwargs,
    )
    return OneFlowClient(http)
