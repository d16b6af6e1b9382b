"""Grad-CAM heatmaps and overlays for a prediction.

Grad-CAM (Selvaraju et al., 2017) weights the last convolutional feature
maps by the gradient of the class logit, averaged over space, and keeps the
positive part: regions that *raise* the chosen class.  With a 128 px input
the last stage is 8 x 8 (4 x 4 for the default CXRNet), so the map is
coarse: it shows which lung zone drove the answer, not a lesion outline.  It
is an aid to spot shortcut learning (text markers, borders, devices), not a
localisation tool.

:func:`explain` takes the map from the predictor's forward pass when the
model's head allows the closed form (global average pooling then a dense
layer: see :func:`ml.inference.serving_model`), on either serving backend;
:func:`gradcam` computes it with gradients (TensorFlow backend, any head)
and is the reference the closed form is tested against.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ml.card import CLASSES
from ml.preprocessing import contrast_stretch, prepare


def gradcam(model, x: np.ndarray, class_index: int) -> np.ndarray:
    """Heatmap in [0, 1] at the resolution of the ``last_conv`` layer.

    ``x`` is one prepared input ``(S, S, 1)`` or a batch of one.
    """
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.input, [model.get_layer("last_conv").output,
                                           model.get_layer("logits").output])
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[None]
    with tf.GradientTape() as tape:
        feats, logits = grad_model(tf.convert_to_tensor(x), training=False)
        score = logits[:, class_index]
    grads = tape.gradient(score, feats)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))[0].numpy()
    peak = float(cam.max())
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


def _jet(v: np.ndarray) -> np.ndarray:
    """A jet-like colour map: (H, W) in [0, 1] -> (H, W, 3) uint8."""
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


# The colour map as a palette of 256 levels: colouring and blending run in Pillow's C code.
_JET_PALETTE = _jet(np.linspace(0.0, 1.0, 256)).ravel().tolist()


def _levels(values: np.ndarray) -> Image.Image:
    """[0, 1] floats -> an 8-bit image (rounded)."""
    return Image.fromarray((values * 255 + 0.5).astype(np.uint8), mode="L")


def overlay_jpeg(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
                 max_side: int = 512) -> bytes:
    """Blend the heatmap over the (percentile-stretched, as for display) image; JPEG bytes.

    The heatmap was computed on the square-squashed input; it is stretched
    back to the image's own aspect ratio here.  The image is shrunk before it
    is stretched.  Each pixel is ``(1 - a) * gray + a * jet(heat)`` with
    ``a = alpha * heat``, on 8-bit levels.
    """
    base = np.asarray(pixels, np.float32)
    h, w = base.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    small = np.clip(np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
    gray = _levels(contrast_stretch(small)).convert("RGB")
    heat = np.clip(np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(size, Image.Resampling.BICUBIC)),
                   0.0, 1.0)
    colour = _levels(heat).convert("P")
    colour.putpalette(_JET_PALETTE)
    out = Image.composite(colour.convert("RGB"), gray, _levels(alpha * heat))
    buf = io.BytesIO()
    # A display aid, not the image read (the original and the preview stay lossless): JPEG
    # without chroma subsampling keeps the colour map's edges, and costs a twentieth of the
    # time of even the fastest PNG (whose row filters alone take longer).
    out.save(buf, format="JPEG", quality=90, subsampling=0)
    return buf.getvalue()


def explain(predictor, item, class_name: str | None = None,
            heatmap: np.ndarray | None = None) -> tuple[np.ndarray, bytes]:
    """Grad-CAM for one input of :class:`ml.inference.Predictor`.

    ``class_name`` defaults to the label the product shows for this image.
    ``heatmap``: the map the prediction already carries (``Prediction.heatmap``, from
    the same forward pass); given, only the overlay is drawn.
    Returns ``(heatmap, overlay_jpeg_bytes)``.
    """
    decoded = predictor.decode(item)
    if heatmap is not None:
        return heatmap, overlay_jpeg(decoded.pixels, heatmap)
    x = prepare(decoded, predictor.image_size)
    if class_name is None:
        p = predictor.predict_probs(x[None])[0]
        covid = CLASSES.index("covid")
        if p[covid] >= predictor.threshold:
            class_name = "covid"
        else:
            class_name = max((c for c in CLASSES if c != "covid"), key=lambda c: p[CLASSES.index(c)])
    heat = predictor.heatmap(x, class_name)
    return heat, overlay_jpeg(decoded.pixels, heat)
