"""Scrub throughput: images/s per core on 512-px JPEGs (unmarked and marked), scrub's cost beside the
bare detector's on the same images, ``--jobs 2`` vs ``--jobs 1``, the Ray engine vs the local one on
the same cores, text tokens/s per core including tokenization, and a CUDA section when a GPU is present.

    .venv/bin/python bench/scrub.py [--quick] [--n 64] [--no-ray] [--out FILE | --update-results] [--overwrite] [--no-progress]

Writes runs/scrub.json by default (``--update-results``: the committed bench/results/scrub.json) and
prints the table.

Images: ``--n`` photos of ../shared/data/train (evenly spaced over the sorted listing, so BSDS and
Hays photos both), the short side resized to 512 px (bicubic) and center-cropped to 512x512, saved
as JPEG q95 ("unmarked"); the same photos marked with the demo key, JPEG q95 ("marked"). Kodak is
not used. Every image run is a real :func:`wmark.scrub.scrub` of a folder (action ``drop``: the
unmarked ones are copied, the marked ones left out; manifest, summary, report and histogram
written) on the CPU, torch on one thread per worker as the scrub runs it.

- per core: ``--jobs 1`` (one process, one torch thread): images / wall second; CPU seconds are the
  process's (torch, PIL, hashing, writing).
- scrub vs detector: the scrub's wall time per image over a bare loop of
  ``wmark.image.load().detect(image, key)`` over the same images decoded beforehand (decoding is
  free for the detector; the scrub reads, decodes, hashes, decides, writes and records); also
  over the detector called as the scrubber calls it (lists of ``--batch-size`` images), which
  separates the scrub's own cost from the detector's batching. A one-image scrub runs first, so
  imports and the model load are not billed to the first measured run.
- jobs and engines: the unmarked and marked images in one folder (2N), end to end (worker start,
  for Ray the local Ray instance and its actors, included) and in steady state (the engine alone
  over the same batches: images after the first result over the time from the first to the last).
- text: the three books of ../shared/data/text cut into documents of >= 4,000 characters at
  paragraph breaks, one JSON line each; ``scrub --action report`` with ``--jobs 1`` (windowed
  detection, kgw-selfhash, the built-in tokenizer); tokens counted with that tokenizer. Tokenization
  and detection are also timed alone; "per CPU-s" divides by the process's CPU time (all threads).
  One end-to-end run over 688k tokens meets every word for the first time (the tokenizer's word
  cache starts empty); the steady state, the scrubber over the last third of the corpus after the
  first two, is what a corpus that goes on sees (see :func:`text_steady`).
- GPU (only where CUDA is available): the 2N images with ``--device cuda --batch-size 64``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OutputError, fail, json_output, markdown_table, progress, write_json  # noqa: E402

OUTPUT = json_output("scrub")
SIZE = 512
QUALITY = 95
DOC_CHARS = 4000


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    w, c = _clock()
    return w - t[0], c - t[1]


# -- data -------------------------------------------------------------------------------------------------------
def make_images(root: Path, n: int, key, bar) -> dict[str, Path]:
    """``root/unmarked``, ``root/marked`` (n 512-px JPEGs each) and ``root/mixed`` (both)."""
    from PIL import Image

    from wmark.assets import shared_data
    from wmark.image import load

    photos = sorted(p for p in shared_data("train").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(photos) < n:
        raise ValueError(f"{shared_data('train')}: {len(photos)} photos, {n} asked")
    pick = [photos[round(i * (len(photos) - 1) / max(1, n - 1))] for i in range(n)]
    model = load()
    dirs = {k: root / k for k in ("unmarked", "marked", "mixed")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for p in pick:
        with Image.open(p) as im:
            im = im.convert("RGB")
        w, h = im.size
        s = SIZE / min(w, h)
        im = im.resize((max(SIZE, round(w * s)), max(SIZE, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - SIZE) // 2, (h - SIZE) // 2
        im = im.crop((left, top, left + SIZE, top + SIZE))
        for kind, img in (("unmarked", im), ("marked", model.embed(im, key).images)):
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=QUALITY)
            (dirs[kind] / (p.stem + ".jpg")).write_bytes(buf.getvalue())
            (dirs["mixed"] / f"{kind}_{p.stem}.jpg").write_bytes(buf.getvalue())
        bar.update(1)
    return dirs


def make_books(path: Path) -> list[str]:
    """The shared books as JSON Lines documents (>= DOC_CHARS characters, cut at paragraph breaks)."""
    from wmark.assets import shared_data

    docs: list[str] = []
    for f in sorted(shared_data("text").glob("*.txt")):
        cur = ""
        for para in re.split(r"\n\s*\n", f.read_text(encoding="utf-8")):
            para = para.strip()
            if not para:
                continue
            cur = f"{cur}\n\n{para}" if cur else para
            if len(cur) >= DOC_CHARS:
                docs.append(cur)
                cur = ""
        if cur:
            docs.append(cur)
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in docs), encoding="utf-8")
    return docs


# -- measurements -------------------------------------------------------------------------------------------------
def timed_scrub(src: Path, out: Path, key, **kw) -> dict:
    from wmark.scrub import scrub

    t = _clock()
    res = scrub(src, out, key, **kw)
    wall, cpu = _since(t)
    return {"wall_s": wall, "cpu_s": cpu, "samples": res.counts["samples"], "counts": res.counts}


def bare_detector(folder: Path, key, batch: int = 1) -> dict:
    """The detector alone over the folder's images, decoded beforehand (one thread): one image per
    call (``batch`` 1), or lists of ``batch`` images as the scrubber calls it."""
    from wmark.image import io as imio
    from wmark.image import load

    model = load()
    imgs = [imio.load(p) for p in sorted(folder.iterdir())]
    model.detect(imgs[0], key)  # warm
    t = _clock()
    if batch == 1:
        for im in imgs:
            model.detect(im, key, alpha=1e-3)
    else:
        for s in range(0, len(imgs), batch):
            model.detect(imgs[s:s + batch], key, alpha=1e-3)
    wall, cpu = _since(t)
    return {"wall_s": wall, "cpu_s": cpu, "samples": len(imgs), "per_call": batch}


def engine_timeline(name: str, jobs: int, folder: Path, key, batch_size: int) -> dict:
    """The engine alone over the folder's batches: end to end, to the first result, steady state."""
    from wmark.scrub.engines import make_engine
    from wmark.scrub.scrubber import Scrubber

    files = sorted(folder.iterdir())
    scrubber = Scrubber(key, kind="image", action="drop", alpha=1e-3, device="cpu")

    def tasks():
        for s in range(0, len(files), batch_size):
            chunk = files[s:s + batch_size]
            yield s, {"id": [f.name for f in chunk], "data": [f.read_bytes() for f in chunk],
                      "ext": [f.suffix for f in chunk], "error": [None] * len(chunk)}

    t0 = time.perf_counter()
    marks: list[tuple[float, int]] = []
    with make_engine(name, jobs, "cpu") as eng:
        for _, res in eng.run(scrubber, tasks()):
            marks.append((time.perf_counter() - t0, len(res["id"])))
        method = getattr(eng, "start_method", None)
    total = time.perf_counter() - t0
    first, n_first = marks[0]
    n = sum(k for _, k in marks)
    span = marks[-1][0] - first
    return {"wall_s": total, "first_result_s": first, "samples": n, "start_method": method,
            "steady_images_per_s": (n - n_first) / span if span > 0 else None}


