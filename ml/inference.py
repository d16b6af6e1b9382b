"""Serving: load the shipped model once per process and screen images.

    from ml.inference import Predictor
    predictor = Predictor()                 # the shipped model (ml/artifacts/...)
    results = predictor.predict_batch([file_bytes, "scan.dcm", pil_image])
    results[0].status        # "ok" | "cannot_assess"
    results[0].to_dict()     # JSON-ready, with model name/version/sha256

Loading verifies the weights' sha256 against ``card.json`` (a mismatch raises
:class:`ModelIntegrityError`) and uses Keras' safe mode, so a tampered file
cannot run arbitrary code.  This module never imports the training code.

The model runs on a GPU when the Keras backend sees one, on the CPU
otherwise; nothing here needs to change between the two.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ml import card as cardlib  # noqa: E402
from ml.card import CLASSES, COVID  # noqa: E402
from ml.preprocessing import (  # noqa: E402
    PREPROCESSING_VERSION,
    DecodedImage,
    ImageError,
    load_array,
    load_image,
    load_image_bytes,
    prepare,
)
from ml.quality import check_image, mahalanobis, ood_reason  # noqa: E402

DISCLAIMER = (
    "Screening aid only, not a diagnosis. The result must be reviewed by a "
    "qualified clinician together with the clinical picture and, where indicated, "
    "a PCR test."
)

STATUS_OK = "ok"
STATUS_CANNOT_ASSESS = "cannot_assess"


class ModelIntegrityError(RuntimeError):
    """The model file does not match the sha256 recorded in its card."""


@dataclass
class Prediction:
    """The result for one image.  ``status`` is ``ok`` or ``cannot_assess``;
    when it is ``cannot_assess`` the label and probabilities are ``None`` and
    ``reason`` says why in words (``reason_code`` is stable)."""

    status: str
    reason: str | None
    reason_code: str | None
    label: str | None  #: the label shown (covid if P(covid) >= threshold, else likelier of the rest)
    top_class: str | None  #: plain argmax of the probabilities
    probabilities: dict | None  #: calibrated, per class
    covid_probability: float | None  #: covid vs rest
    covid_positive: bool | None  #: covid_probability >= threshold
    decision: str | None  #: "covid_suspected" | "covid_not_suspected"
    threshold: float
    model_name: str
    model_version: str
    model_sha256: str
    preprocessing_version: str
    timings_ms: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict:
        return asdict(self)


class Predictor:
    """Loads a model directory (``model.keras`` + ``card.json`` + ``ood.npz``)
    once and screens batches of images.

    Inputs accepted by :meth:`predict_batch`: ``bytes`` (file contents),
    ``str``/``Path`` (file path), ``PIL.Image.Image``, numpy arrays
    (uint8, uint16 or float in [0, 1]) and :class:`DecodedImage`.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, *, quality_gate: bool = True,
                 warmup: bool = True):
        self.model_dir = Path(model_dir) if model_dir else cardlib.default_model_dir()
        self.card = cardlib.read_card(self.model_dir)
        model_path = self.model_dir / self.card.get("weights_file", cardlib.MODEL_FILE)
        self.sha256 = cardlib.sha256_file(model_path)
        if self.sha256 != self.card.get("weights_sha256"):
            raise ModelIntegrityError(
                f"{model_path} has sha256 {self.sha256}, but its card expects "
                f"{self.card.get('weights_sha256')}; refusing to load it.")
        self.ood = None
        ood_path = self.model_dir / self.card.get("ood_file", cardlib.OOD_FILE)
        if ood_path.exists():
            if cardlib.sha256_file(ood_path) != self.card.get("ood_sha256"):
                raise ModelIntegrityError(f"{ood_path} does not match its card; refusing to load it.")
            with np.load(ood_path, allow_pickle=False) as z:
                self.ood = {k: z[k].astype(np.float64) for k in ("mean", "precision", "cutoff")}

        import keras

        self.model = keras.models.load_model(model_path, safe_mode=True, compile=False)
        self.classes = tuple(self.card["classes"])
        if self.classes != CLASSES:
            raise ModelIntegrityError(f"unexpected classes {self.classes}")
        self.image_size = int(self.card["input_size"][0])
        self.threshold = float(self.card["threshold"])
        self.name = str(self.card.get("name", "cxr"))
        self.version = str(self.card.get("version", "0"))
        self.quality_gate = quality_gate
        if self.card.get("preprocessing_version") != PREPROCESSING_VERSION:
            raise ModelIntegrityError(
                f"model expects preprocessing {self.card.get('preprocessing_version')}, "
                f"this code is {PREPROCESSING_VERSION}")
        # One forward pass returns both the probabilities and the embedding
        # used by the out-of-distribution check.
        self._dual = keras.Model(self.model.input,
                                 [self.model.output, self.model.get_layer("embedding").output])
        self._forward = _compile(self._dual, self.image_size)
        if warmup:
            self._run(np.zeros((1, self.image_size, self.image_size, 1), np.float32))

    # ------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, emb = self._forward(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(probs, dtype=np.float64), np.asarray(emb, dtype=np.float64)

    def predict_probs(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities for prepared inputs ``(N, S, S, 1)`` (no gate)."""
        out = [self._run(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)))

    def decode(self, item) -> DecodedImage:
        """Decode one input of any accepted kind (raises :class:`ImageError`)."""
        if isinstance(item, DecodedImage):
            return item
        if isinstance(item, (bytes, bytearray, memoryview)):
            return load_image_bytes(bytes(item))
        if isinstance(item, (str, os.PathLike)):
            return load_image(item)
        return load_array(item)

    def predict(self, item) -> Prediction:
        return self.predict_batch([item])[0]

    def predict_batch(self, items, *, quality_gate: bool | None = None) -> list[Prediction]:
        """Screen a batch; one :class:`Prediction` per input, in order.

        ``quality_gate=False`` skips the gate for this call (research use:
        the results then say nothing about whether the input was a chest
        X-ray); by default the predictor's setting applies.
        """
        gate_on = self.quality_gate if quality_gate is None else bool(quality_gate)
        items = list(items)
        results: list[Prediction | None] = [None] * len(items)
        pending, arrays, timings, stats = [], [], {}, {}
        for i, item in enumerate(items):
            t0 = time.perf_counter()
            try:
                decoded = self.decode(item)
            except ImageError as exc:
                results[i] = self._refuse(f"unreadable_{exc.code}", str(exc), {},
                                          {"decode": _ms(t0)})
                continue
            t1 = time.perf_counter()
            gate = check_image(decoded)
            if gate_on and not gate.ok:
                results[i] = self._refuse(gate.code, gate.reason, gate.stats,
                                          {"decode": _ms(t0, t1), "preprocess": _ms(t1)})
                continue
            arrays.append(prepare(decoded, self.image_size))
            pending.append(i)
            timings[i] = {"decode": _ms(t0, t1), "preprocess": _ms(t1)}
            stats[i] = gate.stats
        if pending:
            t0 = time.perf_counter()
            probs, emb = self._run(np.stack(arrays))
            per_image = _ms(t0) / len(pending)
            dist = (mahalanobis(emb, self.ood["mean"], self.ood["precision"])
                    if self.ood is not None else np.zeros(len(pending)))
            for j, i in enumerate(pending):
                t = timings[i]
                t["inference"] = round(per_image, 3)
                t["total"] = round(t["decode"] + t["preprocess"] + per_image, 3)
                q = dict(stats[i], ood_distance=float(dist[j]))
                if gate_on and self.ood is not None:
                    g = ood_reason(float(dist[j]), float(self.ood["cutoff"]))
                    if not g.ok:
                        results[i] = self._refuse(g.code, g.reason, q, t)
                        continue
                results[i] = self._result(probs[j], q, t)
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------
    def _common(self) -> dict:
        return {"threshold": self.threshold, "model_name": self.name,
                "model_version": self.version, "model_sha256": self.sha256,
                "preprocessing_version": PREPROCESSING_VERSION}

    def _refuse(self, code, reason, quality, timings) -> Prediction:
        timings.setdefault("total", round(sum(timings.values()), 3))
        return Prediction(STATUS_CANNOT_ASSESS, reason, code, None, None, None, None, None, None,
                          timings_ms=timings, quality=quality or {}, **self._common())

    def _result(self, p: np.ndarray, quality: dict, timings: dict) -> Prediction:
        p_covid = float(p[COVID])
        positive = p_covid >= self.threshold
        if positive:
            label = "covid"
        else:
            label = max((c for c in CLASSES if c != "covid"), key=lambda c: p[CLASSES.index(c)])
        return Prediction(
            STATUS_OK, None, None, label, CLASSES[int(np.argmax(p))],
            {c: round(float(p[k]), 6) for k, c in enumerate(CLASSES)},
            round(p_covid, 6), bool(positive),
            "covid_suspected" if positive else "covid_not_suspected",
            timings_ms=timings, quality=quality, **self._common())


def _ms(t0: float, t1: float | None = None) -> float:
    return round(((t1 if t1 is not None else time.perf_counter()) - t0) * 1000.0, 3)


def _compile(model, image_size: int):
    """A fast forward function.  ``model.predict`` per image costs several
    milliseconds of Python overhead; a traced function does not."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                         input_signature=[tf.TensorSpec([None, image_size, image_size, 1], tf.float32)])
        return lambda x: [t.numpy() for t in fn(x)]
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def fn(x):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return out

        return lambda x: [np.asarray(t) for t in fn(x)]
    return lambda x: [keras.ops.convert_to_numpy(t) for t in model(x, training=False)]


_SHARED: dict[str, Predictor] = {}


def get_predictor(model_dir: str | os.PathLike | None = None) -> Predictor:
    """One :class:`Predictor` per process and model directory."""
    key = str(Path(model_dir).resolve()) if model_dir else str(cardlib.default_model_dir())
    if key not in _SHARED:
        _SHARED[key] = Predictor(model_dir)
    return _SHARED[key]
