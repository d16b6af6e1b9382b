"""`manage.py import_scans`: the bulk import through `scan_upload`."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_scopes import scope, scopes_disabled

from screening import services
from screening.management.commands import import_scans
from screening.models import Scan, Screening

from .conftest import png_bytes
from .test_services import prediction


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    bad = tmp_path / "renamed.png"
    bad.write_bytes(b"GIF89a" + b"\0" * 200)
    return good, bad


def run(*args, **options):
    out = io.StringIO()
    options.setdefault("hospital", "pipeline")
    options.setdefault("patient", "PIPE-0001")
    try:
        call_command("import_scans", *map(str, args), stdout=out, **options)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_imports_good_files_and_reports_bad_ones_as_rejected(db, world, files):
    good, bad = files
    out, error = run(good, bad, user=world.uploader.email)
    lines = out.strip().splitlines()
    assert lines[0] == f"{good}: queued"
    assert lines[1].startswith(f"{bad}: rejected (renamed.png: unsupported file type")
    assert str(error) == "1 file(s) rejected." and error.returncode == 1
    with scopes_disabled():
        scan = Scan.objects.get()
        assert (scan.original_filename, scan.uploaded_by, scan.patient) == ("good.png", world.uploader, world.patient)
        assert Screening.objects.count() == 1


def test_json_output(db, world, files):
    good, bad = files
    out, _ = run(good, bad, user=world.uploader.email, json=True)
    rows = json.loads(out)
    with scopes_disabled():
        screening = Screening.objects.get()
    assert rows[0] == {"file": str(good), "status": "queued", "label": None, "reason": "",
                       "screening_id": screening.pk}
    assert rows[1]["status"] == "rejected" and rows[1]["screening_id"] is None and "unsupported" in rows[1]["reason"]


def test_all_good_files_exit_zero(db, world, files):
    out, error = run(files[0], user=world.uploader.email)
    assert error is None and out.strip() == f"{files[0]}: queued"


def test_wait_reports_the_final_status_and_label(db, world, files, monkeypatch):
    """A stand-in worker finishes the screening while the command polls."""

    def worker_step(seconds):
        with scope(hospital=world.hospital):
            for screening in Screening.objects.filter(status="queued"):
                claimed = services.screening_claim(screening_id=screening.pk, task_id="t")
                services.screening_store_result(screening=claimed, prediction=prediction(label="covid").to_dict(),
                                                overlay=None)

    monkeypatch.setattr(import_scans.time, "sleep", worker_step)
    out, error = run(files[0], user=world.uploader.email, wait=True, timeout=30)
    assert error is None and out.strip() == f"{files[0]}: done (covid)"


def test_wait_timeout_reports_pending_and_fails(db, world, files, monkeypatch):
    monkeypatch.setattr(import_scans, "POLL_SECONDS", 0.05)
    out, error = run(files[0], user=world.uploader.email, wait=True, timeout=0.2, json=True)
    assert json.loads(out)[0]["status"] == "queued"
    assert "1 screening(s) still pending after 0.2 s" in str(error) and error.returncode == 1


def test_unknown_mrn_is_an_error(db, world, files):
    _, error = run(files[0], user=world.uploader.email, patient="NOPE-1")
    assert str(error) == "No patient with MRN 'NOPE-1' in pipeline."


def test_a_patient_of_another_hospital_is_unknown(db, world, files):
    from tests.factories import HospitalFactory, PatientFactory

    with scopes_disabled():
        PatientFactory(hospital=HospitalFactory(slug="other"), mrn="OTHER-1")
    _, error = run(files[0], user=world.uploader.email, patient="OTHER-1")
    assert "No patient with MRN 'OTHER-1'" in str(error)


@pytest.mark.parametrize("who, message", [
    ("viewer@pipeline.test", "may not upload scans"),
    ("nobody@pipeline.test", "is not an active member of pipeline"),
])
def test_the_user_must_be_a_member_allowed_to_upload(db, world, files, who, message):
    _, error = run(files[0], user=who)
    assert message in str(error)
    with scopes_disabled():
        assert Scan.objects.count() == 0


def test_an_inactive_membership_is_refused(db, world, files):
    from hospitals.models import Membership

    with scopes_disabled():
        Membership.objects.filter(user=world.uploader).update(is_active=False)
    _, error = run(files[0], user=world.uploader.email)
    assert "is not an active member" in str(error)


def test_the_user_is_required(db, world, files):
    with pytest.raises(CommandError, match="--user"):
        call_command("import_scans", str(files[0]), hospital="pipeline", patient="PIPE-0001")


def test_unreadable_path_is_rejected(db, world, tmp_path):
    out, error = run(tmp_path / "missing.png", user=world.uploader.email)
    assert "rejected (" in out and "cannot read the file" in out and error.returncode == 1
