"""Keras 3 networks for three-class chest X-ray screening.

``make_model`` builds *CXRNet*, a small residual CNN sized for CPU serving:
a single-channel square input (128 px by default), a strided stem and four
residual stages that halve the resolution each time, global average pooling,
dropout and a three-way softmax (covid, pneumonia, normal).  The COVID-vs-rest
probability is simply the softmax's ``covid`` entry.

Why this shape:

* Chest X-rays are grayscale; three identical channels would triple the
  first layer's cost for nothing.
* Global findings (bilateral peripheral ground-glass opacities in COVID-19,
  lobar consolidation in bacterial pneumonia) are visible at 128 px; fine
  detail matters less than robustness, and a small input keeps inference
  around a few milliseconds on two CPU cores.
* Plain 3x3 convolutions rather than depthwise-separable ones: at this size
  oneDNN runs dense convolutions far closer to peak FLOP/s than depthwise
  ones, so they are faster per useful FLOP on CPU.
* The input scaling lives *inside* the model (``Rescaling``), so a saved
  ``.keras`` file carries its own normalisation.  It expects the [0, 1]
  output of :func:`ml.preprocessing.prepare`.
* Calibration: the ``logits`` layer feeds a ``temperature`` ``Rescaling``
  (1/T, fitted on validation by :mod:`ml.train`) and then the softmax, so
  the shipped model outputs calibrated probabilities directly.

``make_ensemble`` joins networks trained on the same split into one model
that averages their logits (see :mod:`ml.ensemble`).

The same code runs on a GPU when the Keras backend sees one.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from ml.card import CLASSES  # noqa: E402

DEFAULT_IMAGE_SIZE = 128
DEFAULT_WIDTHS = (32, 48, 96, 160)
ARCHITECTURES = ("cxrnet", "baseline")


def conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, name: str = "",
            activation: bool = True):
    """Convolution, batch normalisation and (optionally) ReLU."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def conv_block(x, filters: int, strides: int = 2, name: str = "block"):
    """Residual block: two 3x3 convolutions, the first strided, and a 1x1
    projection on the shortcut when the shape changes."""
    shortcut = x
    y = conv_bn(x, filters, 3, strides, name=f"{name}_a")
    y = conv_bn(y, filters, 3, 1, name=f"{name}_b", activation=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, strides, name=f"{name}_proj", activation=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def _head(x, dropout: float, temperature: float):
    x = layers.GlobalAveragePooling2D(name="embedding")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(len(CLASSES), name="logits")(x)
    scaled = layers.Rescaling(1.0 / float(temperature), name="temperature")(logits)
    return layers.Activation("softmax", name="probs", dtype="float32")(scaled)


def make_model(image_size: int = DEFAULT_IMAGE_SIZE, widths=DEFAULT_WIDTHS,
               stem: int = 24, dropout: float = 0.3, temperature: float = 1.0,
               name: str = "cxrnet") -> keras.Model:
    """CXRNet: stem + ``len(widths)`` residual stages + GAP + softmax."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_unit_range")(inputs)  # [0,1] -> [-1,1]
    x = conv_bn(x, stem, 3, 2, name="stem")
    for i, w in enumerate(widths):
        x = conv_block(x, w, strides=2, name=f"stage{i + 1}")
    x = layers.Identity(name="last_conv")(x)
    return keras.Model(inputs, _head(x, dropout, temperature), name=name)


def make_baseline(image_size: int = DEFAULT_IMAGE_SIZE, temperature: float = 1.0,
                  name: str = "baseline") -> keras.Model:
    """The seed project's network, kept for comparison:
    conv 32 -> conv 64 -> flatten -> dense 8 -> softmax (with max-pooling
    after each convolution, as in the seed)."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_unit_range")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Identity(name="last_conv")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(8, activation="relu", name="embedding")(x)
    logits = layers.Dense(len(CLASSES), name="logits")(x)
    scaled = layers.Rescaling(1.0 / float(temperature), name="temperature")(logits)
    outputs = layers.Activation("softmax", name="probs", dtype="float32")(scaled)
    return keras.Model(inputs, outputs, name=name)


def make_ensemble(members: list[keras.Model], name: str = "cxrnet-ensemble") -> keras.Model:
    """One model whose logits are the mean of the members' logits.

    Each member's layers up to its ``last_conv`` become a sub-model; their
    feature maps are concatenated into this model's ``last_conv``, pooled
    into its ``embedding`` and fed to one dense ``logits`` layer holding the
    members' kernels stacked and divided by their number (and the mean of
    their biases).  Because pooling and the dense layer are linear, that is
    exactly the average of the members' logits, and the ensemble keeps the
    layer names the predictor, the ONNX export and Grad-CAM rely on.  The
    temperature is 1: calibrate the ensemble as a whole.
    """
    shapes = {tuple(m.input.shape[1:]) for m in members}
    if len(members) < 2 or len(shapes) != 1:
        raise ValueError("an ensemble needs two or more members with the same input shape")
    inputs = keras.Input(shapes.pop(), name="image")
    feats = [keras.Model(m.input, m.get_layer("last_conv").output, name=f"member{k + 1}")(inputs)
             for k, m in enumerate(members)]
    x = layers.Concatenate(name="last_conv")(feats)
    model = keras.Model(inputs, _head(x, 0.0, 1.0), name=name)
    kernels, biases = zip(*(m.get_layer("logits").get_weights() for m in members))
    model.get_layer("logits").set_weights([np.concatenate(kernels) / len(members), np.mean(biases, axis=0)])
    return model


def build(arch: str, image_size: int, **kwargs) -> keras.Model:
    if arch == "cxrnet":
        return make_model(image_size, **kwargs)
    if arch == "baseline":
        return make_baseline(image_size, **{k: v for k, v in kwargs.items() if k == "temperature"})
    raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """A model sharing ``model``'s layers whose softmax is divided by T."""
    logits = model.get_layer("logits").output
    scaled = layers.Rescaling(1.0 / float(temperature), name="temperature")(logits)
    outputs = layers.Activation("softmax", name="probs", dtype="float32")(scaled)
    return keras.Model(model.input, outputs, name=model.name)


def count_flops(model: keras.Model) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass for
    one image, counted analytically from the layer shapes.  Convolutions and
    dense layers dominate; normalisation, activations and pooling are added
    as one operation per output element."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):  # an ensemble's member
            total += count_flops(layer)
            continue
        try:
            out_shape = layer.output.shape
            in_shape = layer.input.shape if not isinstance(layer.input, list) else layer.input[0].shape
        except (AttributeError, ValueError, IndexError):
            continue
        out_elems = 1
        for d in out_shape[1:]:
            out_elems *= int(d)
        if isinstance(layer, layers.SeparableConv2D):
            kh, kw = layer.kernel_size
            cin = int(in_shape[-1])
            oh, ow, cout = (int(d) for d in out_shape[1:])
            total += 2 * oh * ow * cin * (kh * kw * layer.depth_multiplier + cout * layer.depth_multiplier)
        elif isinstance(layer, layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += 2 * out_elems * kh * kw
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = int(in_shape[-1]) // max(1, getattr(layer, "groups", 1))
            total += 2 * out_elems * kh * kw * cin
        elif isinstance(layer, layers.Dense):
            total += 2 * int(in_shape[-1]) * out_elems
        else:
            total += out_elems
    return int(total)
