"""`patient_list_count` counts exactly the patients `patient_list` gives, for searches
that match by MRN, by name, by both at once, and with the status and review filters."""

import datetime

import pytest
from django_scopes import scope

from patients import selectors
from patients.models import Patient
from tests.factories import HospitalFactory, PatientFactory, airesult_for, screening_for


@pytest.fixture
def hospital(db, make_member):
    from hospitals.models import Role

    hospital = HospitalFactory()
    other = HospitalFactory()
    clinician = make_member(hospital, Role.CLINICIAN)
    with scope(hospital=hospital):
        for i, (given, family, status) in enumerate([
            ("Ann", "Khan", "infected"), ("Khan", "Lee", "suspected"), ("Bo", "Okafor", "infected"),
            ("Cy", "Smith", "negative"), ("Di", "Smithson", "infected"), ("Ann", "Smith", "carrier"),
        ]):
            PatientFactory(hospital=hospital, mrn=f"KH-{i}", given_name=given, family_name=family, status=status)
        # The MRN and the name both match "Smi": counted once.
        PatientFactory(hospital=hospital, mrn="SMI-1", given_name="Eve", family_name="Smith")
        waiting = Patient.objects.get(mrn="KH-0")
        airesult_for(screening_for(waiting, actor=clinician))  # read by the model, not reviewed
    with scope(hospital=other):
        PatientFactory(hospital=other, mrn="KH-0", given_name="Ann", family_name="Khan",
                       birth_date=datetime.date(1990, 1, 1))
    return hospital


@pytest.mark.parametrize("query", ["", "khan", "KH-", "kh-3", "smi", "Ann Smith", "ann", "  lee ", "nobody"])
@pytest.mark.parametrize("status", ["", "infected", "suspected"])
@pytest.mark.parametrize("awaiting_review", [False, True])
def test_count_is_the_lists_length(hospital, query, status, awaiting_review):
    filters = {"hospital": hospital, "query": query, "status": status, "awaiting_review": awaiting_review}
    with scope(hospital=hospital):
        listed = list(selectors.patient_list(**filters))
        assert selectors.patient_list_count(**filters) == len(listed)
    if (query, status, awaiting_review) == ("smi", "", False):
        assert len(listed) == 4
    if (query, status, awaiting_review) == ("khan", "", True):
        assert [p.mrn for p in listed] == ["KH-0"]


def test_the_list_orders_by_name_then_mrn(hospital):
    """The order of the indexes behind the list: patients of the same name by MRN, not by
    when they were registered."""
    with scope(hospital=hospital):
        PatientFactory(hospital=hospital, mrn="ZZ-9", given_name="Ann", family_name="Smith")
        PatientFactory(hospital=hospital, mrn="AA-1", given_name="Ann", family_name="Smith")
        for filters in ({}, {"status": "carrier"}, {"query": "smith"}):
            listed = [(p.family_name, p.given_name, p.mrn) for p in selectors.patient_list(hospital=hospital, **filters)]
            assert listed == sorted(listed)
        assert [p.mrn for p in selectors.patient_list(hospital=hospital) if p.given_name == "Ann"
                and p.family_name == "Smith"] == ["AA-1", "KH-5", "ZZ-9"]
