"""Audit trail page and CSV export: hospital admins only, this hospital only, filters,
and an export that can be verified offline (every hashed field, seq and hash)."""

import csv
import datetime
import hashlib
import io
import json

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from hospitals.audit import GENESIS, audit_record
from hospitals.models import AuditEvent, Role


def hurl(name, hospital):
    return reverse(f"hospitals:{name}", kwargs={"hospital_slug": hospital.slug})


@pytest.fixture
def admin(hospital_a, make_member):
    return make_member(hospital_a, Role.HOSPITAL_ADMIN, email="boss@example.org")


@pytest.fixture
def events(hospital_a, hospital_b, admin, make_member):
    other = make_member(hospital_a, Role.CLINICIAN, email="doc@example.org")
    audit_record(action="create", object_type="patient", object_id=1, hospital=hospital_a, actor=other)
    audit_record(action="update", object_type="patient", object_id=1, hospital=hospital_a, actor=other,
                 detail={"status": ["suspected", "infected"]})
    audit_record(action="view", object_type="labtest", object_id=7, hospital=hospital_a, actor=admin)
    audit_record(action="create", object_type="patient", object_id=99, hospital=hospital_b, actor=other,
                 detail={"secret": "beta-only"})


def export_rows(response):
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.parametrize("role", list(Role.values))
def test_audit_pages_only_for_hospital_admins(role, hospital_a, make_member, login):
    client = login(make_member(hospital_a, role))
    expected = 200 if role == Role.HOSPITAL_ADMIN else 403
    assert client.get(hurl("audit_list", hospital_a)).status_code == expected
    assert client.get(hurl("audit_export", hospital_a)).status_code == expected


def test_audit_pages_404_for_non_members(hospital_a, hospital_b, make_member, login):
    client = login(make_member(hospital_b, Role.HOSPITAL_ADMIN))
    assert client.get(hurl("audit_list", hospital_a)).status_code == 404
    assert client.get(hurl("audit_export", hospital_a)).status_code == 404


def test_audit_list_shows_only_this_hospital(hospital_a, admin, events, login):
    response = login(admin).get(hurl("audit_list", hospital_a))
    seen = list(response.context["page"])
    assert seen and {e.hospital_id for e in seen} == {hospital_a.pk}
    assert "beta-only" not in response.content.decode()
    assert "doc@example.org" in response.content.decode()


@pytest.mark.parametrize("params,expected", [
    ({"action": "update"}, [("update", "patient")]),
    ({"object_type": "labtest"}, [("view", "labtest")]),
    ({"actor": "DOC@example.org"}, [("update", "patient"), ("create", "patient")]),
    ({"actor": "doc@example.org", "action": "create"}, [("create", "patient")]),
])
def test_audit_list_filters(params, expected, hospital_a, admin, events, login):
    response = login(admin).get(hurl("audit_list", hospital_a), params)
    assert [(e.action, e.object_type) for e in response.context["page"]] == expected


def test_audit_date_filter(hospital_a, admin, events, login):
    client = login(admin)
    today = datetime.date.today()
    tomorrow = (today + datetime.timedelta(days=1)).isoformat()
    assert len(client.get(hurl("audit_list", hospital_a), {"date_from": tomorrow}).context["page"]) == 0
    assert len(client.get(hurl("audit_list", hospital_a), {"date_to": tomorrow}).context["page"]) >= 3
    backwards = client.get(hurl("audit_list", hospital_a), {"date_from": tomorrow, "date_to": today.isoformat()})
    assert "start date is after the end date" in backwards.content.decode()
    assert len(backwards.context["page"]) == 0


def test_audit_list_paginates(hospital_a, admin, login):
    for i in range(60):
        audit_record(action="view", object_type="patient", object_id=i, hospital=hospital_a, actor=admin)
    client = login(admin)
    first = client.get(hurl("audit_list", hospital_a), {"action": "view"})
    assert len(first.context["page"]) == 50
    assert "action=view&amp;page=2" in first.content.decode()
    second = client.get(hurl("audit_list", hospital_a), {"action": "view", "page": 2})
    assert len(second.context["page"]) == 10


def test_csv_export_is_filtered_and_audited(hospital_a, admin, events, login):
    response = login(admin).get(hurl("audit_export", hospital_a), {"actor": "doc@example.org"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-alpha-')
    rows = export_rows(response)
    assert [(r["action"], r["object_type"], r["actor_email"]) for r in rows] == [
        ("create", "patient", "doc@example.org"), ("update", "patient", "doc@example.org")]
    assert json.loads(rows[1]["detail"]) == {"status": ["suspected", "infected"]}
    with scopes_disabled():
        export = AuditEvent.objects.filter(hospital=hospital_a, action="export").get()
    assert export.actor == admin
    assert export.detail == {"filters": {"actor": "doc@example.org"}}


def _canonical_hash(row: dict) -> str:
    """Recompute an entry's hash from the CSV alone (the same canonical form as
    hospitals.audit._canonical), as an offline verifier would."""
    payload = {
        "chain": row["chain"], "seq": int(row["seq"]), "at": row["at"],
        "hospital": int(row["hospital_id"]) if row["hospital_id"] else None,
        "actor": int(row["actor_id"]) if row["actor_id"] else None,
        "actor_email": row["actor_email"], "action": row["action"], "object_type": row["object_type"],
        "object_id": row["object_id"], "detail": json.loads(row["detail"]), "ip": row["ip"] or None,
        "user_agent": row["user_agent"], "prev_hash": row["prev_hash"],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def test_unfiltered_export_verifies_offline(hospital_a, admin, events, login):
    client = login(admin)
    client.get(reverse("patients:list", kwargs={"hospital_slug": hospital_a.slug}))  # an entry with ip and agent
    rows = export_rows(client.get(hurl("audit_export", hospital_a)))
    assert [int(r["seq"]) for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["prev_hash"] == GENESIS
    for previous, row in zip([None, *rows], rows):
        assert row["hash"] == _canonical_hash(row)
        if previous is not None:
            assert row["prev_hash"] == previous["hash"]
    assert any(r["ip"] for r in rows)
