"""The patient list's row tag (`patients/templatetags/patient_rows.py`)."""

import datetime

from django.template import engines

from patients.models import Patient, Sex, Status


def row(patient, url="/h/alpha/patients/"):
    template = engines["django"].from_string("{% load patient_rows %}{% patient_row p url %}")
    return template.render({"p": patient, "url": url})


def test_a_row_links_the_escaped_name_and_shows_the_pending_badge_while_a_review_waits():
    patient = Patient(pk=42, family_name="<b>Doe</b>", given_name="Jane & Co", mrn="MRN-1",
                      birth_date=datetime.date(980, 1, 2), sex=Sex.FEMALE, status=Status.INFECTED,
                      status_since=datetime.date(2026, 12, 1))
    patient.awaiting_review = True
    assert row(patient) == (
        '<tr><td><a href="/h/alpha/patients/42/">&lt;b&gt;Doe&lt;/b&gt;, Jane &amp; Co</a></td>'
        '<td class="mono">MRN-1</td><td>0980-01-02</td><td>Female</td>'
        '<td><span class="badge status-infected">Infected</span> <span class="badge badge-pending">Review pending'
        "</span></td><td>2026-12-01</td></tr>")


def test_a_row_without_a_waiting_review_or_a_status_date_leaves_them_out():
    patient = Patient(pk=7, family_name="Roe", given_name="Ann", mrn="M<2>", birth_date=datetime.date(2001, 11, 30),
                      sex=Sex.UNKNOWN, status=Status.SUSPECTED, status_since=None)
    patient.awaiting_review = False
    assert row(patient, url="/h/b%C3%A9/patients/") == (
        '<tr><td><a href="/h/b%C3%A9/patients/7/">Roe, Ann</a></td><td class="mono">M&lt;2&gt;</td>'
        '<td>2001-11-30</td><td>Unknown</td><td><span class="badge status-suspected">Suspected</span></td>'
        "<td></td></tr>")
