"""A corpus of bad files, each refused with a reason through `scan_upload` and through
`import_scans`, with nothing stored (no Scan or Screening row, no file under MEDIA_ROOT)
and no unexpected exception (the command-line and service analogue of a 5xx). Also the
awkward-but-valid inputs that must be accepted: 16-bit PNG, progressive and CMYK JPEG,
DICOM MONOCHROME1/2."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django_scopes import scope, scopes_disabled
from PIL import Image

from screening.models import Scan, Screening
from screening.services import scan_upload

from .conftest import chest, dicom_bytes, jpeg_bytes, png_bytes

SMALL_CAP = 256 * 1024  # SCAN_MAX_BYTES during these tests, so the oversize file stays small


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def png_declaring(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header declares width x height 8-bit grayscale, with the given IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def deflate_bomb() -> bytes:
    """8000 x 8000 px (64 Mpx, above the 50 Mpx cap but under Pillow's own bomb warning):
    a genuine zlib stream of 64 MB of zeros that compresses to about 60 kB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * 8001
    idat = b"".join(compressor.compress(row) for _ in range(8000)) + compressor.flush()
    return png_declaring(8000, 8000, idat)


def other_format(fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray((chest(64) * 255).astype(np.uint8)).save(out, format=fmt, **options)
    return out.getvalue()


def with_bad_crc(data: bytes) -> bytes:
    """Flip one byte inside the first IDAT chunk's data."""
    at = data.index(b"IDAT") + 10
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def noise_png(nbytes: int) -> bytes:
    """A valid PNG of random noise, at least `nbytes` long (noise does not compress)."""
    side = int((nbytes * 1.1) ** 0.5) + 1
    rng = np.random.default_rng(3)
    return png_bytes(rng.random((side, side)).astype(np.float32))


def corpus() -> dict[str, tuple[str, bytes]]:
    """name -> (filename as uploaded, content)."""
    png, jpg = png_bytes(), jpeg_bytes()
    html = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
    files = {}
    for cut in (8, 20, 40, len(png) // 3, len(png) // 2, len(png) - 30, len(png) - 12, len(png) - 1):
        files[f"png truncated at {cut}"] = ("chest.png", png[:cut])
    for cut in (3, 30, 200, len(jpg) // 3, len(jpg) // 2, len(jpg) - 100, len(jpg) - 2, len(jpg) - 1):
        files[f"jpeg truncated at {cut}"] = ("chest.jpg", jpg[:cut])
    files.update({
        "png with a bad CRC": ("chest.png", with_bad_crc(png)),
        "png 0 x 256": ("zero.png", png_declaring(0, 256, zlib.compress(b""))),
        "png 256 x 0": ("zero.png", png_declaring(256, 0, zlib.compress(b""))),
        "png IHDR bomb 20000 x 20000": ("bomb.png", png_declaring(20000, 20000, zlib.compress(b"\0" * 1000))),
        "png IHDR 10000 x 10000": ("bomb.png", png_declaring(10000, 10000, zlib.compress(b"\0" * 1000))),
        "png deflate bomb 8000 x 8000": ("bomb.png", deflate_bomb()),
        "gif renamed .png": ("chest.png", other_format("GIF")),
        "bmp renamed .jpg": ("chest.jpg", other_format("BMP")),
        "tiff renamed .png": ("chest.png", other_format("TIFF")),
        "webp renamed .jpg": ("chest.jpg", other_format("WEBP")),
        "svg with script": ("chest.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        "svg renamed .png": ("chest.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
                                          b'onload="alert(1)"/>'),
        "html named .jpg": ("chest.jpg", html),
        "png + html polyglot": ("chest.png", png + html),
        "png + html without script": ("chest.png", png + b"<html><body><h1>hello</h1></body></html>"),
        "png with script in a tEXt chunk": ("chest.png", png[:33] + png_chunk(b"tEXt", b"Comment\0<svg onload=x>")
                                            + png[33:]),
        "jpeg + trailing html": ("chest.jpg", jpg + html),
        "jpeg + trailing bytes": ("chest.jpg", jpg + b"PK\x03\x04" + b"x" * 100),
        "jpeg with html in a comment": ("chest.jpg", jpeg_bytes(comment=b"<html><body onload=alert(1)>")),
        "dicom without PixelData": ("chest.dcm", dicom_bytes(pixels=False)),
        "dicom 60000 x 60000": ("chest.dcm", dicom_bytes(rows=60000, columns=60000)),
        "dicom with html in the preamble": ("chest.dcm", b"<html><script>x</script>".ljust(128, b" ")
                                            + dicom_bytes()[128:]),
        "dicom truncated": ("chest.dcm", dicom_bytes()[:-5000]),
        "empty file": ("chest.png", b""),
        "random bytes": ("chest.jpg", np.random.default_rng(1).bytes(4096)),
        "oversize file": ("big.png", noise_png(SMALL_CAP + 1)),
    })
    return files


CORPUS = corpus()


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def small_cap(settings):
    settings.SCAN_MAX_BYTES = SMALL_CAP
    assert len(CORPUS["oversize file"][1]) > SMALL_CAP


def upload_each(world, corpus: dict) -> tuple[dict, dict, float]:
    """Upload every `name: (filename, data)` of the corpus through `scan_upload`: the refusal
    message per refused file, the error per file that raised anything else (what a view would
    turn into a 5xx), and the slowest upload in seconds."""
    refused, unexpected, slowest = {}, {}, 0.0
    for name, (filename, data) in corpus.items():
        started = time.monotonic()
        try:
            with scope(hospital=world.hospital):
                scan_upload(patient=world.patient, data=data, filename=filename, actor=world.uploader)
        except ValidationError as exc:
            refused[name] = " ".join(exc.messages)
        except Exception as exc:  # noqa: BLE001 - what a view would turn into a 5xx
            unexpected[name] = repr(exc)
        slowest = max(slowest, time.monotonic() - started)
    return refused, unexpected, slowest


def test_every_bad_file_is_refused_with_a_reason_and_nothing_is_stored(db, world, settings, small_cap, figure):
    refused, unexpected, _slowest = upload_each(world, CORPUS)
    with scopes_disabled():
        rows = Scan.objects.count() + Screening.objects.count()
    files = stored_files(settings.MEDIA_ROOT)
    figure("D2-D4 service", f"bad files {len(CORPUS)}; stored {rows + len(files)}; 5xx {len(unexpected)}",
           bad_files=len(CORPUS), stored=rows + len(files), errors=len(unexpected))
    assert unexpected == {}
    assert sorted(refused) == sorted(CORPUS), "accepted: " + ", ".join(set(CORPUS) - set(refused))
    assert rows == 0 and files == []
    for name, reason in refused.items():
        filename = CORPUS[name][0]
        assert reason.startswith(f"{filename}: ") and len(reason) > len(filename) + 12, (name, reason)


@pytest.mark.parametrize("name, expected", [
    ("gif renamed .png", "unsupported file type"),
    ("html named .jpg", "unsupported file type"),
    ("svg with script", "unsupported file type"),
    ("png + html polyglot", "polyglot"),
    ("png + html without script", "polyglot"),
    ("png with script in a tEXt chunk", "polyglot"),
    ("jpeg + trailing html", "polyglot"),
    ("jpeg + trailing bytes", "other data after the end of the image"),
    ("jpeg with html in a comment", "polyglot"),
    ("dicom with html in the preamble", "polyglot"),
    ("png with a bad CRC", "bad checksum"),
    ("png truncated at 40", "truncated"),
    ("jpeg truncated at 200", "truncated"),
    ("png 0 x 256", "corrupt"),
    ("png IHDR bomb 20000 x 20000", "too large"),
    ("png deflate bomb 8000 x 8000", "too large"),
    ("dicom without PixelData", "holds no image"),
    ("dicom 60000 x 60000", "too large"),
    ("empty file", "empty"),
    ("oversize file", "larger than"),
])
def test_the_reason_names_the_problem(name, expected, small_cap):
    from screening.validation import validate_scan

    filename, data = CORPUS[name]
    with pytest.raises(ValidationError) as caught:
        validate_scan(data=data, filename=filename)
    assert expected in " ".join(caught.value.messages)


def test_import_scans_refuses_the_same_corpus(db, world, settings, small_cap, tmp_path, figure):
    import json

    paths = []
    for i, (name, (filename, data)) in enumerate(CORPUS.items()):
        path = tmp_path / "in" / f"{i:02d}-{filename}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        paths.append(str(path))
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("import_scans", *paths, hospital="pipeline", patient="PIPE-0001", user=world.uploader.email,
                     json=True, stdout=out)
    assert f"{len(CORPUS)} file(s) rejected" in str(caught.value)
    rows = json.loads(out.getvalue())
    with scopes_disabled():
        stored = Scan.objects.count() + Screening.objects.count() + len(stored_files(settings.MEDIA_ROOT))
    figure("D2-D4 import_scans", f"bad files {len(rows)}; stored {stored}; 5xx 0", bad_files=len(rows), stored=stored)
    assert [row["file"] for row in rows] == paths
    assert all(row["status"] == "rejected" and row["screening_id"] is None and row["label"] is None
               and row["reason"] for row in rows)
    assert stored == 0


@pytest.mark.parametrize("kind, builder, fmt, bits", [
    ("8-bit PNG", lambda: png_bytes(), "png", 8),
    ("16-bit PNG", lambda: png_bytes(bits=16), "png", 16),
    ("RGB PNG", lambda: png_bytes(mode="RGB"), "png", 8),
    ("baseline JPEG", lambda: jpeg_bytes(), "jpeg", 8),
    ("progressive JPEG", lambda: jpeg_bytes(progressive=True), "jpeg", 8),
    # CMYK is an odd way to store a radiograph but a valid JPEG: decoded to luma like RGB.
    ("CMYK JPEG", lambda: jpeg_bytes(mode="CMYK"), "jpeg", 8),
    ("JPEG with padding after EOI", lambda: jpeg_bytes() + b"\0\0\0\0", "jpeg", 8),
    ("DICOM MONOCHROME2", lambda: dicom_bytes(), "dcm", 12),
    ("DICOM MONOCHROME1", lambda: dicom_bytes(photometric="MONOCHROME1"), "dcm", 12),
])
def test_valid_variants_are_accepted_and_stored(kind, builder, fmt, bits, db, world, settings):
    data = builder()
    with scope(hospital=world.hospital):
        screening = scan_upload(patient=world.patient, data=data, filename="upload.bin", actor=world.uploader)
        scan = screening.scan
    assert (scan.format, scan.bit_depth, screening.status) == (fmt, bits, "queued")
    assert scan.file.name.endswith(f".{fmt}") and scan.original_filename == "upload.bin"
    with scan.file.open("rb") as fh:
        assert fh.read() == data


def test_dicom_monochrome1_and_2_preview_alike(db, world):
    """The preview of a MONOCHROME1 file is inverted back: the same chest either way."""
    with scope(hospital=world.hospital):
        one = scan_upload(patient=world.patient, data=dicom_bytes(photometric="MONOCHROME1"), filename="a.dcm",
                          actor=world.uploader).scan
        two = scan_upload(patient=world.patient, data=dicom_bytes(), filename="b.dcm", actor=world.uploader).scan
    with one.preview.open("rb") as a, two.preview.open("rb") as b:
        pa = np.asarray(Image.open(a), np.float32)
        pb = np.asarray(Image.open(b), np.float32)
    assert np.abs(pa - pb).max() <= 1.0
