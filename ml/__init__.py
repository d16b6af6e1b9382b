"""Chest X-ray screening: preprocessing, model, training, evaluation, inference.

Pure Python + Keras 3; no Django.  Importing ``ml`` is free: every heavy
dependency is imported by the submodule that needs it.

Serving (web and worker)::

    from ml.inference import Predictor, DISCLAIMER, ModelIntegrityError
    from ml.preprocessing import load_image_bytes, ImageError

    predictor = Predictor()               # shipped model, once per process
    results = predictor.predict_batch([data, ...])

Training and evaluation (command line, never imported by the web/worker)::

    python -m ml.train --manifest CSV [--out DIR] [--epochs N] [--image-size N] [--seed S] [--arch baseline]
    python -m ml.evaluate --manifest CSV [--model DIR] [--json]
"""
