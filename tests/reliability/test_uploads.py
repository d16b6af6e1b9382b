"""Rows D1 to D8 of RELIABILITY.md through the portal's upload view (the whole middleware
stack) and the service: oversize and malformed requests, bombs, truncations, polyglots
and what is served back, traversal filenames, the DICOM files that ship inside pydicom
plus crafted ones, PHI in derivatives, and which decoders Pillow may use. The bad-file
corpus itself is tests/screening/test_validation_corpus.py; D9 is test_fuzz_smoke.py,
D10 the golden set in tests/ml/test_preprocessing.py."""

from __future__ import annotations

import gzip
import io
import os
import re
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django_scopes import scope, scopes_disabled
from PIL import Image

from screening.models import Scan, Screening
from screening.services import scan_upload
from tests.screening.conftest import chest, dicom_bytes, jpeg_bytes, png_bytes
from tests.screening.test_validation_corpus import png_chunk, png_declaring, upload_each


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stored(settings) -> int:
    root = Path(settings.MEDIA_ROOT)
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    with scopes_disabled():
        return Scan.objects.count() + Screening.objects.count() + len(files)


def upload_url(world) -> str:
    return f"/h/{world.hospital.slug}/patients/{world.patient.pk}/scans/upload/"


def multipart(files: list[tuple[str, bytes]], boundary: str = "reliabilityboundary") -> bytes:
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.fixture
def uploader(db, world, client):
    client.force_login(world.uploader)
    return client


