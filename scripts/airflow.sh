#!/usr/bin/env bash
# The project's local Airflow, in one command, with the project's venv:
#
#   scripts/airflow.sh standalone        # migrate, start UI + scheduler + dag-processor + triggerer,
#                                        # unpause health_book_nightly; Ctrl-C stops every child
#   scripts/airflow.sh ARGS...           # any other airflow command in the same environment,
#                                        # e.g. scripts/airflow.sh dags test health_book_nightly ...
#
# Settings (each may be set beforehand): AIRFLOW_HOME (./airflow_home), AIRFLOW__CORE__DAGS_FOLDER
# (./dags), AIRFLOW__CORE__PARALLELISM (2: a laptop), AIRFLOW__API__PORT (8080); examples are never
# loaded. HEALTHBOOK_* settings are passed through (README "Operating the nightly DAG").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${HEALTHBOOK_VENV:-$ROOT/.venv}"
# standalone starts its components as `airflow ...` subprocesses: they must find the venv's airflow
export PATH="$VENV/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-2}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
DAG_ID=health_book_nightly

if [ "${1:-standalone}" != standalone ]; then
    exec airflow "$@"
fi

airflow db migrate >/dev/null

# Everything runs in one new process group (setsid), so that stopping kills every child at once:
# the components standalone starts, their workers, and the unpause loop.
setsid bash -c '
    airflow standalone &
    # the DAG can be unpaused only once the dag-processor has parsed it
    for _ in $(seq 120); do
        airflow dags unpause "$0" >/dev/null 2>&1 && { echo "unpaused $0"; break; }
        sleep 5
    done
    wait
' "$DAG_ID" &
GROUP=$!

stop() {
    trap - INT TERM
    echo "stopping Airflow (process group $GROUP)..."
    kill -TERM -- "-$GROUP" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 -- "-$GROUP" 2>/dev/null || exit 0
        sleep 1
    done
    kill -KILL -- "-$GROUP" 2>/dev/null || true
    exit 0
}
trap stop INT TERM
wait "$GROUP" || true
