"""Quality gate: refuse inputs that are not a frontal chest X-ray.

A classifier trained on chest X-rays will still output three probabilities
for a holiday photo, so before (and after) the network runs we check that the
picture plausibly *is* a chest radiograph.  The heuristic checks below run on
the decoded image; the last check (:func:`ood_reason`) compares the network's
penultimate embedding with the training distribution (Mahalanobis distance,
cut-off chosen on validation and stored beside the model).

Each refusal has a stable ``code`` and a message a clinician can read.
Thresholds were set from the statistics of the 8842 training images (the
largest training values: aspect 2.23, white fraction 0.49, flat fraction 0.81,
edge fraction 0.022, no colour) with a margin, so that no training image is
refused by the heuristic part while photos, screenshots, documents, blank
images and strips are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.preprocessing import DecodedImage

#: A chest X-ray shorter than this (in original pixels) cannot be assessed.
MIN_SIDE = 128
#: Longer side / shorter side above this looks like a strip or an extreme crop.
MAX_ASPECT = 2.5
#: Colour: share of clearly coloured pixels, or mean chroma, above these.
MAX_COLOUR_FRACTION = 0.05
MAX_MEAN_CHROMA = 0.06
#: Constant / blank: contrast between the 1st and 99th percentile.
MIN_CONTRAST = 0.08
MIN_STD = 0.03
#: Documents and screenshots: share of bright-white pixels, share of
#: exactly flat neighbouring pixels, share of strong (text-like) edges.
MAX_WHITE_FRACTION = 0.55
MAX_FLAT_FRACTION = 0.88
MAX_EDGE_FRACTION = 0.06


@dataclass
class GateResult:
    ok: bool
    code: str | None = None
    reason: str | None = None
    stats: dict | None = None


def image_stats(image: DecodedImage) -> dict:
    """Cheap statistics of the decoded image used by the gate."""
    p = image.pixels
    # Work on at most ~256 px along the shorter side for speed.
    step = max(1, min(p.shape) // 256)
    q = p[::step, ::step]
    dx = np.abs(np.diff(q, axis=1))
    dy = np.abs(np.diff(q, axis=0))
    p1, p99 = np.percentile(q, [1, 99])
    w, h = image.original_size
    return {
        "width": int(w),
        "height": int(h),
        "aspect": float(max(w, h) / max(1, min(w, h))),
        "std": float(q.std()),
        "contrast": float(p99 - p1),
        "mean": float(q.mean()),
        "white_fraction": float(np.mean(q > 0.94)),
        "flat_fraction": float((np.mean(dx < 0.5 / 255) + np.mean(dy < 0.5 / 255)) / 2),
        "edge_fraction": float((np.mean(dx > 0.25) + np.mean(dy > 0.25)) / 2),
        "colour_fraction": float(image.colour_fraction),
        "mean_chroma": float(image.mean_chroma),
    }


def check_image(image: DecodedImage) -> GateResult:
    """Heuristic part of the gate (no model needed)."""
    s = image_stats(image)
    w, h = s["width"], s["height"]
    if min(w, h) < MIN_SIDE:
        return GateResult(False, "too_small",
                          f"The image is too small ({w}x{h} px) to assess a chest X-ray.", s)
    if s["aspect"] > MAX_ASPECT:
        return GateResult(False, "extreme_aspect",
                          f"The image is a narrow strip (aspect {s['aspect']:.1f}:1); "
                          "it looks like an extreme crop, not a whole chest X-ray.", s)
    if s["contrast"] < MIN_CONTRAST or s["std"] < MIN_STD:
        return GateResult(False, "blank",
                          "The image is blank or nearly constant.", s)
    if s["colour_fraction"] > MAX_COLOUR_FRACTION or s["mean_chroma"] > MAX_MEAN_CHROMA:
        return GateResult(False, "colour",
                          "The image is in colour; it looks like a photograph or a "
                          "screenshot, not a radiograph.", s)
    if s["white_fraction"] > MAX_WHITE_FRACTION:
        return GateResult(False, "document",
                          "The image is mostly white; it looks like a document or a "
                          "screenshot, not a radiograph.", s)
    if s["flat_fraction"] > MAX_FLAT_FRACTION or s["edge_fraction"] > MAX_EDGE_FRACTION:
        return GateResult(False, "synthetic",
                          "The image has large flat areas or text-like edges; it looks like "
                          "a screenshot, a drawing or a document, not a radiograph.", s)
    return GateResult(True, None, None, s)


def mahalanobis(emb: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = np.atleast_2d(emb).astype(np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0))


def ood_reason(distance: float, cutoff: float) -> GateResult:
    if np.isfinite(cutoff) and distance > cutoff:
        return GateResult(False, "out_of_distribution",
                          "The image does not resemble the frontal chest X-rays the model "
                          f"was trained on (distance {distance:.1f} > {cutoff:.1f}).",
                          {"ood_distance": float(distance)})
    return GateResult(True, None, None, {"ood_distance": float(distance)})
