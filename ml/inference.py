"""Serving: load the shipped model once per process and screen images.

    from ml.inference import Predictor
    predictor = Predictor()                 # the shipped model (ml/artifacts/...)
    results = predictor.predict_batch([file_bytes, "scan.dcm", pil_image])
    results[0].status        # "ok" | "cannot_assess"
    results[0].to_dict()     # JSON-ready, with model name/version/sha256

Two serving backends run the same ``.keras`` model:

* ``keras``: the Keras model in a compiled ``tf.function`` (fixed input
  signature, any batch size).  It runs on a GPU when TensorFlow sees one.
* ``onnx``: ONNX Runtime on ``model.onnx``, exported from the same model by
  ``python -m ml.export --model DIR``.  It needs neither TensorFlow nor Keras
  at serving time (a smaller, faster-starting worker).

``CXR_SERVING_BACKEND`` (``keras`` | ``onnx``) picks one; unset, a machine
where TensorFlow sees a GPU serves with ``keras``, any other with ``onnx``
when the model directory has an export (the faster one on CPU, see
``bench/ml_inference.py``), else ``keras``.  Both give the same
probabilities within 1e-4 (``tests/ml/test_serving.py``).

Loading verifies the sha256 of the file it runs (``model.keras`` or
``model.onnx``) against ``card.json`` (a mismatch raises
:class:`ModelIntegrityError`); Keras loads in safe mode, so a tampered file
cannot run arbitrary code.  This module never imports the training code.

The served graph has a third output besides the probabilities and the
embedding (out-of-distribution gate): the class activation maps, from which
:meth:`Predictor.heatmap` gives Grad-CAM without gradients (see
:func:`serving_model`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
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


BACKENDS = ("keras", "onnx")
ONNX_FILE = "model.onnx"


class ModelIntegrityError(RuntimeError):
    """The model file does not match the sha256 recorded in its card."""


class ResourceExhaustedError(RuntimeError):
    """The device ran out of memory for this batch (TensorFlow's
    ResourceExhaustedError, an ONNX Runtime allocation failure).  A smaller
    batch may fit."""


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
    #: Grad-CAM of the shown label from the same forward pass, in [0, 1] (None when the
    #: model's head has no closed form, or for cannot_assess); not part of :meth:`to_dict`.
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        out = asdict(replace(self, heatmap=None))
        del out["heatmap"]
        return out


class Predictor:
    """Loads a model directory (``model.keras`` and/or ``model.onnx`` + ``card.json`` + ``ood.npz``)
    once and screens batches of images.

    Inputs accepted by :meth:`predict_batch`: ``bytes`` (file contents),
    ``str``/``Path`` (file path), ``PIL.Image.Image``, numpy arrays
    (uint8, uint16 or float in [0, 1]) and :class:`DecodedImage`.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, *, quality_gate: bool = True,
                 warmup: bool = True, backend: str | None = None):
        self.model_dir = Path(model_dir) if model_dir else cardlib.default_model_dir()
        self.card = cardlib.read_card(self.model_dir)
        self.sha256 = self.card.get("weights_sha256")
        self.classes = tuple(self.card["classes"])
        if self.classes != CLASSES:
            raise ModelIntegrityError(f"unexpected classes {self.classes}")
        if self.card.get("preprocessing_version") != PREPROCESSING_VERSION:
            raise ModelIntegrityError(
                f"model expects preprocessing {self.card.get('preprocessing_version')}, "
                f"this code is {PREPROCESSING_VERSION}")
        self.ood = None
        ood_path = self.model_dir / self.card.get("ood_file", cardlib.OOD_FILE)
        if ood_path.exists():
            _verify(ood_path, self.card.get("ood_sha256"))
            with np.load(ood_path, allow_pickle=False) as z:
                self.ood = {k: z[k].astype(np.float64) for k in ("mean", "precision", "cutoff")}
        self.image_size = int(self.card["input_size"][0])
        self.threshold = float(self.card["threshold"])
        self.name = str(self.card.get("name", "cxr"))
        self.version = str(self.card.get("version", "0"))
        self.quality_gate = quality_gate
        self.backend = serving_backend(self.card, backend)
        self._keras_model = None
        if self.backend == "onnx":
            self._forward = _onnx_runner(self.model_dir / self.card["onnx"]["file"], self.card["onnx"]["sha256"])
        else:
            self._forward = _compile(serving_model(self.model), self.image_size)
        if warmup:
            self._run(np.zeros((1, self.image_size, self.image_size, 1), np.float32))

    @property
    def model(self):
        """The Keras model (loaded on first use when serving with ONNX Runtime)."""
        if self._keras_model is None:
            self._keras_model = load_keras_model(self.model_dir, self.card)
        return self._keras_model

    # ------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Probabilities, embeddings and class activation maps (None when the
        model's head has no closed form) for prepared inputs."""
        try:
            out = self._forward(np.ascontiguousarray(x, dtype=np.float32))
        except Exception as exc:
            if _out_of_memory(exc):
                raise ResourceExhaustedError(f"out of memory at batch {len(x)}: {exc}") from exc
            raise
        cam = np.asarray(out[2], dtype=np.float32) if len(out) > 2 else None
        return np.asarray(out[0], dtype=np.float64), np.asarray(out[1], dtype=np.float64), cam

    def heatmap(self, x: np.ndarray, class_name: str) -> np.ndarray:
        """Grad-CAM heatmap in [0, 1] for one prepared input ``(S, S, 1)``.

        With a global-average-pooling head the class activation map from the
        forward pass is Grad-CAM exactly; otherwise gradients are taken
        through the Keras model (:func:`ml.explain.gradcam`)."""
        k = CLASSES.index(class_name)
        cam = self._run(x[None])[2]
        if cam is None:
            from ml.explain import gradcam

            return gradcam(self.model, x, k)
        return _normalise_cam(cam[0, ..., k])

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
            probs, emb, cams = self._run(np.stack(arrays))
            per_image = _ms(t0) / len(pending)
            dist = (mahalanobis(emb, self.ood["mean"], self.ood["precision"])
                    if self.ood is not None else np.zeros(len(pending)))
            for j, i in enumerate(pending):
                t = timings[i]
                t["inference"] = round(per_image, 3)
                t["batch"] = len(pending)
                t["total"] = round(t["decode"] + t["preprocess"] + per_image, 3)
                q = dict(stats[i], ood_distance=float(dist[j]))
                if gate_on and self.ood is not None:
                    g = ood_reason(float(dist[j]), float(self.ood["cutoff"]))
                    if not g.ok:
                        results[i] = self._refuse(g.code, g.reason, q, t)
                        continue
                results[i] = self._result(probs[j], q, t)
                if cams is not None:
                    results[i].heatmap = _normalise_cam(cams[j, ..., CLASSES.index(results[i].label)])
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


