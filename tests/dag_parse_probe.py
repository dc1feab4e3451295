"""Run in a subprocess by test_dag.py: parse the DAG file and report its I/O and imports as JSON."""

import importlib.util
import json
import sys
import time

import airflow.providers.standard.decorators.python  # noqa: F401  Airflow's own start-up is not the DAG file's work
import airflow.sdk  # noqa: F401
import croniter  # noqa: F401  (Airflow's cron timetables probe the platform on import)
import pendulum  # noqa: F401

events = []


def audit(event, args):
    if event == "open":
        events.append(["open", str(args[0])])
    elif event.startswith("socket.") or event in ("subprocess.Popen", "os.system"):
        events.append([event, repr(args)[:200]])


dag_file = sys.argv[1]
before = set(sys.modules)
sys.addaudithook(audit)
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("health_book_nightly", dag_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
seconds = time.perf_counter() - started
print(json.dumps({"events": events, "new_modules": sorted(set(sys.modules) - before), "seconds": seconds}))
