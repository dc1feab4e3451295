#!/usr/bin/env bash
# Set up, make sure the services answer, then lint (ruff, import contracts) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-logo  # the rooms' import contracts (.importlinter)
# --durations=25: every CI log shows where the suite spends its time; -n 2 --dist loadfile: both
# cores, a test file's tests on one worker (its module fixtures built once)
exec .venv/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=25 "$@"
