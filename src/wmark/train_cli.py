"""``wmark train WHAT``: reproduce shipped weights. Registry of trainable parts."""
from __future__ import annotations

import argparse
import importlib
import importlib.util

TRAINERS: dict[str, str] = {
    "lm": "wmark.lm.train:register",
    "image": "wmark.image.train:register",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the models whose weights ship in the package")
    tsub = p.add_subparsers(dest="what", metavar="WHAT")
    for name, spec in TRAINERS.items():
        mod, _, fn = spec.partition(":")
        if importlib.util.find_spec(mod) is None:
            continue  # not built yet in this checkout
        getattr(importlib.import_module(mod), fn)(tsub)
