"""Orchestration: the pipeline of stages, their fingerprints, the run's settings, the CLI."""
