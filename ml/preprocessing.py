"""One preprocessing path for chest X-rays: PNG (8/16-bit), JPEG and DICOM.

Training, evaluation and inference all call :func:`load_image` /
:func:`load_image_bytes` followed by :func:`prepare`.  Nothing here imports
Keras or Django, so the web process and the worker can use it cheaply.

The pipeline, in the order it runs:

1. **Header check.**  The image dimensions (and, for DICOM, frames and bits)
   are read from the header and checked against :data:`MAX_PIXELS` *before*
   any pixel is decoded, so a decompression bomb costs nothing.
2. **Decode.**  The whole image is decoded; a truncated file is an error,
   never a half-grey picture.  JPEGs are decoded at a reduced DCT scale
   (``draft``) when they are much larger than we need.
3. **Intensity to [0, 1].**  8-bit data is divided by 255.  16-bit PNGs are
   scaled from their bit depth (not clipped to 8 bits as a naive
   ``convert("L")`` would), so the full dynamic range survives.  DICOM goes
   through the modality LUT (rescale slope/intercept), the VOI LUT or window,
   the stored bit depth, and MONOCHROME1 is inverted so that bone is bright.
4. **Grayscale and orientation.**  Colour images become luma (ITU-R 601);
   transparency is composited on black; the EXIF orientation tag is applied.
   Before the colour is dropped we record how colourful the picture was: the
   quality gate uses it to refuse photographs.
5. **Working resolution.**  Large images are box-reduced by an integer factor
   to a shorter side of at least :data:`WORK_MIN_SIDE` pixels.
6. **Model input** (:func:`prepare`): the image is squashed to a square (the
   redistributed training sources were already squashed, so we do the same to
   everything rather than learn "aspect ratio = source"), resized with an
   antialiasing filter and contrast-normalised (:func:`normalize`): a
   per-image percentile stretch followed by histogram equalisation, so every
   image reaches the network with the same intensity distribution whatever
   the hospital's exposure, detector curve or post-processing.  The result is a float32 ``(size, size, 1)``
   array in [0, 1]; the scaling to the network's range happens inside the
   saved Keras model.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

PREPROCESSING_VERSION = "cxr-pre-2.0"

#: Largest image accepted, in pixels (rows x columns x frames).  A 43x43 cm
#: detector at 100 micron pitch is ~18.5 Mpx; 50 Mpx leaves ample headroom.
MAX_PIXELS = 50_000_000
#: Largest file accepted, in bytes.
MAX_BYTES = 200 * 1024 * 1024
#: Smallest side we are willing to decode at all (smaller is not an image of
#: a chest but an icon); the quality gate applies a stricter limit.
MIN_SIDE = 16
#: Large images are reduced to a shorter side of at least this many pixels.
WORK_MIN_SIDE = 256
#: Percentiles used by the contrast stretch.
STRETCH_LOW, STRETCH_HIGH = 1.0, 99.0

# A chroma (max - min over RGB, in [0, 1]) above this marks a "colourful" pixel.
_CHROMA_PIXEL = 0.12

_EXIF_ORIENTATION = 0x0112
_EXIF_METHODS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(ValueError):
    """An input that cannot be read as an image.

    ``str(err)`` is a short message that can be shown to a user; ``code`` is a
    stable machine-readable reason (``unsupported``, ``corrupt``,
    ``truncated``, ``too_large``, ``too_small``, ``empty``).
    """

    def __init__(self, message: str, code: str = "corrupt"):
        super().__init__(message)
        self.code = code


@dataclass
class DecodedImage:
    """A decoded grayscale image at working resolution, plus what we learnt
    while decoding it (used by the quality gate and reported with results)."""

    pixels: np.ndarray  #: float32 (H, W) in [0, 1], bright = dense
    original_size: tuple[int, int]  #: (width, height) before any reduction
    format: str  #: "PNG", "JPEG", "DICOM", "ARRAY", ...
    bit_depth: int  #: bits of the source samples (8, 12, 16, ...)
    colour_fraction: float = 0.0  #: share of clearly coloured pixels
    mean_chroma: float = 0.0  #: mean max-min over RGB, [0, 1]
    meta: dict = field(default_factory=dict)

    @property
    def saturated_fraction(self) -> float:
        """Share of pixels at exactly 0 or 1 after intensity scaling."""
        p = self.pixels
        return float(np.mean((p <= 0.0) | (p >= 1.0)))

    def to_bytes(self) -> bytes:
        """The image as an uncompressed ``.npz`` (pixels bit for bit, the rest as JSON),
        so that it can be stored once decoded and read back without decoding the file
        again (:meth:`from_bytes`)."""
        fields = {"original_size": list(self.original_size), "format": self.format, "bit_depth": self.bit_depth,
                  "colour_fraction": self.colour_fraction, "mean_chroma": self.mean_chroma, "meta": self.meta}
        out = io.BytesIO()
        np.savez(out, pixels=np.ascontiguousarray(self.pixels, dtype=np.float32),
                 fields=np.frombuffer(json.dumps(fields).encode(), dtype=np.uint8))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "DecodedImage":
        """Read back :meth:`to_bytes` (no pickles); :class:`ImageError` when it is not one."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                pixels, fields = z["pixels"], json.loads(z["fields"].tobytes())
            width, height = (int(v) for v in fields["original_size"])
            image = cls(pixels=pixels, original_size=(width, height), format=str(fields["format"]),
                        bit_depth=int(fields["bit_depth"]), colour_fraction=float(fields["colour_fraction"]),
                        mean_chroma=float(fields["mean_chroma"]), meta=dict(fields["meta"]))
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ImageError("The stored decoded image cannot be read.", "corrupt") from exc
        if pixels.dtype != np.float32 or pixels.ndim != 2:
            raise ImageError("The stored decoded image cannot be read.", "corrupt")
        return image


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def load_image(path: str | os.PathLike) -> DecodedImage:
    """Decode an image file (PNG, JPEG, DICOM, ...) from disk."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"Cannot read {path.name}: {exc.strerror}.", "corrupt") from exc
    if size > MAX_BYTES:
        raise ImageError("The file is too large to be a chest X-ray.", "too_large")
    return load_image_bytes(path.read_bytes(), filename=path.name)


def load_image_bytes(data: bytes, filename: str | None = None) -> DecodedImage:
    """Decode an image held in memory.

    Raises :class:`ImageError` with a human message for empty, unsupported,
    corrupt, truncated, too small or too large input.
    """
    if not data:
        raise ImageError("The file is empty.", "empty")
    if len(data) > MAX_BYTES:
        raise ImageError("The file is too large to be a chest X-ray.", "too_large")
    if _looks_like_dicom(data, filename):
        return _load_dicom(data)
    return _load_pillow(data)


def load_array(array) -> DecodedImage:
    """Accept an already decoded image: a PIL image or a numpy array.

    uint8 arrays are divided by 255, uint16 by 65535; float arrays must
    already be in [0, 1].  (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) shapes
    are accepted.
    """
    if isinstance(array, Image.Image):
        buf = io.BytesIO()
        # Re-encode losslessly so PIL images take exactly the file path.
        array.save(buf, format="PNG" if array.mode != "F" else "TIFF")
        return load_image_bytes(buf.getvalue())
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError("Unsupported array shape %r." % (arr.shape,), "unsupported")
    h, w = arr.shape[:2]
    _check_dimensions(w, h)
    if arr.dtype == np.uint8:
        f, bits = arr.astype(np.float32) / 255.0, 8
    elif arr.dtype == np.uint16:
        f, bits = arr.astype(np.float32) / 65535.0, 16
    elif np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool:
        f, bits = arr.astype(np.float32), 32
        if not np.all(np.isfinite(f)) or f.min() < 0.0 or f.max() > 1.0:
            raise ImageError("Float images must lie in [0, 1].", "unsupported")
    else:
        raise ImageError(f"Unsupported array type {arr.dtype}.", "unsupported")
    colour_fraction = mean_chroma = 0.0
    if f.ndim == 3:
        rgb = f[..., :3]
        if f.shape[2] == 4:  # composite on black, as the training data was
            rgb = rgb * f[..., 3:4]
        colour_fraction, mean_chroma = _chroma_stats(rgb)
        f = _luma(rgb)
    f = _reduce_array(f, _reduce_factor(w, h))
    return DecodedImage(np.clip(f, 0.0, 1.0), (w, h), "ARRAY", bits,
                        colour_fraction, mean_chroma)


def prepare(image: DecodedImage | np.ndarray, size: int) -> np.ndarray:
    """Squash to ``size`` x ``size``, resize and contrast-normalise.

    Returns float32 ``(size, size, 1)`` in [0, 1]: the model input.
    """
    pixels = image.pixels if isinstance(image, DecodedImage) else np.asarray(image, np.float32)
    if pixels.ndim != 2:
        raise ValueError("prepare() expects a 2-D grayscale image")
    pil = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    if pil.size != (size, size):
        # Pillow's BILINEAR widens its kernel when downscaling: antialiased.
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    return normalize(np.asarray(pil, dtype=np.float32))[..., None]


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Per-image contrast normalisation of a [0, 1] grayscale image: the
    model's input intensities.

    Different hospitals, detectors and redistributors deliver very different
    exposure, windowing and tone curves, and a network readily learns to
    recognise the source from them instead of the lungs.  After the
    percentile stretch (:func:`contrast_stretch`) the histogram is equalised:
    each pixel becomes the share of pixels darker than it (ties share their
    mid-rank).  Every image thus has the same, uniform intensity histogram;
    any monotone tone curve is undone and only the spatial pattern remains.
    """
    x = contrast_stretch(pixels)
    if not x.any():
        return x  # constant image; the quality gate refuses it
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    mid_rank = (np.cumsum(counts) - counts / 2.0) / x.size
    return mid_rank[inverse].reshape(x.shape).astype(np.float32)


