"""The quality gate refuses what is not a frontal chest X-ray.

All inputs are generated here with numpy/Pillow: a colour photo, a
screenshot, a document, blank and near-constant images, an extreme crop
(strip) and a tiny image.  Synthetic chests must pass the heuristic part.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ml.preprocessing import load_image_bytes
from ml.quality import check_image
from tests.ml.synth import synthetic_chest, to_png8


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def colour_photo(seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:300, 0:400] / 300.0
    sky = np.stack([0.3 + 0.2 * yy, 0.5 + 0.3 * yy, 0.9 - 0.2 * yy], -1)
    grass = np.stack([0.2 + 0 * yy, 0.6 + 0.1 * xx, 0.2 + 0 * yy], -1)
    img = np.where((yy > 0.6)[..., None], grass, sky) + rng.normal(0, 0.03, (300, 400, 3))
    return _jpeg(Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)))


def screenshot() -> bytes:
    im = Image.new("L", (640, 400), 235)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 640, 40], fill=60)  # title bar
    d.rectangle([0, 40, 150, 400], fill=200)  # side panel
    for y in range(60, 380, 22):
        d.text((170, y), "Patient record - lorem ipsum dolor sit amet 12345", fill=20)
        d.text((10, y), "Menu item", fill=30)
    return _png(im)


def document() -> bytes:
    im = Image.new("L", (500, 700), 255)
    d = ImageDraw.Draw(im)
    for y in range(40, 660, 16):
        d.text((40, y), "The quick brown fox jumps over the lazy dog. " * 2, fill=0)
    return _jpeg(im)


def blank(value=128) -> bytes:
    return _png(Image.new("L", (400, 400), value))


def near_constant(seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    return to_png8(np.clip(0.5 + rng.normal(0, 0.004, (400, 400)), 0, 1))


def strip() -> bytes:
    chest = synthetic_chest(1400, 1200, seed=1)
    return to_png8(chest[600:800, :])  # a thin horizontal band: an extreme crop


def tiny() -> bytes:
    return to_png8(synthetic_chest(100, 90, seed=2))


CASES = {
    "colour_photo": (colour_photo(), {"colour"}),
    "screenshot": (screenshot(), {"synthetic", "document"}),
    "document": (document(), {"document", "synthetic"}),
    "blank_black": (blank(0), {"blank"}),
    "blank_grey": (blank(128), {"blank"}),
    "near_constant": (near_constant(), {"blank"}),
    "extreme_crop": (strip(), {"extreme_aspect"}),
    "tiny": (tiny(), {"too_small"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_heuristic_gate_refuses(name):
    data, codes = CASES[name]
    g = check_image(load_image_bytes(data))
    assert not g.ok, (name, g.stats)
    assert g.code in codes, (name, g.code, g.stats)
    assert g.reason and len(g.reason) > 10


@pytest.mark.parametrize("seed,kind", [(0, "normal"), (1, "covid"), (2, "pneumonia"), (3, "normal")])
def test_synthetic_chests_pass_heuristics(seed, kind):
    img = synthetic_chest(360, 320, seed=seed, kind=kind)
    g = check_image(load_image_bytes(to_png8(img)))
    assert g.ok, (g.code, g.stats)


def test_predictor_answers_cannot_assess(tiny_model):
    from ml.inference import Predictor

    pred = Predictor(tiny_model)
    items = [data for data, _ in CASES.values()] + [b"not an image"]
    results = pred.predict_batch(items)
    for (name, (_, codes)), r in zip(list(CASES.items()) + [("garbage", (None, None))], results):
        assert r.status == "cannot_assess", name
        assert r.label is None and r.probabilities is None
        assert r.reason, name
        if codes:
            assert r.reason_code in codes, (name, r.reason_code)
    assert results[-1].reason_code == "unreadable_unsupported"


def test_shipped_model_refuses_and_accepts(shipped_predictor):
    results = shipped_predictor.predict_batch([colour_photo(), document(), blank(), screenshot()])
    assert all(r.status == "cannot_assess" for r in results)
    # A real chest film (fixture, CC BY 4.0) passes the whole gate.
    real = (Path(__file__).parent / "fixtures" / "kermany_normal_IM-0003-0001.jpg").read_bytes()
    r = shipped_predictor.predict(real)
    assert r.status == "ok", r.reason
    assert r.label in ("covid", "pneumonia", "normal")
