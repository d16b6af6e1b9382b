"""Scan files and heatmaps are served only through the authenticated, hospital-scoped
views: attachment with a server-made name, a fixed type, nosniff, no-store, audited;
another hospital's id (or a missing one) is 404, and nothing is reachable by media URL."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent, Role
from screening import services

from ..factories import (PatientFactory, add_screening, airesult_for, heatmap_overlay, hospital_world, png_bytes,
                         screening_for)
from .conftest import dicom_bytes


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a, b = hospital_world(hospital_a, tag="ALPHA"), hospital_world(hospital_b, tag="BETA")
    add_screening(a, tag="ALPHA")
    add_screening(b, tag="BETA")
    return a, b


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def url(name, pk, slug="alpha"):
    return reverse(f"screening:{name}", kwargs={"hospital_slug": slug, "pk": pk})


def assert_private_headers(response, *, content_type, filename):
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"


def audits(**filters):
    with scopes_disabled():
        return list(AuditEvent.objects.filter(**filters).order_by("seq"))


def test_original_png_download(worlds):
    a, _ = worlds
    response = client_for(a.clinician).get(url("scan_original", a.scan.pk))
    assert_private_headers(response, content_type="application/octet-stream", filename=f"scan-{a.scan.pk}.png")
    with a.scan.file.open("rb") as fh:
        assert body(response) == fh.read()
    # The client's filename never reaches the headers.
    assert "ALPHA-film" not in response["Content-Disposition"]
    [event] = audits(action="export", object_type="scan", object_id=str(a.scan.pk))
    assert event.actor_id == a.clinician.pk and event.detail["file"] == "original"


def test_original_dicom_download_is_application_dicom(worlds):
    a, _ = worlds
    with scope(hospital=a.hospital):
        screening = services.scan_upload(patient=a.patient, data=dicom_bytes(), filename="Doe^Jane.dcm",
                                         actor=a.clinician)
    response = client_for(a.clinician).get(url("scan_original", screening.scan_id))
    assert_private_headers(response, content_type="application/dicom", filename=f"scan-{screening.scan_id}.dcm")
    assert body(response)[128:132] == b"DICM"


def test_preview_is_a_png_without_the_dicom_header(worlds):
    a, _ = worlds
    with scope(hospital=a.hospital):
        screening = services.scan_upload(patient=a.patient, data=dicom_bytes(), filename="x.dcm", actor=a.clinician)
    response = client_for(a.admin).get(url("scan_preview", screening.scan_id))
    assert_private_headers(response, content_type="image/png",
                           filename=f"scan-{screening.scan_id}-preview.png")
    data = body(response)
    assert data.startswith(b"\x89PNG") and b"PHI-12345" not in data and b"Doe^Jane" not in data
    [event] = audits(action="view", object_type="scan", object_id=str(screening.scan_id))
    assert event.detail["file"] == "preview"


def test_heatmap(worlds):
    a, _ = worlds
    response = client_for(a.clinician).get(url("heatmap", a.result.pk))
    assert_private_headers(response, content_type="image/jpeg", filename=f"scan-{a.scan.pk}-heatmap.jpg")
    assert body(response).startswith(b"\xff\xd8\xff")
    [event] = audits(action="view", object_type="scan", detail__file="heatmap")
    assert event.object_id == str(a.scan.pk) and event.detail["result"] == a.result.pk


def test_heatmap_stored_as_png_is_served_as_png(worlds):
    """Results stored before overlays were JPEG keep their PNG, served as what it is."""
    a, _ = worlds
    Path(a.result.heatmap.path).write_bytes(heatmap_overlay(fmt="PNG"))  # results are immutable rows
    response = client_for(a.clinician).get(url("heatmap", a.result.pk))
    assert_private_headers(response, content_type="image/png", filename=f"scan-{a.scan.pk}-heatmap.png")
    assert body(response).startswith(b"\x89PNG")


def test_result_without_heatmap_is_404(worlds):
    a, _ = worlds
    with scope(hospital=a.hospital):
        screening = screening_for(a.patient, actor=a.clinician, seed=4)
        result = airesult_for(screening, heatmap=False)
    assert client_for(a.clinician).get(url("heatmap", result.pk)).status_code == 404


def test_a_file_missing_from_storage_is_404(worlds):
    a, _ = worlds
    a.scan.file.storage.delete(a.scan.file.name)
    assert client_for(a.clinician).get(url("scan_original", a.scan.pk)).status_code == 404


@pytest.mark.parametrize("name,obj", [("scan_original", "scan"), ("scan_preview", "scan"), ("heatmap", "result")])
def test_another_hospitals_files_are_404_like_missing_ones(worlds, name, obj):
    a, b = worlds
    client = client_for(b.clinician)
    foreign_id = getattr(a, obj).pk
    own_id = getattr(b, obj).pk
    assert client.get(url(name, own_id, slug="beta")).status_code == 200
    for method in (client.get, client.post):
        foreign = method(url(name, foreign_id, slug="beta"))
        missing = method(url(name, 987654321, slug="beta"))
        assert foreign.status_code == missing.status_code == 404
        assert method(url(name, foreign_id, slug="alpha")).status_code == 404
        assert method(url(name, own_id, slug="alpha")).status_code == 404
    assert not audits(hospital=a.hospital, object_type="scan", action__in=["view", "export"])


def test_files_need_a_signed_in_member(worlds):
    a, _ = worlds
    response = Client().get(url("scan_original", a.scan.pk))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REGISTRAR, Role.RADIOLOGIST])
def test_every_member_role_may_see_the_files(worlds, make_member, role):
    a, _ = worlds
    client = client_for(make_member(a.hospital, role))
    assert client.get(url("scan_preview", a.scan.pk)).status_code == 200
    assert client.get(url("scan_original", a.scan.pk)).status_code == 200


def test_files_are_not_under_any_public_url(worlds):
    a, _ = worlds
    assert settings.MEDIA_URL is None
    with pytest.raises(ValueError):
        a.scan.file.url  # noqa: B018 - the storage refuses to make a URL
    # The stored path carries the hospital and a random name, never the client's filename.
    assert a.scan.file.name.startswith(f"scans/h{a.hospital.pk}/") and "ALPHA" not in a.scan.file.name
    client = client_for(a.clinician)
    for guess in (f"/media/{a.scan.file.name}", f"/{a.scan.file.name}", f"/static/../media/{a.scan.file.name}"):
        assert client.get(guess).status_code == 404


def test_post_to_a_file_view_is_not_allowed(worlds):
    a, _ = worlds
    assert client_for(a.clinician).post(url("scan_original", a.scan.pk)).status_code == 405


def test_screening_page_of_another_hospital_is_404(worlds):
    a, b = worlds
    client = client_for(b.clinician)
    for name in ("detail", "status"):
        assert client.get(url(name, a.screening.pk, slug="beta")).status_code == 404
    with scopes_disabled():
        other = PatientFactory(hospital=a.hospital)
    response = client.post(reverse("screening:upload", kwargs={"hospital_slug": "beta", "patient_pk": other.pk}),
                           {"files": [SimpleUploadedFile("a.png", png_bytes(), content_type="image/png")]})
    assert response.status_code == 404
