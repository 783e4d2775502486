"""Where wmark finds the shared data set (``../shared/data`` beside the repository by default)."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    """``$WMARK_SHARED_DATA`` if set, else ``../shared/data`` relative to the repository (for a source
    checkout) or to the current directory."""
    env = os.environ.get("WMARK_SHARED_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for base in (repo, Path.cwd()):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "data"
