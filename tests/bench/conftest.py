"""Shared helpers for the bench tests: load a script from ``bench/`` as a module."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bench_script():
    """``bench_script("text_fpr_lm")`` -> the module ``bench/text_fpr_lm.py``."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
