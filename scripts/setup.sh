#!/usr/bin/env bash
# Creates .venv idempotently and installs the project with its pinned dependencies.
# Re-installs (and rebuilds the C extension transforms/ingest/_cells.pyx) only when pyproject.toml,
# constraints.txt, setup.py or the extension changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.healthbook-installed
want=$(cat pyproject.toml constraints.txt setup.py transforms/ingest/_cells.pyx | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing healthbook and its pinned dependencies into .venv (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
fi