def contrast_stretch(pixels: np.ndarray) -> np.ndarray:
    """Stretch the 1st-99th percentiles of a [0, 1] image to [0, 1] (so a few
    saturated pixels or burnt-in labels do not set the range); a constant
    image becomes zeros.  Suited to display.  Raises ``ValueError`` for input
    outside [0, 1] (for example 0-255 data passed by mistake) or for
    non-finite values.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("normalize(): image is empty or has non-finite values")
    lo_v, hi_v = float(x.min()), float(x.max())
    if lo_v < -1e-4 or hi_v > 1.0 + 1e-4:
        raise ValueError(
            f"normalize(): values must lie in [0, 1], got [{lo_v:.4g}, {hi_v:.4g}]"
        )
    lo, hi = np.percentile(x, [STRETCH_LOW, STRETCH_HIGH])
    if hi - lo < 1e-6:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def preprocess_bytes(data: bytes, size: int, filename: str | None = None) -> np.ndarray:
    """Convenience: bytes -> model input array."""
    return prepare(load_image_bytes(data, filename), size)


# --------------------------------------------------------------------------
# Pillow formats
# --------------------------------------------------------------------------


# The only formats Pillow may parse here: its other decoders (and their bugs) are never reached.
PILLOW_FORMATS = ("PNG", "JPEG")


def _load_pillow(data: bytes) -> DecodedImage:
    try:
        im = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageError("Unsupported file type: expected PNG, JPEG or DICOM.",
                         "unsupported") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError("The image is too large.", "too_large") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure is "corrupt"
        raise ImageError("The image file is corrupt.", "corrupt") from exc

    fmt = im.format or "UNKNOWN"
    w, h = im.size
    _check_dimensions(w, h)  # header only: nothing decoded yet
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and fmt not in ("PNG",):  # animated PNG: first frame is fine
        raise ImageError("Multi-frame images are not supported.", "unsupported")
    orientation = 1
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is not fatal
        orientation = 1

    if fmt == "JPEG":
        # Decode at a reduced DCT scale when the file is far bigger than we
        # need: a 4000 px JPEG decodes ~8x faster at 1/8 scale.
        factor = _reduce_factor(w, h)
        if factor > 1:
            im.draft(im.mode, (max(1, w // factor), max(1, h // factor)))

    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageError("The image is too large.", "too_large") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc).lower()
        if "truncat" in msg or "broken data stream" in msg or "end of file" in msg:
            raise ImageError("The image file is truncated.", "truncated") from exc
        raise ImageError("The image file is corrupt.", "corrupt") from exc
    if ImageFile.LOAD_TRUNCATED_IMAGES and _looks_truncated(data, fmt):
        # Someone set Pillow's process-wide LOAD_TRUNCATED_IMAGES, so load()
        # padded the image silently; check the file's end ourselves.
        raise ImageError("The image file is truncated.", "truncated")

    mode = im.mode
    bits = 8
    colour_fraction = mean_chroma = 0.0
    dw, dh = im.size  # may be smaller than (w, h) after draft()
    factor = _reduce_factor(dw, dh)

    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            bits = 16
            f = arr.astype(np.float32) / 65535.0
        elif mode == "I" and arr.min() >= 0 and arr.max() <= 65535:
            bits = 16 if arr.max() > 255 else 8
            f = arr.astype(np.float32) / (65535.0 if bits == 16 else 255.0)
        else:  # signed or float data of unknown range: min-max
            bits = 32
            f = arr.astype(np.float32)
            lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
            f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
        f = _reduce_array(f, factor)
    else:
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La", "PA"):
            im = im.convert("RGB" if mode not in ("1", "La") else "L")
        if factor > 1:
            im = im.reduce(factor)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        if im.mode in ("LA",):
            f = arr[..., 0] * arr[..., 1]
        elif im.mode in ("RGB", "RGBA"):
            rgb = arr[..., :3]
            if im.mode == "RGBA":
                rgb = rgb * arr[..., 3:4]
            colour_fraction, mean_chroma = _chroma_stats(rgb)
            f = _luma(rgb)
        elif im.mode == "L":
            f = arr
        else:
            raise ImageError(f"Unsupported image mode {im.mode}.", "unsupported")

    f = np.clip(f, 0.0, 1.0).astype(np.float32)
    if orientation in _EXIF_METHODS:
        f = np.asarray(Image.fromarray(f).transpose(_EXIF_METHODS[orientation]))
    return DecodedImage(f, (w, h), fmt, bits, colour_fraction, mean_chroma,
                        {"exif_orientation": orientation})


def _looks_truncated(data: bytes, fmt: str) -> bool:
    if fmt == "JPEG":
        return b"\xff\xd9" not in data[-1024:]
    if fmt == "PNG":
        try:
            Image.open(io.BytesIO(data), formats=PILLOW_FORMATS).verify()  # walks every chunk and CRC
        except Exception:  # noqa: BLE001
            return True
        return b"IEND" not in data[-64:]
    return False


# --------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------


def _looks_like_dicom(data: bytes, filename: str | None) -> bool:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    return bool(filename) and str(filename).lower().endswith((".dcm", ".dicom"))


def _load_dicom(data: bytes) -> DecodedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # noqa: BLE001
        raise ImageError("The DICOM file is corrupt.", "corrupt") from exc
    if "PixelData" not in ds:
        raise ImageError("The DICOM file holds no image.", "unsupported")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        bits_stored = int(getattr(ds, "BitsStored", ds.BitsAllocated))
        signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageError("The DICOM header is incomplete.", "corrupt") from exc
    _check_dimensions(cols, rows, frames)  # header only: nothing decoded yet
    if frames != 1:
        raise ImageError("Multi-frame DICOM is not supported.", "unsupported")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(f"Unsupported DICOM photometric interpretation {photometric}.",
                         "unsupported")
    if not 1 <= bits_stored <= 16:
        raise ImageError(f"Unsupported DICOM bit depth {bits_stored}.", "unsupported")

    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - truncated or undecodable data
        msg = str(exc).lower()
        code = "truncated" if ("length" in msg or "truncat" in msg or "end" in msg) else "corrupt"
        raise ImageError("The DICOM pixel data is truncated or cannot be decoded.", code) from exc
    if raw.shape != (rows, cols):
        raise ImageError("The DICOM pixel data does not match its header.", "corrupt")

    # Range of the stored values, from BitsStored (not from the data).
    if signed:
        s_lo, s_hi = -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    else:
        s_lo, s_hi = 0, 2**bits_stored - 1

    has_voi = ("VOILUTSequence" in ds) or ("WindowCenter" in ds and "WindowWidth" in ds)
    arr = apply_modality_lut(raw, ds).astype(np.float64)
    if has_voi:
        voi = apply_voi_lut(arr, ds, index=0, prefer_lut=True)
        if "VOILUTSequence" in ds:
            desc = ds.VOILUTSequence[0].LUTDescriptor
            lut_bits = int(desc[2]) if len(desc) > 2 else bits_stored
            lo, hi = 0.0, float(2**lut_bits - 1)
        else:
            # pydicom windows into the stored range (BitsStored, signedness).
            lo, hi = float(s_lo), float(s_hi)
        f = (np.asarray(voi, dtype=np.float64) - lo) / (hi - lo)
    else:
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        lo, hi = sorted((s_lo * slope + intercept, s_hi * slope + intercept))
        f = (arr - lo) / (hi - lo)
    f = np.clip(f, 0.0, 1.0).astype(np.float32)
    if photometric == "MONOCHROME1":  # low values are white: invert
        f = 1.0 - f
    f = _reduce_array(f, _reduce_factor(cols, rows))
    return DecodedImage(f, (cols, rows), "DICOM", bits_stored, 0.0, 0.0,
                        {"photometric": photometric,
                         "modality": str(getattr(ds, "Modality", ""))})


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _check_dimensions(w: int, h: int, frames: int = 1) -> None:
    if w <= 0 or h <= 0:
        raise ImageError("The image has no pixels.", "empty")
    if w * h * max(1, frames) > MAX_PIXELS:
        raise ImageError(
            f"The image is too large ({w}x{h}); the limit is {MAX_PIXELS // 1_000_000} megapixels.",
            "too_large")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"The image is too small ({w}x{h}).", "too_small")


def _reduce_factor(w: int, h: int) -> int:
    """Integer box-reduction factor keeping the shorter side >= WORK_MIN_SIDE."""
    return max(1, min(w, h) // WORK_MIN_SIDE)


def _reduce_array(f: np.ndarray, factor: int) -> np.ndarray:
    """Box-average by ``factor`` (dropping the ragged edge, like Image.reduce
    does not; the difference is at most factor-1 pixels)."""
    if factor <= 1:
        return f.astype(np.float32, copy=False)
    h, w = f.shape[:2]
    hh, ww = h // factor, w // factor
    f = f[: hh * factor, : ww * factor]
    return f.reshape(hh, factor, ww, factor).mean(axis=(1, 3), dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def _chroma_stats(rgb: np.ndarray) -> tuple[float, float]:
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float(np.mean(chroma > _CHROMA_PIXEL)), float(chroma.mean())
