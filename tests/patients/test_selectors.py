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


def reference_timeline(patient, *, with_related: bool) -> list[tuple]:
    """The timeline read through the ORM's related managers and prefetches."""
    from screening.models import Review, Screening

    related = ["lab_test"] if with_related else []
    rows = [("status_change", c.changed_at, c) for c in patient.status_changes.select_related("changed_by", *related)]
    rows += [("lab_test", t.recorded_at, t) for t in patient.lab_tests.all()]
    screenings = list(Screening.objects.filter(patient=patient).prefetch_related("results"))
    rows += [("screening", s.created_at, s) for s in screenings]
    rows += [("ai_result", r.created_at, r) for s in screenings for r in s.results.all()]
    rows += [("review", r.reviewed_at, r) for r in Review.objects.filter(patient=patient)]
    rows.sort(key=lambda e: (e[1], selectors.TIMELINE_KINDS.index(e[0]), e[2].pk), reverse=True)
    return rows


@pytest.mark.parametrize("with_related", [False, True])
def test_the_timeline_holds_every_record_of_the_patient_with_what_it_shows(
        hospital_a, hospital_b, django_assert_num_queries, with_related):
    from screening.api.serializers import newest_results
    from screening.services import review_create

    from ..factories import hospital_world

    world = hospital_world(hospital_a, tag="ALPHA")
    hospital_world(hospital_b, tag="BETA")  # another hospital's records of the same kinds
    with scope(hospital=hospital_a):
        read_twice = screening_for(world.patient, actor=world.clinician, seed=1)
        first = airesult_for(read_twice, covid=0.3, model_version="1.0.0")
        second = airesult_for(read_twice, covid=0.9, model_version="2.0.0")
        review_create(result=second, decision="confirm", clinical_label="covid", radiological_signs=True,
                      reason="seen", actor=world.clinician)
        screening_for(world.patient, actor=world.clinician, seed=2)  # queued: no result yet
        other = PatientFactory(hospital=hospital_a, mrn="OTHER-1")
        airesult_for(screening_for(other, actor=world.clinician, seed=3))

        expected = reference_timeline(world.patient, with_related=with_related)
        with django_assert_num_queries(5):
            timeline = selectors.patient_timeline(patient=world.patient, with_related=with_related)
        assert [(kind, at, type(row), row.pk) for kind, at, row in timeline] == [
            (kind, at, type(row), row.pk) for kind, at, row in expected]
        assert [kind for kind, _, _ in timeline].count("ai_result") == 2
        relations = {"status_change": ["changed_by", *(["lab_test"] if with_related else [])],
                     "lab_test": ["recorded_by"], "screening": ["scan"] if with_related else [],
                     "ai_result": ["screening"], "review": ["reviewer"]}
        with django_assert_num_queries(0):  # what the API and the page show of each row came with it
            for kind, _, row in timeline:
                assert row.patient == world.patient
                for name in relations[kind]:
                    related = getattr(row, name)
                    assert (related.pk if related else None) == getattr(row, f"{name}_id")
                if kind == "screening":
                    assert [r.pk for r in newest_results(row)] == (
                        [second.pk, first.pk] if row.pk == read_twice.pk else [])
                    if with_related:
                        assert row.scan.uploaded_by == world.clinician
