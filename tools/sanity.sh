#!/usr/bin/env bash
# ansible-test sanity on the collection as it ships: the tarball `ansible-galaxy collection build`
# makes (galaxy.yml's build_ignore leaves the test harness out), unpacked into a temporary
# <tmp>/ansible_collections/opennebula/flower next to its dependencies (.collections, as
# bootstrap extracts them), checked by the ansible-test of the ansible-core installed in .venv
# (requirements-dev.txt: the newest line for its Python that meta/runtime.yml's
# requires_ansible allows), on that Python. Needs no Docker.
#   tools/sanity.sh [ansible-test sanity options, e.g. --test pylint]       (make lint runs it)
# The findings that are false positives are listed, each with its reason, in
# tests/sanity/ignore-<ansible-core X.Y>.txt, which is copied into the tree (the tarball has no
# tests/). ansible-test installs each sanity test's own pinned requirements (pylint, voluptuous,
# ...) from PyPI into virtual environments it caches under ~/.ansible/test/venv: only the first
# run downloads them.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${SANITY_PYTHON:-$REPO/.venv/bin/python}
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CORE=$("$PY" -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$(dirname "$PY")/ansible-galaxy" collection build --force --output-path "$WORK" "$REPO" >/dev/null
COLL=$WORK/ansible_collections/opennebula/flower
mkdir -p "$COLL"
tar -xzf "$WORK"/opennebula-flower-*.tar.gz -C "$COLL"
# The dependencies, by namespace (not opennebula: there bootstrap links this checkout).
for ns in "$REPO"/.collections/ansible_collections/*/; do
  [ "$(basename "$ns")" = opennebula ] || ln -s "$ns" "$WORK/ansible_collections/$(basename "$ns")"
done
if [ -f "tests/sanity/ignore-$CORE.txt" ]; then
  mkdir -p "$COLL/tests/sanity"
  cp "tests/sanity/ignore-$CORE.txt" "$COLL/tests/sanity/"
fi

# ansible-test puts pip into each of those environments with get-pip.py from
# ci-files.testing.ansible.com, which this network does not reach (PyPI it does): where that
# download fails, a stand-in that runs pip from its PyPI wheel takes its place in ansible-test's
# cache (~/.ansible/test/cache/get_pip_<version>.py, the path ansible-test looks at first).
PIPV=$("$PY" -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as g
print(g(types.SimpleNamespace(version="'"$PYVER"'"))["pip"])')
GETPIP=~/.ansible/test/cache/get_pip_${PIPV//./_}.py
if [ ! -f "$GETPIP" ]; then
  mkdir -p "$(dirname "$GETPIP")"
  if ! curl -sSf --max-time 30 -o "$GETPIP.download" \
    "https://ci-files.testing.ansible.com/ansible-test/get-pip-$PIPV.py" 2>/dev/null; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: "pip==$PIPV" -d "$(dirname "$GETPIP")"
    cat >"$GETPIP.download" <<PYEOF
"""get-pip.py stand-in (tools/sanity.sh): pip $PIPV from its wheel installs the arguments."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$PIPV-py3-none-any.whl"))
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
extra = [p for p, flag in (("setuptools", "--no-setuptools"), ("wheel", "--no-wheel")) if flag not in sys.argv]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args, *extra]))
PYEOF
  fi
  mv "$GETPIP.download" "$GETPIP"
fi

cd "$COLL"
echo "ansible-test sanity (ansible-core $CORE, Python $PYVER) on $(basename "$WORK"/opennebula-flower-*.tar.gz)"
PATH=$(dirname "$PY"):$PATH "$(dirname "$PY")/ansible-test" sanity --local --python "$PYVER" \
  --color no "$@"
