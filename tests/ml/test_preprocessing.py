"""Preprocessing: the golden test (one chest, six encodings) and input checks.

Golden tolerances (model input in [0, 1], 128 x 128):
* lossless encodings (8-bit PNG, 16-bit PNG, DICOM MONOCHROME2 and
  MONOCHROME1 at 12 bits stored) differ from the 16-bit reference by at most
  0.01 (max abs) and 0.001 (mean abs): 8-bit quantisation is 1/510 before
  the contrast stretch, and histogram equalisation turns it into a rank
  shift among near-equal pixels (measured: 0.0053 / 0.0004 for 8-bit PNG,
  0.0052 / 0.00004 for DICOM);
* JPEG (quality 95, also EXIF-rotated) by at most 0.02 max abs and 0.003 mean
  (measured: 0.008 / 0.001);
* the shipped model gives the same label for all six, with class
  probabilities within 0.03.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.preprocessing import DecodedImage, ImageError, load_array, load_image_bytes, normalize, prepare
from tests.ml.synth import synthetic_chest, to_png8

SIZE = 128


def _png16(img):
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img, orientation=None):
    arr = np.round(img * 255).astype(np.uint8)
    kw = {}
    if orientation == 6:
        # Stored turned 90 degrees counter-clockwise; tag 6 tells viewers to
        # turn it clockwise to display it upright.
        arr = np.ascontiguousarray(np.rot90(arr, 1))
        exif = Image.Exif()
        exif[0x0112] = 6
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def make_dicom(img, photometric="MONOCHROME2", bits_stored=12, window=False,
               slope=1.0, intercept=0.0, rows=None, cols=None) -> bytes:
    """A DICOM file built with pydicom (Explicit VR Little Endian)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "TEST"
    maxv = 2**bits_stored - 1
    stored = np.round(img * maxv).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (maxv - stored).astype(np.uint16)
    ds.Rows, ds.Columns = rows or img.shape[0], cols or img.shape[1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window:
        c = (maxv + 1) / 2 * slope + intercept
        ds.WindowCenter = c
        ds.WindowWidth = (maxv + 1) * slope
    ds.PixelData = stored.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


FIXTURE = Path(__file__).parent / "fixtures" / "kermany_normal_IM-0003-0001.jpg"


@pytest.fixture(scope="module")
def chest():
    return synthetic_chest(320, 288, seed=3, kind="normal")


@pytest.fixture(scope="module")
def real_chest():
    """A real paediatric chest film (CC BY 4.0, see fixtures/README.md)."""
    return np.asarray(Image.open(FIXTURE).convert("L"), dtype=np.float32) / 255.0


def encode_all(chest):
    return {
        "png8": to_png8(chest),
        "png16": _png16(chest),
        "jpeg": _jpeg(chest),
        "jpeg_exif_rotated": _jpeg(chest, orientation=6),
        "dicom_mono2": make_dicom(chest, "MONOCHROME2", window=True),
        "dicom_mono1": make_dicom(chest, "MONOCHROME1", slope=2.0, intercept=-1024.0),
    }


@pytest.fixture(scope="module")
def encodings(chest):
    return encode_all(chest)


@pytest.fixture(scope="module")
def real_encodings(real_chest):
    return encode_all(real_chest)


@pytest.mark.parametrize("which", ["synthetic", "real"])
def test_golden_tensors_agree(which, encodings, real_encodings):
    encodings = encodings if which == "synthetic" else real_encodings
    ref = prepare(load_image_bytes(encodings["png16"]), SIZE)
    assert ref.shape == (SIZE, SIZE, 1) and ref.dtype == np.float32
    report = {}
    for name, data in encodings.items():
        x = prepare(load_image_bytes(data), SIZE)
        diff = np.abs(x - ref)
        report[name] = (float(diff.max()), float(diff.mean()))
        lossy = name.startswith("jpeg")
        assert diff.max() <= (0.02 if lossy else 0.01), (name, report[name])
        assert diff.mean() <= (0.003 if lossy else 0.001), (name, report[name])
    print(f"golden ({which}) max/mean abs diff vs 16-bit PNG:", report)


def test_sixteen_bit_keeps_dynamic_range(chest):
    # A 12-bit-like image stored in a 16-bit PNG with values far above 255.
    img16 = _png16(chest)
    decoded = load_image_bytes(img16)
    assert decoded.bit_depth == 16
    assert decoded.saturated_fraction < 0.01
    naive = np.asarray(Image.open(io.BytesIO(img16)).convert("L"))
    naive_saturated = float(np.mean(naive == 255))
    assert naive_saturated > 0.5  # what a naive convert("L") would have done
    # The decoded intensities track the source closely (not clipped).
    assert np.abs(decoded.pixels - chest).max() < 1e-3
    print(f"16-bit path: saturated {decoded.saturated_fraction:.4%} vs naive convert('L') "
          f"{naive_saturated:.2%}")


def test_dicom_monochrome1_is_inverted(chest):
    d1 = load_image_bytes(make_dicom(chest, "MONOCHROME1"))
    d2 = load_image_bytes(make_dicom(chest, "MONOCHROME2"))
    assert d1.format == d2.format == "DICOM"
    assert np.abs(d1.pixels - d2.pixels).max() < 1e-6
    assert np.abs(d2.pixels - chest).max() < 1.0 / 4095 + 1e-6


def test_dicom_window_is_applied(chest):
    # A narrow window around mid-grey saturates the tails.
    data = make_dicom(chest, "MONOCHROME2", window=False)
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    ds.WindowCenter, ds.WindowWidth = 2048, 1024
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    d = load_image_bytes(buf.getvalue())
    assert d.saturated_fraction > 0.2
    assert d.pixels.min() == 0.0 and d.pixels.max() == 1.0


def test_exif_orientation_applied(chest):
    d = load_image_bytes(_jpeg(chest, orientation=6))
    assert d.pixels.shape == chest.shape
    assert d.meta["exif_orientation"] == 6


@pytest.mark.parametrize("which", ["synthetic", "real"])
def test_golden_same_prediction(which, encodings, real_encodings, shipped_predictor):
    """The shipped model gives the same label (100% agreement) and nearly the
    same probabilities for all six encodings.  The real film must pass the
    quality gate; the synthetic drawing is scored with the gate off (it is
    not a radiograph, and the out-of-distribution check may say so)."""
    encodings = encodings if which == "synthetic" else real_encodings
    results = shipped_predictor.predict_batch(list(encodings.values()),
                                              quality_gate=(which == "real"))
    assert all(r.status == "ok" for r in results), [r.reason for r in results]
    probs = [r.probabilities for r in results]
    labels = {r.label for r in results}
    assert len(labels) == 1, labels
    for p in probs:
        for c in p:
            assert abs(p[c] - probs[0][c]) < 0.03, probs


def _patch_png_size(data: bytes, w: int, h: int) -> bytes:
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", w, h)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return data[:12] + bytes(ihdr) + crc + data[33:]


def test_dimensions_checked_before_decoding():
    small = to_png8(np.zeros((32, 32), np.float32))
    bomb = _patch_png_size(small, 30000, 30000)
    with pytest.raises(ImageError) as err:
        load_image_bytes(bomb)
    assert err.value.code == "too_large"
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(make_dicom(np.zeros((32, 32), np.float32))))
    ds.Rows = ds.Columns = 20000  # pixel data still 32x32: never decoded
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(ImageError) as err:
        load_image_bytes(buf.getvalue())
    assert err.value.code == "too_large"


