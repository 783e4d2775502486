"""Text robustness sweep: TPR at FPR 1e-3 of each text scheme against the edit rate of each text attack.

Marked texts come from the built-in LM (``wmark.lm``, temperature 1, scheme defaults: gamma 0.25 /
delta 2 for KGW and Unigram) after a 16-token human prompt; only the generated tokens are attacked and
scored (the detector sees the text alone). Unmarked texts from the same prompts give an FPR check and
the human tokens for ``copy_paste``; ``fpr_n`` (default ``n``) sets how many unmarked texts the FPR row
uses (beyond ``n``, more prompts from the same random windows and a separate sampling seed; the marked
texts and every TPR cell do not change). Each text's edits are seeded by (seed, attack, text index), so the
edits are nested in the rate and the same across schemes.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wmark.assets import write_atomic
from wmark.bench.outputs import prepare_out
from wmark.bench.report import md_table, nan_to_none, plot_curves, progress, progress_processor, stable_seed

DEFAULT_SCHEMES: tuple[str, ...] = ("kgw-lefthash", "kgw-selfhash", "unigram", "gumbel", "tournament")
DEFAULT_ATTACKS: tuple[str, ...] = ("delete", "insert", "substitute", "lm_substitute")
DEFAULT_RATES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
QUICK_ATTACKS: tuple[str, ...] = ("delete", "substitute", "lm_substitute")
QUICK_RATES: tuple[float, ...] = (0.0, 0.3)
ALPHAS: tuple[float, ...] = (1e-3, 1e-6)
FPR_ALPHAS: tuple[float, ...] = (1e-2, 1e-3)
#: optional keyword arguments given to an attack beyond its ``needs`` (lm_substitute: the cached LM pass)
EXTRA_KWARGS: dict[str, tuple[str, ...]] = {"lm_substitute": ("logits_fn", "context")}
PROMPT = 16
GEN_BATCH = 100
FALLBACK_PROMPT = "ROMEO:\nWhat light through yonder window breaks? It is the east, and"


@dataclass(frozen=True)
class TextRobustnessConfig:
    """Settings of one text sweep (``None`` fields take the quick or full defaults)."""

    out: str
    schemes: tuple[str, ...] | None = None
    lengths: tuple[int, ...] | None = None
    rates: tuple[float, ...] | None = None
    attacks: tuple[str, ...] | None = None
    n: int | None = None
    fpr_n: int | None = None
    quick: bool = False
    seed: int = 0
    progress: bool = True
    overwrite: bool = False  # write into a non-empty ``out`` (else refused before any work)


@dataclass(frozen=True)
class TextCell:
    """One (scheme, length, attack, rate) over ``n`` marked texts."""

    scheme: str
    length: int
    attack: str
    rate: float
    n: int
    tpr: dict[str, float]
    median_p: float
    mean_tokens: float


@dataclass(frozen=True)
class TextRobustnessResult:
    """Everything written to ``results.json``."""

    config: dict[str, Any]
    fpr: dict[str, dict[str, float]]
    cells: tuple[TextCell, ...]
    elapsed_s: float
    notes: tuple[str, ...] = field(default=())
    #: scheme -> length -> :func:`fpr_record` (n, k, rate and 95% Clopper-Pearson interval per alpha)
    fpr_detail: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cells"] = [asdict(c) for c in self.cells]
        return {"benchmark": "text-robustness", "schema": 1, **nan_to_none(d)}


def _key(alpha: float) -> str:
    return f"tpr@{alpha:.0e}"


def fpr_record(p: np.ndarray, alphas: Sequence[float] = FPR_ALPHAS) -> dict[str, float]:
    """FPR of unmarked p-values ``p``: ``n``, and per alpha ``k@a`` (p < a), ``fpr@a`` and the two-sided
    95% Clopper-Pearson interval ``fpr@a_lower95`` / ``fpr@a_upper95``; ``min_p``."""
    from wmark.stats import clopper_pearson

    p = np.asarray(p, dtype=np.float64)
    rec: dict[str, float] = {"n": int(p.size)}
    for a in alphas:
        k = int((p < a).sum())
        lo, hi = clopper_pearson(k, p.size)
        rec.update({f"k@{a:.0e}": k, f"fpr@{a:.0e}": k / p.size if p.size else float("nan"),
                    f"fpr@{a:.0e}_lower95": lo, f"fpr@{a:.0e}_upper95": hi})
    rec["min_p"] = float(p.min()) if p.size else float("nan")
    return rec


class PrefixLogits:
    """``logits_fn`` for ``lm_substitute`` answering prefixes of the current text from one precomputed
    teacher-forced pass (exact for a causal LM); anything else goes to the model."""

    def __init__(self, model: Any) -> None:
        self.model, self.ids, self.logits = model, None, None

    def set(self, ids: Any, logits: Any) -> None:
        self.ids, self.logits = ids, logits

    def __call__(self, x: Any) -> Any:
        import torch

        t = x.shape[1]
        if self.logits is not None and t <= len(self.ids) and torch.equal(x[0].cpu(), self.ids[:t]):
            return self.logits[None, :t]
        with torch.no_grad():
            return self.model(x)


def check_names(names: Sequence[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    """Validate names (``-`` may stand for ``_``) against ``known``; a ValueError names the bad ones."""
    def norm(n: str) -> str:
        return n if n in known else n.replace("-", "_")

    names = tuple(dict.fromkeys(norm(n.strip()) for n in names if n.strip()))
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; known: {', '.join(known)}")
    return names


def sample_prompts(lm: Any, n: int, seed: int) -> tuple[Any, str]:
    """[n, PROMPT] human prompt tokens from the shared corpus (random windows), else a fixed prompt."""
    import torch

    from wmark.lm import load_corpus

    try:
        corpus = load_corpus()
    except FileNotFoundError:
        ids = lm.encode(FALLBACK_PROMPT)[:PROMPT]
        return torch.tensor([ids] * n, dtype=torch.long), "fixed prompt (shared corpus not found)"
    ids = torch.tensor(lm.encode("\n".join(corpus.val.values())), dtype=torch.long)
    starts = np.random.default_rng(seed).integers(0, len(ids) - PROMPT, n)
    return torch.stack([ids[s:s + PROMPT] for s in starts]), "shared corpus (validation split)"


def _generate(lm: Any, prompts: Any, n_new: int, processor: Any, seed: int, bar: Any) -> Any:
    import torch

    from wmark.lm.sampling import generate

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(prompts), GEN_BATCH):
        rows = prompts[i:i + GEN_BATCH]
        # the bar moves during generation (whole texts per token step); the samples do not change
        tick = progress_processor(bar, len(rows) / n_new) if n_new and not bar.disable else None
        procs = [p for p in (processor, tick) if p is not None]
        out.append(generate(lm, rows, n_new, temperature=1.0, logits_processor=procs or None,
                            generator=g)[:, prompts.shape[1]:])
        bar.update(len(out[-1]) - (tick.count if tick else 0))
    return torch.cat(out)


def _detect(scheme: Any, seqs: Sequence[Any]) -> np.ndarray:
    """p-values of 1-D token tensors of any lengths (padded batch); empty texts get p = 1."""
    import torch

    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    if int(lens.max()) == 0:
        return np.ones(len(seqs))
    ids = torch.zeros(len(seqs), int(lens.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    p = np.asarray(scheme.detect_batch(ids, lens).p_value, dtype=np.float64)
    return np.where(np.isnan(p), 1.0, p)


def _resolve(cfg: TextRobustnessConfig
             ) -> tuple[tuple[str, ...], tuple[int, ...], tuple[float, ...], tuple[str, ...], int, int]:
    from wmark.attacks import registry
    from wmark.attacks.spec import check_strength
    from wmark.text.schemes import SCHEMES

    schemes = check_names(cfg.schemes or DEFAULT_SCHEMES, list(SCHEMES), "text scheme")
    attacks = check_names(cfg.attacks or (QUICK_ATTACKS if cfg.quick else DEFAULT_ATTACKS),
                          list(registry("text")), "text attack")
    lengths = tuple(sorted(set(cfg.lengths or ((100,) if cfg.quick else (200,)))))
    if min(lengths) < 1:
        raise ValueError(f"lengths must be >= 1, got {lengths}")
    rates = tuple(sorted(set(check_strength(r) for r in (cfg.rates or (QUICK_RATES if cfg.quick else DEFAULT_RATES)))))
    n = cfg.n if cfg.n is not None else 8 if cfg.quick else 100
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    fpr_n = n if cfg.fpr_n is None else cfg.fpr_n
    if fpr_n < 1:
        raise ValueError(f"--fpr-n must be >= 1, got {fpr_n}")
    return schemes, lengths, rates, attacks, n, fpr_n


def run_text_robustness(cfg: TextRobustnessConfig) -> TextRobustnessResult:
    """Run the text sweep of ``cfg``; write results.json, report.md and text_robustness.png into ``cfg.out``
    (refused, before any work, where it is a file or a non-empty folder unless ``cfg.overwrite``)."""
    import torch

    import wmark.lm
    from wmark.attacks import get_attack
    from wmark.keys import Key
    from wmark.text import make_scheme

    t0 = time.perf_counter()
    out = prepare_out(cfg.out, cfg.overwrite)
    schemes, lengths, rates, attacks, n, fpr_n = _resolve(cfg)
    lm = wmark.lm.load()
    # the first n prompts do not depend on fpr_n (numpy draws them in order)
    prompts, prompt_src = sample_prompts(lm, max(n, fpr_n), cfg.seed)
    prompts, extra_prompts = prompts[:n], prompts[n:]
    prefix = PrefixLogits(lm.model)
    total = n * (1 + len(schemes) * (1 + len(lengths))) + len(extra_prompts)
    cells: list[TextCell] = []
    fpr: dict[str, dict[str, float]] = {}
    fpr_detail: dict[str, dict[str, dict[str, float]]] = {}
    with progress(total, "text-robustness", cfg.progress, unit="text") as bar:
        bar.set_postfix_str("unmarked")
        plain = _generate(lm, prompts, max(lengths), None, cfg.seed + 1, bar)
        unmarked = plain[:fpr_n]
        if len(extra_prompts):  # more unmarked texts for the FPR row only (own sampling seed)
            bar.set_postfix_str("unmarked (FPR)")
            unmarked = torch.cat([plain, _generate(lm, extra_prompts, max(lengths), None, cfg.seed + 3, bar)])
        for name in schemes:
            bar.set_postfix_str(name)
            scheme = make_scheme(name, Key.demo(), lm.vocab_size)
            marked = _generate(lm, prompts, max(lengths), scheme, cfg.seed + 2, bar)
            fpr_p = {L: _detect(scheme, list(unmarked[:, :L])) for L in lengths}
            fpr[name] = {str(L): float((p < 1e-3).mean()) for L, p in fpr_p.items()}
            fpr_detail[name] = {str(L): fpr_record(p) for L, p in fpr_p.items()}
            for L in lengths:
                docs = marked[:, :L]
                got: dict[tuple[str, float], list[Any]] = {(a, r): [] for a in attacks for r in rates}
                logits = None
                for j in range(n):
                    if "lm_substitute" in attacks and L <= lm.context and j % 16 == 0:
                        with torch.no_grad():
                            logits = lm.model(docs[j:j + 16]).float()
                    prefix.set(docs[j], None if logits is None else logits[j % 16])
                    ctx = {"vocab_size": lm.vocab_size, "human": plain[j], "logits_fn": prefix,
                           "context": lm.context}
                    for a in attacks:
                        spec = get_attack(a, "text")
                        kw = {k: ctx[k] for k in (*spec.needs, *EXTRA_KWARGS.get(a, ()))}
                        for r in rates:
                            gen = torch.Generator().manual_seed(stable_seed(cfg.seed, a, j))
                            got[a, r].append(torch.as_tensor(spec(docs[j], r, gen, **kw), dtype=torch.long))
                    bar.update(1)
                for (a, r), seqs in got.items():
                    p = _detect(scheme, seqs)
                    cells.append(TextCell(name, L, a, r, n, {_key(al): float((p < al).mean()) for al in ALPHAS},
                                          float(np.median(p)), float(np.mean([len(s) for s in seqs]))))
    config = {"schemes": list(schemes), "lengths": list(lengths), "rates": list(rates), "attacks": list(attacks),
              "n": n, "fpr_n": fpr_n, "quick": cfg.quick, "seed": cfg.seed, "prompt": f"{PROMPT} tokens, {prompt_src}",
              "lm": repr(lm), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    notes = ("TPR: fraction of attacked marked texts with the scheme's own detection p-value < alpha "
             "(dedup of repeated n-grams on, the default).",
             f"FPR: {fpr_n} unmarked texts from the same LM and prompt scheme (the first {min(n, fpr_n)} "
             "from the marked texts' prompts), p < alpha; [lower, upper]: two-sided 95% Clopper-Pearson "
             "interval. `fpr` in results.json is the rate at 1e-3; `fpr_detail` has both alphas.",
             "Only the generated tokens are attacked and scored; the prompt is not shown to the detector.")
    res = TextRobustnessResult(config, fpr, tuple(cells), time.perf_counter() - t0, notes, fpr_detail)
    write_outputs(res, out)
    return res


def _fpr_cell(r: dict[str, float], alpha: float) -> str:
    k = f"{alpha:.0e}"
    return (f"{r['k@' + k]}/{r['n']} = {r['fpr@' + k]:.4f} "
            f"[{r['fpr@' + k + '_lower95']:.4f}, {r['fpr@' + k + '_upper95']:.4f}]")


def report_markdown(res: TextRobustnessResult) -> str:
    """Markdown: settings, FPR check, one table per (length, attack): rows rate, columns scheme TPR@1e-3."""
    cfg = res.config
    schemes = cfg["schemes"]
    by = {(c.scheme, c.length, c.attack, c.rate): c for c in res.cells}
    k3 = _key(1e-3)
    lines = ["# Text robustness benchmark", "",
             f"{cfg['n']} marked texts per scheme from the built-in LM ({cfg['lm']}), prompt: {cfg['prompt']}; "
             f"seed {cfg['seed']}{', quick' if cfg['quick'] else ''}; {res.elapsed_s / 60:.1f} min.", ""]
    lines += [f"- {n}" for n in res.notes]
    rows = [[str(L), f"{a:g}", *[_fpr_cell(res.fpr_detail[s][str(L)], a) for s in schemes]]
            for L in cfg["lengths"] for a in FPR_ALPHAS]
    lines += ["", "## FPR on unmarked LM text", "",
              "p < alpha on unmarked texts: count/texts = rate [two-sided 95% Clopper-Pearson interval].", "",
              md_table(["T", "alpha", *schemes], rows), ""]
    from wmark.attacks import get_attack

    for L in cfg["lengths"]:
        for a in cfg["attacks"]:
            rows = [[f"{r:g}", *[f"{by[s, L, a, r].tpr[k3]:.2f}" for s in schemes],
                     f"{by[schemes[0], L, a, r].mean_tokens:.0f}"] for r in cfg["rates"]]
            lines += [f"## {a}, T = {L}", "", get_attack(a, "text").mapping_doc, "",
                      "TPR at FPR 1e-3:", "", md_table(["rate", *schemes, "mean tokens"], rows), ""]
    return "\n".join(lines)


def write_outputs(res: TextRobustnessResult, out: Path) -> None:
    """results.json, report.md and text_robustness.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(res.to_json(), indent=1) + "\n")
    write_atomic(out / "report.md", report_markdown(res))
    multi = len(res.config["lengths"]) > 1
    plot_curves(res.cells, res.config["attacks"], lambda c: c.tpr[_key(1e-3)], "TPR @ FPR 1e-3",
                out / "text_robustness.png", line_key=lambda c: f"{c.scheme} T={c.length}" if multi else c.scheme,
                x_of=lambda c: c.rate, xlabel="edit rate")

