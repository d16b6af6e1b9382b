"""Fail-closed tenancy: every hospital-owned model is scoped, an unscoped query raises,
and the non-web entry points (ScopedCommand, HospitalTask) open exactly one hospital."""

import datetime

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Prefetch, Q, prefetch_related_objects
from django.db.models.sql.compiler import SQLCompiler
from django_scopes import ScopeError, scope, scopes_disabled

from config.celery_app import app as celery_app
from hospitals.managers import ScopedPrefetch, ScopedPreparedSelect, _ScopedManager
from hospitals.models import AuditEvent, Hospital, Membership
from hospitals.tenancy import HospitalTask, ScopedCommand, scoped_hospital
from patients.models import LabTest, Patient, StatusChange

from ..factories import LabTestFactory, PatientFactory, hospital_world


def is_historical(model) -> bool:
    """simple-history's Historical* tables: reached only through a scoped object's history."""
    return model.__name__.startswith("Historical") and hasattr(model, "history_id")


HOSPITAL_OWNED = sorted(
    (
        model
        for model in apps.get_models()
        if not is_historical(model)
        and any(f.name == "hospital" and f.many_to_one and f.related_model is Hospital
                for f in model._meta.get_fields())
    ),
    key=lambda m: m._meta.label,
)


# What `hospital_world` writes rows for; other models are checked for the filter only
# (their managers' fail-closed behaviour is checked above for every model).
POPULATED = {Membership, AuditEvent, Patient, LabTest, StatusChange}


def test_the_list_of_hospital_owned_models_is_complete():
    labels = {m._meta.label for m in HOSPITAL_OWNED}
    assert {"hospitals.Membership", "hospitals.AuditEvent", "patients.Patient", "patients.LabTest",
            "patients.StatusChange"} <= labels


@pytest.mark.parametrize("model", HOSPITAL_OWNED, ids=lambda m: m._meta.label)
def test_default_manager_is_scoped_and_refuses_unscoped_queries(db, model):
    manager = model._default_manager
    assert hasattr(manager, "with_scopes_disabled"), f"{model._meta.label} needs ScopedManager(hospital=...)"
    assert manager.name == "objects"  # the default manager is the scoped one
    with pytest.raises(ScopeError):
        manager.count()
    with pytest.raises(ScopeError):
        list(manager.filter(pk=1))
    with pytest.raises(ScopeError):
        manager.all().exists()


@pytest.mark.parametrize("model", HOSPITAL_OWNED, ids=lambda m: m._meta.label)
def test_scope_shows_only_that_hospitals_rows(hospital_a, hospital_b, model):
    hospital_world(hospital_a, tag="ALPHA")
    hospital_world(hospital_b, tag="BETA")
    with scopes_disabled():
        own = set(model._default_manager.filter(hospital=hospital_a).values_list("pk", flat=True))
        total = model._default_manager.count()
    with scope(hospital=hospital_a):
        seen = set(model._default_manager.values_list("pk", flat=True))
        assert not model._default_manager.filter(hospital=hospital_b).exists()
    assert seen == own
    if model in POPULATED:  # the other hospital's rows exist; the scope hid them
        assert total > len(own) > 0
    with scope(hospital=[hospital_b.pk]):
        assert not (set(model._default_manager.values_list("pk", flat=True)) & own)


def test_related_managers_are_scoped_too(hospital_a, hospital_b):
    a = hospital_world(hospital_a, tag="ALPHA")
    with scope(hospital=hospital_b):
        # Following a relation from another hospital's object does not reach its rows.
        assert a.patient.lab_tests.count() == 0
        assert hospital_a.patients.count() == 0
    with pytest.raises(ScopeError):
        a.patient.lab_tests.count()



