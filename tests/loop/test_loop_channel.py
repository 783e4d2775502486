"""The loop's channel: registry attacks between publication and re-ingestion (config, engine, presets)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wmark.attacks import get_attack  # noqa: E402
from wmark.cli import main  # noqa: E402
from wmark.loop.channel import Channel, describe  # noqa: E402
from wmark.loop.config import LoopConfig  # noqa: E402
from wmark.loop.engine import CONFIG_FILE, RECORDS_FILE, generator, load_result, run_loop  # noqa: E402
from wmark.loop.presets import get_preset  # noqa: E402
from wmark.loop.report import markdown  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

RESIZE = {"attack": "resize", "strength": 1 / 3}  # scale 0.75 per side
JPEG = {"attack": "jpeg", "strength": 0.1875}      # quality 75


@pytest.fixture(scope="module")
def mnist_root(shared_data) -> str:
    root = shared_data / "mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found in {root}")
    return str(root)


def tiny_image(mnist_root: str, **kw) -> LoopConfig:
    base = dict(family="image", data={"size": 64, "root": mnist_root, "n_pool": 256},
                model={"steps_init": 4, "steps": 2, "batch_size": 16, "ch": 8}, n_real=24, generations=2,
                seeds=1, arms=["none", "keep", "strip", "drop"], marker="image-wm",
                eval={"n_eval": 24, "n_mark": 12}, name="tiny-image", key="demo")
    return LoopConfig.from_dict({**base, **kw})


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    return msg


# -- config ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,channel,msg", [
    ("image", {"attack": "jpeg", "strength": 0.5}, "must be a list"),
    ("image", "jpeg", "must be a list"),
    ("image", ["jpeg"], "channel step 0 must be"),
    ("image", [{"attack": "jpg", "strength": 0.5}], "channel step 0: unknown image attack 'jpg'"),
    ("image", [RESIZE, {"attack": "jpeg", "strength": 1.5}], "channel step 1 (jpeg): strength must be a number in [0, 1], got 1.5"),
    ("image", [{"attack": "jpeg", "strength": -0.1}], "strength must be a number in [0, 1]"),
    ("image", [{"attack": "jpeg", "strength": float("nan")}], "strength must be a number in [0, 1]"),
    ("image", [{"attack": "jpeg", "strength": "high"}], "strength must be a number in [0, 1]"),
    ("image", [{"attack": "jpeg", "strength": True}], "strength must be a number in [0, 1]"),
    ("image", [{"attack": "jpeg"}], "needs a 'strength'"),
    ("image", [{"attack": "jpeg", "strength": 0.5, "quality": 75}], "unknown key(s) quality"),
    ("image", [{"attack": "pgd", "strength": 0.5}], "needs decoder, bits, which a loop config cannot give"),
    ("image", [{"attack": "regen_ae", "strength": 0.5}], "RGB"),
    ("gaussian", [RESIZE], "needs the image or text family"),
    ("text", [{"attack": "delete", "strength": 0.1}], "only length-preserving attacks"),
    ("text", [{"attack": "copy_paste", "strength": 0.1}], "only length-preserving attacks"),
    ("text", [{"attack": "jpeg", "strength": 0.1}], "unknown text attack 'jpeg'"),
])
def test_channel_validation_is_one_line(family, channel, msg):
    with pytest.raises(ValueError) as err:
        LoopConfig.from_dict({"family": family, "channel": channel})
    assert msg in _one_line(err.value)


def test_bad_channel_through_the_cli_is_one_line(tmp_path, capsys):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"preset": "demo-image", "channel": [{"attack": "jpeg", "strength": 2}]}))
    assert main(["loop", "--config", str(conf), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "channel step 0 (jpeg): strength must be" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_channel_json_round_trip(tmp_path):
    c = LoopConfig.from_dict({"family": "image", "channel": [RESIZE, {"attack": "crop_random", "strength": 1}]})
    assert c.channel == ({"attack": "resize", "strength": 1 / 3}, {"attack": "crop_random", "strength": 1.0})
    d = json.loads(json.dumps(c.to_dict()))
    assert d["channel"] == [dict(s) for s in c.channel] and LoopConfig.from_dict(d) == c
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"preset": "demo-image", "channel": [JPEG]}))
    assert LoopConfig.from_json(p).channel == (JPEG,)
    assert c.replace(channel=[]).channel == () and "channel" not in c.replace(channel=[]).to_dict()


def test_presets_and_description():
    wild = get_preset("image-mad-wild")
    mad = get_preset("image-mad")
    assert {k: v for k, v in wild.to_dict().items() if k not in ("name", "channel")} == \
        {k: v for k, v in mad.to_dict().items() if k != "name"}
    steps = [(get_attack(s["attack"]), s["strength"]) for s in wild.channel]
    assert [(a.name, a.param_value(s)) for a, s in steps] == [("resize", 0.75), ("jpeg", 75)]
    demo = get_preset("demo-image-wild")
    assert demo.channel == wild.channel and {a.policy for a in demo.arms} == {"none", "keep", "strip", "drop"}
    assert describe(wild.channel, "image") == "resize 0.3333 (scale 0.75) -> jpeg 0.1875 (quality 75)"


# -- channel = [] is the loop as before -------------------------------------------------------------------
#: sha256 of demo-kde's records (4 generations, 2 seeds) computed before the channel existed
def test_empty_channel_is_bit_identical_to_before(tmp_path, monkeypatch):
    """An empty channel is no channel: the config and its saved form are the channel-less ones, no
    channel is built or drawn from, and the records equal a run of the same config whose engine
    cannot build one (the records of a run before channels existed)."""
    base = get_preset("demo-kde").replace(generations=4, seeds=2)
    empty = base.replace(channel=[])
    assert empty == base and empty.to_dict() == base.to_dict() and "channel" not in base.to_dict()
    r = run_loop(empty, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert "channel" not in saved and load_result(tmp_path / "run").records == r.records
    assert "channel" not in markdown(r)

    def no_channel(*a, **kw):
        raise AssertionError("an empty channel must not be applied")

    monkeypatch.setattr(Channel, "apply", no_channel)
    again = run_loop(empty, tmp_path / "again", progress=False)
    assert (tmp_path / "run" / RECORDS_FILE).read_bytes() == (tmp_path / "again" / RECORDS_FILE).read_bytes()
    assert again.records == r.records


def test_identity_channel_changes_nothing(mnist_root):
    """A channel of the registry's ``none`` attack passes the published samples through untouched."""
    plain = run_loop(tiny_image(mnist_root), progress=False)
    ident = run_loop(tiny_image(mnist_root, channel=[{"attack": "none", "strength": 0}]), progress=False)
    assert ident.records == plain.records


