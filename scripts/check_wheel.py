"""Build the wheel, install it alone into a fresh venv and run the demo and the nightly DAG from a
folder outside the checkout: a normal (non-editable) install must carry everything it reads.

    .venv/bin/python scripts/check_wheel.py [--work DIR] [--wheel PATH] [--no-dag]

The fresh venv holds only the wheel; its dependencies are the running venv's (a .pth line naming
that site-packages, so nothing is downloaded or installed twice). That line does not run the
running venv's own .pth files, so an editable install of the checkout there stays out of the way.
A guard loaded in every process of the fresh venv (an audit hook) refuses any file of the checkout
that is opened or listed, except the running venv's when it lives inside the checkout (CI's .venv):
a data file still found through the checkout fails the check loudly, a module imported from it too.

Prints one JSON line (the demo's and the DAG's ledger totals, seconds per step); exits non-zero when
a step fails or the two runs of the same night disagree. Run by .ci/run and tests/test_wheel.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NIGHT = "2026-11-26"  # the demo's night (transforms/orchestration/cli.py DEMO_NIGHT)
LOGICAL_DATE = "2026-11-26T19:30:00+00:00"  # the DAG's run for that night (02:30 Vietnam time on the 27th)
DEMO_SIZE = ["--encounters", "120", "--facilities", "2", "--citizens", "1000"]
GUARD_ENV = "HEALTHBOOK_CHECKOUT_GUARD"

# Loaded through a .pth file by every Python process of the fresh venv.
GUARD = '''"""Refuses reads of the checkout (scripts/check_wheel.py)."""
import json
import os
import sys

_SPEC = os.environ.get("HEALTHBOOK_CHECKOUT_GUARD")
if _SPEC:
    _SPEC = json.loads(_SPEC)
    _ROOT, _ALLOWED, _LOG = _SPEC["root"], _SPEC["allowed"], _SPEC["log"]
    _EVENTS = {"open", "os.listdir", "os.scandir"}

    def _inside(path, folder):
        return path == folder or path.startswith(folder + os.sep)

    def _guard(event, args):
        if event not in _EVENTS or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path = os.path.realpath(os.fsdecode(args[0]))
        if _inside(path, _ROOT) and not any(_inside(path, a) for a in _ALLOWED) and not _inside(path, _LOG):
            with open(_LOG, "a", encoding="utf-8") as log:
                log.write(f"{event} {path}\\n")
            raise PermissionError(f"the installed healthbook touched the checkout: {path}")

    sys.addaudithook(_guard)
'''


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in command), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in command], check=True, **kwargs)


def build_wheel(out: Path) -> Path:
    """`pip wheel` of the checkout (isolated build: setuptools, Cython and lxml's headers as
    pyproject.toml's build-system asks; the C extension is compiled)."""
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", out, ROOT])
    (wheel,) = out.glob("healthbook-*.whl")
    return wheel


def fresh_venv(where: Path, wheel: Path, env: dict) -> Path:
    """A venv holding only `wheel`, its dependencies read from the running venv; returns its bin/."""
    run([sys.executable, "-m", "venv", "--without-pip", where])
    python = where / "bin" / "python"
    site = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
    )
    dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "healthbook_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(dependencies)))
    (site / "_healthbook_checkout_guard.py").write_text(GUARD)
    (site / "_healthbook_checkout_guard.pth").write_text("import _healthbook_checkout_guard\n")
    run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], env=env)
    return where / "bin"


def totals(ledger: Path) -> dict:
    t = json.loads(ledger.read_text(encoding="utf-8"))["totals"]
    return {k: t[k] for k in ("received", "loaded", "quarantined")}


def check(work: Path, wheel: Path | None = None, dag: bool = True) -> dict:
    seconds: dict[str, float] = {}
    started = time.monotonic()
    if wheel is None:
        wheel = build_wheel(work / "dist")
        seconds["build"] = round(time.monotonic() - started, 1)
    # nothing of the checkout on the path, no setting of the caller's Airflow or healthbook
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        and not k.startswith(("AIRFLOW", "HEALTHBOOK_"))
    }
    step = time.monotonic()
    bin_dir = fresh_venv(work / "venv", wheel, env)
    seconds["install"] = round(time.monotonic() - step, 1)

    log = work / "checkout_reads.log"
    log.write_text("")
    running_venv = str(Path(sys.prefix).resolve())
    env[GUARD_ENV] = json.dumps({"root": str(ROOT), "allowed": [running_venv], "log": str(log.resolve())})
    env["HEALTHBOOK_PSEUDONYM_KEY"] = bytes(range(32)).hex()
    outside = work / "elsewhere"
    outside.mkdir()

    where = run(
        [bin_dir / "healthbook", "dags-folder"], cwd=outside, env=env, capture_output=True, text=True
    ).stdout.strip()
    dags = Path(where)
    if not (dags / "health_book_nightly.py").is_file() or dags.resolve().is_relative_to(ROOT):
        raise SystemExit(f"`healthbook dags-folder` names {where}: not the installed DAG file")

    step = time.monotonic()
    run([bin_dir / "healthbook", "demo", *DEMO_SIZE], cwd=outside, env=env)
    seconds["demo"] = round(time.monotonic() - step, 1)
    demo = totals(outside / "demo" / "warehouse" / "runs" / NIGHT / "ledger.json")
    result: dict = {"wheel": wheel.name, "demo": demo}

    if dag:
        step = time.monotonic()
        airflow_env = {
            **env,
            "AIRFLOW_HOME": str(work / "airflow_home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "HEALTHBOOK_EXTRACTS": str(outside / "demo" / "extracts"),
            "HEALTHBOOK_REGISTRY": str(outside / "demo" / "registry"),
            "HEALTHBOOK_WAREHOUSE": str(work / "dag_warehouse"),
        }
        airflow = [bin_dir / "python", "-m", "airflow"]
        run([*airflow, "db", "migrate"], cwd=outside, env=airflow_env, capture_output=True)
        run([*airflow, "dags", "test", "health_book_nightly", LOGICAL_DATE], cwd=outside, env=airflow_env)
        seconds["dag"] = round(time.monotonic() - step, 1)
        result["dag"] = totals(work / "dag_warehouse" / "runs" / NIGHT / "ledger.json")

    touched = log.read_text().splitlines()
    result["checkout_reads"] = touched
    result["seconds"] = seconds
    if touched:
        raise SystemExit(f"the installed package touched the checkout: {touched[:10]}")
    if not demo["received"] == demo["loaded"] + demo["quarantined"] or demo["loaded"] == 0:
        raise SystemExit(f"the demo loaded nothing or its ledger does not add up: {demo}")
    if dag and result["dag"] != demo:
        raise SystemExit(f"the DAG's ledger {result['dag']} differs from the demo's {demo} (same night)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="a folder outside the checkout (default: a temporary one)")
    parser.add_argument("--wheel", type=Path, help="an already built wheel (default: build one)")
    parser.add_argument("--no-dag", action="store_true", help="run the demo only, not the Airflow DAG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="healthbook-wheel-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        if work.is_relative_to(ROOT):
            raise SystemExit(f"--work {work} is inside the checkout")
        work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(check(work, args.wheel and args.wheel.resolve(), dag=not args.no_dag)))


if __name__ == "__main__":
    main()
