#!/usr/bin/env bash
# Create the virtualenv and install mailtix (editable) with its test extra.
# uv is used when it can be had (about 4 s); plain pip otherwise (about 25 s).
set -euo pipefail
venv=${1:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -x "$venv/bin/uv" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check uv || true
fi
if [ -x "$venv/bin/uv" ]; then
    VIRTUAL_ENV="$venv" "$venv/bin/uv" pip install -q --compile-bytecode -e '.[test]'
else
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
fi
rm -f "$venv"/.installed-*
