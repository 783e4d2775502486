"""Streaming and completeness: units are read and written sample by sample (no whole shard in memory),
the journal holds spans not rows, folder sidecars and every image member of a webdataset sample come
through, images decode in memory, and the fault seam is a hook, not an environment variable."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from wmark.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(src, out, key_file, *extra) -> int:
    return main(["scrub", str(src), "-o", str(out), "--key-file", str(key_file), "--no-progress", *extra])


def _tar(path, members) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))


def test_folder_sidecars_are_copied_and_go_with_their_images(tmp_path, kit, key_file):
    src = tmp_path / "in"
    pics = kit.pictures
    files = {
        "a/m0.png": pics["m0.png"][0], "a/m0.txt": b"a marked photo\n", "a/m0.png.json": b'{"w": 1}',
        "a/u0.png": pics["u0.png"][0], "a/u0.txt": b"a human photo\n", "a/u0.caption.txt": b"long caption",
        "b/m1.jpg": pics["m1.jpg"][0], "b/u1.jpg": pics["u1.jpg"][0], "b/u1.json": b"{}",
        "README.md": b"# my dataset\n", "meta/labels.csv": b"name,label\nu0,1\n",
    }
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    before = kit.digests(src)

    assert _run(src, tmp_path / "drop", key_file, "--action", "drop", "--chunk-size", "2") == 0
    rows = kit.rows(tmp_path / "drop")
    assert set(rows) == {"a/m0.png", "a/u0.png", "b/m1.jpg", "b/u1.jpg"}  # sidecars are not samples
    got = kit.tree(tmp_path / "drop")
    gone = {"a/m0.png", "a/m0.txt", "a/m0.png.json", "b/m1.jpg"}  # a dropped image takes its sidecars along
    assert set(got) == set(files) - gone
    assert all(got[rel] == files[rel] for rel in got)  # byte for byte

    assert _run(src, tmp_path / "strip", key_file, "--action", "strip") == 0
    got = kit.tree(tmp_path / "strip")
    assert set(got) == set(files)
    assert all(got[rel] == files[rel] for rel in files if not rel.startswith(("a/m0.png", "b/m1.jpg")))
    assert got["a/m0.png"] != files["a/m0.png"] and got["a/m0.png.json"] == files["a/m0.png.json"]
    assert kit.digests(src) == before


def test_every_image_member_of_a_webdataset_sample_is_scrubbed(tmp_path, kit, key_file):
    pics = kit.pictures
    members = [("s0.jpg", pics["u1.jpg"][0]), ("s0.seg.png", pics["m0.png"][0]), ("s0.json", b'{"k": 0}'),
               ("s1.jpg", pics["u3.jpg"][0]), ("s1.depth.png", pics["u0.png"][0]), ("s1.txt", b"caption"),
               ("s2.png", pics["m2.png"][0]), ("s2.cls", b"1")]
    _tar(tmp_path / "in" / "000.tar", members)
    src = tmp_path / "in"
    assert _run(src, tmp_path / "rep", key_file) == 0
    rows = kit.rows(tmp_path / "rep")
    assert set(rows) == {"000.tar/s0.jpg", "000.tar/s0.seg.png", "000.tar/s1.jpg", "000.tar/s1.depth.png",
                         "000.tar/s2"}  # several images: one row each, named by their extension
    assert [rows[k]["detected"] for k in sorted(rows)] == [False, True, False, False, True]
    assert {r["action"] for r in rows.values()} == {"kept"}  # report: nothing is left out

    assert _run(src, tmp_path / "drop", key_file, "--action", "drop") == 0
    got = kit.members(tmp_path / "drop" / "000.tar")
    assert got == members[3:6]  # s0 has a marked image: the whole sample is left out
    rows = kit.rows(tmp_path / "drop")
    assert rows["000.tar/s0.jpg"]["action"] == "dropped" and not rows["000.tar/s0.jpg"]["detected"]

    assert _run(src, tmp_path / "strip", key_file, "--action", "strip") == 0
    got = dict(kit.members(tmp_path / "strip" / "000.tar"))
    assert list(got) == [n for n, _ in members]
    for n, data in members:
        assert (got[n] != data) == (n in ("s0.seg.png", "s2.png")), n  # the rest byte for byte
    rows = kit.rows(tmp_path / "strip")
    assert rows["000.tar/s0.seg.png"]["action"] == "stripped" and rows["000.tar/s0.seg.png"]["p_after"] > 1e-3


def test_a_shard_streams_through_reading_and_writing_sample_by_sample(tmp_path, kit, key, monkeypatch):
    from wmark.scrub import scrub, sources

    names = ["u0.png", "m0.png", "u1.jpg", "m1.jpg", "u2.png", "u3.jpg"]
    kit.shard(tmp_path / "in" / "000.tar", names)
    events = []
    read, put = sources._TarIO.items, sources._TarIO.put

    def items(self):
        for it in read(self):
            events.append(("read", it.id))
            yield it

    def put_(self, item, row):
        put(self, item, row)
        events.append(("put", item.id, self.file is not None and self.file.f.tell()))

    monkeypatch.setattr(sources._TarIO, "items", items)
    monkeypatch.setattr(sources._TarIO, "put", put_)
    res = scrub(tmp_path / "in", tmp_path / "out", key, action="strip", batch_size=1, manifest_format="jsonl")
    assert res.counts["samples"] == 6 and res.counts["stripped"] == 2
    first_put = next(i for i, e in enumerate(events) if e[0] == "put")
    last_read = max(i for i, e in enumerate(events) if e[0] == "read")
    assert first_put < last_read  # the first sample was written before the last was read
    sizes = [e[2] for e in events if e[0] == "put"]
    assert sizes == sorted(sizes) and 0 < sizes[0] < sizes[-1]  # the temp output grew as samples came
    journal = (tmp_path / "out" / ".wmark-scrub" / "act.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in journal]
    assert [r.get("batch") for r in recs] == [0, 1, 2, 3, 4, 5, None]  # rows per batch, then the commit
    assert recs[-1]["commit"] == 6


def test_parquet_streams_in_record_batches_and_keeps_its_row_groups(tmp_path, kit, key_file, monkeypatch):
    import pyarrow.parquet as pq

    from wmark.scrub import sources

    monkeypatch.setattr(sources, "PARQUET_READ_ROWS", 2)
    names = ["u0.png", "m0.png", "u1.jpg", "m1.jpg", "u2.png", "u3.jpg", "zero.png"]
    src = kit.parquet(tmp_path / "in" / "t.parquet", names)  # row groups of 3
    assert _run(tmp_path / "in", tmp_path / "drop", key_file, "--action", "drop", "--on-error", "skip") == 0
    out = pq.ParquetFile(tmp_path / "drop" / "t.parquet")
    assert [r["name"] for r in out.read().to_pylist()] == ["u0.png", "u1.jpg", "u2.png", "u3.jpg"]
    assert [out.metadata.row_group(i).num_rows for i in range(out.metadata.num_row_groups)] == [3, 1]
    assert out.schema_arrow == pq.read_schema(src)
    assert _run(tmp_path / "in", tmp_path / "rep2", key_file, "--action", "drop", "--alpha", "1e-300",
                "--on-error", "copy") == 0
    assert (tmp_path / "rep2" / "t.parquet").read_bytes() == src.read_bytes()  # nothing changed: copied whole


def test_journal_keeps_spans_and_ignores_uncommitted_and_torn_records(tmp_path):
    from wmark.scrub.journal import Journal

    p = tmp_path / "j.jsonl"
    with Journal(p) as j:
        j.add(0, [{"id": "a"}, {"id": "b"}])
        j.add(0, [{"id": "c"}])
        j.commit(0, "u0", [("x", 3)])
        j.add(1, [{"id": "d"}])  # killed before the commit of unit 1
    assert list(Journal(p).rows([0])) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    p.write_bytes(p.read_bytes() + b'{"unit":1,"batch":1,"n":1,"ro')  # a torn line
    j = Journal(p)
    assert set(j.entries) == {0} and "rows" not in json.dumps(j.entries[0]["spans"]) and j.count(0) == 3
    j.add(1, [{"id": "d2"}])  # the redo starts at batch 0 again
    j.commit(1, "u1", [])
    j.close()
    again = Journal(p)
    assert list(again.rows([0, 1])) == [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d2"}]
    again.close()


def test_images_decode_in_memory_and_the_fault_seam_is_a_hook(tmp_path, kit, key, monkeypatch):
    import tempfile

    from wmark.scrub import pipeline, scrub

    src = kit.folder(tmp_path / "in", names=["m0.png", "u1.jpg", "trunc.png"])

    def no_temp(*a, **kw):
        raise AssertionError("a temporary file outside the output folder")

    monkeypatch.setattr(tempfile, "mkdtemp", no_temp)
    monkeypatch.setenv("WMARK_SCRUB_FAULT", "outputs:1")  # the old environment hook: no effect now
    res = scrub(src, tmp_path / "out", key, action="strip", manifest_format="jsonl")
    assert res.counts["stripped"] == 1 and res.counts["error"] == 1
    seen = []
    monkeypatch.setattr(pipeline, "_fault_hook", seen.append)
    scrub(src, tmp_path / "out2", key, action="drop", chunk_size=2, manifest_format="jsonl")
    assert seen == ["outputs", "commit", "outputs", "commit", "manifest"]
