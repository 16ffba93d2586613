"""The collection's Jinja filters: systemd_quote and node_config."""

import shlex

import pytest
from ansible.errors import AnsibleFilterError
from node_config import node_config
from systemd_quote import systemd_quote


def systemd_unquote(word: str) -> str:
    """What systemd hands the program for one quoted word (the subset systemd_quote emits)."""
    if word.startswith('"'):
        word = shlex.split(word)[0]
    return word.replace("%%", "%").replace("$$", "$")


@pytest.mark.parametrize(
    "arg",
    [
        "--insecure",
        "0.0.0.0:9092",
        "partition-id=0 num-partitions=2",
        'site="hospital a"',
        "50%",
        "$HOME",
        "back\\slash",
        "",
    ],
)
def test_systemd_quote_round_trips(arg):
    assert systemd_unquote(systemd_quote(arg)) == arg


def test_systemd_quote_leaves_plain_words_alone():
    assert systemd_quote("--isolation") == "--isolation"
    assert systemd_quote(9092) == "9092"


def test_systemd_quote_quotes_spaces_and_specifiers():
    assert systemd_quote("a b") == '"a b"'
    assert systemd_quote("100%") == '"100%%"'
    assert systemd_quote("$X") == '"$$X"'


def test_node_config_renders_toml_values_sorted():
    rendered = node_config({"partition-id": 1, "num-partitions": 2, "site": "h a", "gpu": True})
    assert rendered == 'gpu=true num-partitions=2 partition-id=1 site="h a"'


def test_node_config_floats_and_escapes():
    assert node_config({"lr": 0.5, "q": 'say "hi"'}) == 'lr=0.5 q="say \\"hi\\""'


def test_node_config_rejects_bad_keys_naming_them():
    with pytest.raises(AnsibleFilterError, match="key 'a b' is not allowed"):
        node_config({"a b": 1})


def test_node_config_rejects_nested_values_naming_the_key():
    with pytest.raises(AnsibleFilterError, match="value of 'classes' is a list"):
        node_config({"classes": [1, 2]})


def test_node_config_needs_a_dict():
    with pytest.raises(AnsibleFilterError, match="expected a dict, got string"):
        node_config("partition-id=0")
