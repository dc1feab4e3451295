"""The sum checks' line totals: the shared row lookup gives the general join's answer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from expectations import row_checks
from expectations.row_checks import SUM_RELATIONS, _line_sums_joined, line_sums


def _frames() -> dict[str, pd.DataFrame]:
    encounters = pd.DataFrame(
        {
            "facility_code": ["01001", "01001", "01001", "02002"],
            "encounter_id": ["A", "B", "C", "A"],
            "version": [1, 1, 1, 2],
        },
        index=[10, 11, 12, 13],  # not 0..n: the result is indexed like the encounters
    )
    drugs = pd.DataFrame(
        {
            "facility_code": ["01001", "01001", "02002", "09009", "01001"],
            "encounter_id": ["A", "A", "A", "Z", "B"],
            "version": [1, 1, 2, 1, 1],
            "amount_vnd": [100.5, 0.25, 7.0, 99.0, np.nan],  # Z has no encounter; B's sum is unknown
            "patient_paid_vnd": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    services = pd.DataFrame(
        {
            "facility_code": ["01001", "02002", "01001"],
            "encounter_id": ["A", "A", "C"],
            "version": [1, 2, 1],
            "amount_vnd": [1e9, 0.1, 3.3],
            "patient_paid_vnd": [10.0, 20.0, 30.0],
            "supply_code": [None, "VT01", None],
            "cost_group": ["10", None, "01"],
        }
    )
    return {"encounters": encounters, "drugs": drugs, "services": services}


def test_line_sums_equal_the_general_join_for_every_relation():
    frames = _frames()
    for check_id, relation in SUM_RELATIONS.items():
        if any(relation.line_column not in frames[d].columns for d in relation.datasets):
            continue
        fast, joined = line_sums(frames, relation), _line_sums_joined(frames, relation)
        assert fast.index.equals(frames["encounters"].index), check_id
        np.testing.assert_array_equal(fast.to_numpy(), joined.to_numpy(), err_msg=check_id)
    total = line_sums(frames, SUM_RELATIONS["integrity.hospital_total_sum"])
    assert total.loc[10] == 100.5 + 0.25 + 1e9 and np.isnan(total.loc[11]) and total.loc[12] == 3.3
    assert total.loc[13] == 7.0 + 0.1
    supplies = line_sums(frames, SUM_RELATIONS["integrity.supplies_total_sum"])
    assert supplies.tolist() == [1e9, 0.0, 0.0, 0.1]


def test_repeated_or_null_keys_take_the_general_join():
    frames = _frames()
    relation = SUM_RELATIONS["integrity.hospital_total_sum"]
    repeated = {**frames, "encounters": pd.concat([frames["encounters"], frames["encounters"].iloc[[0]]])}
    assert row_checks._encounter_row_of_lines(repeated["encounters"], repeated["drugs"]) is None
    np.testing.assert_array_equal(line_sums(repeated, relation), _line_sums_joined(repeated, relation))
    nulls = {**frames, "drugs": frames["drugs"].assign(encounter_id=["A", None, "A", "Z", "B"])}
    assert row_checks._encounter_row_of_lines(nulls["encounters"], nulls["drugs"]) is None
    np.testing.assert_array_equal(line_sums(nulls, relation), _line_sums_joined(nulls, relation))
