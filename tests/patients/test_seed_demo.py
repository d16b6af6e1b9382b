"""seed_demo: demo hospitals, accounts and patients; idempotent and deterministic."""

import io
import json

import pytest
from allauth.account.models import EmailAddress
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_scopes import scopes_disabled

from hospitals.models import AuditEvent, Hospital, Membership, Role, User
from patients.models import LabTest, Patient, StatusChange

PASSWORD = "seed-test-password-93"


def seed(**options) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def counts():
    with scopes_disabled():
        return {model.__name__: model.objects.count()
                for model in (User, Hospital, Membership, Patient, StatusChange, LabTest, AuditEvent, EmailAddress)}


def snapshot():
    with scopes_disabled():
        return sorted(Patient.objects.values_list("hospital__slug", "mrn", "given_name", "family_name", "birth_date",
                                                  "status"))


@pytest.mark.django_db
def test_seed_creates_demo_and_json_lists_logins():
    logins = json.loads(seed(password=PASSWORD, json=True))
    assert {(row["role"], row["hospital"]) for row in logins} >= {
        ("superuser", ""), ("clinician", "demo-general"), ("hospital_admin", "demo-north")}
    assert all(set(row) == {"email", "password", "role", "hospital"} for row in logins)
    assert all(row["password"] == PASSWORD for row in logins)
    assert len(logins) == 11
    assert "clinician@demo-general.local" in {row["email"] for row in logins}

    assert set(Hospital.objects.values_list("slug", "name")) == {
        ("demo-general", "Demo General Hospital"), ("demo-north", "Demo North Clinic")}
    admin = User.objects.get(email="admin@demo.local")
    assert admin.is_superuser
    with scopes_disabled():
        for hospital in Hospital.objects.all():
            roles = set(Membership.objects.filter(hospital=hospital).values_list("role", flat=True))
            assert roles == set(Role.values)
            patients = Patient.objects.filter(hospital=hospital)
            assert 12 <= patients.count() <= 20
            # Every patient has a full timeline: one entry per status it went through.
            for patient in patients:
                assert StatusChange.objects.filter(patient=patient).count() >= 1
            assert patients.values("status").distinct().count() >= 5
        assert LabTest.objects.count() > 10
    for row in logins:
        assert EmailAddress.objects.get(email=row["email"]).verified
        assert User.objects.get(email=row["email"]).check_password(PASSWORD)


@pytest.mark.django_db
def test_seed_twice_changes_nothing():
    seed(password=PASSWORD)
    first_counts, first_data = counts(), snapshot()
    seed(password=PASSWORD)
    assert counts() == first_counts
    assert snapshot() == first_data


@pytest.mark.django_db
def test_seed_is_deterministic():
    seed(password=PASSWORD)
    first = snapshot()
    with scopes_disabled():
        Patient.objects.filter(mrn__endswith="-0001").delete()  # plan without lab tests
    seed(password=PASSWORD)  # refills the gap with the very same patients
    assert snapshot() == first


@pytest.mark.django_db
def test_seed_default_password_prints_table_and_rerun_resets_password():
    out = seed()
    assert "clinician@demo-general.local" in out
    assert "hospital_admin" in out and "demo-north" in out
    default = json.loads(seed(json=True))[0]["password"]
    assert len(default) >= 12 and default in out
    seed(password=PASSWORD)
    assert User.objects.get(email="viewer@demo-north.local").check_password(PASSWORD)
    assert not User.objects.get(email="viewer@demo-north.local").check_password(default)


@pytest.mark.django_db
def test_seed_refuses_weak_password():
    with pytest.raises(CommandError):
        seed(password="short")
    assert not Hospital.objects.exists()


@pytest.mark.django_db
def test_demo_clinician_can_sign_in(client):
    seed(password=PASSWORD)
    response = client.post(reverse("account_login"),
                           {"login": "clinician@demo-general.local", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("hospitals:dashboard", kwargs={"hospital_slug": "demo-general"})