def text_parts(docs: list[str], key) -> dict:
    """Tokenization alone and windowed detection alone (the scrubber's own code), one thread."""
    from wmark.scrub.scrubber import Scrubber

    s = Scrubber(key, kind="text", action="report")
    sch, tok = s.text_scheme()
    tok.encode_batch(docs[:32])  # the library's first call paid (its words stay in the word cache)
    t = _clock()
    ids = tok.encode_batch(docs)  # what the scrubber calls
    tok_wall, tok_cpu = _since(t)
    items = [(i, x) for i, x in enumerate(ids) if x]
    t = _clock()
    for _ in s._detect_texts(sch, items):
        pass
    det_wall, det_cpu = _since(t)
    return {"tokens": sum(map(len, ids)), "docs": len(docs), "tokenize_wall_s": tok_wall, "tokenize_cpu_s": tok_cpu,
            "detect_wall_s": det_wall, "detect_cpu_s": det_cpu}


def text_steady(docs: list[str], key, batch: int) -> dict:
    """The scrubber as an engine worker calls it (batches of ``batch`` documents in corpus order, one
    thread) over the last third of the corpus, after the first two thirds: the tokenizer's word cache
    is warm with their words only, so the last third's new words are encoded as they come, as on a
    corpus that goes on (the third is mostly the last book, text the cache has not seen)."""
    from wmark.scrub.scrubber import Scrubber

    s = Scrubber(key, kind="text", action="report")
    cut = 2 * len(docs) // 3

    def run(part: list[str], at: int) -> None:
        for i in range(0, len(part), batch):
            s({"id": [f"d{at + i + j}" for j in range(len(part[i:i + batch]))], "data": part[i:i + batch]})

    run(docs[:cut], 0)
    tok = s.text_scheme()[1]
    before = tok.cache_info()["words"]
    t = _clock()
    run(docs[cut:], cut)
    wall, cpu = _since(t)
    info = tok.cache_info()
    tokens = sum(map(len, tok.encode_batch(docs[cut:])))  # counted after the clock stops
    return {"docs": len(docs) - cut, "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
            "new_words": info["words"] - before, "cache": info}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 images per set (a smoke run)")
    ap.add_argument("--n", type=int, default=64, help="images per set (unmarked, marked; default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    OUTPUT.add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        out = OUTPUT.prepare(args)
    except OutputError as exc:
        return fail("scrub", exc)
    n = 16 if args.quick else args.n
    bs = args.batch_size

    import warnings

    import torch

    from wmark.keys import Key
    from wmark.runtime.threads import set_threads

    warnings.filterwarnings("ignore", message=".*demo key.*")
    set_threads(1)
    key = Key.demo()
    ray_ok, ray_why = not args.no_ray, "--no-ray" if args.no_ray else None
    if ray_ok:
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError as exc:
            ray_ok, ray_why = False, f"ray not installed ({exc})"
    cuda = torch.cuda.is_available()
    load0 = os.getloadavg()
    steps = n + 2 + 6 + 2 + 3 + (3 if ray_ok else 0) + 3 + (1 if cuda else 0)
    res: dict = {"config": {"images_per_set": n, "size": SIZE, "jpeg_quality": QUALITY, "batch_size": bs,
                            "action": "drop", "key": "demo"}}
    work = Path(tempfile.mkdtemp(prefix="wmark-bench-scrub-"))
    try:
        with progress(steps, "bench scrub", not args.no_progress, unit="step") as bar:
            dirs = make_images(work / "img", n, key, bar)
            books = work / "text" / "books.jsonl"
            books.parent.mkdir()
            docs = make_books(books)
            bar.update(1)
            o = work / "out"
            one = work / "one"
            one.mkdir()
            first = sorted(dirs["unmarked"].iterdir())[0]
            (one / first.name).write_bytes(first.read_bytes())
            timed_scrub(one, o / "warm", key, action="drop", jobs=1, device="cpu", batch_size=bs)  # imports, model
            bar.update(1)
            img: dict = {}
            for kind in ("unmarked", "marked"):
                img[f"{kind} scrub j1"] = timed_scrub(dirs[kind], o / f"{kind}-j1", key, action="drop", jobs=1,
                                                      device="cpu", batch_size=bs)
                bar.update(1)
                img[f"{kind} detector"] = bare_detector(dirs[kind], key)
                bar.update(1)
                img[f"{kind} detector batched"] = bare_detector(dirs[kind], key, bs)
                bar.update(1)
            img["marked strip j1"] = timed_scrub(dirs["marked"], o / "marked-strip", key, action="strip", jobs=1,
                                                 device="cpu", batch_size=bs)
            bar.update(1)
            img["mixed scrub j1"] = timed_scrub(dirs["mixed"], o / "mixed-j1", key, action="drop", jobs=1,
                                                device="cpu", batch_size=bs)
            bar.update(1)
            img["mixed scrub j2"] = timed_scrub(dirs["mixed"], o / "mixed-j2", key, action="drop", jobs=2,
                                                device="cpu", batch_size=bs)
            bar.update(1)
            eng: dict = {}
            for name, jobs in (("local", 1), ("local", 2)):
                eng[f"{name} j{jobs}"] = engine_timeline(name, jobs, dirs["mixed"], key, bs)
                bar.update(1)
            if ray_ok:
                img["mixed scrub ray j2"] = timed_scrub(dirs["mixed"], o / "mixed-ray", key, action="drop",
                                                        engine="ray", jobs=2, device="cpu", batch_size=bs)
                bar.update(1)
                eng["ray j2"] = engine_timeline("ray", 2, dirs["mixed"], key, bs)
                bar.update(1)
                same = (json.loads((o / "mixed-ray" / "summary.json").read_text())["counts"]
                        == json.loads((o / "mixed-j2" / "summary.json").read_text())["counts"])
                res["ray_same_counts"] = same
                bar.update(1)
            text = timed_scrub(books, o / "text", key, action="report", jobs=1, device="cpu", batch_size=bs)
            bar.update(1)
            text.update(text_parts(docs, key))
            bar.update(1)
            steady = text_steady(docs, key, bs)
            bar.update(1)
            gpu: dict = {"skipped": "no CUDA device"}
            if cuda:
                gpu = {"device": torch.cuda.get_device_name(0),
                       **timed_scrub(dirs["mixed"], o / "mixed-cuda", key, action="drop", jobs=1, device="cuda",
                                     batch_size=64)}
                gpu["images_per_s"] = gpu["samples"] / gpu["wall_s"]
                bar.update(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()

    def rate(r):
        return r["samples"] / r["wall_s"]

    def ms(r):
        return 1e3 * r["wall_s"] / r["samples"]

    ratios = {
        "scrub_over_detector_unmarked": ms(img["unmarked scrub j1"]) / ms(img["unmarked detector"]),
        "scrub_over_detector_marked": ms(img["marked scrub j1"]) / ms(img["marked detector"]),
        "scrub_over_batched_detector_unmarked": ms(img["unmarked scrub j1"]) / ms(img["unmarked detector batched"]),
        "scrub_over_batched_detector_marked": ms(img["marked scrub j1"]) / ms(img["marked detector batched"]),
        "scrub_over_detector_cpu_unmarked": img["unmarked scrub j1"]["cpu_s"] / img["unmarked detector"]["cpu_s"],
        "scrub_over_detector_cpu_marked": img["marked scrub j1"]["cpu_s"] / img["marked detector"]["cpu_s"],
        "jobs2_over_jobs1_end_to_end": img["mixed scrub j1"]["wall_s"] / img["mixed scrub j2"]["wall_s"],
        "jobs2_over_jobs1_steady": eng["local j2"]["steady_images_per_s"] / eng["local j1"]["steady_images_per_s"],
    }
    if ray_ok:
        ratios["ray_over_local_j2_end_to_end"] = img["mixed scrub ray j2"]["wall_s"] / img["mixed scrub j2"]["wall_s"]
        ratios["ray_over_local_j2_steady"] = (eng["local j2"]["steady_images_per_s"]
                                              / eng["ray j2"]["steady_images_per_s"])
    tok_per_s = text["tokens"] / text["wall_s"]
    tok_per_cpu_s = text["tokens"] / text["cpu_s"]
    res.update(images=img, engines=eng, ratios=ratios, gpu=gpu, load_avg={"start": load0, "end": load1},
               text={**text, "tokens_per_s": tok_per_s, "tokens_per_cpu_s": tok_per_cpu_s,
                     "tokenize_tokens_per_s": text["tokens"] / text["tokenize_wall_s"],
                     "detect_tokens_per_s": text["tokens"] / text["detect_wall_s"],
                     "steady": {**steady, "tokens_per_cpu_s": steady["tokens"] / steady["cpu_s"]}})
    if not ray_ok:
        res["ray"] = {"skipped": ray_why}

    rows = []
    for kind in ("unmarked", "marked"):
        s, d = img[f"{kind} scrub j1"], img[f"{kind} detector"]
        rows.append([f"{kind} 512-px JPEG, scrub --jobs 1 (drop)", f"{rate(s):.2f} img/s/core ({ms(s):.0f} ms/img, "
                     f"{s['cpu_s'] / s['samples'] * 1e3:.0f} CPU-ms)", ""])
        db = img[f"{kind} detector batched"]
        rows.append([f"{kind}: bare detector, one image per call", f"{rate(d):.2f} img/s ({ms(d):.0f} ms/img)", ""])
        rows.append([f"{kind}: bare detector, {bs} images per call", f"{rate(db):.2f} img/s ({ms(db):.0f} ms/img)", ""])
        rows.append([f"{kind}: scrub / detector (one per call), per image",
                     f"{ratios[f'scrub_over_detector_{kind}']:.2f}x", "<= 1.3x"])
        rows.append([f"{kind}: scrub / detector ({bs} per call), per image",
                     f"{ratios[f'scrub_over_batched_detector_{kind}']:.2f}x", ""])
        rows.append([f"{kind}: scrub / detector (one per call), CPU time per image",
                     f"{ratios[f'scrub_over_detector_cpu_{kind}']:.2f}x", "<= 1.3x"])
    st = img["marked strip j1"]
    rows.append(["marked: scrub --action strip --jobs 1 (strip, re-encode q95, re-detect)",
                 f"{rate(st):.2f} img/s/core ({ms(st):.0f} ms/img)", ""])
    for k in ("mixed scrub j1", "mixed scrub j2") + (("mixed scrub ray j2",) if ray_ok else ()):
        r = img[k]
        rows.append([f"{2 * n} mixed, {k.replace('mixed ', '')}: end to end", f"{r['wall_s']:.1f} s "
                     f"({rate(r):.2f} img/s)", ""])
    for k, e in eng.items():
        how = f", workers {e['start_method']}ed" if e.get("start_method") else ""
        rows.append([f"{2 * n} mixed, engine {k}: steady state (first result at {e['first_result_s']:.1f} s{how})",
                     f"{e['steady_images_per_s']:.2f} img/s", ""])
    rows.append(["--jobs 2 / --jobs 1, end to end", f"{ratios['jobs2_over_jobs1_end_to_end']:.2f}x", ">= 1.7x"])
    rows.append(["--jobs 2 / --jobs 1, steady state", f"{ratios['jobs2_over_jobs1_steady']:.2f}x", ">= 1.7x"])
    if ray_ok:
        rows.append(["ray / local (--jobs 2 both), time, end to end",
                     f"{ratios['ray_over_local_j2_end_to_end']:.2f}x", "<= 1.25x"])
        rows.append(["ray / local (--jobs 2 both), time, steady state",
                     f"{ratios['ray_over_local_j2_steady']:.2f}x", "<= 1.25x"])
    else:
        rows.append(["ray engine", f"skipped: {ray_why}", ""])
    t = res["text"]
    rows.append([f"text: scrub --jobs 1 ({t['docs']} docs, {t['tokens']:,} tokens), incl. tokenization",
                 f"{tok_per_s / 1e6:.3f} M tokens/s ({tok_per_cpu_s / 1e6:.3f} M per CPU-s)", ">= 1 M/s/core"])
    sd = t["steady"]
    rows.append([f"text: steady state, the scrubber over the last third ({sd['docs']} docs, {sd['tokens']:,} tokens, "
                 f"{sd['new_words']:,} words new to the cache), incl. tokenization",
                 f"{sd['tokens'] / sd['wall_s'] / 1e6:.3f} M tokens/s ({sd['tokens_per_cpu_s'] / 1e6:.3f} M per CPU-s)",
                 ">= 1 M/s/core"])
    rows.append(["text: tokenization alone (Tokenizer.encode_batch, as the scrubber calls it; word cache cold)",
                 f"{t['tokenize_tokens_per_s'] / 1e6:.3f} M tokens/s "
                 f"({t['tokens'] / t['tokenize_cpu_s'] / 1e6:.3f} M per CPU-s)", ""])
    rows.append(["text: windowed detection alone", f"{t['detect_tokens_per_s'] / 1e6:.3f} M tokens/s "
                 f"({t['tokens'] / t['detect_cpu_s'] / 1e6:.3f} M per CPU-s)", ""])
    rows.append(["GPU: 2N images, --device cuda --batch-size 64",
                 f"{gpu['images_per_s']:.0f} img/s ({gpu['device']})" if cuda else "skipped: no CUDA device",
                 ">= 1000 img/s (H100/H200)"])
    table = markdown_table(["measurement", "value", "target"], rows)
    res["table_md"] = table
    path = write_json("scrub", res, out)
    print(table)
    print(f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end ({os.cpu_count()} cores)")
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
