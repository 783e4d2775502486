"""Shared fixtures. Data-dependent tests skip with a clear reason where ../shared is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

from wmark.assets import shared_data as _shared_data

SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $WMARK_SHARED_DATA); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set WMARK_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_key():
    from wmark.keys import Key

    return Key.demo()


DEMO_KEY_LINE = "passphrase:wmark public demo key - do not use in production\n"


@pytest.fixture
def demo_key_file(tmp_path) -> Path:
    """``tmp_path / "k.key"`` holding the public demo passphrase (the CLI warns that it is public)."""
    path = tmp_path / "k.key"
    path.write_text(DEMO_KEY_LINE)
    return path


@pytest.fixture
def error_lines():
    """``error_lines(stderr) -> list[str]``: the lines of a CLI's stderr that are not warnings."""
    return lambda err: [e for e in err.splitlines() if not e.startswith("wmark: warning:")]