def test_oversize_and_malformed_requests_store_nothing(uploader, world, settings, figure):
    """D1. A body over the request cap (real and declared), 1,000 files in one request, a
    Content-Length smaller than the body, a gzip-encoded body, a file over the scan cap."""
    settings.MAX_REQUEST_BYTES = 2 * 1024 * 1024
    settings.SCAN_MAX_BYTES = 512 * 1024
    boundary = "reliabilityboundary"
    ctype = f"multipart/form-data; boundary={boundary}"
    png = png_bytes()
    big = multipart([("big.png", os.urandom(3 * 1024 * 1024))])
    many = multipart([(f"f{i}.png", png[:64]) for i in range(1000)])
    one = multipart([("chest.png", png)])
    noise = png_bytes(np.random.default_rng(0).random((800, 800)).astype(np.float32))
    attempts = {
        "body over the cap (3 MB)": dict(data=big),
        "declared 200 MB, small body": dict(data=one, CONTENT_LENGTH=str(200 * 1024 * 1024)),
        "1,000 files in one request": dict(data=many),
        "Content-Length shorter than the body": dict(data=one, CONTENT_LENGTH=str(len(one) // 2)),
        "gzip Content-Encoding": dict(data=gzip.compress(one), HTTP_CONTENT_ENCODING="gzip"),
        "file over the scan cap": dict(data=multipart([("noise.png", noise)])),
        "negative Content-Length": dict(data=one, CONTENT_LENGTH="-1"),
    }
    assert len(noise) > settings.SCAN_MAX_BYTES
    answers = {}
    for name, kwargs in attempts.items():
        data = kwargs.pop("data")
        response = uploader.generic("POST", upload_url(world), data, content_type=ctype,
                                    HTTP_ACCEPT="application/json", **kwargs)
        answers[name] = response.status_code
    accepted = stored(settings)
    server_errors = [n for n, code in answers.items() if code >= 500]
    figure("D1", f"oversize attempts {len(attempts)}; accepted {accepted}; 5xx {len(server_errors)}; "
                 f"web RSS peak {rss_peak_mb():.0f} MB (test process)",
           attempts=len(attempts), accepted=accepted, errors=len(server_errors), rss_peak_mb=round(rss_peak_mb()))
    assert accepted == 0 and server_errors == [], answers
    assert answers["body over the cap (3 MB)"] == 413 and answers["declared 200 MB, small body"] == 413
    assert all(400 <= code < 500 for code in answers.values()), answers


def bombs() -> dict[str, tuple[str, bytes]]:
    """D2 beyond the service corpus: declared sizes far past the cap in every format."""
    sof = jpeg_bytes()
    at = sof.index(b"\xff\xc0") + 5  # SOF0: precision, then height and width
    huge_jpeg = sof[:at] + struct.pack(">HH", 60000, 60000) + sof[at + 4:]
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(b"\0" * 20001) for _ in range(3000)) + compressor.flush()
    return {
        "png 20000 x 20000 IHDR": ("bomb.png", png_declaring(20000, 20000, zlib.compress(b"\0" * 100))),
        "png 10000 x 10000 IHDR": ("bomb.png", png_declaring(10000, 10000, zlib.compress(b"\0" * 100))),
        "png 20000 x 3000 deflate bomb": ("bomb.png", png_declaring(20000, 3000, idat)),
        "png 1 x 100000000": ("bomb.png", png_declaring(1, 100_000_000, zlib.compress(b"\0" * 100))),
        "jpeg declaring 60000 x 60000": ("bomb.jpg", huge_jpeg),
        "dicom 60000 x 60000": ("bomb.dcm", dicom_bytes(rows=60000, columns=60000)),
        "dicom 65535 x 65535 with no pixels": ("bomb.dcm", dicom_bytes(rows=65535, columns=65535, pixels=False)),
        "dicom J2K declaring 50000 x 50000": ("bomb.dcm", j2k_dicom(50000, 50000)),
    }


def j2k_dicom(rows: int, columns: int) -> bytes:
    """A JPEG 2000 DICOM whose header declares rows x columns over a tiny real frame."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.Rows, ds.Columns = rows, columns
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def truncations_and_oddities() -> dict[str, tuple[str, bytes]]:
    """D3: 10 cut points in each of PNG and JPEG, a bad CRC, a zero dimension; and files
    that are valid but odd (16-bit, CMYK, progressive) or not single images (animated)."""
    png, jpg = png_bytes(), jpeg_bytes(progressive=True)
    files = {}
    for k in range(1, 11):
        files[f"png cut at {k}/11"] = ("cut.png", png[:len(png) * k // 11])
        files[f"progressive jpeg cut at {k}/11"] = ("cut.jpg", jpg[:len(jpg) * k // 11])
    frames = [Image.fromarray((chest(64, seed=s) * 255).astype(np.uint8)) for s in range(3)]
    apng = io.BytesIO()
    frames[0].save(apng, format="PNG", save_all=True, append_images=frames[1:])
    at = png.index(b"IDAT") - 4
    files.update({
        "png with a bad IHDR CRC": ("crc.png", png[:29] + b"\0\0\0\0" + png[33:]),
        "png with a bad IDAT CRC": ("crc.png", png[:at + 8] + bytes([png[at + 8] ^ 1]) + png[at + 9:]),
        "png 0 x 0": ("zero.png", png_declaring(0, 0, zlib.compress(b""))),
        "animated png (3 frames)": ("anim.png", apng.getvalue()),
        "png with an unknown critical chunk": ("odd.png", png[:33] + png_chunk(b"ABCD", b"x") + png[33:]),
    })
    return files


def test_bombs_and_truncations_are_refused_quickly(db, world, settings, figure):
    """D2 + D3 through the service: each refused with a reason, nothing stored, bounded time
    and memory (the dimensions are checked from the header before any pixel is decoded)."""
    corpus = {**bombs(), **truncations_and_oddities()}
    rss_before = rss_peak_mb()
    refused, unexpected, slowest = upload_each(world, corpus)
    accepted = sorted(set(corpus) - set(refused) - set(unexpected))
    growth = rss_peak_mb() - rss_before
    n_bombs = len(bombs())
    figure("D2", f"bomb files {n_bombs}; stored {stored(settings)}; RSS growth during validation {growth:.0f} MB; "
                 f"max validation time {slowest:.2f} s", bombs=n_bombs, stored=stored(settings),
           rss_growth_mb=round(growth), max_validation_s=round(slowest, 2))
    figure("D3", f"bad images {len(corpus) - n_bombs}; 5xx {len(unexpected)}; accepted-but-undecodable "
                 f"{len(accepted)}; rejected with reason {len(refused) - n_bombs}",
           bad=len(corpus) - n_bombs, errors=len(unexpected), accepted=len(accepted))
    assert unexpected == {} and accepted == [] and stored(settings) == 0
    assert all(reason.split(": ", 1)[1] for reason in refused.values())
    assert slowest < 10 and growth < 500


POLYGLOTS = {
    "png + html": ("chest.png", png_bytes() + b"<html><body><script>alert(1)</script></body></html>"),
    "gif renamed .png": ("chest.png", b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;"),
    "svg with script": ("chest.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    "html named .jpg": ("chest.jpg", b"<!doctype html><html><script>alert(1)</script></html>"),
    "jpeg with html comment": ("chest.jpg", jpeg_bytes(comment=b"<html><body onload=alert(1)>")),
    "pdf named .png": ("chest.png", b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"),
}


def test_polyglots_are_refused_and_stored_files_are_served_as_attachments(uploader, world, settings, figure):
    """D4. Polyglots through the upload view are refused; every file that is stored is
    served back as an attachment with nosniff, never as HTML."""
    files = [SimpleUploadedFile(name, data) for name, data in POLYGLOTS.values()]
    response = uploader.post(upload_url(world), {"files": files}, HTTP_ACCEPT="application/json")
    outcome = response.json()
    polyglots_stored = stored(settings)
    good = [SimpleUploadedFile("ok.png", png_bytes()), SimpleUploadedFile("ok.jpg", jpeg_bytes()),
            SimpleUploadedFile("ok.dcm", dicom_bytes())]
    assert uploader.post(upload_url(world), {"files": good}, HTTP_ACCEPT="application/json").status_code == 200
    with scopes_disabled():
        scans = list(Scan.objects.all())
    bad_headers = inline_html = 0
    served = 0
    for scan in scans:
        for path in (f"scans/{scan.pk}/original", f"scans/{scan.pk}/preview.png"):
            r = uploader.get(f"/h/{world.hospital.slug}/{path}")
            served += 1
            disposition = r.headers.get("Content-Disposition", "")
            bad_headers += not (r.headers.get("X-Content-Type-Options") == "nosniff"
                                and disposition.startswith("attachment"))
            inline_html += "html" in r.headers.get("Content-Type", "") or "svg" in r.headers.get("Content-Type", "")
    figure("D4", f"polyglots {len(POLYGLOTS)}; stored as-is {polyglots_stored}; files served {served}; "
                 f"served inline as HTML {inline_html}; responses w/o nosniff+attachment {bad_headers}",
           polyglots=len(POLYGLOTS), stored=polyglots_stored, files_served=served, inline_html=inline_html,
           bad_headers=bad_headers)
    assert response.status_code == 400 and outcome["failed"] == len(POLYGLOTS) and polyglots_stored == 0
    assert inline_html == 0 and bad_headers == 0 and served == 6


TRAVERSAL_NAMES = ["../../x.png", "..\\..\\x.png", "%2e%2e/%2e%2e/x.png", "x\0.png", "a" * 10_000 + ".png",
                   "chest\u202egnp.exe", "CON", "/etc/passwd", "....//....//x.png", "scans/h1/../../x.png"]


def test_client_filenames_never_reach_the_disk(uploader, world, settings, figure):
    """D5. Through the view (Django's parser) and straight into the service (a command or
    API caller that passes the name untouched): every stored file is under the hospital's
    folder with a server-made name."""
    for name in TRAVERSAL_NAMES:
        response = uploader.post(upload_url(world), {"files": [SimpleUploadedFile(name, png_bytes())]},
                                 HTTP_ACCEPT="application/json")
        assert response.status_code == 200, (name[:40], response.content[:300])
        with scope(hospital=world.hospital):
            scan_upload(patient=world.patient, data=png_bytes(), filename=name, actor=world.uploader)
    media = Path(settings.MEDIA_ROOT).resolve()
    allowed = [media / "scans" / f"h{world.hospital.pk}", media / "derived" / f"h{world.hospital.pk}"]
    with scopes_disabled():
        names = [n for s in Scan.objects.all() for n in (s.file.name, s.preview.name, s.decoded.name)]
    outside = [n for n in names if not any((media / n).resolve().is_relative_to(a) for a in allowed)
               or not re.fullmatch(r"(scans|derived)/h\d+/[0-9a-f]{32}\.(png|jpeg|dcm|npz)", n)]
    on_disk = [p for p in media.rglob("*") if p.is_file()]
    figure("D5", f"traversal names {len(TRAVERSAL_NAMES)} x 2 paths; paths outside tenant dir {len(outside)}",
           names=len(TRAVERSAL_NAMES) * 2, outside=len(outside))
    assert len(names) == 6 * len(TRAVERSAL_NAMES) and outside == []
    assert len(on_disk) == len(names) and all(p.resolve().is_relative_to(allowed[0].parent.parent) for p in on_disk)


def pydicom_corpus() -> list[Path]:
    from pydicom.data import get_testdata_files

    return sorted(Path(f) for f in get_testdata_files() if Path(f).is_file())


def crafted_dicom() -> dict[str, bytes]:
    good = dicom_bytes()
    no_preamble = good[128:]
    meta_end = good.index(b"\x02\x00\x10\x00")  # (0002,0010) TransferSyntaxUID
    length = struct.unpack("<H", good[meta_end + 6:meta_end + 8])[0]
    without_ts = good[:meta_end] + good[meta_end + 8 + length:]
    bad_vr = good.replace(b"\x28\x00\x10\x00US", b"\x28\x00\x10\x00ZZ", 1)  # Rows with a made-up VR
    from pydicom.data import get_testdata_file

    dicomdir = Path(get_testdata_file("DICOMDIR")).read_bytes()
    return {
        "no preamble": no_preamble,
        "no TransferSyntaxUID": without_ts,
        "Rows 65535": dicom_bytes(rows=65535),
        "bad VR on Rows": bad_vr,
        "DICOMDIR": dicomdir,
        "pixel data cut in half": good[:len(good) - (len(good) - 400) // 2],
        "BitsAllocated 1": good.replace(b"\x28\x00\x00\x01US\x02\x00\x10\x00",
                                        b"\x28\x00\x00\x01US\x02\x00\x01\x00"),
    }


def test_dicom_corpus_is_refused_with_a_reason_or_stored(db, world, settings, figure):
    """D6 at upload: the DICOM test files that ship inside pydicom (every file of its
    test data, DICOM or not) plus crafted ones. Each is refused with a reason or stored
    and queued; none raises anything else. The stored ones go through the worker in
    test_pipeline_faults.py::test_accepted_dicom_corpus_ends_done_or_rejected."""
    files = {p.name: p.read_bytes() for p in pydicom_corpus()}
    files.update({f"crafted: {k}": v for k, v in crafted_dicom().items()})
    outcome, unexpected = {}, {}
    for name, data in files.items():
        try:
            with scope(hospital=world.hospital):
                scan_upload(patient=world.patient, data=data, filename=name, actor=world.uploader)
            outcome[name] = "stored"
        except ValidationError as exc:
            outcome[name] = "refused"
            assert exc.messages and len(exc.messages[0]) > len(name) + 10
        except Exception as exc:  # noqa: BLE001 - what a view would turn into a 5xx
            unexpected[name] = repr(exc)
    kept = sum(v == "stored" for v in outcome.values())
    figure("D6 upload", f"DICOM corpus {len(files)} (pydicom test files + {len(crafted_dicom())} crafted); "
                        f"stored {kept}; refused with a reason {len(files) - kept - len(unexpected)}; "
                        f"5xx {len(unexpected)}", corpus=len(files), kept=kept, errors=len(unexpected))
    assert unexpected == {}
    assert outcome["crafted: DICOMDIR"] == "refused" and outcome["crafted: Rows 65535"] == "refused"


PHI = {"name": "Doe^Jane", "id": "PHI-12345", "birth": "19700101", "exif": "Jane Doe MRN 555-0199",
       "text": "Patient: Jane Doe, DOB 1970-01-01"}


def phi_uploads() -> dict[str, bytes]:
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(dicom_bytes()))
    ds.PatientBirthDate, ds.InstitutionName, ds.ReferringPhysicianName = PHI["birth"], "St Jane Hospital", "Who^Dr"
    out = io.BytesIO()
    ds.save_as(out)
    exif = Image.Exif()
    exif[0x013B] = PHI["exif"]  # Artist
    exif[0x010E] = PHI["exif"]  # ImageDescription
    jpeg = io.BytesIO()
    Image.fromarray((chest() * 255).astype(np.uint8)).save(jpeg, format="JPEG", exif=exif.tobytes())
    png = png_bytes()
    png_text = png[:33] + png_chunk(b"tEXt", b"Comment\0" + PHI["text"].encode()) + png[33:]
    return {"dcm": out.getvalue(), "jpeg": jpeg.getvalue(), "png": png_text}


def phi_found(data: bytes) -> list[str]:
    """PHI strings in a derivative, and metadata chunks a PNG should not carry."""
    found = [k for k, v in PHI.items() if v.encode() in data or v.encode("utf-16-le") in data]
    if data.startswith(b"\x89PNG"):
        pos, chunks = 8, []
        while pos + 8 <= len(data):
            length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
            chunks.append(ctype)
            pos += 12 + length
        found += [c.decode() for c in chunks if c not in (b"IHDR", b"IDAT", b"IEND")]
    elif data.startswith(b"\xff\xd8"):  # JPEG: no EXIF/XMP (APP1-15) or comment segment before the scan
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
            marker = data[pos + 1]
            if 0xE1 <= marker <= 0xEF or marker == 0xFE:
                found.append(f"JPEG segment {marker:#x}")
            pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return found


def test_previews_carry_no_phi(db, world, settings, figure):
    """D7 for the previews made at upload (heatmaps: test_pipeline_faults.py)."""
    remaining = {}
    for kind, data in phi_uploads().items():
        assert any(v.encode() in data for v in PHI.values()), kind
        with scope(hospital=world.hospital):
            scan = scan_upload(patient=world.patient, data=data, filename=f"phi.{kind}", actor=world.uploader).scan
        with scan.preview.open("rb") as fh:
            remaining[kind] = phi_found(fh.read())
    left = sum(len(v) for v in remaining.values())
    figure("D7 previews", f"derivatives scanned {len(remaining)}; PHI fields remaining {left}",
           scanned=len(remaining), remaining=left)
    assert left == 0, remaining


def test_pillow_only_ever_opens_png_or_jpeg(db, world, monkeypatch, figure):
    """D8. Every Image.open made while validating the bad-file corpus names its formats
    (no other Pillow decoder is reachable from an upload), and the parsers are at least
    the versions with the fixes RELIABILITY.md D8/F5 names."""
    from importlib.metadata import version

    from packaging.version import Version

    from tests.screening.test_validation_corpus import CORPUS

    calls = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):
        calls.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", spy)
    _refused, unexpected, _slowest = upload_each(world, {**CORPUS, **POLYGLOTS, "ok png": ("ok.png", png_bytes()),
                                                         "ok jpeg": ("ok.jpg", jpeg_bytes())})
    assert unexpected == {}
    unrestricted = [c for c in calls if not c]
    minimum = {"pillow": "12.1.1", "pydicom": "3.0.2", "keras": "3.13.2"}
    old = {name: version(name) for name, v in minimum.items() if Version(version(name)) < Version(v)}
    figure("D8", f"Image.open calls {len(calls)}; without formats= {len(unrestricted)}; "
                 f"below minimum versions {len(old)} ({', '.join(f'{k}>={v}' for k, v in minimum.items())})",
           calls=len(calls), unrestricted=len(unrestricted), below_minimum=len(old))
    assert calls and unrestricted == [] and old == {}
