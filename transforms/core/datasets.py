"""The staged datasets, declared once: what ingest writes under staging/<dataset>/night=<D>/.

Two families, under distinct names (issue #17):
- XML_TABLE_DATASETS: the XML 130 tables with a field contract (core/schema.py's TABLES), the rows
  every later stage reads;
- XML_STAGED_DATASETS: everything ingest stages from the XML files: those tables plus
  `raw_tables` (the verbatim tables without a contract, for re-processing);
- FHIR_DATASETS: the FHIR resources ingest stages, by resource type.
STAGED_DATASETS is all of them: the ingest stage's staged outputs.
"""

from __future__ import annotations

from transforms.core import schema

XML_TABLE_DATASETS: tuple[str, ...] = tuple(t.dataset for t in schema.TABLES)
RAW_TABLES_DATASET = "raw_tables"
XML_STAGED_DATASETS: tuple[str, ...] = (*XML_TABLE_DATASETS, RAW_TABLES_DATASET)
FHIR_DATASETS: dict[str, str] = {"Immunization": "immunizations", "AllergyIntolerance": "allergies"}
STAGED_DATASETS: tuple[str, ...] = (*XML_STAGED_DATASETS, *FHIR_DATASETS.values())
