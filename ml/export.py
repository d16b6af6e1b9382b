"""Export a model directory's ``model.keras`` to ONNX for ONNX Runtime serving.

    python -m ml.export --model ml/artifacts/cxrnet-v4

Writes ``DIR/model.onnx`` (the graph :func:`ml.inference.serving_model`
serves: probabilities, embedding and class activation maps, any batch size)
with Keras 3's ``model.export(format="onnx")``, checks that ONNX Runtime
gives the Keras probabilities on a few inputs, and records the file's
sha256, the exporter versions and the largest difference seen under
``"onnx"`` in ``DIR/card.json``.  The predictor refuses an ``model.onnx``
whose sha256 differs from the card.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ml import card as cardlib  # noqa: E402
from ml.inference import ONNX_FILE, load_keras_model, serving_model  # noqa: E402

#: the largest absolute difference in probabilities accepted between the
#: Keras model and its ONNX export
TOLERANCE = 1e-4


def export(model_dir: str | os.PathLike) -> dict:
    """Write ``model.onnx`` beside ``model.keras`` and record it in the card;
    returns the card's ``onnx`` entry."""
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    model_dir = Path(model_dir)
    card = cardlib.read_card(model_dir)
    served = serving_model(load_keras_model(model_dir, card))
    target = model_dir / ONNX_FILE
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        staged = Path(tmp) / ONNX_FILE
        served.export(str(staged), format="onnx", verbose=False)
        graph = onnx.load(str(staged))
        onnx.checker.check_model(graph)
        session = onnxruntime.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
        size = int(card["input_size"][0])
        x = np.random.default_rng(0).random((4, size, size, 1), dtype=np.float32)
        got = session.run(None, {session.get_inputs()[0].name: x})
        want = [np.asarray(t) for t in served(x, training=False)]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(got, want))
        prob_diff = float(np.abs(got[0] - want[0]).max())
        if len(got) != len(want) or prob_diff > TOLERANCE:
            raise RuntimeError(f"the ONNX export differs from the Keras model by {prob_diff:.2e} (> {TOLERANCE})")
        os.replace(staged, target)
    entry = {
        "file": ONNX_FILE,
        "sha256": cardlib.sha256_file(target),
        "opset": max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "outputs": ["probabilities", "embedding"] + (["class_activation_maps"] if len(got) > 2 else []),
        "max_abs_diff_vs_keras": diff,
        "exporter": {"keras": keras.__version__, "tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                     "onnx": onnx.__version__, "onnxruntime_checked": onnxruntime.__version__},
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    card["onnx"] = entry
    cardlib.write_card(model_dir, card)
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model directory (default: the shipped model or CXR_MODEL_DIR)")
    args = p.parse_args(argv)
    model_dir = Path(args.model) if args.model else cardlib.default_model_dir()
    entry = export(model_dir)
    print(f"wrote {model_dir / entry['file']} ({(model_dir / entry['file']).stat().st_size / 1e6:.1f} MB, "
          f"sha256 {entry['sha256']}, opset {entry['opset']}, outputs {', '.join(entry['outputs'])}, "
          f"max abs diff vs Keras {entry['max_abs_diff_vs_keras']:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
