"""Standardization of identity fields, as DuckDB SQL built by small pure functions.

Reconciliation is set-based in DuckDB over millions of registry rows, so every standardization
rule is written once, as a DuckDB macro, and both sides (the hospital's record and the registry
snapshot) go through the same macro. `identity_macros_sql()` returns the statements that install
them on a connection; tests run them on tiny values.

The rules, and why:
- names: lower case, diacritics folded whether the text came NFC or NFD (some facilities send
  NFD; Vietnamese đ has no decomposition, so it is mapped to d by hand), every run of non-letters
  becomes one space. "NGUYỄN  Văn An", "Nguyen Van An" and the NFD form all fold to
  "nguyen van an". The raw name is kept beside the folded one so differences can be named.
- identifiers: SO_CCCD carries what the clerk typed: a 12-digit citizen ID, a 10-digit
  social-insurance number, an old 9-digit ID card, a passport, or nothing. Spaces, dots and
  dashes are removed, then the length and the all-digits test say which kind it is.
- insurance card: the last 10 characters of MA_THE_BHYT are the social-insurance number; cards
  issued since 2021 may be those 10 digits only.
- birth: `yyyymmdd` with `00` for an unknown month or day, the registry's own form, so an
  encounter's partial birth date (precision "month" or "year") compares by prefix.
- sex: "1" male, "2" female; anything else (3 undetermined, empty) is unknown (null).
"""

from __future__ import annotations

# The difference codes a link can carry (docs/ARCHITECTURE.md "Patient links"). Each says how
# the hospital's record differs from the citizen it was linked to.
DIFFERENCE_CODES = {
    "name_upper": "the name is in capitals",
    "name_nfd": "the name is in decomposed Unicode (NFD)",
    "name_unaccented": "the name was typed without diacritics",
    "name_accents_differ": "the name differs only in case or diacritics",
    "dropped_middle_name": "a middle name is missing (or added)",
    "name_typo": "the name differs by a small spelling error",
    "name_differs": "the name differs beyond a typo",
    "dob_day_month_swapped": "day and month of the birth date are swapped",
    "birth_date_partial": "the record carries only the birth year or year and month",
    "birth_date_differs": "the birth date differs",
    "sex_differs": "the sex differs",
    "moved_ward": "the ward of residence differs (same or other province)",
    "province_differs": "the province of residence differs",
    "citizen_id_missing": "no 12-digit citizen ID in SO_CCCD",
    "id_one_digit_typo": "the citizen ID differs from the citizen's by one digit",
    "citizen_id_differs": "the citizen ID differs from the citizen's",
    "social_insurance_in_citizen_id": "SO_CCCD holds the 10-digit social-insurance number",
    "old_id_in_citizen_id": "SO_CCCD holds the old 9-digit ID card number",
    "died_before_admission": "the registry records the citizen as dead before the admission",
}

