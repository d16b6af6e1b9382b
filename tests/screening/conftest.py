"""Fixtures for the screening pipeline tests: a hospital with an uploader and a patient,
image builders (PNG, JPEG, DICOM), the real CC BY 4.0 fixture film, a model for worker
tests, and a way to report figures."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django_scopes import scopes_disabled
from PIL import Image

from hospitals.models import Role
from tests.factories import HospitalFactory, MembershipFactory, PatientFactory, UserFactory

REPO = Path(__file__).resolve().parents[2]
FILM = REPO / "tests" / "ml" / "fixtures" / "kermany_normal_IM-0003-0001.jpg"

@pytest.fixture
def world():
    """One hospital, a clinician who may upload, a viewer who may not, and a patient.
    Needs a database fixture (db or transactional_db) requested by the test."""
    from types import SimpleNamespace

    with scopes_disabled():
        hospital = HospitalFactory(name="Pipeline General", slug="pipeline")
        uploader = UserFactory(email="uploader@pipeline.test")
        MembershipFactory(user=uploader, hospital=hospital, role=Role.CLINICIAN)
        viewer = UserFactory(email="viewer@pipeline.test")
        MembershipFactory(user=viewer, hospital=hospital, role=Role.VIEWER)
        patient = PatientFactory(hospital=hospital, mrn="PIPE-0001")
    return SimpleNamespace(hospital=hospital, uploader=uploader, viewer=viewer, patient=patient)


# --- images -----------------------------------------------------------------------------------


def chest(size: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth chest-like grayscale picture in [0, 1] (body bright, lungs dark)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    body = np.exp(-(((x - 0.5) / 0.38) ** 2 + ((y - 0.55) / 0.45) ** 2) * 2)
    lungs = np.exp(-(((np.abs(x - 0.5) - 0.18) / 0.1) ** 2 + ((y - 0.5) / 0.22) ** 2))
    img = 0.15 + 0.7 * body - 0.45 * lungs + rng.normal(0, 0.02, (size, size))
    return np.clip(img, 0, 1).astype(np.float32)


def png_bytes(img: np.ndarray | None = None, bits: int = 8, mode: str = "L") -> bytes:
    img = chest() if img is None else img
    if bits == 16:
        pil = Image.fromarray((img * 65535).astype(np.uint16))
    else:
        pil = Image.fromarray((img * 255).astype(np.uint8)).convert(mode)
    out = io.BytesIO()
    pil.save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(img: np.ndarray | None = None, mode: str = "L", **options) -> bytes:
    img = chest() if img is None else img
    out = io.BytesIO()
    Image.fromarray((img * 255).astype(np.uint8)).convert(mode).save(out, format="JPEG", quality=90, **options)
    return out.getvalue()


def dicom_bytes(img: np.ndarray | None = None, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                pixels: bool = True, rows: int | None = None, columns: int | None = None) -> bytes:
    """A DICOM file (Explicit VR Little Endian) built with pydicom; `pixels=False` leaves
    PixelData out, `rows`/`columns` override the header's dimensions."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    img = chest() if img is None else img
    stored = np.round(img * (2**bits_stored - 1)).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (2**bits_stored - 1) - stored
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition = "DX", "PA"
    ds.PatientName, ds.PatientID = "Doe^Jane", "PHI-12345"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = rows or stored.shape[0], columns or stored.shape[1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if pixels:
        ds.PixelData = stored.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="session")
def film() -> bytes:
    """The real chest film (224 x 224 JPEG, CC BY 4.0, see tests/ml/fixtures/README.md):
    a valid upload that the quality gate accepts."""
    return FILM.read_bytes()


# --- the model the worker runs ------------------------------------------------------------------


@pytest.fixture(scope="session")
def screening_model_dir(tmp_path_factory) -> Path:
    """The shipped model when ml/artifacts has one made for this code's preprocessing;
    otherwise a tiny model trained for a few seconds (in a subprocess, so this process
    never imports TensorFlow). Its training set is crops of the fixture film, so the film
    is in distribution and passes the model's out-of-distribution gate; the labels mean
    nothing (pipeline tests only)."""
    from ml.card import default_model_dir
    from ml.preprocessing import PREPROCESSING_VERSION

    shipped = default_model_dir()
    card = shipped / "card.json"
    if card.exists() and json.loads(card.read_text()).get("preprocessing_version") == PREPROCESSING_VERSION:
        return shipped
    root = tmp_path_factory.mktemp("tiny_cxr")
    (root / "images").mkdir()
    real = Image.open(FILM).convert("L")
    rows = []
    for i in range(36):
        label = ("covid", "pneumonia", "normal")[i % 3]
        rng = np.random.default_rng(i)
        if i % 4 == 0:
            arr = np.asarray(real.resize((128, 128)), np.float32) / 255.0
        else:
            box = (int(rng.integers(0, 24)), int(rng.integers(0, 24)), 224 - int(rng.integers(0, 24)),
                   224 - int(rng.integers(0, 24)))
            arr = np.asarray(real.crop(box).resize((128, 128)), np.float32) / 255.0
            arr = np.clip(arr ** rng.uniform(0.8, 1.25) + rng.normal(0, 0.02, arr.shape), 0, 1)
        name = f"images/{label}_{i}.png"
        Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(root / name)
        source = "siteA" if i % 2 else "siteB"
        rows.append({"path": name, "label": label, "finding": label, "patient_id": f"{source}:{i}",
                     "source": source, "view": "PA", "sex": "", "age": "", "age_group": "adult",
                     "license": "derived from the CC BY 4.0 fixture film"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path_factory.mktemp("tiny_model")
    subprocess.run(
        [sys.executable, "-m", "ml.train", "--manifest", str(root / "manifest.csv"), "--out", str(out),
         "--epochs", "2", "--image-size", "32", "--batch-size", "12", "--seed", "7", "--cache-dir", "none",
         "--val-fraction", "0.2", "--target-sensitivity", "0.95"],
        cwd=REPO, check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return out
