"""Checks an uploaded file before anything is stored: size cap, format by content,
dimensions from the header, then a full decode (a truncated file fails here, not in
the worker). Only PNG, JPEG and DICOM are accepted, whatever the file is called."""

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image

from ml.preprocessing import DecodedImage, ImageError, load_image_bytes

from .models import ScanFormat

FORMATS = {"PNG": ScanFormat.PNG, "JPEG": ScanFormat.JPEG, "DICOM": ScanFormat.DICOM}
PREVIEW_MAX_SIDE = 1024


@dataclass
class ValidatedScan:
    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    bit_depth: int
    preview_png: bytes
    view_position: str = ""
    study_uid: str = ""
    series_uid: str = ""


def _dicom_fields(data: bytes) -> dict:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return {
        "view_position": str(getattr(ds, "ViewPosition", "") or "")[:16],
        "study_uid": str(getattr(ds, "StudyInstanceUID", "") or "")[:64],
        "series_uid": str(getattr(ds, "SeriesInstanceUID", "") or "")[:64],
    }


def preview_png(decoded: DecodedImage) -> bytes:
    """An 8-bit grayscale PNG of the decoded pixels, without any metadata."""
    pixels = np.clip(decoded.pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L")
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def validate_scan(*, data: bytes, filename: str) -> ValidatedScan:
    """Return what we learnt about a valid scan, or raise ValidationError with a reason a
    member of staff can act on. Nothing is written."""
    name = filename or "file"
    if len(data) > settings.SCAN_MAX_BYTES:
        raise ValidationError(f"{name}: the file is larger than {settings.SCAN_MAX_BYTES // (1024 * 1024)} MB.",
                              code="too_large")
    try:
        decoded = load_image_bytes(data, filename=None)
    except ImageError as exc:
        raise ValidationError(f"{name}: {exc}", code=exc.code) from exc
    fmt = FORMATS.get(decoded.format)
    if fmt is None:
        raise ValidationError(f"{name}: unsupported file type ({decoded.format}); upload PNG, JPEG or DICOM.",
                              code="unsupported")
    width, height = decoded.original_size
    extra = _dicom_fields(data) if fmt == ScanFormat.DICOM else {}
    return ValidatedScan(
        data=data, sha256=hashlib.sha256(data).hexdigest(), format=fmt, width=width, height=height,
        bit_depth=decoded.bit_depth, preview_png=preview_png(decoded), **extra,
    )
