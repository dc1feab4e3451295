"""Synthetic data (generator of nights and registries) and the linkage model trainer: never on the runtime path."""
