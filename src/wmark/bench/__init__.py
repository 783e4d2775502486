"""Benchmark sweeps behind ``wmark bench``: image robustness (attacks x strengths, wmark beside its
baselines) and text robustness (edit rates), with their reports and plots."""