# -- the channel acts on the published samples ------------------------------------------------------------
def test_channel_apply_images():
    x = torch.rand(6, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    ch = Channel.build([RESIZE, JPEG], "image")
    y = ch.apply(x, None, generator(0, 0, 2, "channel"))
    ref = get_attack("jpeg")(get_attack("resize")(x, 1 / 3), 0.1875)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.equal(y, ref) and not torch.equal(y, x)
    crop = Channel.build([{"attack": "crop_center", "strength": 0.5}], "image").apply(x, None, generator(0, 0, 2, "channel"))
    assert crop.shape == x.shape  # re-ingested at the training size
    small = get_attack("crop_center")(x, 0.5)
    assert torch.allclose(crop, torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear",
                                                                align_corners=False, antialias=True).clamp(0, 1))
    rnd = Channel.build([{"attack": "crop_random", "strength": 0.8}, {"attack": "noise", "strength": 0.3}], "image")
    a, b = (rnd.apply(x, None, generator(0, 0, 2, "channel")) for _ in range(2))
    assert torch.equal(a, b)  # seeded by the loop's stream
    assert not torch.equal(a, rnd.apply(x, None, generator(0, 1, 2, "channel")))
    assert not torch.equal(a, rnd.apply(x, None, generator(0, 0, 3, "channel")))


def _spy(monkeypatch, cls, name, log):
    orig = getattr(cls, name)

    def wrapped(self, samples, *args, **kw):
        log.append(samples.clone() if isinstance(samples, torch.Tensor) else list(samples))
        return orig(self, samples, *args, **kw)

    monkeypatch.setattr(cls, name, wrapped)