@pytest.mark.parametrize("model", HOSPITAL_OWNED, ids=lambda m: m._meta.label)
def test_a_scoped_query_is_django_scopes_own_however_often_the_hospitals_alternate(hospital_a, hospital_b, model):
    """HospitalScopedManager builds each hospital's filter once and hands out clones."""
    hospital_world(hospital_a, tag="ALPHA")
    hospital_world(hospital_b, tag="BETA")
    manager = model._default_manager
    with scopes_disabled():
        own = {h: set(manager.filter(hospital=h).values_list("pk", flat=True)) for h in (hospital_a, hospital_b)}
    for hospital in (hospital_a, hospital_b, hospital_a, hospital_b):
        with scope(hospital=hospital):
            queryset = manager.all()
            assert str(queryset.query) == str(_ScopedManager.get_queryset(manager).query)
            queryset.query.add_q(Q(pk=-1))  # changing one queryset's query in place ...
            assert not queryset.exists()
            assert set(manager.values_list("pk", flat=True)) == own[hospital]  # ... leaves the next alone
        assert set(manager.with_scope(hospital=hospital).values_list("pk", flat=True)) == own[hospital]
    if model in POPULATED:
        assert own[hospital_a] and own[hospital_b]
    with scope(hospital=hospital_a):
        assert set(manager.with_scopes_disabled().values_list("pk", flat=True)) == own[hospital_a] | own[hospital_b]
        with scope(hospital=[hospital_b.pk]):
            assert set(manager.values_list("pk", flat=True)) == own[hospital_b]
        with scopes_disabled():
            assert set(manager.values_list("pk", flat=True)) == own[hospital_a] | own[hospital_b]

def test_a_scoped_prepared_select_binds_the_hospital_of_the_scope_it_runs_in(hospital_a, hospital_b, monkeypatch):
    a = hospital_world(hospital_a, tag="ALPHA")
    b = hospital_world(hospital_b, tag="BETA")
    tests_of = ScopedPreparedSelect(lambda patient_id: LabTest.objects.filter(patient_id=patient_id))
    with scope(hospital=hospital_a):
        assert tests_of.all(a.patient.pk) == [a.lab_test]  # compiled here, with A's id bound
        assert tests_of.all(b.patient.pk) == []  # B's patient, asked for in A's scope
    compiled = []
    as_sql = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **kw: compiled.append(1) or as_sql(self, *a, **kw))
    with scope(hospital=hospital_b):  # the same statement, B's id bound
        assert tests_of.all(b.patient.pk) == [b.lab_test]
        assert tests_of.all(a.patient.pk) == []
    assert compiled == []
    # Any other scope: the ORM's queryset, as django-scopes builds it.
    with pytest.raises(ScopeError):
        tests_of.all(a.patient.pk)
    with scope(hospital=[hospital_b.pk]):
        assert tests_of.all(a.patient.pk) == []
    with scopes_disabled():
        assert tests_of.all(a.patient.pk) == [a.lab_test]
    assert compiled


def test_a_scoped_prepared_select_of_rows_no_scope_filters_is_refused(hospital_a):
    with scope(hospital=hospital_a), pytest.raises(ValueError, match="parameters"):
        ScopedPreparedSelect(lambda slug: Hospital.objects.filter(slug=slug)).all("alpha")


