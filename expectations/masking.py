"""Masking of identities in what quality officers and Great Expectations' Data Docs show.

The findings Parquet keeps the raw offending value (quarantine is restricted); anything rendered
(the report, its CSVs, the Data Docs) shows citizen IDs, card numbers and names masked.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# columns that identify a person (Law 91/2025: health data is sensitive personal data)
IDENTITY_COLUMNS = frozenset(
    {
        "citizen_id",
        "patient_name",
        "patient_code",
        "father_name",
        "mother_name",
        "guardian_name",
        "escort_name",
        "address",
        "phone",
        "insurance_card",
        "father_insurance_number",
        "mother_insurance_number",
        "temporary_card",
        "medical_record_number",
    }
)
NAME_COLUMNS = frozenset({"patient_name", "father_name", "mother_name", "guardian_name", "escort_name"})


def mask_shape(values: pd.Series) -> pd.Series:
    """Digits -> "0", letters -> "X", everything else kept: length and shape survive, identity does not.

    Used on the frames handed to Great Expectations, so length and shape checks still judge the
    real value while the Data Docs, which print unexpected values, never show an identity.
    """
    # Arrow's RE2 kernels: vectorised, where Python's re would run once per value
    text = pa.array(values.astype("str").where(values.notna(), None), type=pa.string())
    masked = pc.replace_substring_regex(pc.replace_substring_regex(text, r"\pN", "0"), r"\pL", "X")
    return pd.Series(masked.to_pandas(), index=values.index)


def mask_value(column: str | None, value: str | None) -> str | None:
    """One offending value as a report shows it: IDs keep 3 leading and 2 trailing characters
    ("079*******34"), names keep initials ("N. V. A."), other columns are shown as they are."""
    if value is None or column not in IDENTITY_COLUMNS:
        return value
    text = str(value)
    if column in NAME_COLUMNS:
        return " ".join(f"{word[0]}." for word in text.split()) or "*"
    if len(text) <= 5:
        return "*" * len(text)
    return f"{text[:3]}{'*' * (len(text) - 5)}{text[-2:]}"


def mask_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings with every identity value masked (a copy)."""
    out = findings.copy()
    identity = out["column"].isin(IDENTITY_COLUMNS)
    if identity.any():
        out.loc[identity, "value"] = [
            mask_value(c, v)
            for c, v in zip(out.loc[identity, "column"], out.loc[identity, "value"], strict=True)
        ]
    return out
