"""The image arm of the loop: MNIST at 64 px, the conv VAE family, image metrics (shipped classifier,
Frechet distance, precision / recall, spectra), the product's image marker, a tiny run end to end."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from wmark.loop import image_metrics as IM
from wmark.loop import metrics
from wmark.loop.config import LoopConfig
from wmark.loop.engine import CHECKPOINT_FILE, RECORDS_FILE, load_result, run_loop
from wmark.loop.models import get_family
from wmark.loop.models.image import ImageModel, make_model, make_source
from wmark.loop.presets import get_preset
from wmark.loop.report import write_report


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist_root(shared_data) -> str:
    root = shared_data / "mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found in {root}")
    return str(root)


@pytest.fixture(scope="module")
def source(mnist_root):
    return make_source(size=64, root=mnist_root, n_pool=256)


@pytest.fixture(scope="module")
def real(source) -> torch.Tensor:
    return source.heldout[:64]


def rng(i: int = 0) -> np.random.Generator:
    return np.random.default_rng(i)


def test_mnist_loader(mnist_root):
    from wmark.loop.mnist import load_mnist

    x, y = load_mnist(mnist_root, 64)
    assert x.shape == (10000, 1, 64, 64) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert set(np.unique(y).tolist()) == set(range(10))


def test_model_fit_sample_shapes_temperature_checkpoint(source, checkpoint_round_trip):
    fam = get_family("image")
    assert fam.source_is_model is False
    data = source.sample(32, 1.0, rng(0))
    assert data.shape == (32, 1, 64, 64)
    model = make_model(source, steps_init=3, steps=2, batch_size=16)
    fitted = model.fit(data, rng(1))
    assert model.state is None and fitted.state is not None  # fit returns a new model
    again = fitted.fit(data, rng(2))  # warm start: steps, not steps_init
    assert not torch.equal(again.state["pixel_bias"], fitted.state["pixel_bias"])
    out = fitted.sample(64, 1.0, rng(3))
    assert out.shape == (64, 1, 64, 64) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    cold = fitted.sample(64, 0.05, rng(3))  # lower latent temperature -> less variance across samples
    assert float(cold.var(0).mean()) < float(out.var(0).mean())
    clone = checkpoint_round_trip(fitted)
    assert torch.equal(clone.sample(64, 1.0, rng(3)), out)
    with pytest.raises(ValueError, match="before fit"):
        model.sample(2, 1.0, rng(0))
    with pytest.raises(ValueError, match="bad parameters"):
        make_model(source, depth=3)
    with pytest.raises(ValueError, match="must be"):
        ImageModel(steps=-1)


def test_frechet_distance_and_precision_recall(real):
    scores = IM.image_scores(real, real)
    assert abs(scores.fd) < 1e-6 and scores.precision == 1.0 and scores.recall == 1.0
    assert scores.spec_dist == 0.0 and scores.hf_excess == 0.0
    shifted = IM.image_scores(real, (real + 0.3).clamp(0, 1))
    assert shifted.fd > 1.0
    # closed form: half the fake set is the real set, half lies far away -> precision exactly 1/2
    g = np.random.default_rng(0)
    a = g.standard_normal((200, 8))
    fake = np.concatenate([a[:100], a[:100] + 100.0])
    p, r = metrics.precision_recall(a, fake, k=5)
    assert p == 0.5 and 0.5 <= r <= 1.0
    assert metrics.precision_recall(a, a + 100.0, k=5) == (0.0, 0.0)


def test_classifier_sha256(real):
    from importlib.resources import files

    from wmark.assets import verified_blob

    blob = verified_blob(files("wmark.loop") / "weights", IM.CLASSIFIER_NAME)
    assert len(blob) <= 1_000_000
    feats, logits = IM.classify(real)
    assert feats.shape == (64, IM.FEATURE_DIM) and logits.shape == (64, 10)


def test_classifier_recognises_held_out_digits(mnist_root):
    from wmark.loop.mnist import EVAL_RANGE, load_mnist

    x, y = load_mnist(mnist_root, 64)
    a = EVAL_RANGE[0]
    _, logits = IM.classify(x[a:a + 500])
    assert (logits.argmax(1) == y[a:a + 500]).mean() > 0.9
    assert IM.class_entropy(logits) > 2.0  # ten balanced classes: ln 10 = 2.30


def test_spectra():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(16, 1, 64, 64, generator=g), 5, 1, 2)
    p = IM.power_spectrum(smooth)
    assert p.shape == (64, 33)
    assert IM.spectral_distance(p, p) == 0.0 and IM.band_log_ratio(p, p) == 0.0
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 0.1  # 0.71 cycles/px
    q = IM.power_spectrum(smooth + checker)
    assert IM.band_log_ratio(q, p) > 0.5 and IM.spectral_distance(q, p) > 0.0
    assert IM.radial_frequency((64, 64))[0, 0] == 0.0


def test_marker_round_trip(real, demo_key):
    from wmark.loop.markers import get_marker

    mk = get_marker("image-wm")
    x = real[:8]
    y = mk.mark(x, demo_key, rng(0))
    assert y.shape == x.shape and float((y - x).abs().max()) < 0.2
    assert mk.detect(y, demo_key).mean() >= 0.75
    m = mk.metrics(y, demo_key)
    assert m["bit_acc"] > 0.65 and m["log10p"] > 3.0
    assert not mk.detect(x, demo_key).any()
    assert abs(mk.metrics(x, demo_key)["bit_acc"] - 0.5) < 0.15
    z = mk.strip(y, demo_key)
    assert z.shape == x.shape and mk.detect(z, demo_key).mean() <= 0.125
    assert IM.band_log_ratio(IM.power_spectrum(y), IM.power_spectrum(x)) > 0.0  # the mark is high-frequency


def test_marker_reuses_detections_of_equal_images_only(demo_key, monkeypatch):
    """detect() then metrics() on the same images decodes once; the memo is keyed by the images'
    values (an equal copy hits, an in-place change misses), not by tensor identity."""
    from wmark.loop import image_marker

    calls = []

    class FakeWM:
        def detect(self, x, key, search=True):
            calls.append(x.shape[0])
            return [float(v) for v in x.flatten(1).sum(1)]

    monkeypatch.setattr(image_marker.ImageWM, "wm", property(lambda self: FakeWM()))
    monkeypatch.setattr(image_marker, "_LAST", {})
    mk = image_marker.ImageWM(batch=2)
    x = torch.rand(3, 1, 64, 64)
    first = mk.detections(x, demo_key)
    assert mk.detections(x.clone(), demo_key) == first and calls == [2, 1]
    x[0] += 1.0
    assert mk.detections(x, demo_key)[0] == pytest.approx(first[0] + 64 * 64) and calls == [2, 1, 2, 1]


def test_presets_build():
    for name in ("demo-image", "image-mad", "image-mad-fresh"):
        cfg = get_preset(name)
        assert cfg.family == "image" and cfg.marker == "image-wm"
    assert {a.policy for a in get_preset("demo-image").arms} >= {"none", "keep", "strip"}
    assert get_preset("image-mad-fresh").loop == "fresh_data"


def test_tiny_image_loop_end_to_end(tmp_path, mnist_root):
    cfg = LoopConfig.from_dict(dict(
        family="image", data={"size": 64, "root": mnist_root, "n_pool": 256},
        model={"steps_init": 4, "steps": 2, "batch_size": 16, "ch": 8}, n_real=24, generations=2, seeds=1,
        arms=["none", "keep", "strip"], marker="image-wm", eval={"n_eval": 24, "n_mark": 12}, name="tiny-image",
        key="demo"))
    out = tmp_path / "run"
    r = run_loop(cfg, out, progress=False)
    assert (out / RECORDS_FILE).is_file() and (out / CHECKPOINT_FILE).is_file()
    assert r.generations().tolist() == [1, 2]
    names = set(r.metric_names())
    assert {"fd", "precision", "recall", "class_entropy", "spec_dist", "hf_excess", "n_train", "inherited",
            "bit_acc", "log10p", "train_marked"} <= names
    assert r.series("train_marked", "keep")[-1, 0] >= 0.75     # marked synthetic data at t = 2
    assert r.series("train_marked", "strip")[-1, 0] <= 0.125    # stripped before training
    assert r.series("train_marked", "none")[-1, 0] == 0.0
    for m in ("fd", "bit_acc"):  # t = 1: real data only, every arm the same fit
        v = [r.series(m, a)[0, 0] for a in r.arms]
        assert v[0] == v[1] == v[2]
    loaded = load_result(out)
    assert loaded.complete and len(loaded.records) == len(r.records)
    part = tmp_path / "part"  # a resume from the checkpoint (VAE weights, image tensors) changes nothing

    def stop(t):
        if t == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_loop(cfg, part, progress=False, on_generation=stop)
    assert run_loop(None, part, resume=True, progress=False).records == r.records
    report = write_report(loaded, plots=False)
    assert "inherited" in report.read_text()
