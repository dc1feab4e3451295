"""The snapshot stage: the analysts' de-identified DuckDB snapshot and its data dictionary."""
