"""CSV exports of a hospital's patients and screenings: content, formula escaping,
streaming, audit, roles and tenancy."""

import csv
import io

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from hospitals.exports import safe_cell
from hospitals.models import AuditEvent, Role
from tests.factories import PatientFactory, add_screening, hospital_world


def export_url(hospital, what):
    return reverse("hospitals:export_csv", kwargs={"hospital_slug": hospital.slug, "what": what})


def download(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def worlds(hospital_a, hospital_b):
    a, b = hospital_world(hospital_a, tag="A"), hospital_world(hospital_b, tag="B")
    add_screening(a, tag="A")
    add_screening(b, tag="B")
    return a, b


def test_patients_export_has_this_hospitals_patients_only(worlds, login):
    a, b = worlds
    rows = download(login(a.admin), export_url(a.hospital, "patients"))
    assert [row["mrn"] for row in rows] == ["A-MRN-7731"]
    row = rows[0]
    assert (row["given_name"], row["family_name"], row["status"], row["birth_date"]) == (
        "Agiven", "Afamily", "carrier", "1980-01-02")
    assert row["created_at"].endswith("+00:00")
    assert not any(secret in str(rows) for secret in b.secrets)


def test_screenings_export_has_result_and_review(worlds, login):
    a, b = worlds
    rows = download(login(a.admin), export_url(a.hospital, "screenings"))
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == str(a.screening.pk) and row["patient_mrn"] == "A-MRN-7731"
    assert (row["status"], row["ai_label"], row["covid_probability"], row["model_version"]) == (
        "done", "covid", "0.82", "1.2.0")
    assert (row["review_decision"], row["clinical_label"], row["radiological_signs"], row["reviewer"]) == (
        "confirm", "covid", "True", a.clinician.email)
    assert row["original_filename"] == "A-film.png"
    assert not any(secret in str(rows) for secret in b.secrets)


def test_formula_cells_are_escaped(hospital_a, login, make_member):
    admin = make_member(hospital_a, Role.HOSPITAL_ADMIN)
    with scopes_disabled():
        PatientFactory(hospital=hospital_a, mrn="=1+2", given_name='=HYPERLINK("http://x.example","click")',
                       family_name="+Plus", address="@SUM(A1)", national_id="-5", phone="\t=cmd")
    row = download(login(admin), export_url(hospital_a, "patients"))[0]
    assert row["mrn"] == "'=1+2"
    assert row["given_name"] == '\'=HYPERLINK("http://x.example","click")'
    assert (row["family_name"], row["address"], row["national_id"], row["phone"]) == (
        "'+Plus", "'@SUM(A1)", "'-5", "'\t=cmd")
    assert row["sex"] == "female"  # ordinary text is untouched


@pytest.mark.parametrize("value,expected", [
    ("=A1", "'=A1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\rx", "'\rx"), ("a=b", "a=b"), ("", ""),
    (None, ""), (-0.5, "-0.5"), (3, "3"), (True, "True"),
])
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected


@pytest.mark.parametrize("what,object_type", [("patients", "patient"), ("screenings", "screening")])
def test_each_export_is_audited(what, object_type, worlds, login):
    a, _ = worlds
    download(login(a.admin), export_url(a.hospital, what))
    with scopes_disabled():
        event = AuditEvent.objects.filter(hospital=a.hospital, action="export").latest("seq")
    assert (event.object_type, event.actor, event.detail) == (object_type, a.admin, {"format": "csv"})


@pytest.mark.parametrize("role", [r for r in Role.values if r != Role.HOSPITAL_ADMIN])
@pytest.mark.parametrize("what", ["patients", "screenings"])
def test_other_roles_are_refused(role, what, hospital_a, make_member, login):
    client = login(make_member(hospital_a, role))
    assert client.get(export_url(hospital_a, what)).status_code == 403
    assert client.get(reverse("hospitals:exports", kwargs={"hospital_slug": hospital_a.slug})).status_code == 403
    with scopes_disabled():
        assert not AuditEvent.objects.filter(hospital=hospital_a, action="export").exists()


@pytest.mark.parametrize("what", ["patients", "screenings"])
def test_another_hospitals_admin_gets_404(what, worlds, login):
    a, b = worlds
    assert login(b.admin).get(export_url(a.hospital, what)).status_code == 404


def test_unknown_export_is_404(worlds, login):
    a, _ = worlds
    assert login(a.admin).get(export_url(a.hospital, "members")).status_code == 404


def test_exports_page_links_both_exports(worlds, login):
    a, _ = worlds
    client = login(a.admin)
    html = client.get(reverse("hospitals:exports", kwargs={"hospital_slug": a.hospital.slug})).content.decode()
    assert export_url(a.hospital, "patients") in html and export_url(a.hospital, "screenings") in html
    assert "recorded in the audit trail" in html


def test_screenings_export_queries_do_not_grow_per_row(worlds, login, django_assert_max_num_queries):
    """Results and reviews are fetched per chunk of screenings, not per screening."""
    from django_scopes import scope

    from tests.factories import airesult_for, screening_for

    a, _ = worlds
    client = login(a.admin)
    download(client, export_url(a.hospital, "screenings"))  # the first request also records the session
    with django_assert_max_num_queries(30) as one:
        download(client, export_url(a.hospital, "screenings"))
    with scope(hospital=a.hospital):
        for seed in range(1, 6):
            airesult_for(screening_for(a.patient, actor=a.clinician, seed=seed))
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(download(client, export_url(a.hospital, "screenings"))) == 6