def test_a_scoped_prefetch_gives_each_instance_the_rows_djangos_prefetch_gives(hospital_a, hospital_b, monkeypatch):
    patients = PatientFactory.create_batch(9, hospital=hospital_a)
    for i, patient in enumerate(patients):  # 0 to 4 tests each, on one day: the order's tie-break counts
        LabTestFactory.create_batch(i % 5, patient=patient, sample_date=datetime.date(2026, 3, 1 + i % 2))
    other = hospital_world(hospital_b, tag="BETA")
    prefetch = ScopedPrefetch(LabTest, "patient", ("-sample_date", "-id"), "tests")

    def read(page):
        return [(p.pk, [t.pk for t in p.tests]) for p in page]

    with scope(hospital=hospital_a):
        # Pages of 1, 3, 4, 5 and 9 (statements of 1, 4, 4, 8 and 16 ids) and a repeated instance.
        for page in ([patients[4]], patients[:3], patients[1:5], patients[2:7], patients, [patients[3]] * 2):
            expected = [Patient.objects.get(pk=p.pk) for p in page]
            prefetch_related_objects(expected, Prefetch("lab_tests", LabTest.objects.order_by("-sample_date", "-id"),
                                                        to_attr="tests"))
            prefetch(page)
            assert read(page) == read(expected)
            assert all(t.patient is p for p in page for t in p.tests)  # read without a query
        assert sum(len(p.tests) for p in patients) == 16
        prefetch([other.patient, patients[1]])  # another hospital's patient gets nothing here
        assert (other.patient.tests, len(patients[1].tests)) == ([], 1)
        compiled = []
        as_sql = SQLCompiler.as_sql
        monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **kw: compiled.append(1) or as_sql(self, *a, **kw))
        prefetch(patients[:6])  # 8 ids: compiled above
        assert compiled == []
    # Any other scope: the ORM's queryset, as django-scopes builds it.
    with pytest.raises(ScopeError):
        prefetch(patients[:2])
    with scopes_disabled():
        prefetch([other.patient, patients[1]])
        assert ([t.pk for t in other.patient.tests], len(patients[1].tests)) == ([other.lab_test.pk], 1)
    prefetch([])  # nothing to read, in any scope


# --- ScopedCommand -------------------------------------------------------------------------------
class ListPatients(ScopedCommand):
    """A tiny command body: what can it see?"""

    def handle_scoped(self, hospital, *args, **options):
        self.seen = {
            "hospital": hospital,
            "patients": list(Patient.objects.values_list("mrn", flat=True)),
            "lab_tests": LabTest.objects.count(),
            "memberships": set(Membership.objects.values_list("hospital_id", flat=True)),
            "foreign": Patient.objects.filter(hospital__slug="beta").count(),
        }


def test_scoped_command_opens_only_the_given_hospital(hospital_a, hospital_b):
    a = hospital_world(hospital_a, tag="ALPHA")
    hospital_world(hospital_b, tag="BETA")
    command = ListPatients()
    call_command(command, hospital="alpha")
    assert command.seen == {"hospital": hospital_a, "patients": [a.patient.mrn], "lab_tests": 1,
                            "memberships": {hospital_a.pk}, "foreign": 0}
    with pytest.raises(ScopeError):  # closed again afterwards
        Patient.objects.count()


def test_scoped_command_requires_a_known_hospital(hospital_a):
    with pytest.raises(CommandError, match="No hospital with slug 'nowhere'"):
        call_command(ListPatients(), hospital="nowhere")
    with pytest.raises(CommandError):
        call_command(ListPatients())


# --- HospitalTask --------------------------------------------------------------------------------
@celery_app.task(base=HospitalTask, name="tests.tenancy.count_patients")
def count_patients(*, hospital_id, label):
    hospital = scoped_hospital()
    assert hospital.pk == hospital_id
    return {
        "hospital": hospital.pk,
        "label": label,
        "patients": list(Patient.objects.values_list("hospital_id", flat=True)),
        "foreign": Patient.objects.exclude(hospital=hospital).count(),
    }


def test_hospital_task_runs_inside_the_given_hospitals_scope(hospital_a, hospital_b):
    hospital_world(hospital_a, tag="ALPHA")
    b = hospital_world(hospital_b, tag="BETA")
    result = count_patients.apply(kwargs={"hospital_id": hospital_b.pk, "label": "x"}).get()
    assert result == {"hospital": hospital_b.pk, "label": "x", "patients": [hospital_b.pk], "foreign": 0}
    assert count_patients(hospital_id=hospital_a.pk, label="y")["patients"] == [hospital_a.pk]
    assert b.patient.hospital_id == hospital_b.pk
    with pytest.raises(ScopeError):
        Patient.objects.count()


def test_hospital_task_without_a_hospital_id_fails(db):
    with pytest.raises(KeyError):
        count_patients(label="x")
