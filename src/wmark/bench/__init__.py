"""Benchmark sweeps behind ``wmark bench``: image robustness (attacks x strengths, wmark beside its
baselines) and text robustness (edit rates), with their reports and plots; :mod:`wmark.bench.outputs`
decides where every benchmark writes (never over earlier results unless asked)."""
from wmark.bench.outputs import Output, OutputError, prepare_out

__all__ = ["Output", "OutputError", "prepare_out"]
