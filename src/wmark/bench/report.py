"""Shared pieces of the benchmark reports: Markdown tables, number formatting, JSON-safe values,
stable per-cell seeds, the progress bar (tqdm) and the curve plots (matplotlib); tqdm and matplotlib
are imported on use."""
from __future__ import annotations

import io
import math
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from wmark.runtime.progress import progress  # noqa: F401  (the benchmarks' bar, re-exported)
from wmark.assets import write_atomic


def nan_to_none(x: Any) -> Any:
    """``x`` with every float NaN (in nested dicts / lists / tuples) replaced by None, for JSON."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    return x


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from ``parts`` (crc32 of their repr): the same on every run and machine."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


def fmt(v: float | None, nd: int = 2) -> str:
    """``v`` with ``nd`` decimals; ``-`` for None or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of string cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


class ProgressTicker:
    """A logits processor that leaves the scores as they are and ticks a progress bar by ``per_step``
    units per generated token (in whole units; :attr:`count` so far): appended to a generation's
    processors (``[scheme, ticker]`` or ``[ticker]``) it moves the bar during a long
    ``wmark.lm.sampling.generate`` call. The sampled tokens are the same as without it."""

    def __init__(self, bar: Any, per_step: float = 1.0) -> None:
        self.bar, self.per_step, self.acc, self.count = bar, per_step, 0.0, 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.acc += self.per_step
        k = int(self.acc + 1e-9) - self.count
        if k > 0:
            self.bar.update(k)
            self.count += k
        return scores


def progress_processor(bar: Any, per_step: float = 1.0) -> ProgressTicker:
    """:class:`ProgressTicker` of ``bar``: ``per_step`` bar units per generated token."""
    return ProgressTicker(bar, per_step)


def plot_curves(cells: Sequence[Any], attacks: Sequence[str], metric: Callable[[Any], float], ylabel: str,
                path: Path, line_key: Callable[[Any], str] = lambda c: c.method,
                x_of: Callable[[Any], float] = lambda c: c.strength, xlabel: str = "strength") -> None:
    """One subplot per ``cell.attack``, one line per ``line_key``: ``metric`` against ``x_of``, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, max(1, len(attacks)))
    rows = math.ceil(len(attacks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    order = list(dict.fromkeys(line_key(c) for c in cells))
    colour = {k: f"C{i % 10}" for i, k in enumerate(order)}
    # lines that coincide stay visible: earlier lines wider, each with its own marker
    width = {k: max(1.0, 3.0 - 0.5 * i) for i, k in enumerate(order)}
    marker = {k: "osD^vx<>"[i % 8] for i, k in enumerate(order)}
    for ax, a in zip(axes.flat, attacks):
        lines: dict[str, list[Any]] = {}
        for c in cells:
            if c.attack == a:
                lines.setdefault(line_key(c), []).append(c)
        for label, cs in lines.items():
            cs = sorted(cs, key=x_of)
            ax.plot([x_of(c) for c in cs], [metric(c) for c in cs], marker=marker[label], ms=3, label=label,
                    color=colour[label], lw=width[label])
        ax.set_title(a, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    labels, handles = list(legend), list(legend.values())
    fig.legend(handles, labels, loc="upper center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # 0.4 in for the legend
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
