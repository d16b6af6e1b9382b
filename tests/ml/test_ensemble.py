"""``python -m ml.ensemble``: members trained on the same split become one model
whose logits are the mean of theirs, written, calibrated and served like a
single network (Keras and ONNX Runtime, Grad-CAM, the quality gate); members
of another split or manifest are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ml.card import CLASSES, read_card, sha256_file
from tests.ml.synth import synthetic_chest, to_png8

TINY = ["--epochs", "2", "--image-size", "32", "--batch-size", "12", "--seed", "7", "--cache-dir", "none",
        "--epoch-images", "0", "--val-fraction", "0.2", "--target-sensitivity", "0.95"]


@pytest.fixture(scope="module")
def second_member(tiny_dataset, tmp_path_factory):
    """The tiny model's recipe and split with other initial weights."""
    from ml import train

    out = tmp_path_factory.mktemp("member2")
    train.main(["--manifest", str(tiny_dataset), "--out", str(out), *TINY, "--init-seed", "8"])
    return out


@pytest.fixture(scope="module")
def ensemble_dir(tiny_model, second_member, tiny_dataset, tmp_path_factory):
    from ml.ensemble import main

    out = tmp_path_factory.mktemp("ensemble")
    main(["--manifest", str(tiny_dataset), "--members", str(tiny_model), str(second_member),
          "--out", str(out), "--cache-dir", "none"])
    return out


def _logits(model_dir, x):
    import keras

    from ml.inference import load_keras_model

    model = load_keras_model(model_dir, read_card(model_dir))
    return np.asarray(keras.Model(model.input, model.get_layer("logits").output)(x, training=False))


def test_members_share_the_split_but_not_the_weights(tiny_model, second_member):
    a, b = read_card(tiny_model), read_card(second_member)
    assert a["split"] == b["split"]
    assert (a["training"]["seed"], b["training"]["seed"]) == (7, 8)
    assert a["weights_sha256"] != b["weights_sha256"]


def test_ensemble_logits_are_the_mean_of_the_members(tiny_model, second_member, ensemble_dir):
    x = np.stack([synthetic_chest(32, 32, seed=s, kind=CLASSES[s % 3]) for s in range(6)])[..., None]
    x = x.astype(np.float32)
    want = (_logits(tiny_model, x) + _logits(second_member, x)) / 2
    got = _logits(ensemble_dir, x)
    assert float(np.abs(got - want).max()) <= 1e-5


def test_ensemble_card(tiny_model, second_member, ensemble_dir, tiny_dataset):
    card = read_card(ensemble_dir)
    members = card["training"]["ensemble_of"]
    assert [m["weights_sha256"] for m in members] == [read_card(d)["weights_sha256"]
                                                      for d in (tiny_model, second_member)]
    assert card["architecture"] == "cxrnet-ensemble"
    assert card["split"] == read_card(tiny_model)["split"]
    assert card["weights_sha256"] == sha256_file(ensemble_dir / "model.keras")
    assert card["training_manifest_sha256"] == sha256_file(tiny_dataset)
    # two trunks, one shared head
    assert 0 < 2 * read_card(tiny_model)["flops_per_image"] - card["flops_per_image"] < 1000
    assert card["validation"]["per_class"]["covid"]["sensitivity"] >= 0.95


def test_ensemble_serves_like_one_network(ensemble_dir, tmp_path):
    from ml.explain import explain
    from ml.export import export
    from ml.inference import Predictor

    served = tmp_path / "served"
    shutil.copytree(ensemble_dir, served)
    export(served)
    item = to_png8(synthetic_chest(256, 240, seed=3, kind="covid"))
    keras_r, = Predictor(served, backend="keras").predict_batch([item], quality_gate=False)
    onnx_r, = Predictor(served, backend="onnx").predict_batch([item], quality_gate=False)
    assert keras_r.label == onnx_r.label
    assert np.allclose([keras_r.probabilities[c] for c in CLASSES],
                       [onnx_r.probabilities[c] for c in CLASSES], atol=1e-4)
    heat, overlay = explain(Predictor(served, backend="keras"), item, keras_r.label)
    assert heat.ndim == 2 and heat.max() <= 1.0 and overlay.startswith(b"\xff\xd8\xff")
    assert json.dumps(keras_r.to_dict())


def test_members_of_another_split_are_refused(tiny_model, second_member, tiny_dataset, tmp_path):
    from ml.ensemble import main

    other = tmp_path / "other"
    shutil.copytree(second_member, other)
    card = read_card(other)
    card["split"]["seed"] = 8
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(SystemExit, match="split"):
        main(["--manifest", str(tiny_dataset), "--members", str(tiny_model), str(other),
              "--out", str(tmp_path / "out"), "--cache-dir", "none"])
    changed = tmp_path / "manifest.csv"
    changed.write_text(tiny_dataset.read_text() + "\n")
    with pytest.raises(SystemExit, match="manifest"):
        main(["--manifest", str(changed), "--members", str(tiny_model), str(second_member),
              "--out", str(tmp_path / "out"), "--cache-dir", "none"])
    assert not (tmp_path / "out").exists()
