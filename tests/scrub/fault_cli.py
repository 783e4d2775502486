"""The wmark CLI with a SIGKILL at a named point of the scrub pipeline (the fault tests run it in a
subprocess): ``python fault_cli.py POINT[:N] ARGS...`` dies the N-th time (default 1) the pipeline
reaches POINT ("outputs", "commit", "decide", "manifest"); ARGS go to ``wmark``."""
from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    point, _, n = sys.argv[1].partition(":")
    times = int(n or 1)
    seen = 0

    def hook(name: str) -> None:
        nonlocal seen
        if name == point:
            seen += 1
            if seen >= times:
                os.kill(os.getpid(), signal.SIGKILL)

    from wmark.scrub import pipeline

    pipeline._fault_hook = hook
    from wmark.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
