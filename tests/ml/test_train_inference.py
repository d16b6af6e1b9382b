"""A seconds-long training run on generated images, then evaluate and
predict on its output; the sha256 check; import hygiene."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.card import CLASSES, read_card, sha256_file
from tests.ml.synth import synthetic_chest, to_png8

REPO = Path(__file__).resolve().parents[2]


def test_training_writes_model_and_card(tiny_model, tiny_dataset):
    card = read_card(tiny_model)
    assert card["classes"] == list(CLASSES)
    assert card["input_size"] == [32, 32, 1]
    assert 0.0 <= card["threshold"] <= 1.0 and card["temperature"] > 0
    assert card["weights_sha256"] == sha256_file(tiny_model / "model.keras")
    assert card["training_manifest_sha256"] == sha256_file(tiny_dataset)
    assert card["training"]["seconds"] > 0
    v = card["validation"]
    assert set(v) >= {"n", "accuracy", "macro_auc", "covid_auc", "ece", "per_class", "by_source"}
    assert set(v["by_source"]) <= {"siteA", "siteB"}
    # COVID sensitivity on validation meets the target the threshold was chosen for.
    assert v["per_class"]["covid"]["sensitivity"] >= 0.95
    # Patient-disjoint split: validation is a strict subset of the patients.
    assert 0 < card["split"]["n_val"] < 36


def test_evaluate_on_trained_model(tiny_model, tiny_dataset):
    from ml.evaluate import evaluate

    r = evaluate(tiny_dataset, tiny_model)
    assert r["n"] == 36
    assert r["model"]["sha256"] == read_card(tiny_model)["weights_sha256"]
    for c in CLASSES:
        assert r["per_class"][c]["n"] == 12
        assert r["per_class"][c]["auc"] is not None
    assert 0.0 <= r["ece"] <= 1.0
    json.dumps(r)  # JSON-ready


def test_predict_on_trained_model(tiny_model):
    from ml.inference import DISCLAIMER, Predictor

    pred = Predictor(tiny_model)
    img = synthetic_chest(256, 240, seed=100, kind="covid")
    inputs = [to_png8(img), img, (img * 255).astype(np.uint8)]
    results = pred.predict_batch(inputs)
    assert len(results) == 3
    for r in results:
        d = r.to_dict()
        assert d["model_sha256"] == pred.sha256 and d["model_version"]
        assert d["preprocessing_version"] and d["disclaimer"] == DISCLAIMER
        assert d["threshold"] == pred.threshold
        assert d["status"] in ("ok", "cannot_assess")
        if d["status"] == "ok":
            assert abs(sum(d["probabilities"].values()) - 1.0) < 1e-4
            assert d["label"] in CLASSES
            assert d["covid_probability"] == d["probabilities"]["covid"]
            assert d["covid_positive"] == (d["covid_probability"] >= d["threshold"])
            assert d["timings_ms"]["inference"] >= 0
        else:
            assert d["reason"] and d["label"] is None
    # Same picture through bytes, float array and uint8 array: same answer.
    assert len({r.status for r in results}) == 1
    if results[0].status == "ok":
        p0 = results[0].probabilities
        for r in results[1:]:
            assert all(abs(r.probabilities[c] - p0[c]) < 1e-3 for c in CLASSES)


def test_gradcam_overlay(tiny_model):
    from ml.explain import explain
    from ml.inference import Predictor

    pred = Predictor(tiny_model)
    heat, overlay = explain(pred, to_png8(synthetic_chest(256, 256, seed=5)))
    assert heat.ndim == 2 and 0.0 <= heat.min() and heat.max() <= 1.0
    assert overlay[:3] == b"\xff\xd8\xff"


def test_overlay_blends_the_colour_map_over_the_stretched_image():
    """Each overlay pixel is (1 - a) * gray + a * jet(heat), a = 0.45 * heat, at the image's
    own aspect ratio (shrunk to 512 px at most); JPEG loses a few levels at most."""
    import io

    from PIL import Image

    from ml.explain import _jet, overlay_jpeg
    from ml.preprocessing import contrast_stretch

    pixels = synthetic_chest(700, 600, seed=3).astype(np.float32)
    heat = np.zeros((8, 8), np.float32)
    heat[2:6, 1:4] = 1.0
    heat[3, 5] = 0.5
    got = np.asarray(Image.open(io.BytesIO(overlay_jpeg(pixels, heat))).convert("RGB"), np.float32)
    assert got.shape == (512, 439, 3)
    small = np.asarray(Image.fromarray(pixels).resize((439, 512), Image.Resampling.BILINEAR))
    gray = np.round(contrast_stretch(np.clip(small, 0, 1)) * 255)[..., None]
    big = np.clip(np.asarray(Image.fromarray(heat).resize((439, 512), Image.Resampling.BICUBIC)), 0, 1)
    a = (0.45 * big)[..., None]
    want = (1 - a) * gray + a * _jet(big).astype(np.float32)
    error = np.abs(got - want)
    assert float(np.median(error)) <= 2 and float(np.percentile(error, 99)) <= 12
    hot, cold = (big > 0.9), (big < 0.01)
    # Where the map is hot the red of the colour map shows; where it is cold, the gray image.
    assert got[hot][:, 0].mean() - got[hot][:, 2].mean() > 50
    assert float(np.abs(got[cold] - gray.repeat(3, -1)[cold]).mean()) <= 2


def test_tampered_model_is_refused(tiny_model, tmp_path):
    from ml.inference import ModelIntegrityError, Predictor

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model, bad)
    with open(bad / "model.keras", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError):
        Predictor(bad)
    # A card pointing at other weights is refused as well.
    bad2 = tmp_path / "bad2"
    shutil.copytree(tiny_model, bad2)
    card = json.loads((bad2 / "card.json").read_text())
    card["weights_sha256"] = "0" * 64
    (bad2 / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError):
        Predictor(bad2)


def test_inference_does_not_import_training_or_django():
    code = ("import sys, ml.inference, ml.preprocessing, ml.quality; "
            "bad = [m for m in ('ml.train', 'ml.data', 'ml.evaluate', 'django') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_shipped_model_and_card(shipped_predictor):
    """The shipped artifact: sha256 verified on load, normalisation inside the
    model, calibrated softmax, card fields present, sized for CPU serving."""
    from ml.architecture import count_flops

    card, model = shipped_predictor.card, shipped_predictor.model
    assert card["classes"] == list(CLASSES)
    assert card["weights_sha256"] == shipped_predictor.sha256
    for key in ("threshold", "temperature", "training_manifest_sha256", "validation", "input_size"):
        assert key in card
    assert card["validation"]["per_class"]["covid"]["sensitivity"] >= 0.95
    names = [layer.name for layer in model.layers]
    members = [layer for layer in model.layers if hasattr(layer, "layers")]  # an ensemble's
    assert all("to_unit_range" in [sub.name for sub in m.layers] for m in members or [model])
    assert "temperature" in names
    # sized for batch-1 inference well inside 10 ms on two CPU cores (bench/ml_inference.py)
    assert count_flops(model) <= 300e6
    x = np.zeros((2, *card["input_size"]), np.float32)
    p = shipped_predictor.predict_probs(x)
    assert p.shape == (2, 3) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