# name -> (parameters, body). Bodies use only DuckDB built-ins and earlier macros.
_MACROS: tuple[tuple[str, str, str], ...] = (
    (
        "hb_fold_name",
        "s",
        # strip_accents decomposes by itself, so NFD input needs no nfc_normalize (measured: a
        # third of the registry's standardization time)
        r"""nullif(trim(regexp_replace(replace(strip_accents(lower(s)), 'đ', 'd'), '[^a-z]+', ' ', 'g')), '')""",
    ),
    ("hb_name_tokens", "s", "string_split(hb_fold_name(s), ' ')"),
    ("hb_compact_identifier", "s", r"nullif(regexp_replace(trim(s), '[\s.\-]', '', 'g'), '')"),
    (
        "hb_identifier_kind",
        "s",
        """case
             when hb_compact_identifier(s) is null then null
             when regexp_full_match(hb_compact_identifier(s), '[0-9]{12}') then 'citizen_id'
             when regexp_full_match(hb_compact_identifier(s), '[0-9]{10}') then 'social_insurance'
             when regexp_full_match(hb_compact_identifier(s), '[0-9]{9}') then 'old_id'
             else 'other'
           end""",
    ),
    (
        "hb_identifier_of_kind",
        "s, kind",
        "case when hb_identifier_kind(s) = kind then hb_compact_identifier(s) end",
    ),
    (
        "hb_social_insurance_from_card",
        "card",
        """case when regexp_full_match(right(upper(trim(card)), 10), '[0-9]{10}')
                then right(upper(trim(card)), 10) end""",
    ),
    ("hb_sex", "code", "case when trim(code) in ('1', '2') then trim(code) end"),
    (
        "hb_birth_ymd",
        "d, precision",
        """case precision
             when 'day' then strftime(d, '%Y%m%d')
             when 'month' then strftime(d, '%Y%m') || '00'
             when 'year' then strftime(d, '%Y') || '0000'
           end""",
    ),
    (
        "hb_registry_birth_ymd",
        "s",
        "case when regexp_full_match(trim(s), '[0-9]{8}') and trim(s) <> '00000000' then trim(s) end",
    ),
    ("hb_code2", "s", "case when nullif(trim(s), '') is not null then right(lpad(trim(s), 2, '0'), 2) end"),
    ("hb_code5", "s", "case when nullif(trim(s), '') is not null then lpad(trim(s), 5, '0') end"),
    # How two birth dates (yyyymmdd with 00 for unknown) agree: 'same', 'dob_day_month_swapped',
    # 'birth_date_partial' (agree as far as both are known), or null (they disagree).
    (
        "hb_birth_agreement",
        "a, b",
        """case
             when a is null or b is null then null
             when a = b then 'same'
             when left(a, 4) <> left(b, 4) then null
             when substr(a, 5, 2) = substr(b, 7, 2) and substr(a, 7, 2) = substr(b, 5, 2)
                  and substr(a, 5, 2) <> '00' and substr(a, 7, 2) <> '00'
               then 'dob_day_month_swapped'
             when (substr(a, 5, 2) = substr(b, 5, 2) or '00' in (substr(a, 5, 2), substr(b, 5, 2)))
                  and (substr(a, 7, 2) = substr(b, 7, 2) or '00' in (substr(a, 7, 2), substr(b, 7, 2)))
               then 'birth_date_partial'
           end""",
    ),
    # How two folded names agree: 'same', 'dropped_middle_name' (same family and given name, the
    # middle tokens of one contained in the other), 'name_typo' (at most 2 edits), or null.
    (
        "hb_name_agreement",
        "a, b",
        """case
             when a is null or b is null then null
             when a = b then 'same'
             when string_split(a, ' ')[1] = string_split(b, ' ')[1]
                  and string_split(a, ' ')[-1] = string_split(b, ' ')[-1]
                  and (list_has_all(string_split(a, ' '), string_split(b, ' '))
                       or list_has_all(string_split(b, ' '), string_split(a, ' ')))
               then 'dropped_middle_name'
             when damerau_levenshtein(a, b) <= 2 and least(length(a), length(b)) >= 8 then 'name_typo'
           end""",
    ),
    # The difference code for a raw hospital name against the registry's full name.
    (
        "hb_name_difference",
        "raw, registered",
        """case
             when raw is null or registered is null then null
             when raw = registered then null
             when nfc_normalize(raw) = registered then 'name_nfd'
             when nfc_normalize(raw) = upper(registered) then 'name_upper'
             when hb_fold_name(raw) = hb_fold_name(registered)
                  and regexp_full_match(raw, '[\\x00-\\x7F]*') then 'name_unaccented'
             when hb_fold_name(raw) = hb_fold_name(registered) then 'name_accents_differ'
             else coalesce(hb_name_agreement(hb_fold_name(raw), hb_fold_name(registered)), 'name_differs')
           end""",
    ),
    (
        "hb_birth_difference",
        "a, b",
        """case
             when a is null or b is null then null
             else case coalesce(hb_birth_agreement(a, b), 'birth_date_differs')
                    when 'same' then null
                    else coalesce(hb_birth_agreement(a, b), 'birth_date_differs')
                  end
           end""",
    ),
    (
        "hb_id_difference",
        "raw, citizen_id",
        """case hb_identifier_kind(raw)
             when 'citizen_id' then case
               when hb_compact_identifier(raw) = citizen_id then null
               when length(citizen_id) = 12 and hamming(hb_compact_identifier(raw), citizen_id) = 1
                 then 'id_one_digit_typo'
               else 'citizen_id_differs' end
             when 'social_insurance' then 'social_insurance_in_citizen_id'
             when 'old_id' then 'old_id_in_citizen_id'
             else 'citizen_id_missing'
           end""",
    ),
)


def identity_macros_sql() -> list[str]:
    """The `create or replace macro` statements of every identity rule, in dependency order."""
    return [f"create or replace macro {name}({params}) as {body}" for name, params, body in _MACROS]


def macro_names() -> list[str]:
    """Names of the identity macros, for tests and documentation."""
    return [name for name, _, _ in _MACROS]
