"""The model card that travels beside the weights.

``card.json`` is the registry entry of one trained model: class names, input
resolution, the operating threshold and calibration temperature, the sha256
of the weights file (checked before loading), the training manifest's sha256
and the validation figures.  Nothing here imports Keras.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CLASSES = ("covid", "pneumonia", "normal")
COVID = CLASSES.index("covid")

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
SHIPPED_MODEL = "cxrnet-v4"
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
OOD_FILE = "ood.npz"


def default_model_dir() -> Path:
    """The shipped model (override with the ``CXR_MODEL_DIR`` environment variable)."""
    env = os.environ.get("CXR_MODEL_DIR")
    return Path(env) if env else ARTIFACTS_DIR / SHIPPED_MODEL


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_card(model_dir: str | os.PathLike) -> dict:
    with open(Path(model_dir) / CARD_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def write_card(model_dir: str | os.PathLike, card: dict) -> Path:
    path = Path(model_dir) / CARD_FILE
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(card, fh, indent=2, sort_keys=False, default=_jsonable)
        fh.write("\n")
    return path


def _jsonable(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(obj)}")
