"""Importing Great Expectations without the modules it imports for expectations we never run.

GX's package imports every core expectation class on import, and one of them (the KL-divergence
expectation, `expect_column_kl_divergence_to_be_less_than`) imports `scipy.stats` and `altair` at
module level. Those two are about half of GX's import (1.0-1.4 s of 2.3-2.6 s on our machine:
scipy.stats rewrites the docstrings of its functions when it is imported), a fixed cost of every
night's data_docs stage and most of a 1,000-encounter night's spare core. Our suites use none of
the expectations that need them (expectations/suites.py: lengths, sets, regexes, nulls, ranges).

`defer_unused_modules()` puts a stand-in (`DeferredModule`) under each name in `sys.modules`
before GX is imported: GX binds the stand-in, and the first attribute anyone reads from it (GX
computing a KL divergence, Data Docs drawing an altair chart, another library's
`from scipy.stats import ...`) imports the real module, puts it in `sys.modules` in the
stand-in's place and answers from it. Nothing is lost, only moved to the first use; a process
that already imported a module keeps it as it is.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types

# Imported by GX at its import, used by none of our expectations (module docstring).
UNUSED_BY_OUR_SUITES = ("scipy.stats", "altair")

_lock = threading.RLock()
# What a stand-in answers it does not have, without importing the real module: `inspect.getmodule`
# and tracebacks read `__file__` of every module in sys.modules (a stand-in has no file yet).
_NOT_ON_A_STAND_IN = frozenset({"__file__", "__cached__"})


class DeferredModule(types.ModuleType):
    """Stands in for module `name` until an attribute is read from it; then the real module is
    imported, replaces the stand-in in `sys.modules` and answers every read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # what the import system reads of a module found in sys.modules (not a real loader: the
        # real module is imported by name, through the usual finders, on first use)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)
        self.__deferred_real__: types.ModuleType | None = None

    def __getattr__(self, attr: str):  # only for what the stand-in itself does not hold
        if attr in _NOT_ON_A_STAND_IN:
            raise AttributeError(attr)
        return getattr(self._real(), attr)

    def _real(self) -> types.ModuleType:
        real = self.__dict__.get("__deferred_real__")
        if real is not None:
            return real
        with _lock:
            real = self.__dict__.get("__deferred_real__")
            if real is None:
                name = self.__name__
                if sys.modules.get(name) is self:
                    del sys.modules[name]
                try:
                    real = importlib.import_module(name)
                except BaseException:
                    sys.modules.setdefault(name, self)  # still deferred: a later read tries again
                    raise
                self.__deferred_real__ = real
        return real


def defer_unused_modules(names: tuple[str, ...] = UNUSED_BY_OUR_SUITES) -> list[str]:
    """Put a `DeferredModule` under each of `names` not imported yet (its parent package is
    imported, it is cheap); returns the names deferred now. Idempotent."""
    deferred = []
    with _lock:
        for name in names:
            if name in sys.modules:
                continue
            parent, _, child = name.rpartition(".")
            if parent:
                importlib.import_module(parent)
            if importlib.util.find_spec(name) is None:  # not installed: GX's own import reports it
                continue
            module = DeferredModule(name)
            sys.modules[name] = module
            if parent:
                # `from scipy import stats` reads the package's attribute first
                setattr(sys.modules[parent], child, module)
            deferred.append(name)
    return deferred


def import_gx() -> types.ModuleType:
    """The `great_expectations` package, imported with `defer_unused_modules()` first: every
    import of GX in this package goes through here."""
    defer_unused_modules()
    import great_expectations

    return great_expectations
