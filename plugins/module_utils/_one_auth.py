# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""Where the oned and OneFlow endpoints and credentials come from.

Precedence, field by field (the first one set wins):

oned (XML-RPC, pyone)
  url:      option ``one_url`` -> ``$ONE_URL``
  username: option ``one_username`` -> ``$ONE_USERNAME``
  password: option ``one_password`` -> ``$ONE_PASSWORD``

OneFlow (REST, HTTP Basic)
  url:      option ``oneflow_url`` -> ``$ONEFLOW_URL``
  username: option ``oneflow_username`` -> option ``one_username`` -> ``$ONEFLOW_USERNAME``
            -> ``$ONE_USERNAME``
  password: option ``oneflow_password`` -> option ``one_password`` -> ``$ONEFLOW_PASSWORD``
            -> ``$ONE_PASSWORD``

Options always beat the environment, so what a task (or ``module_defaults``) says is what is used.
When neither a username nor a password was found, the auth file is read: option
``one_auth_file`` -> ``$ONE_AUTH`` -> ``~/.one/one_auth``. Its first line is ``user:password``,
split on the **first** ``:`` only, so passwords and login tokens may contain ``:``.
A username without a password (or the reverse) is an error rather than a silent mix.
Secrets never appear in messages.
"""

from __future__ import annotations

import os

from ansible_collections.opennebula.flower.plugins.module_utils._one_http import OpenNebulaError

DEFAULT_AUTH_FILE = "~/.one/one_auth"


class CredentialsError(OpenNebulaError):
    pass


class Credentials:
    def __init__(self, url, username, password, source):
        self.url = url
        self.username = username
        self.password = password
        self.source = source  # where user/password came from, for messages (never the secret)

    @property
    def session(self):
        return f"{self.username}:{self.password}"

    def __repr__(self):
        return f"Credentials(url={self.url!r}, username={self.username!r}, source={self.source!r})"


def split_auth(text, origin="auth string"):
    """``user:password`` -> (user, password), splitting on the first ``:`` only."""
    line = ""
    for candidate in (text or "").splitlines():
        if candidate.strip():
            line = candidate.strip()
            break
    if ":" not in line:
        raise CredentialsError(f"{origin} must contain 'username:password' (no ':' found)")
    user, password = line.split(":", 1)
    if not user:
        raise CredentialsError(f"{origin} has an empty username")
    return user, password


def read_auth_file(path):
    path = os.path.expanduser(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise CredentialsError(f"cannot read auth file {path}: {exc.strerror or exc}") from None
    return split_auth(text, origin=f"auth file {path}")


def _first(*values):
    for value in values:
        if value not in (None, ""):
            return value
    return None


def _auth_file_candidates(params, env):
    explicit = _first(params.get("one_auth_file"), env.get("ONE_AUTH"))
    if explicit:
        return explicit, True
    return DEFAULT_AUTH_FILE, False


def _user_password(user, password, params, env, what):
    if user is None and password is None:
        path, explicit = _auth_file_candidates(params, env)
        expanded = os.path.expanduser(path)
        if explicit or os.path.exists(expanded):
            user, password = read_auth_file(path)
            return user, password, f"auth file {expanded}"
        raise CredentialsError(
            f"no {what} credentials: set the username/password options, the environment "
            f"variables, or an auth file (one_auth_file, $ONE_AUTH, {DEFAULT_AUTH_FILE})"
        )
    if user is None or password is None:
        missing = "username" if user is None else "password"
        raise CredentialsError(f"{what} {missing} is missing (the other one is set)")
    return user, password, "options/environment"


def oned_credentials(params, env=None, require_url=True):
    env = os.environ if env is None else env
    url = _first(params.get("one_url"), env.get("ONE_URL"))
    if require_url and not url:
        raise CredentialsError("oned XML-RPC endpoint missing: set one_url or $ONE_URL")
    user = _first(params.get("one_username"), env.get("ONE_USERNAME"))
    password = _first(params.get("one_password"), env.get("ONE_PASSWORD"))
    user, password, source = _user_password(user, password, params, env, "oned")
    return Credentials(url, user, password, source)


def oneflow_credentials(params, env=None):
    env = os.environ if env is None else env
    url = _first(params.get("oneflow_url"), env.get("ONEFLOW_URL"))
    if not url:
        raise CredentialsError("OneFlow endpoint missing: set oneflow_url or $ONEFLOW_URL")
    user = _first(
        params.get("oneflow_username"),
        params.get("one_username"),
        env.get("ONEFLOW_USERNAME"),
        env.get("ONE_USERNAME"),
    )
    password = _first(
        params.get("oneflow_password"),
        params.get("one_password"),
        env.get("ONEFLOW_PASSWORD"),
        env.get("ONE_PASSWORD"),
    )
    user, password, source = _user_password(user, password, params, env, "OneFlow")
    return Credentials(url, user, password, source)


def oned_configured(params, env=None):
    """True when an oned endpoint is known (option or environment)."""
    env = os.environ if env is None else env
    return bool(_first(params.get("one_url"), env.get("ONE_URL")))
