#!/usr/bin/env bash
# Set up, then generate a small night into ./demo and run it end to end on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/healthbook demo "$@"
