"""Serving backends: Keras (compiled tf.function) and ONNX Runtime on the export of the
same model give the same answers.

Tolerance: probabilities differ by at most 1e-4 (absolute, per class) between the two
backends, and every decision, label and quality-gate status is the same. The images
are built here (synthetic chests of each kind, 8- and 16-bit PNG, JPEG) plus the real
fixture film."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ml.card import ARTIFACTS_DIR, CLASSES, read_card
from tests.ml.synth import synthetic_chest, to_png8

from .test_train_inference import REPO

TOLERANCE = 1e-4
FILM = REPO / "tests" / "ml" / "fixtures" / "kermany_normal_IM-0003-0001.jpg"


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """A copy of the tiny model with its ONNX export recorded in the card."""
    from ml.export import export

    target = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(tiny_model, target)
    export(target)
    return target


def images() -> list[bytes]:
    out = [FILM.read_bytes()]
    for seed, kind in enumerate(("covid", "pneumonia", "normal", "normal")):
        img = synthetic_chest(300 + 40 * seed, 280, seed=seed, kind=kind)
        if seed == 1:
            buf = io.BytesIO()
            Image.fromarray((img * 65535).astype(np.uint16)).save(buf, format="PNG")
            out.append(buf.getvalue())
        elif seed == 2:
            buf = io.BytesIO()
            Image.fromarray((img * 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
            out.append(buf.getvalue())
        else:
            out.append(to_png8(img))
    return out


def test_card_records_the_export(exported):
    from ml.card import sha256_file

    entry = read_card(exported)["onnx"]
    assert entry["sha256"] == sha256_file(exported / entry["file"])
    assert {"keras", "tensorflow", "tf2onnx", "onnx"} <= set(entry["exporter"])
    assert entry["max_abs_diff_vs_keras"] <= TOLERANCE


def test_backends_give_the_same_probabilities_and_decisions(exported, figure):
    from ml.inference import Predictor

    keras_p, onnx_p = Predictor(exported, backend="keras"), Predictor(exported, backend="onnx")
    assert (keras_p.backend, onnx_p.backend) == ("keras", "onnx")
    items = images()
    worst = 0.0
    for gate in (True, False):
        a, b = keras_p.predict_batch(items, quality_gate=gate), onnx_p.predict_batch(items, quality_gate=gate)
        assert [r.status for r in a] == [r.status for r in b]
        assert [r.reason_code for r in a] == [r.reason_code for r in b]
        for ra, rb in zip(a, b):
            assert (ra.label, ra.decision, ra.covid_positive) == (rb.label, rb.decision, rb.covid_positive)
            if ra.status == "ok":
                worst = max(worst, *(abs(ra.probabilities[c] - rb.probabilities[c]) for c in CLASSES))
    assert any(r.status == "ok" for r in a)  # the gate-off pass always has answers to compare
    x = np.random.default_rng(3).random((9, keras_p.image_size, keras_p.image_size, 1), dtype=np.float32)
    raw = float(np.abs(keras_p.predict_probs(x) - onnx_p.predict_probs(x)).max())
    figure("serving", f"keras vs onnx: max abs diff {max(worst, raw):.1e} (tolerance {TOLERANCE:.0e})")
    assert worst <= TOLERANCE and raw <= TOLERANCE


def test_heatmap_is_gradcam_on_both_backends(exported):
    from ml.explain import gradcam
    from ml.inference import Predictor
    from ml.preprocessing import load_image_bytes, prepare

    keras_p, onnx_p = Predictor(exported, backend="keras"), Predictor(exported, backend="onnx")
    x = prepare(load_image_bytes(to_png8(synthetic_chest(256, 256, seed=9, kind="covid"))), keras_p.image_size)
    for name in CLASSES:
        reference = gradcam(keras_p.model, x, CLASSES.index(name))
        for p in (keras_p, onnx_p):
            heat = p.heatmap(x, name)
            assert heat.shape == reference.shape
            assert float(np.abs(heat - reference).max()) <= 1e-3


def test_predictions_carry_the_heatmap_of_their_label(exported):
    """The worker draws the overlay from the map of the prediction's own forward pass (no
    second run of the model): it is the heatmap of the label shown, and stays out of the
    JSON."""
    from ml.explain import explain
    from ml.inference import Predictor
    from ml.preprocessing import load_image_bytes, prepare

    for backend in ("keras", "onnx"):
        p = Predictor(exported, backend=backend)
        items = images()
        for item, r in zip(items, p.predict_batch(items, quality_gate=False)):
            x = prepare(load_image_bytes(item), p.image_size)
            assert float(np.abs(r.heatmap - p.heatmap(x, r.label)).max()) <= 1e-4
            assert "heatmap" not in r.to_dict() and json.dumps(r.to_dict())
            heat, overlay = explain(p, item, r.label, heatmap=r.heatmap)
            assert heat is r.heatmap and overlay.startswith(b"\xff\xd8\xff")


def test_onnx_serving_needs_no_tensorflow(exported):
    code = ("import sys; from ml.inference import Predictor; from tests.ml.synth import synthetic_chest, to_png8; "
            f"p = Predictor({str(exported)!r}, backend='onnx'); "
            "r = p.predict_batch([to_png8(synthetic_chest(256, 256))], quality_gate=False)[0]; "
            "from ml.explain import explain; heat, png = explain(p, to_png8(synthetic_chest(256, 256))); "
            "print(r.status, heat.shape, [m for m in ('tensorflow', 'keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "ok" and out.stdout.strip().endswith("[]"), out.stdout


def test_backend_choice(exported, tiny_model, monkeypatch):
    from ml.inference import ModelIntegrityError, Predictor, gpu_visible, serving_backend

    monkeypatch.delenv("CXR_SERVING_BACKEND", raising=False)
    card = read_card(exported)
    assert serving_backend(card) == ("keras" if gpu_visible() else "onnx")
    assert serving_backend(read_card(tiny_model)) == "keras"  # no export: Keras
    monkeypatch.setenv("CXR_SERVING_BACKEND", "keras")
    assert serving_backend(card) == "keras"
    monkeypatch.setenv("CXR_SERVING_BACKEND", "onnx")
    assert serving_backend(card) == "onnx"
    with pytest.raises(ModelIntegrityError, match="ml.export"):
        Predictor(tiny_model)
    monkeypatch.setenv("CXR_SERVING_BACKEND", "torch")
    with pytest.raises(ValueError, match="keras, onnx"):
        serving_backend(card)


def test_tampered_onnx_file_is_refused(exported, tmp_path):
    from ml.inference import ModelIntegrityError, Predictor

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    with open(bad / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError):
        Predictor(bad, backend="onnx")


def test_resource_exhausted_is_raised_as_one_error(exported):
    """TensorFlow's out-of-memory error (and ONNX Runtime's allocation failure) reach
    the caller as ml.inference.ResourceExhaustedError, which the worker handles."""
    import tensorflow as tf

    from ml.inference import Predictor, ResourceExhaustedError

    p = Predictor(exported, backend="onnx")

    def exhausted(x):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    p._forward = exhausted
    with pytest.raises(ResourceExhaustedError, match="batch 2"):
        p.predict_probs(np.zeros((2, p.image_size, p.image_size, 1), np.float32))


@pytest.mark.parametrize("model_dir", sorted(d for d in ARTIFACTS_DIR.glob("*") if (d / "card.json").exists()),
                         ids=lambda d: d.name)
def test_shipped_export_matches_its_keras_model(model_dir):
    """Every shipped model carries a verified ONNX export that gives its Keras
    probabilities (prepared inputs: independent of the preprocessing version)."""
    from ml.inference import _onnx_runner, load_keras_model, serving_model
    from ml.preprocessing import normalize

    card = json.loads((model_dir / "card.json").read_text())
    assert "onnx" in card, f"run python -m ml.export --model {model_dir}"
    served = serving_model(load_keras_model(model_dir, card))
    run = _onnx_runner(model_dir / card["onnx"]["file"], card["onnx"]["sha256"])
    size = int(card["input_size"][0])
    chests = [np.asarray(Image.fromarray(synthetic_chest(400, 360, seed=s, kind=k)).resize((size, size)))
              for s, k in enumerate(("covid", "pneumonia", "normal"))]
    x = np.stack([normalize(np.clip(c, 0, 1))[..., None] for c in chests]
                 + list(np.random.default_rng(0).random((3, size, size, 1), dtype=np.float32)))
    want = [np.asarray(t) for t in served(x, training=False)]
    got = run(x)
    assert len(got) == len(want)
    assert float(np.abs(got[0] - want[0]).max()) <= TOLERANCE
    assert (np.argmax(got[0], 1) == np.argmax(want[0], 1)).all()
