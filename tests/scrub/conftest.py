"""Fixtures of the scrub tests: small marked / unmarked images and texts made once per session, and
the inputs built from them in every format."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

KEY_LINE = "passphrase:wmark public demo key - do not use in production\n"

HUMAN = [
    "The harbour was quiet that morning. Fishermen mended their nets along the stone wall while gulls argued "
    "over scraps, and the baker's boy ran past with a basket of warm bread for the inn at the corner. Nobody "
    "spoke of the storm that had kept the boats ashore for three days, though everyone had watched the sky.",
    "In the spring the committee met again to discuss the library roof. The treasurer reported that the fund "
    "had grown slowly, mostly through small gifts from readers, and that a builder from the next town had "
    "offered to repair the slates at cost if the work could wait until the summer holidays.",
    "She kept a notebook of every bird she saw from the kitchen window: robins in winter, swallows in May, "
    "once a heron that stood in the flooded field for an entire afternoon. Her grandson later found the notebook "
    "in a drawer and read it from cover to cover on the train home.",
]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root`` (hidden ones and the closing files aside)."""
    skip = {"manifest.parquet", "manifest.jsonl", "summary.json", "report.md", "pvalues.png"}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")) and rel not in skip:
            out[rel] = p.read_bytes()
    return out


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, hidden ones included (what must never change)."""
    return {p.relative_to(root).as_posix(): sha(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """torch on one CPU thread, as the scrub workers run (several threads fight over shared cores)."""
    from wmark.runtime.threads import set_threads

    restore = set_threads(1)
    yield
    restore()


@pytest.fixture(scope="session")
def key():
    from wmark.keys import Key

    return Key.demo()


@pytest.fixture
def key_file(tmp_path) -> Path:
    p = tmp_path / "k.key"
    p.write_text(KEY_LINE)
    os.chmod(p, 0o600)
    return p


@pytest.fixture(scope="session")
def pictures(key) -> dict[str, tuple[bytes, bool]]:
    """name -> (file bytes, marked): PNG and JPEG (q95), marked with the demo key or not, and bad files."""
    from PIL import Image

    from wmark.image import load

    model = load()
    rng = np.random.default_rng(7)
    out: dict[str, tuple[bytes, bool]] = {}
    sizes = [(160, 128), (128, 160), (192, 128), (144, 144)]
    for i, (w, h) in enumerate(sizes):
        base = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
        marked = model.embed(img, key).images
        fmt, ext = ("PNG", "png") if i % 2 == 0 else ("JPEG", "jpg")
        kw = {"quality": 95} if fmt == "JPEG" else {}
        out[f"m{i}.{ext}"] = (encode(marked, fmt, **kw), True)
        out[f"u{i}.{ext}"] = (encode(img, fmt, **kw), False)
    good = out["m0.png"][0]
    out["zero.png"] = (b"", False)
    out["trunc.png"] = (good[: len(good) // 3], False)
    out["junk.jpg"] = (b"this is not an image at all", False)
    return out


@pytest.fixture(scope="session")
def texts(key) -> dict[str, tuple[str, bool]]:
    """name -> (text, marked): two generated with the kgw-selfhash scheme, human ones, and one human
    document with a marked passage pasted into its middle."""
    import torch

    import wmark.lm
    from wmark.text import make_scheme

    lm = wmark.lm.load(device="cpu")
    sch = make_scheme("kgw-selfhash", key, lm.vocab_size)
    gen = torch.Generator().manual_seed(11)
    marked = [lm.generate_text("", max_new_tokens=140, logits_processor=sch, generator=gen, stop_at_eos=False)
              for _ in range(2)]
    out = {f"h{i}": (t, False) for i, t in enumerate(HUMAN)}
    out["g0"], out["g1"] = (marked[0], True), (marked[1], True)
    cut = HUMAN[1].index(" the treasurer") if " the treasurer" in HUMAN[1] else 60
    out["pasted"] = (HUMAN[0] + " " + HUMAN[1][:cut] + marked[1] + HUMAN[1][cut:] + " " + HUMAN[2], True)
    return out


@pytest.fixture
def kit(pictures, texts):
    """Builders of inputs in each format, and comparison helpers."""

    def folder(root: Path, names=None, bad: bool = True) -> Path:
        names = names or [n for n in pictures if bad or pictures[n][1] or n.startswith("u")]
        layout = {n: (f"a/{n}" if i % 3 == 0 else f"b/c/{n}" if i % 3 == 1 else n) for i, n in enumerate(sorted(names))}
        for n, rel in layout.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(pictures[n][0])
        return root

    def shard(path: Path, names, extra: bool = True) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            for i, n in enumerate(names):
                stem, ext = n.split(".")
                members = [(f"s{i:03d}_{stem}.{ext}", pictures[n][0])]
                if extra:
                    members += [(f"s{i:03d}_{stem}.json", json.dumps({"i": i, "name": n}).encode()),
                                (f"s{i:03d}_{stem}.cls", str(i % 2).encode())]
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
                    tf.addfile(info, io.BytesIO(data))
        return path

    def text_shard(path: Path, names) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            for n in names:
                for name, data in ((f"{n}.txt", texts[n][0].encode()), (f"{n}.json", b"{}")):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), 1_700_000_000
                    tf.addfile(info, io.BytesIO(data))
        return path

    def parquet(path: Path, names, struct: bool = False) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        data = [pictures[n][0] for n in names]
        col = (pa.array([{"bytes": d, "path": n} for d, n in zip(data, names)],
                        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])) if struct else
               pa.array(data, type=pa.binary()))
        t = pa.table({"name": pa.array(names), "image": col, "label": pa.array(list(range(len(names))))})
        pq.write_table(t, path, row_group_size=3)
        return path

    def text_parquet(path: Path, names) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        t = pa.table({"doc": pa.array(names), "text": pa.array([texts[n][0] for n in names])})
        pq.write_table(t, path)
        return path

    def jsonl(path: Path, names, bad: bool = True, field: str = "text") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"doc": n, field: texts[n][0], "meta": {"ü": 1}}, ensure_ascii=False) for n in names]
        if bad:
            lines.insert(1, "{not json")
            lines.insert(3, json.dumps({"doc": "x", "other": "no text field"}))
            lines.insert(4, "")
        path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
        return path

    def members(path: Path) -> list[tuple[str, bytes]]:
        with tarfile.open(path) as tf:
            return [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]

    def rows(out: Path) -> dict[str, dict]:
        from wmark.scrub import read_manifest

        p = out / "manifest.parquet"
        return {r["id"]: r for r in read_manifest(p if p.exists() else out / "manifest.jsonl")}

    return SimpleNamespace(folder=folder, shard=shard, text_shard=text_shard, parquet=parquet,
                           text_parquet=text_parquet, jsonl=jsonl, members=members, rows=rows, tree=tree,
                           digests=digests, sha=sha, pictures=pictures, texts=texts)
