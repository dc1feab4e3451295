"""The ingest stage: discovers the night's XML 130 and FHIR files, parses and normalizes them into staged Parquet."""