def test_truncated_and_garbage_rejected(chest):
    png = to_png8(chest)
    with pytest.raises(ImageError) as err:
        load_image_bytes(png[: len(png) // 2])
    assert err.value.code in ("truncated", "corrupt")
    jpg = _jpeg(chest)
    with pytest.raises(ImageError):
        load_image_bytes(jpg[: len(jpg) // 2])
    dcm = make_dicom(chest)
    with pytest.raises(ImageError):
        load_image_bytes(dcm[: len(dcm) - 5000])
    # Even when another library switched on Pillow's LOAD_TRUNCATED_IMAGES.
    from PIL import ImageFile

    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        for data in (png[: len(png) // 2], jpg[: len(jpg) // 2]):
            with pytest.raises(ImageError) as err:
                load_image_bytes(data)
            assert err.value.code == "truncated"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    with pytest.raises(ImageError) as err:
        load_image_bytes(b"this is not an image at all" * 10)
    assert err.value.code == "unsupported"
    with pytest.raises(ImageError) as err:
        load_image_bytes(b"")
    assert err.value.code == "empty"
    assert str(err.value)  # a human message


def test_normalize_rejects_out_of_range():
    with pytest.raises(ValueError):
        normalize(np.full((8, 8), 255.0))
    with pytest.raises(ValueError):
        normalize(np.array([[0.0, np.nan]]))
    x = normalize(np.linspace(0.2, 0.6, 100).reshape(10, 10))
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_normalize_equalises_and_undoes_tone_curves(chest):
    """Every prepared image has a uniform histogram, so exposure, gamma or a
    detector's tone curve (any monotone map) cannot tell sources apart."""
    x = normalize(chest)
    assert abs(float(x.mean()) - 0.5) < 0.01
    assert np.allclose(np.quantile(x, [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.02)
    for curve in (lambda v: v ** 2.2, lambda v: 0.2 + 0.5 * np.sqrt(v)):
        assert np.abs(normalize(curve(chest)) - x).max() < 1e-3
    assert not normalize(np.full((8, 8), 0.4)).any()  # constant: zeros


def test_arrays_and_pil_take_the_same_path(chest):
    ref = prepare(load_image_bytes(to_png8(chest)), SIZE)
    arr8 = np.round(chest * 255).astype(np.uint8)
    assert np.abs(prepare(load_array(arr8), SIZE) - ref).max() < 1e-5
    assert np.abs(prepare(load_array(Image.fromarray(arr8)), SIZE) - ref).max() < 1e-5
    rgb = np.repeat(arr8[..., None], 3, axis=2)
    assert np.abs(prepare(load_array(rgb), SIZE) - ref).max() < 0.01


def test_decoded_image_round_trips_bit_for_bit(chest):
    """The copy stored at upload is what the worker screens: pixels and gate inputs survive."""
    decoded = load_image_bytes(to_png8(chest))
    decoded.colour_fraction, decoded.mean_chroma = 0.25, 0.125
    back = DecodedImage.from_bytes(decoded.to_bytes())
    assert back.pixels.dtype == np.float32 and np.array_equal(back.pixels, decoded.pixels)
    assert (back.original_size, back.format, back.bit_depth, back.colour_fraction, back.mean_chroma, back.meta) == \
        (decoded.original_size, decoded.format, decoded.bit_depth, 0.25, 0.125, decoded.meta)


def test_decoded_image_refuses_other_files_and_pickles(chest):
    pickled = io.BytesIO()
    np.savez(pickled, pixels=np.array([object()], dtype=object), fields=np.zeros(2, np.uint8))
    cut = load_image_bytes(to_png8(chest)).to_bytes()[:-9]
    for data in (b"", b"not an npz", to_png8(chest), pickled.getvalue(), cut):
        with pytest.raises(ImageError, match="stored decoded image"):
            DecodedImage.from_bytes(data)
