"""Where endpoints and credentials come from, and the one_auth ``:`` split."""

from __future__ import annotations

import pytest
from ansible_collections.opennebula.flower.plugins.module_utils._one_auth import (
    CredentialsError,
    oned_credentials,
    oneflow_credentials,
    split_auth,
)


def test_split_on_first_colon_only():
    assert split_auth("oneadmin:pa:ss:word\n") == ("oneadmin", "pa:ss:word")
    assert split_auth("\n  user:token  \n") == ("user", "token")
    assert split_auth("user:") == ("user", "")


@pytest.mark.parametrize("text", ["", "no-colon", ":password"])
def test_split_rejects_malformed(text):
    with pytest.raises(CredentialsError):
        split_auth(text)


def test_options_beat_environment():
    env = {
        "ONE_URL": "http://env:2633/RPC2",
        "ONE_USERNAME": "envuser",
        "ONE_PASSWORD": "envpass",
    }
    creds = oned_credentials(
        {"one_url": "http://opt:2633/RPC2", "one_username": "u", "one_password": "p"}, env
    )
    assert (creds.url, creds.username, creds.password) == ("http://opt:2633/RPC2", "u", "p")
    creds = oned_credentials({}, env)
    assert (creds.url, creds.username, creds.password) == (
        "http://env:2633/RPC2",
        "envuser",
        "envpass",
    )


def test_oneflow_precedence_field_by_field():
    env = {
        "ONEFLOW_URL": "http://flow:2474",
        "ONEFLOW_USERNAME": "flowenv",
        "ONEFLOW_PASSWORD": "flowpass",
        "ONE_USERNAME": "oneenv",
        "ONE_PASSWORD": "onepass",
    }
    # oneflow_* option first
    creds = oneflow_credentials({"oneflow_username": "a", "oneflow_password": "b"}, env)
    assert (creds.username, creds.password) == ("a", "b")
    # then the generic one_* options (options beat the environment)
    creds = oneflow_credentials({"one_username": "c", "one_password": "d"}, env)
    assert (creds.username, creds.password) == ("c", "d")
    # then ONEFLOW_* env
    creds = oneflow_credentials({}, env)
    assert (creds.url, creds.username, creds.password) == (
        "http://flow:2474",
        "flowenv",
        "flowpass",
    )
    # then ONE_* env
    del env["ONEFLOW_USERNAME"], env["ONEFLOW_PASSWORD"]
    creds = oneflow_credentials({}, env)
    assert (creds.username, creds.password) == ("oneenv", "onepass")
    # an explicit URL option wins over ONEFLOW_URL
    assert oneflow_credentials({"oneflow_url": "http://x:1"}, env).url == "http://x:1"


def test_auth_file_from_option_env_and_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".one").mkdir(parents=True)
    (home / ".one" / "one_auth").write_text("homeuser:home:pass\n")
    monkeypatch.setenv("HOME", str(home))
    env = {"ONE_URL": "http://one:2633/RPC2", "ONEFLOW_URL": "http://flow:2474"}
    creds = oned_credentials({}, env)
    assert (creds.username, creds.password) == ("homeuser", "home:pass")
    assert "one_auth" in creds.source

    other = tmp_path / "auth"
    other.write_text("envfile:secret\n")
    env["ONE_AUTH"] = str(other)
    assert oneflow_credentials({}, env).username == "envfile"

    opt = tmp_path / "optauth"
    opt.write_text("optfile:x\n")
    assert oned_credentials({"one_auth_file": str(opt)}, env).username == "optfile"


def test_auth_file_only_when_nothing_else(tmp_path):
    auth = tmp_path / "auth"
    auth.write_text("fileuser:filepass")
    env = {"ONE_URL": "http://one", "ONE_AUTH": str(auth), "ONE_USERNAME": "envuser"}
    # a username without password is an error, not a silent mix with the file
    with pytest.raises(CredentialsError, match="password is missing"):
        oned_credentials({}, env)


def test_missing_things_are_named_and_secrets_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CredentialsError, match="ONEFLOW_URL"):
        oneflow_credentials({}, {})
    with pytest.raises(CredentialsError, match="ONE_URL"):
        oned_credentials({}, {})
    with pytest.raises(CredentialsError, match="no oned credentials"):
        oned_credentials({"one_url": "http://x"}, {})
    with pytest.raises(CredentialsError) as info:
        oned_credentials({"one_url": "http://x", "one_password": "s3cr3t"}, {})
    assert "s3cr3t" not in str(info.value)
    creds = oned_credentials({"one_url": "u", "one_username": "a", "one_password": "s3cr3t"}, {})
    assert "s3cr3t" not in repr(creds)
    with pytest.raises(CredentialsError, match="cannot read auth file"):
        oned_credentials({"one_url": "u", "one_auth_file": str(tmp_path / "nope")}, {})
