"""The suites' column rules evaluated vectorised on a whole frame, with Great Expectations' semantics.

Great Expectations filters the whole frame once per metric of every expectation (about 190 column
rules a night): the rules are instead computed here as one boolean mask each, over the whole
column at once, and GX validates the per-check verdicts (runner.py). The semantics are GX's own for
the pandas engine (tests/test_quality_rules.py compares them row by row with GX running the
per-column expectations):

- a null value is not evaluated (not counted, never failing), except by the not-null rule;
- a pair rule ignores a row where either value is missing;
- lengths are character counts, regexes are searched (`re.search`), bounds are inclusive unless
  `strict_min` / `strict_max`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from expectations.suites import (
    BETWEEN,
    IN_SET,
    LENGTHS_BETWEEN,
    MATCH_REGEX,
    NOT_NULL,
    PAIR_A_GREATER_THAN_B,
    Rule,
)


@dataclass(frozen=True)
class RuleVerdict:
    """failing: one boolean per row of the frame (True = the row breaks the rule); evaluated: the
    number of rows the rule judged (its non-null rows, every row for not-null)."""

    failing: np.ndarray
    evaluated: int


def _mask(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=bool, na_value=False)


def _as_text(values: pd.Series) -> pd.Series:
    return values if isinstance(values.dtype, pd.StringDtype) else values.astype("str")


def _outside(values: pd.Series, kwargs: dict) -> np.ndarray:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    out = np.zeros(len(values), dtype=bool)
    if low is not None:
        out |= _mask(values <= low) if kwargs.get("strict_min") else _mask(values < low)
    if high is not None:
        out |= _mask(values >= high) if kwargs.get("strict_max") else _mask(values > high)
    return out


def evaluate_rule(rule: Rule, frame: pd.DataFrame) -> RuleVerdict:
    """The rule's verdict on every row of `frame` (KeyError when a column it reads is missing)."""
    values = frame[rule.column]
    present = _mask(values.notna())
    kwargs = rule.kwargs
    kind = rule.expectation_type
    if kind == NOT_NULL:
        return RuleVerdict(~present, len(values))
    if kind == PAIR_A_GREATER_THAN_B:
        other = frame[kwargs["column_B"]]
        both = present & _mask(other.notna())
        smaller = _mask(values < other) if kwargs.get("or_equal") else _mask(values <= other)
        return RuleVerdict(both & smaller, int(both.sum()))
    if kind == IN_SET:
        failing = ~_mask(values.isin(list(kwargs["value_set"])))
    elif kind == MATCH_REGEX:
        failing = ~_mask(_as_text(values).str.contains(kwargs["regex"], regex=True, na=False))
    elif kind == LENGTHS_BETWEEN:
        failing = _outside(_as_text(values).str.len(), kwargs)
    elif kind == BETWEEN:
        failing = _outside(values, kwargs)
    else:
        raise ValueError(f"{rule.check_id}: no vectorised evaluation for {kind}")
    return RuleVerdict(present & failing, int(present.sum()))