def load_keras_model(model_dir: Path, card: dict):
    """The directory's Keras model, after checking its sha256 against the card; safe mode."""
    import keras

    path = Path(model_dir) / card.get("weights_file", cardlib.MODEL_FILE)
    _verify(path, card.get("weights_sha256"))
    return keras.models.load_model(path, safe_mode=True, compile=False)


def _verify(path: Path, expected: str | None) -> None:
    if cardlib.sha256_file(path) != expected:
        raise ModelIntegrityError(f"{path} does not match the sha256 in its card ({expected}); refusing to load it.")


def _normalise_cam(cam: np.ndarray) -> np.ndarray:
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


def _out_of_memory(exc: Exception) -> bool:
    """TensorFlow's ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED, ONNX Runtime's
    failed allocations (it has no exception class of its own for them)."""
    if type(exc).__name__ == "ResourceExhaustedError":
        return True
    text = str(exc)
    return any(m in text for m in ("RESOURCE_EXHAUSTED", "Failed to allocate", "out of memory", "bad_alloc",
                                   "ALLOC_FAILED"))


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU.  A machine without a GPU device node is
    answered without importing TensorFlow."""
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def serving_backend(card: dict, requested: str | None = None) -> str:
    """The backend to serve with: ``requested``, else ``CXR_SERVING_BACKEND``,
    else ``keras`` on a GPU machine or for a model without an ONNX export,
    else ``onnx``."""
    choice = (requested or os.environ.get("CXR_SERVING_BACKEND") or "").strip().lower()
    if choice and choice not in BACKENDS:
        raise ValueError(f"CXR_SERVING_BACKEND must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "onnx" and "onnx" not in card:
        raise ModelIntegrityError("this model has no ONNX export in its card; run python -m ml.export --model DIR")
    if choice:
        return choice
    return "onnx" if "onnx" in card and not gpu_visible() else "keras"


def serving_model(model):
    """The graph that is served (and exported to ONNX): the model's
    probabilities, its ``embedding`` (for the out-of-distribution gate) and,
    when the head allows it, the class activation maps.

    With ``last_conv`` -> global average pooling (``embedding``) -> dropout
    -> dense ``logits``, the gradient of a logit with respect to the feature
    maps is the dense kernel column divided by h*w at every position, so
    Grad-CAM's map is ``relu(features @ kernel[:, c])`` up to a positive
    factor: ``features @ kernel`` for every class, shape ``(N, h, w, C)``,
    is the third output.  Other heads (the baseline) have two outputs.
    """
    import keras

    outputs = [model.output, model.get_layer("embedding").output]
    names = [layer.name for layer in model.layers]
    if {"last_conv", "embedding", "logits"} <= set(names):
        feats = model.get_layer("last_conv").output
        pool, logits = model.get_layer("embedding"), model.get_layer("logits")
        between = model.layers[names.index("embedding") + 1:names.index("logits")]
        if (isinstance(pool, keras.layers.GlobalAveragePooling2D) and pool.input is feats
                and isinstance(logits, keras.layers.Dense)
                and logits.activation is keras.activations.linear
                and all(isinstance(layer, keras.layers.Dropout) for layer in between)):
            outputs.append(keras.ops.einsum("nhwk,kc->nhwc", feats, logits.kernel))
    served = keras.Model(model.input, outputs, name=f"{model.name}_serving")
    served(np.zeros((1, *model.input_shape[1:]), np.float32))  # built: ONNX export needs a called model
    return served


def _onnx_runner(path: Path, sha256: str):
    """An ONNX Runtime session on the verified file, on CUDA when this
    onnxruntime build has it, else the CPU.  Threads do not spin between
    calls: workers share the CPU with the web processes."""
    import onnxruntime as ort

    _verify(path, sha256)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    session = ort.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


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
