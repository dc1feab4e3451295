"""scripts/airflow.sh standalone, run as the README says: the API server answers its health check,
the DAG gets unpaused, and Ctrl-C (SIGINT) stops it taking every child process with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # nor blocked (a mask is inherited too)


@pytest.mark.slow
def test_standalone_serves_the_api_unpauses_the_dag_and_stops_every_child_on_ctrl_c(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    # PATH without the venv: the script itself must put .venv/bin first
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), AIRFLOW__API__PORT=str(port))
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "airflow.sh"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # as a terminal starts it: SIGINT at its default. A test run earlier in this pytest worker
        # can leave SIGINT ignored in the worker, children inherit that, and bash can neither trap
        # nor reset a signal ignored on entry (its Ctrl-C trap would never run)
        preexec_fn=_sigint_default,
    )
    children: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 420
        healthy = unpaused = False
        while time.monotonic() < deadline and not (healthy and unpaused):
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            for child in psutil.Process(proc.pid).children(recursive=True):
                children[child.pid] = child
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
                    healthy = r.status == 200
            except OSError:
                pass
            unpaused = "unpaused health_book_nightly" in (tmp_path / "standalone.log").read_text()
            time.sleep(3)
        assert healthy and unpaused, (tmp_path / "standalone.log").read_text()[-3000:]
        for child in psutil.Process(proc.pid).children(recursive=True):
            children[child.pid] = child
        assert len(children) >= 4  # the group, standalone and its components

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        gone, alive = psutil.wait_procs(list(children.values()), timeout=10)
        assert alive == [], [(p.pid, p.cmdline()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children.values():
            if child.is_running():
                child.kill()
        log.close()
