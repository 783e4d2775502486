"""The public Scrubber: a picklable batch callable (what Ray's map_batches or datasets.map runs), giving
the rows the pipeline writes."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_scrubber_is_picklable_lazy_and_gives_the_pipelines_rows(tmp_path, kit, key):
    from wmark.scrub import MANIFEST_COLUMNS, Scrubber, scrub

    names = ["m0.png", "u1.jpg", "zero.png", "m1.jpg"]
    src = kit.folder(tmp_path / "in", names=names)
    res = scrub(src, tmp_path / "out", key, action="strip")
    rows = kit.rows(tmp_path / "out")
    s = Scrubber(key, kind="image", action="strip", id_column="path", data_column="bytes")
    s2 = pickle.loads(pickle.dumps(s))  # settings only: nothing loaded yet
    assert not s2._state and "secret" not in repr(s2).lower()
    ids = sorted(rows)
    batch = {"path": np.array(ids, dtype=object), "bytes": np.array([(src / i).read_bytes() for i in ids],
                                                                    dtype=object)}
    out = s2(batch)
    assert set(out) == set(MANIFEST_COLUMNS) | {"data_out", "weights"}
    for j, i in enumerate(ids):
        assert {c: out[c][j] for c in MANIFEST_COLUMNS} == rows[i]
        if rows[i]["sha256_out"]:
            assert kit.sha(out["data_out"][j]) == rows[i]["sha256_out"]
    assert res.counts["stripped"] == 2 and res.counts["error"] == 1
    assert pickle.loads(pickle.dumps(s2))._state == {}  # still picklable after loading its model


def test_scrubber_text_batch_and_a_pass_2_batch(key, kit):
    from wmark.scrub import Scrubber

    docs = ["h0", "g0", "pasted"]
    s = Scrubber(key, kind="text", action="drop", alpha=1e-3)
    out = s({"id": docs, "data": [kit.texts[d][0] for d in docs]})
    assert out["detected"] == [False, True, True] and out["action"] == ["kept", "dropped", "dropped"]
    assert out["data_out"][0] == kit.texts["h0"][0] and out["data_out"][1] is None
    # pass 2 of an FDR run: p-values given, no detection; a sample that changed since pass 1 is an error
    s2 = Scrubber(key, kind="text", action="drop", cutoff=1e-2)
    again = s2({"id": docs, "data": [kit.texts[d][0] for d in docs[:2]] + ["edited"], "p_value": out["p_value"],
                "payload": out["payload"], "sha256_in": out["sha256_in"]})
    assert "text" not in s2._state  # nothing was detected: the scheme never loaded
    assert again["action"] == ["kept", "dropped", "error"] and "changed" in again["error"][2]


def test_scrubber_refuses_bad_settings(key):
    from wmark.scrub import Scrubber

    with pytest.raises(ValueError, match="key"):
        Scrubber("not a key")
    with pytest.raises(ValueError, match="action"):
        Scrubber(key, action="delete")
    with pytest.raises(ValueError, match="alpha"):
        Scrubber(key, alpha=1.5)
    with pytest.raises(ValueError, match="columns"):
        Scrubber(key)({"path": ["a"], "bytes": [b""]})


def test_echo_unchanged_false_sends_no_input_bytes_back(key, kit):
    from wmark.scrub import Scrubber

    names = ["u0.png", "m0.png", "zero.png"]
    batch = {"id": names, "data": [kit.pictures[n][0] for n in names]}
    full = Scrubber(key, kind="image", action="drop")(batch)
    lean = Scrubber(key, kind="image", action="drop", echo_unchanged=False)(batch)
    assert full["data_out"][0] == kit.pictures["u0.png"][0] and lean["data_out"][0] == b""
    assert [c for c in full if c != "data_out" and full[c] != lean[c]] == []
    assert full["data_out"][1] is None is lean["data_out"][1]
    assert lean["sha256_out"][0] == lean["sha256_in"][0]