def test_resize_channel_reaches_training_and_detection(mnist_root, monkeypatch):
    from wmark.loop.image_marker import ImageWM
    from wmark.loop.models.image import ImageModel

    runs = {}
    for label, channel in (("plain", []), ("wild", [RESIZE])):
        fits, dets = [], []
        with monkeypatch.context() as mp:
            _spy(mp, ImageModel, "fit", fits)
            _spy(mp, ImageWM, "detect", dets)
            c = tiny_image(mnist_root, arms=["none", "keep", "strip"], channel=channel)
            runs[label] = (run_loop(c, progress=False), fits, dets)
    (plain, pf, pd), (wild, wf, wd) = runs["plain"], runs["wild"]
    arms = [a.name for a in plain.config.arms]
    assert len(pf) == len(wf) == 2 * len(arms)  # one fit per arm and generation
    resize = get_attack("resize")
    for i, arm in enumerate(arms):
        assert torch.equal(pf[i], wf[i])  # t = 1: real data only, no channel
        before, after = pf[len(arms) + i], wf[len(arms) + i]  # t = 2: the same model 1 published these
        if arm == "none" or arm == "keep":
            assert after.shape == before.shape == (24, 1, 64, 64)
            assert torch.equal(after, resize(before, 1 / 3)) and not torch.equal(after, before)
    # detect (strip, drop) sees the published samples after the channel: resized marked images
    n_syn = plain.config.n_syn_
    marked = pf[len(arms) + arms.index("keep")]  # what the keep arm published (no channel: trained on as is)
    seen = [x for x in wd if x.shape[0] == n_syn]
    assert any(torch.equal(x, resize(marked, 1 / 3)) for x in seen)
    assert not any(torch.equal(x, marked) for x in seen)
    assert any(torch.equal(x, marked) for x in pd)
    assert wild.series("train_marked", "none")[-1, 0] == 0.0


def test_jpeg_channel_detect_sees_8_bit_images(mnist_root, monkeypatch):
    from wmark.loop.image_marker import ImageWM

    dets = []
    _spy(monkeypatch, ImageWM, "detect", dets)
    c = tiny_image(mnist_root, channel=[JPEG])
    run_loop(c, progress=False)
    # t = 2: strip's and drop's detections, and train_marked of none / keep, see decoded JPEGs (k / 255)
    eight_bit = [x for x in dets if x.shape[0] == c.n_syn_ and torch.equal((x * 255).round() / 255, x)]
    assert len(eight_bit) >= 4
    own = [x for x in dets if x.shape[0] == c.eval["n_mark"]]  # a model's own samples: not through the channel
    assert own and not all(torch.equal((x * 255).round() / 255, x) for x in own)


# -- reproducible, resumable ------------------------------------------------------------------------------
def test_random_channel_is_reproducible_and_resumes(tmp_path, mnist_root):
    c = tiny_image(mnist_root, generations=3, arms=["none", "keep", "strip"],
                   channel=[{"attack": "crop_random", "strength": 0.6}, {"attack": "noise", "strength": 0.2}, JPEG])
    whole = run_loop(c, tmp_path / "whole", progress=False)
    again = run_loop(c, progress=False)
    assert again.records == whole.records
    other = run_loop(c.replace(seed=1), progress=False)
    assert other.records != whole.records
    saved = json.loads((tmp_path / "whole" / CONFIG_FILE).read_text())
    assert saved["channel"] == [dict(s) for s in c.channel]
    part = tmp_path / "part"

    def stop(t):
        if t == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_loop(c, part, progress=False, on_generation=stop)
    with pytest.raises(ValueError, match="config differs"):
        run_loop(c.replace(channel=[JPEG]), part, resume=True, progress=False)
    resumed = run_loop(None, part, resume=True, progress=False)
    assert resumed.records == whole.records
    assert (part / RECORDS_FILE).read_text() == (tmp_path / "whole" / RECORDS_FILE).read_text()
    assert "channel (applied to published samples" in markdown(resumed)


# -- text -------------------------------------------------------------------------------------------------
def test_text_channel_substitutes_published_tokens(shared_data, monkeypatch):
    from wmark.loop.models.text import TextModel

    corpus = str(shared_data / "text")
    base = dict(family="text", data={"length": 12, "n_val": 2, "corpus": corpus},
                model={"steps": 2, "batch_size": 2, "seq_len": 16}, n_real=6, generations=2, seeds=1,
                arms=["none", "keep", "strip"], marker="text-kgw", marker_params={"delta": 3.0, "alpha": 0.05},
                eval={"n_eval": 3, "n_mark": 3}, key="demo")
    fits = {}
    for label, channel in (("plain", []), ("wild", [{"attack": "substitute", "strength": 0.5}])):
        log = []
        with monkeypatch.context() as mp:
            _spy(mp, TextModel, "fit", log)
            r = run_loop(LoopConfig.from_dict({**base, "channel": channel}), progress=False)
        fits[label] = log
    assert math.isfinite(r.series("inherited", "keep")[-1, 0])
    before, after = fits["plain"][3], fits["wild"][3]  # t = 2, arm none
    assert len(before) == len(after) == 6
    changed = np.mean([float((a.ids != b.ids).float().mean()) for a, b in zip(after, before)])
    assert all(a.ids.shape == b.ids.shape for a, b in zip(after, before)) and 0.2 < changed < 0.8
    assert all(a.marked for a in fits["wild"][4])  # keep: marked at generation, then edited
