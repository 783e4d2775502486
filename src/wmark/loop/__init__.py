"""The self-consuming training loop: generations of fit -> sample -> (mark / detect / strip) -> refit.

Light at import: names resolve lazily. Start with :func:`run_loop` and a preset::

    from wmark.loop import get_preset, run_loop, write_report
    result = run_loop(get_preset("demo-gaussian"), "runs/demo")
    write_report(result)
"""
from __future__ import annotations

from wmark._lazy import lazy_attributes

_LAZY = {
    "LoopConfig": "wmark.loop.config",
    "ArmConfig": "wmark.loop.config",
    "run_loop": "wmark.loop.engine",
    "load_result": "wmark.loop.engine",
    "LoopResult": "wmark.loop.engine",
    "GenerationRecord": "wmark.loop.engine",
    "POLICIES": "wmark.loop.engine",
    "LOOPS": "wmark.loop.engine",
    "load_checkpoint": "wmark.loop.engine",
    "register_state_class": "wmark.loop.state",
    "generator": "wmark.loop.engine",
    "get_preset": "wmark.loop.presets",
    "preset_names": "wmark.loop.presets",
    "register_preset": "wmark.loop.presets",
    "write_report": "wmark.loop.report",
    "Marker": "wmark.loop.markers",
    "get_marker": "wmark.loop.markers",
    "get_family": "wmark.loop.models",
    "register_family": "wmark.loop.models",
}

__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY)
