"""Great Expectations imported without the modules none of our expectations uses
(expectations/gx_import.py): deferred, not lost. Each test runs in a fresh interpreter, since
this one imported GX whole (tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> dict:
    """Run `code` in a fresh interpreter on this tree; the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gx_is_imported_without_scipy_stats_and_altair_until_they_are_used():
    seen = _run(
        """
        import json, sys
        from expectations.gx_import import import_gx
        from expectations.runner import import_great_expectations
        import_great_expectations()
        before = {m: m in sys.modules for m in ("scipy.stats._stats_py", "altair.vegalite")}
        # the one GX module that binds them at import: its first use imports the real module
        import great_expectations.expectations.core.expect_column_kl_divergence_to_be_less_than as kl
        entropy = kl.stats.entropy([0.5, 0.5], [0.9, 0.1])
        import scipy.stats
        after = {
            "real_in_sys_modules": type(sys.modules["scipy.stats"]).__name__,
            "same_function": scipy.stats.entropy is kl.stats.entropy,
            "altair_still_deferred": "altair.vegalite" not in sys.modules,
        }
        print(json.dumps({"before": before, "entropy": entropy, "after": after}))
        """
    )
    assert seen["before"] == {"scipy.stats._stats_py": False, "altair.vegalite": False}
    # 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5 (-0.5878) + 0.5 (1.6094) = 0.5108
    assert abs(seen["entropy"] - 0.5108) < 1e-3
    assert seen["after"] == {
        "real_in_sys_modules": "module",
        "same_function": True,
        "altair_still_deferred": True,
    }


def test_a_module_already_imported_is_left_as_it_is_and_deferring_twice_changes_nothing():
    seen = _run(
        """
        import json, sys
        import scipy.stats
        real = sys.modules["scipy.stats"]
        from expectations.gx_import import defer_unused_modules
        first = defer_unused_modules()
        second = defer_unused_modules()
        print(json.dumps({"first": first, "second": second, "kept": sys.modules["scipy.stats"] is real}))
        """
    )
    assert seen == {"first": ["altair"], "second": [], "kept": True}


def test_from_import_and_submodule_import_of_a_deferred_module_get_the_real_one():
    seen = _run(
        """
        import json, sys
        from expectations.gx_import import DeferredModule, defer_unused_modules
        defer_unused_modules()
        stand_in = sys.modules["scipy.stats"]
        from scipy.stats import norm                 # another library's from-import
        import scipy.stats.distributions as dists    # a submodule: needs the real package's path
        print(json.dumps({
            "was_stand_in": isinstance(stand_in, DeferredModule),
            "cdf_at_0": float(norm.cdf(0.0)),
            "submodule_norm_is_norm": dists.norm is norm,
            "now_real": not isinstance(sys.modules["scipy.stats"], DeferredModule),
        }))
        """
    )
    assert seen == {"was_stand_in": True, "cdf_at_0": 0.5, "submodule_norm_is_norm": True, "now_real": True}


def test_looking_through_sys_modules_for_files_does_not_import_a_deferred_module():
    seen = _run(
        """
        import inspect, json, sys
        from expectations.gx_import import defer_unused_modules
        defer_unused_modules()
        # a code object has no __module__: getmodule reads __file__ of every module in sys.modules
        found = inspect.getmodule(json.dumps.__code__)
        print(json.dumps({
            "found": found.__name__,
            "has_file": hasattr(sys.modules["scipy.stats"], "__file__"),
            "still_deferred": "scipy.stats._stats_py" not in sys.modules and "altair.vegalite" not in sys.modules,
        }))
        """
    )
    assert seen == {"found": "json", "has_file": False, "still_deferred": True}
