"""The serving database and what reads it: schema, writer, the citizen's book, its PDF and signature."""
