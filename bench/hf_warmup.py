"""Warm-up of the text marks in a fresh process: Hugging Face ``generate()`` on a tiny Llama, marked
through ``wmark.hf.generate`` and unmarked, each in its own new Python process.

    .venv/bin/python bench/hf_warmup.py [--quick] [--schemes NAME ...] [--backends auto compile]
        [--repeats R] [--warm-inductor-cache] [--model toy|smol135m] [--no-hf]
        [--out FILE | --update-results] [--overwrite] [--no-progress]

Writes runs/hf_warmup.json by default (``--update-results``: the committed bench/results/hf_warmup.json).

Model: ``LlamaForCausalLM`` built from a config with a fixed seed, vocabulary 49,152, nothing
downloaded: ``--model toy`` (hidden 64, 2 layers: the mark's share is large) or ``smol135m``
(SmolLM-135M's shape: hidden 576, 30 layers, random weights: a real serving step); Hugging Face's own
watermark (``hf-lefthash``, ``hf-selfhash``, through ``watermarking_config``) beside it; batch 8 of 16-token prompts, 64 new tokens, ``do_sample=True``,
temperature 0.8, top-p 0.95. Each child process imports, builds the model, then times: the first
``generate()`` (``first_s``, with its time to first token ``ttft_s``, read from a streamer) and a second
one (``steady_s``). ``backend``: ``auto`` (today: eager on CPU until a compile pays) or ``compile``
(``WMARK_BACKEND=compile``: what ``auto`` did before, torch.compile for B x V >= 2**18), each child with
an empty inductor cache (``--warm-inductor-cache``: one shared cache, second runs hit it). Medians
over ``--repeats`` fresh processes per cell; the mark's warm-up is ``first_s`` minus the unmarked
``first_s`` (and the same for ``ttft_s``); the time spent inside the wmark processor is also read
directly (``mark_first_call_s``: its first call, warm-up included; ``mark_steady_median_ms`` per step
of the second run): on a loaded machine the totals vary by tens of percent, the direct times do not.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402

SCHEMES = ["kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament"]
#: Hugging Face's own watermark (``watermarking_config=WatermarkingConfig(seeding_scheme=...)``), beside wmark's
HF_BASELINES = ["hf-lefthash", "hf-selfhash"]
#: model shapes (random weights from a config, nothing downloaded): a toy, and SmolLM-135M's shape
MODELS = {
    "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4),
    "smol135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, tie_word_embeddings=True),
}
OUTPUT = json_output("hf_warmup")
V, B, PROMPT, NEW = 49152, 8, 16, 64


def child(spec: dict) -> dict:
    """One fresh-process measurement (runs in the child)."""
    t0 = time.perf_counter()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, WatermarkingConfig

    import wmark.hf
    from wmark import Key
    from wmark.text import make_scheme, ops

    imported = time.perf_counter() - t0
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, **MODELS[spec.get("model", "toy")], max_position_embeddings=256, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(3, V, (B, PROMPT), generator=torch.Generator().manual_seed(1))
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.8, top_p=0.95, top_k=0,
              max_new_tokens=NEW, min_new_tokens=NEW)
    hf_mark = spec["scheme"][3:] if spec["scheme"].startswith("hf-") else None
    scheme = None if spec["scheme"] == "none" or hf_mark else make_scheme(spec["scheme"], Key.demo(), V)
    from wmark.text.processor import WatermarkCore

    mark_s: list[float] = []  # seconds inside the wmark processor, per call
    inner = WatermarkCore.__call__

    def timed(self, input_ids, scores):
        start = time.perf_counter()
        out = inner(self, input_ids, scores)
        mark_s.append(time.perf_counter() - start)
        return out

    WatermarkCore.__call__ = timed

    class FirstToken:  # generate() calls put() with the prompt, then once per new token
        def __init__(self):
            self.calls, self.at = 0, None

        def put(self, value):
            self.calls += 1
            if self.calls == 2:
                self.at = time.perf_counter()

        def end(self):
            pass

    def run():
        streamer = FirstToken()
        torch.manual_seed(2)
        start = time.perf_counter()
        if hf_mark:
            model.generate(ids, streamer=streamer, watermarking_config=WatermarkingConfig(seeding_scheme=hf_mark), **kw)
        elif scheme is None:
            model.generate(ids, streamer=streamer, **kw)
        else:
            wmark.hf.generate(model, scheme, ids, streamer=streamer, **kw)
        return time.perf_counter() - start, streamer.at - start

    first_s, ttft_s = run()
    first_mark = list(mark_s)
    mark_s.clear()
    steady_s, steady_ttft_s = run()
    per_step = sorted(mark_s)
    return {"import_s": imported, "first_s": first_s, "ttft_s": ttft_s, "steady_s": steady_s,
            "steady_ttft_s": steady_ttft_s,
            "mark_first_call_s": first_mark[0] if first_mark else 0.0,
            "mark_first_generate_s": sum(first_mark), "mark_steady_generate_s": sum(per_step),
            "mark_steady_median_ms": 1e3 * per_step[len(per_step) // 2] if per_step else 0.0,
            "dispatch": ops.dispatch_stats(),
            "dynamo_imported": "torch._dynamo" in sys.modules, "threads": torch.get_num_threads()}


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="kgw-lefthash and gumbel only, one repeat")
    ap.add_argument("--schemes", nargs="+", default=None, choices=SCHEMES, metavar="NAME")
    ap.add_argument("--backends", nargs="+", default=["auto", "compile"], choices=["auto", "compile", "eager"])
    ap.add_argument("--model", default="toy", choices=sorted(MODELS),
                    help="model shape: toy (hidden 64, 2 layers) or smol135m (SmolLM-135M's shape, random weights)")
    ap.add_argument("--no-hf", action="store_true", help="leave out Hugging Face's own watermark baselines")
    ap.add_argument("--repeats", type=int, default=None, help="fresh processes per cell (default 3, quick 1)")
    ap.add_argument("--warm-inductor-cache", action="store_true",
                    help="share one inductor cache between the children (default: each starts empty)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("hf_warmup", exc)
    try:
        import transformers  # noqa: F401
    except ImportError:
        return fail("hf_warmup", "needs transformers (pip install -e .[hf])")
    schemes = args.schemes or (["kgw-lefthash", "gumbel"] if args.quick else SCHEMES)
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        return fail("hf_warmup", "--repeats must be >= 1")
    cells = [("none", "auto")] + [(s, b) for b in args.backends for s in schemes]
    if not args.no_hf:
        cells += [(h, "auto") for h in HF_BASELINES]
    bar = progress(len(cells) * repeats, "hf_warmup", not args.no_progress, unit="process")
    shared_cache = tempfile.mkdtemp(prefix="wmark-inductor-") if args.warm_inductor_cache else None
    raw: dict[str, list[dict]] = {}
    for rep in range(repeats):  # interleaved, so load drifts hit every cell alike
        for scheme, backend in cells:
            env = {k: v for k, v in os.environ.items() if k not in ("WMARK_BACKEND", "WMARK_COMPILE_AFTER_S")}
            if backend != "auto":
                env["WMARK_BACKEND"] = backend
            with tempfile.TemporaryDirectory(prefix="wmark-inductor-") as cold:
                env["TORCHINDUCTOR_CACHE_DIR"] = shared_cache or cold
                res = subprocess.run([sys.executable, __file__, "--child", json.dumps({"scheme": scheme, "model": args.model})], env=env,
                                     capture_output=True, text=True, timeout=900)
            if res.returncode != 0:
                bar.close()
                tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
                return fail("hf_warmup", f"child {scheme}/{backend} failed: {tail}")
            raw.setdefault(f"{scheme}/{backend}", []).append(json.loads(res.stdout.strip().splitlines()[-1]))
            bar.update(1)
    bar.close()

    base = raw["none/auto"]
    b_first, b_ttft, b_steady = (median([r[k] for r in base]) for k in ("first_s", "ttft_s", "steady_s"))
    rows, results = [], []
    for key, runs in raw.items():
        scheme, backend = key.split("/")
        m = {k: median([r[k] for r in runs]) for k in ("first_s", "ttft_s", "steady_s", "import_s",
                                                        "mark_first_call_s", "mark_first_generate_s",
                                                        "mark_steady_median_ms")}
        cell = {"scheme": scheme, "backend": backend, **m, "runs": runs}
        if scheme != "none":
            cell["warmup_before_first_token_s"] = m["ttft_s"] - b_ttft
            cell["first_generate_overhead_s"] = m["first_s"] - b_first
            cell["first_generate_overhead_pct"] = 100 * (m["first_s"] - b_first) / b_first
            cell["steady_overhead_pct"] = 100 * (m["steady_s"] - b_steady) / b_steady
            cell["mark_fraction_of_steady_pct"] = 100 * median([r["mark_steady_generate_s"] / r["steady_s"]
                                                               for r in runs])
        results.append(cell)
        rows.append([scheme, backend, m["ttft_s"], m["first_s"], m["steady_s"], m["mark_first_call_s"],
                     m["mark_first_generate_s"], m["mark_steady_median_ms"],
                     cell.get("mark_fraction_of_steady_pct", float("nan")),
                     cell.get("warmup_before_first_token_s", float("nan")),
                     cell.get("first_generate_overhead_pct", float("nan")),
                     cell.get("steady_overhead_pct", float("nan"))])
    table = markdown_table(["scheme", "backend", "ttft s", "first generate s", "second generate s",
                            "mark 1st call s", "mark in 1st generate s", "mark ms/step (2nd)", "mark % of 2nd",
                            "ttft - unmarked s", "first generate +%", "second generate +%"], rows)
    path = write_json("hf_warmup", {
        "setup": {"model": f"LlamaForCausalLM from config ({args.model}: {MODELS[args.model]})", "vocab_size": V, "batch": B,
                  "prompt_tokens": PROMPT, "new_tokens": NEW, "sampling": "do_sample, T=0.8, top_p=0.95",
                  "repeats": repeats, "inductor_cache": "shared" if shared_cache else "empty per process"},
        "results": results, "table_md": table}, out)
    print(table)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
