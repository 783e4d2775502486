"""Each input format round-trips: outputs mirror the input, kept samples are byte-identical, drop
leaves the marked ones out, strip removes the mark, bad samples are error rows, the input is
never written to."""
from __future__ import annotations

import io
import json

import pytest

from wmark.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(src, out, key_file, *extra) -> int:
    return main(["scrub", str(src), "-o", str(out), "--key-file", str(key_file), "--no-progress", *extra])


def _fmt(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.format


def test_folder_tree_report_drop_strip(tmp_path, kit, key_file, capsys):
    src = kit.folder(tmp_path / "in")
    before = kit.digests(src)
    names = {p: kit.pictures[p.rsplit("/", 1)[-1]] for p in kit.tree(src)}

    assert _run(src, tmp_path / "rep", key_file, "--json") == 0
    res = json.loads(capsys.readouterr().out)
    rows = kit.rows(tmp_path / "rep")
    assert set(rows) == set(names) and res["counts"]["samples"] == len(names)
    assert not kit.tree(tmp_path / "rep")  # report: the manifest only
    for rel, (data, marked) in names.items():
        r = rows[rel]
        assert r["kind"] == "image" and r["sha256_in"] == kit.sha(data)
        if rel.rsplit("/", 1)[-1] in ("zero.png", "trunc.png", "junk.jpg"):
            assert r["action"] == "error" and r["p_value"] is None and "\n" not in r["error"], r
        else:
            assert r["detected"] is marked and r["action"] == "kept" and r["sha256_out"] is None, r
            assert (r["payload"] == "000000000000") is marked
    assert "0 bytes" in next(r["error"] for k, r in rows.items() if k.endswith("zero.png"))
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["expected_false"]["chosen"]["expected_false"] == pytest.approx(1e-3 * summary["counts"]["tested"])
    assert (tmp_path / "rep" / "pvalues.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Errors (3)" in (tmp_path / "rep" / "report.md").read_text()

    assert _run(src, tmp_path / "drop", key_file, "--action", "drop") == 0
    got = kit.tree(tmp_path / "drop")
    assert set(got) == {rel for rel, (_, m) in names.items() if not m}  # mirrored tree, marked left out
    assert all(got[rel] == names[rel][0] for rel in got)  # kept and bad ones byte for byte

    assert _run(src, tmp_path / "skip", key_file, "--action", "drop", "--on-error", "skip") == 0
    assert set(kit.tree(tmp_path / "skip")) == {rel for rel, (_, m) in names.items()
                                                if not m and rows[rel]["action"] != "error"}

    assert _run(src, tmp_path / "strip", key_file, "--action", "strip", "--manifest-format", "jsonl") == 0
    got, rows = kit.tree(tmp_path / "strip"), kit.rows(tmp_path / "strip")
    assert set(got) == set(names)
    for rel, (data, marked) in names.items():
        r = rows[rel]
        if marked:
            assert r["action"] == "stripped" and got[rel] != data and r["sha256_out"] == kit.sha(got[rel])
            assert _fmt(got[rel]) == _fmt(data)  # PNG stays PNG, JPEG stays JPEG
            assert r["p_after"] > 1e-3, r  # the strip is verified by detection
        else:
            assert got[rel] == data and r["p_after"] is None
    assert kit.digests(src) == before  # the input is never written to


def test_webdataset_shards(tmp_path, kit, key_file):
    names = ["m0.png", "u0.png", "m1.jpg", "u1.jpg", "trunc.png"]
    src = tmp_path / "in"
    kit.shard(src / "part" / "000.tar", names[:3])
    kit.shard(src / "part" / "001.tar", names[3:])
    kit.shard(src / "002.tar", ["u2.png", "u3.jpg"])
    before = kit.digests(src)
    assert _run(src, tmp_path / "drop", key_file, "--action", "drop") == 0
    rows = kit.rows(tmp_path / "drop")
    assert set(rows) == {"part/000.tar/s000_m0", "part/000.tar/s001_u0", "part/000.tar/s002_m1",
                         "part/001.tar/s000_u1", "part/001.tar/s001_trunc", "002.tar/s000_u2", "002.tar/s001_u3"}
    assert [rows[k]["action"] for k in sorted(rows)] == ["kept", "kept", "dropped", "kept", "dropped", "kept", "error"]
    out = tmp_path / "drop"
    assert set(kit.tree(out)) == {"part/000.tar", "part/001.tar", "002.tar"}
    assert (out / "002.tar").read_bytes() == (src / "002.tar").read_bytes()  # nothing changed: copied whole
    got = kit.members(out / "part" / "000.tar")
    assert [n for n, _ in got] == ["s001_u0.png", "s001_u0.json", "s001_u0.cls"]
    assert dict(got) == {n: d for n, d in kit.members(src / "part" / "000.tar") if n.startswith("s001")}

    assert _run(src, tmp_path / "strip", key_file, "--action", "strip") == 0
    rows = kit.rows(tmp_path / "strip")
    for k in ("part/000.tar/s000_m0", "part/000.tar/s002_m1"):
        assert rows[k]["action"] == "stripped" and rows[k]["p_after"] > 1e-3
    a, b = kit.members(src / "part" / "000.tar"), kit.members(tmp_path / "strip" / "part" / "000.tar")
    assert [n for n, _ in a] == [n for n, _ in b]
    for (n, da), (_, db) in zip(a, b):
        assert (da != db) == (n in ("s000_m0.png", "s002_m1.jpg"))
        assert _fmt(db) == _fmt(da) if n.endswith((".png", ".jpg")) else da == db
        if n in ("s000_m0.png", "s002_m1.jpg"):
            assert rows[f"part/000.tar/{n.split('.')[0]}"]["sha256_out"] == kit.sha(db)
    assert kit.digests(src) == before


def test_a_truncated_shard_keeps_its_readable_samples(tmp_path, kit, key_file):
    src = tmp_path / "in"
    full = kit.shard(tmp_path / "full.tar", ["u0.png", "m0.png", "u1.jpg"]).read_bytes()
    src.mkdir()
    (src / "cut.tar").write_bytes(full[: int(len(full) * 0.6)])
    assert _run(src, tmp_path / "out", key_file, "--action", "drop") == 0
    rows = kit.rows(tmp_path / "out")
    assert rows["cut.tar/s000_u0"]["action"] == "kept"
    errs = [r for r in rows.values() if r["action"] == "error"]
    assert errs and all("truncated" in r["error"] or "end of data" in r["error"] for r in errs)
    names = [n for n, _ in kit.members(tmp_path / "out" / "cut.tar")]
    assert names[:3] == ["s000_u0.png", "s000_u0.json", "s000_u0.cls"]


@pytest.mark.parametrize("struct", [False, True])
def test_parquet_image_column(tmp_path, kit, key_file, struct):
    import pyarrow.parquet as pq

    names = ["u0.png", "m0.png", "zero.png", "u1.jpg", "m1.jpg"]
    src = kit.parquet(tmp_path / "in" / "train-000.parquet", names, struct=struct)
    before = kit.digests(tmp_path / "in")
    assert _run(tmp_path / "in", tmp_path / "out", key_file, "--action", "strip", "--column", "image") == 0
    rows = kit.rows(tmp_path / "out")
    assert [rows[f"train-000.parquet/{i}"]["action"] for i in range(5)] == ["kept", "stripped", "error", "kept",
                                                                           "stripped"]
    t_in, t_out = pq.read_table(src).to_pylist(), pq.read_table(tmp_path / "out" / "train-000.parquet").to_pylist()
    assert len(t_out) == 5 and [r["name"] for r in t_out] == names and [r["label"] for r in t_out] == list(range(5))
    cell = (lambda r: r["image"]["bytes"]) if struct else (lambda r: r["image"])
    for i, (a, b) in enumerate(zip(t_in, t_out)):
        assert (cell(a) == cell(b)) == (i not in (1, 4))
        if struct:
            assert a["image"]["path"] == b["image"]["path"]
    assert rows["train-000.parquet/1"]["p_after"] > 1e-3 and _fmt(cell(t_out[4])) == "JPEG"

    assert _run(src, tmp_path / "drop", key_file, "--action", "drop", "--on-error", "skip") == 0
    assert [r["name"] for r in pq.read_table(tmp_path / "drop" / "train-000.parquet").to_pylist()] == ["u0.png",
                                                                                                     "u1.jpg"]
    assert kit.digests(tmp_path / "in") == before


def test_jsonl_text_windowed_drop_and_strip(tmp_path, kit, key_file):
    names = ["h0", "g0", "h1", "pasted", "h2", "g1"]
    src = kit.jsonl(tmp_path / "in" / "corpus.jsonl", names)
    raw_lines = src.read_bytes().split(b"\n")
    before = kit.digests(tmp_path / "in")
    assert _run(src, tmp_path / "drop", key_file, "--action", "drop") == 0
    rows = kit.rows(tmp_path / "drop")
    by_doc = {}
    for k, r in rows.items():
        line = raw_lines[int(k.rsplit("/", 1)[1]) - 1]
        try:
            by_doc[json.loads(line).get("doc")] = r
        except ValueError:
            by_doc["bad-json"] = r
    for n in names:
        assert by_doc[n]["detected"] is kit.texts[n][1], (n, by_doc[n])  # the pasted passage is found too
        assert by_doc[n]["kind"] == "text" and by_doc[n]["sha256_in"] == kit.sha(kit.texts[n][0].encode())
    assert by_doc["bad-json"]["action"] == by_doc["x"]["action"] == "error"
    assert "no 'text' field" in by_doc["x"]["error"] and "invalid JSON" in by_doc["bad-json"]["error"]
    out_lines = (tmp_path / "drop" / "corpus.jsonl").read_bytes().split(b"\n")
    kept = [ln for ln in raw_lines if not any(f'"doc": "{n}"'.encode() in ln for n in ("g0", "g1", "pasted"))]
    assert out_lines == kept  # byte for byte, the bad lines and the blank line copied

    assert _run(src, tmp_path / "strip", key_file, "--action", "strip") == 0
    rows = kit.rows(tmp_path / "strip")
    out_lines = (tmp_path / "strip" / "corpus.jsonl").read_bytes().split(b"\n")
    assert len(out_lines) == len(raw_lines)
    for a, b in zip(raw_lines, out_lines):
        try:
            doc = json.loads(a)
        except ValueError:
            assert a == b
            continue
        if doc.get("doc") in ("g0", "g1", "pasted"):
            got = json.loads(b)
            w = got.pop("wmark_weights")
            assert got == doc and len(w) > 50 and min(w) < 1 < max(w)  # green tokens down, red ones up
        else:
            assert a == b
    assert sum(r["action"] == "stripped" for r in rows.values()) == 3
    assert kit.digests(tmp_path / "in") == before


def test_text_in_parquet_and_webdataset(tmp_path, kit, key_file):
    import pyarrow.parquet as pq

    names = ["h0", "g0", "h2"]
    kit.text_parquet(tmp_path / "p" / "docs.parquet", names)
    assert _run(tmp_path / "p", tmp_path / "po", key_file, "--action", "strip") == 0
    rows = kit.rows(tmp_path / "po")
    assert [rows[f"docs.parquet/{i}"]["detected"] for i in range(3)] == [False, True, False]
    t = pq.read_table(tmp_path / "po" / "docs.parquet").to_pylist()
    assert [r["text"] for r in t] == [kit.texts[n][0] for n in names]
    assert t[0]["wmark_weights"] is None and len(t[1]["wmark_weights"]) > 50

    kit.text_shard(tmp_path / "w" / "000.tar", names)
    assert _run(tmp_path / "w", tmp_path / "wo", key_file, "--action", "drop") == 0
    rows = kit.rows(tmp_path / "wo")
    assert rows["000.tar/g0"]["action"] == "dropped" and rows["000.tar/h0"]["kind"] == "text"
    assert [n for n, _ in kit.members(tmp_path / "wo" / "000.tar")] == ["h0.txt", "h0.json", "h2.txt", "h2.json"]


def test_fdr_two_passes_decide_by_benjamini_hochberg(tmp_path, kit, key_file):
    from wmark.scrub.decide import bh_reject

    src = kit.folder(tmp_path / "in", bad=True)
    assert _run(src, tmp_path / "out", key_file, "--action", "drop", "--fdr", "0.05") == 0
    rows = kit.rows(tmp_path / "out")
    tested = [r for r in rows.values() if r["p_value"] is not None]
    assert [r["detected"] for r in tested] == bh_reject([r["p_value"] for r in tested], 0.05).tolist()
    assert all(r["detected"] is None for r in rows.values() if r["p_value"] is None)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["decision"]["rule"] == "fdr" and summary["decision"]["passes"] == 2
    assert summary["expected_false"]["chosen"]["expected_false"] == pytest.approx(0.05 * summary["counts"]["detected"])
    assert (tmp_path / "out" / ".wmark-scrub" / "decision.json").is_file()
    assert set(kit.tree(tmp_path / "out")) == {k for k, r in rows.items() if r["action"] != "dropped"}


def test_format_inference_and_refusals(tmp_path, kit, key_file, capsys):
    from wmark.scrub.sources import infer_format

    kit.folder(tmp_path / "img", names=["u0.png"])
    kit.jsonl(tmp_path / "mix" / "a.jsonl", ["h0"], bad=False)
    kit.shard(tmp_path / "mix" / "b.tar", ["u0.png"])
    assert infer_format(tmp_path / "img") == "folder"
    assert infer_format(tmp_path / "mix" / "a.jsonl") == "jsonl"
    assert infer_format(tmp_path / "mix" / "b.tar") == "webdataset"
    with pytest.raises(ValueError, match="several formats"):
        infer_format(tmp_path / "mix")
    assert _run(tmp_path / "mix", tmp_path / "o1", key_file) == 2
    assert "--format" in capsys.readouterr().err
    assert _run(tmp_path / "mix", tmp_path / "o1", key_file, "--format", "jsonl") == 0
    # the output may not be inside the input, nor an existing non-empty folder
    assert _run(tmp_path / "img", tmp_path / "img" / "out", key_file) == 2
    assert "inside the input" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert _run(tmp_path / "img", tmp_path / "full", key_file) == 2
    assert "not empty" in capsys.readouterr().err
