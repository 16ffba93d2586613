# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin of opennebula.flower.flower_context (documented in plugins/modules)."""

from __future__ import annotations

import base64
import json
import os

import yaml
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.opennebula.flower.plugins.module_utils._context import (
    ROLES,
    SpecError,
    load_spec,
    mask,
    secret_values,
    to_role_vars,
    validate,
)
from ansible_collections.opennebula.flower.plugins.module_utils._onegate import (
    DEFAULT_ONE_ENV,
    parse_one_env,
)

# plugins/action/flower_context.py -> <collection>/meta/context_variables.yml
SPEC_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "meta",
    "context_variables.yml",
)

ARGUMENT_SPEC = {
    "role": {"type": "str", "required": True, "choices": list(ROLES)},
    "one_env": {"type": "str", "default": DEFAULT_ONE_ENV},
    "variables": {"type": "dict", "default": {}},
    "fail_on_error": {"type": "bool", "default": True},
    "reveal_secrets": {"type": "bool", "default": False},
}


def context_text(value):
    """An inventory value as context text: YES/NO, comma lists, key=value pairs."""
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(context_text(item) for item in value)
    if isinstance(value, dict):
        return " ".join(
            f"{key}={json.dumps(item) if isinstance(item, str) else context_text(item).lower()}"
            for key, item in value.items()
        )
    return to_text(value)


def read_spec(path=SPEC_PATH):
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return load_spec(data)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        role = args["role"]
        result.update(changed=False, values={}, role_vars={}, errors=[], withheld=[], one_env=None)
        if args["reveal_secrets"] and not self._task.no_log:
            result.update(failed=True, msg="reveal_secrets needs no_log: true on the task")
            return result

        try:
            spec = read_spec()
        except (OSError, yaml.YAMLError, SpecError) as exc:
            result.update(failed=True, msg=f"cannot use {SPEC_PATH}: {exc}")
            return result

        env = {}
        if args["one_env"]:
            slurped = self._execute_module(
                module_name="ansible.builtin.slurp",
                module_args={"src": args["one_env"]},
                task_vars=task_vars,
            )
            if slurped.get("failed"):
                result.update(
                    failed=True,
                    msg=f"cannot read {args['one_env']}: {slurped.get('msg', 'unknown error')}"
                    " (set one_env to an empty string to use only the variables option)",
                )
                return result
            text = base64.b64decode(slurped["content"]).decode("utf-8", errors="replace")
            env = parse_one_env(text)
            result["one_env"] = args["one_env"]
        for name, value in (args["variables"] or {}).items():
            env[str(name)] = context_text(value)

        values, errors = validate(spec, env, role)
        result["errors"] = errors
        result["values"] = mask(spec, values)
        if errors:
            if args["fail_on_error"]:
                result["failed"] = True
                result["msg"] = (
                    f"{len(errors)} invalid context variable(s) for the {role}:\n- "
                    + "\n- ".join(errors)
                )
            return result
        role_vars = to_role_vars(spec, values, role)
        secrets = set(to_role_vars(spec, secret_values(spec, values), role))
        result["withheld"] = sorted(secrets)
        if not args["reveal_secrets"]:
            role_vars = {name: value for name, value in role_vars.items() if name not in secrets}
        result["role_vars"] = role_vars
        return result
