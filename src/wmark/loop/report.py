"""Run reports: a Markdown summary table and PNG plots (metric vs generation, one line per arm,
mean +- sd over seeds). matplotlib is imported inside :func:`write_plots` (Agg backend).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wmark.assets import folder_lock, write_atomic
from wmark.loop.channel import describe
from wmark.loop.engine import LoopResult, load_result


@dataclass(frozen=True)
class MetricSummary:
    """Mean and sd over seeds of one metric for one arm at the first fitted and the last generation."""

    metric: str
    arm: str
    first_t: int
    first_mean: float
    first_sd: float
    last_t: int
    last_mean: float
    last_sd: float


def _msd(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarise(result: LoopResult) -> list[MetricSummary]:
    """Per metric and arm: mean +- sd over seeds at t = 1 (or the first) and at the last generation."""
    ts = result.generations()
    if not len(ts):
        return []
    i1 = int(np.searchsorted(ts, 1)) if 1 in ts else 0
    out = []
    for metric in result.metric_names():
        for arm in result.arms:
            try:
                s = result.series(metric, arm)
            except ValueError:
                continue
            out.append(MetricSummary(metric, arm, int(ts[i1]), *_msd(s[i1]), int(ts[-1]), *_msd(s[-1])))
    return out


@dataclass(frozen=True)
class PolicyEffect:
    """Paired difference ``arm - reference`` of one metric at the last generation (arms share seeds,
    so the difference isolates the policy): mean, sd and standard error over seeds."""

    metric: str
    arm: str
    reference: str
    t: int
    mean: float
    sd: float
    se: float


def policy_effects(result: LoopResult, reference: str = "none") -> list[PolicyEffect]:
    """Paired effects of every other arm against the ``reference`` arm (empty if it is absent)."""
    if reference not in result.arms or len(result.arms) < 2:
        return []
    ts = result.generations()
    out = []
    for metric in result.metric_names():
        try:
            ref = result.series(metric, reference)[-1]
        except ValueError:
            continue
        for arm in result.arms:
            if arm == reference:
                continue
            diff = result.series(metric, arm)[-1] - ref
            m, sd = _msd(diff)
            n = int(np.isfinite(diff).sum())
            out.append(PolicyEffect(metric, arm, reference, int(ts[-1]), m, sd,
                                    sd / np.sqrt(n) if n > 1 else float("nan")))
    return out


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else (f"{x:.4g}")


def markdown(result: LoopResult, plots: list[Path] | None = None) -> str:
    """The Markdown summary of a run."""
    cfg = result.config
    arms = ", ".join(f"`{a.name}` ({a.policy})" for a in cfg.arms)
    lines = [
        f"# Loop run `{cfg.name}`", "",
        f"- family `{cfg.family}`, loop `{cfg.loop}`, `{cfg.synthetic}`, lam = {cfg.lam}"
        + (" (also on real draws)" if cfg.bias_real else ""),
        f"- generations {cfg.generations}, n_init {cfg.n_init_}, n_real {cfg.n_real}, n_syn {cfg.n_syn_}, "
        f"seeds {cfg.seeds} (base seed {cfg.seed})",
        f"- arms: {arms}" + (f"; marker `{cfg.marker}` (params {dict(cfg.marker_params)}), key fingerprint "
                             f"`{result.key_fingerprint}`" if cfg.marker else ""),
        *([f"- channel (applied to published samples before re-ingestion): {describe(cfg.channel, cfg.family)}"]
          if cfg.channel else []),
        f"- status: {'complete' if result.complete else 'incomplete (resume with --resume)'}", "",
        "Values are mean +- sd over seeds. t = 0 is the true distribution; model t is fitted at generation t.",
        "", "| metric | arm | t | mean +- sd | t | mean +- sd |", "|---|---|---|---|---|---|",
    ]
    for s in summarise(result):
        lines.append(f"| {s.metric} | {s.arm} | {s.first_t} | {_fmt(s.first_mean)} +- {_fmt(s.first_sd)} "
                     f"| {s.last_t} | {_fmt(s.last_mean)} +- {_fmt(s.last_sd)} |")
    effects = policy_effects(result)
    if effects:
        lines += ["", f"## Policy effects at t = {effects[0].t} (paired over seeds, arm - none)", "",
                  "| metric | arm | mean difference +- s.e. | sd |", "|---|---|---|---|"]
        lines += [f"| {e.metric} | {e.arm} | {_fmt(e.mean)} +- {_fmt(e.se)} | {_fmt(e.sd)} |" for e in effects]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    return "\n".join(lines) + "\n"


_STYLES = ("-", "--", "-.", ":")


def write_plots(result: LoopResult, folder: Path) -> list[Path]:
    """One PNG per metric in ``folder``: mean +- sd over seeds vs generation, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    ts = result.generations()
    paths = []
    for metric in result.metric_names():
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
        for i, arm in enumerate(result.arms):
            try:
                s = result.series(metric, arm)
            except ValueError:
                continue
            s = np.where(np.isfinite(s), s, np.nan)
            ok = ~np.isnan(s).all(1)  # generations where the metric exists (e.g. not t = 0)
            m, sd = np.nanmean(s[ok], 1), np.nanstd(s[ok], 1)
            # overlapping arms (strip == none) stay visible: thicker first lines, varied dashes
            ax.plot(ts[ok], m, label=arm, marker="." if len(ts) <= 30 else None,
                    linestyle=_STYLES[i % len(_STYLES)], linewidth=max(3.0 - 0.6 * i, 1.0))
            ax.fill_between(ts[ok], m - sd, m + sd, alpha=0.2)
        ax.set_xlabel("generation t")
        ax.set_ylabel(metric)
        ax.set_title(f"{result.config.name}: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"{metric}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        write_atomic(path, buf.getvalue())  # a killed report leaves whole PNGs only
        paths.append(path)
    return paths


def write_report(run: LoopResult | str | Path, plots: bool = True) -> Path:
    """Write ``report.md`` (and ``plots/*.png``) into the run folder, holding its lock (a folder a
    run holds is refused with ``FolderLockedError``); returns the report path."""
    result = run if isinstance(run, LoopResult) else load_result(run)
    if result.out is None:
        raise ValueError("this result has no run folder to write a report into")
    with folder_lock(result.out, "loop report"):
        pngs = write_plots(result, Path(result.out) / "plots") if plots else []
        path = Path(result.out) / "report.md"
        write_atomic(path, markdown(result, pngs))
    return path
