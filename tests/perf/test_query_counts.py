"""No N+1 queries in the partner API and the FHIR facade: each list, each history and each
search costs the same number of queries with 2 rows as with 50 (rows, history entries,
page size), under one fixed bound per endpoint."""

import datetime
import itertools

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from patients.models import LabTest, Patient, StatusChange
from screening.models import AiResult, Review, Scan, Screening
from tests.api.conftest import _throttle_cache, make_partner  # noqa: F401  (fixtures)
from tests.factories import HospitalFactory, UserFactory

SMALL, LARGE = 2, 50
_serial = itertools.count()


def add_records(hospital, user, patient, n: int, *, dicom: bool = False) -> None:
    """`n` of everything for `patient`: patients of the hospital, status changes, lab tests,
    scans with a screening, an AI result and a review each (rows written directly: the
    query counts of the reads are measured, not the services)."""
    now = timezone.now()
    today = datetime.date.today()
    with scopes_disabled():
        Patient.objects.bulk_create(
            Patient(hospital=hospital, mrn=f"Q{next(_serial)}", given_name="Ann", family_name="Lee",
                    birth_date=datetime.date(1980, 1, 1)) for _ in range(n))
        labs = LabTest.objects.bulk_create(
            LabTest(hospital=hospital, patient=patient, test_type="rt_pcr", result="positive", sample_date=today,
                    recorded_by=user) for _ in range(n))
        StatusChange.objects.bulk_create(
            StatusChange(hospital=hospital, patient=patient, from_status="suspected",
                         to_status="infected" if i % 2 else "carrier", effective_date=today, reason="r",
                         lab_test=lab, changed_by=user) for i, lab in enumerate(labs))
        scans = Scan.objects.bulk_create(
            Scan(hospital=hospital, patient=patient, uploaded_by=user, file="scans/x.png", preview="derived/x.png",
                 original_filename="x.png", size_bytes=1, sha256=f"{next(_serial):064d}",
                 format="dcm" if dicom else "png", width=1, height=1, bit_depth=8, series_uid="1.2.3")
            for _ in range(n))
        screenings = Screening.objects.bulk_create(
            Screening(hospital=hospital, patient=patient, scan=scan, status="done", enqueued_at=now, started_at=now,
                      finished_at=now) for scan in scans)
        results = AiResult.objects.bulk_create(
            AiResult(hospital=hospital, patient=patient, screening=s, label="covid",
                     probabilities={"covid": 0.9, "pneumonia": 0.05, "normal": 0.05}, covid_probability=0.9,
                     covid_positive=True, decision="covid_suspected", threshold=0.5, model_name="cxrnet",
                     model_version="1", model_sha256=f"{next(_serial):064x}", preprocessing_version="pp",
                     input_sha256="cd" * 32,
                     timings_ms={}, worker="w") for s in screenings)
        Review.objects.bulk_create(
            Review(hospital=hospital, patient=patient, screening=r.screening, result=r, decision="confirm",
                   clinical_label="covid", radiological_signs=True, reason="r", reviewer=user) for r in results)


@pytest.fixture
def world(db, make_partner):  # noqa: F811
    hospital = HospitalFactory(slug="perf")
    user = UserFactory()
    with scopes_disabled():
        patient = Patient.objects.create(hospital=hospital, mrn="P-1", given_name="Eve", family_name="Ng",
                                         birth_date=datetime.date(1970, 1, 1))
    _, api = make_partner(hospital, scopes=["read"])
    return hospital, user, patient, api


# (path below the hospital, the bound). Lists ask for page_size/_count LARGE, so a larger
# table fills a larger page. Bounds: the token look-up (its client, hospital and service
# account joined), the query, prefetches, the audit entry (a savepoint around the chain
# head lock, the insert and the head update) and the FHIR total.
API = [
    ("api/v1/hospitals/perf/patients/?page_size=50", 7),
    ("api/v1/hospitals/perf/patients/?page_size=50&status=suspected&ordering=-updated_at", 7),
    ("api/v1/hospitals/perf/patients/{patient}/history/", 12),
    ("api/v1/hospitals/perf/status-changes/?page_size=50", 7),
    ("api/v1/hospitals/perf/lab-tests/?page_size=50", 7),
    ("api/v1/hospitals/perf/screenings/?page_size=50", 9),
    ("api/v1/hospitals/perf/screenings/?page_size=50&label=covid&updated_since=2000-01-01T00:00:00Z", 9),
    ("api/v1/hospitals/perf/ai-results/?page_size=50", 7),
    ("api/v1/hospitals/perf/reviews/?page_size=50", 7),
    ("fhir/perf/Patient?_count=50", 8),
    ("fhir/perf/Observation?_count=50", 8),
    ("fhir/perf/DiagnosticReport?_count=50", 10),
    ("fhir/perf/Media?_count=50", 8),
    ("fhir/perf/ImagingStudy?_count=50", 8),
    ("fhir/perf/Condition?_count=50", 8),
    ("fhir/perf/Device?_count=50", 4),  # the first result of each model, then those rows (not audited)
]


# The portal's patient page: the session, its user and memberships, the patient, the audit
# entry (three statements), status changes, lab tests, screenings with their scans and uploaders,
# their results and their reviews.
PORTAL_PATIENT_QUERIES = 12


@pytest.mark.parametrize("path,bound", API, ids=[p.split("/perf/")[1] for p, _ in API])
def test_query_count_does_not_grow_with_rows(world, path, bound, django_assert_max_num_queries):
    hospital, user, patient, api = world
    url = "/" + path.format(patient=patient.pk)
    counts, sizes = [], []
    for n in (SMALL, LARGE - SMALL):
        add_records(hospital, user, patient, n, dicom="ImagingStudy" in path)
        with django_assert_max_num_queries(bound) as captured:
            response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        sizes.append(len(body) if isinstance(body, list) else len(body.get("results", body.get("entry", []))))
        counts.append(len(captured))
    assert sizes[1] > sizes[0] >= 1, sizes  # the second answer really carries more rows
    assert counts[0] == counts[1], f"{counts[0]} queries for {sizes[0]} rows, {counts[1]} for {sizes[1]}"


@pytest.fixture
def portal(world, client):
    """The world's user signed in to the portal as a clinician of its hospital."""
    from hospitals.models import Membership, Role

    hospital, user, _, _ = world
    with scopes_disabled():
        Membership.objects.create(user=user, hospital=hospital, role=Role.CLINICIAN)
    client.force_login(user)
    return client


def test_a_patients_portal_page_reads_each_kind_of_record_once(world, portal, django_assert_max_num_queries):
    """The page shows the lab tests and screenings beside the timeline, which reuses them:
    the same queries for 2 records of each kind as for 50."""
    hospital, user, patient, _ = world
    url = f"/h/perf/patients/{patient.pk}/"
    portal.get(url)  # the first request after sign-in also records the session
    counts = []
    for n in (SMALL, LARGE - SMALL):
        add_records(hospital, user, patient, n)
        with django_assert_max_num_queries(PORTAL_PATIENT_QUERIES) as captured:
            response = portal.get(url)
        assert response.status_code == 200
        assert response.content.decode().count('class="entry-review"') == (SMALL if n == SMALL else LARGE)
        counts.append(len(captured))
    assert counts[0] == counts[1]


# The portal's screening lists: the session, its user and memberships, the count and the page
# (with patients and scans), the results (and on the worklist the reviews), the audit entry
# (three statements); the review worklist also shows the first screening (its audit entry and
# its uploader).
@pytest.mark.parametrize("path,bound,reviewed,row", [
    ("screenings/", 10, True, 'href="/h/perf/screenings/'),
    ("screenings/review/", 13, False, "data-screening="),
], ids=["worklist", "review worklist"])
def test_the_portals_screening_lists_read_a_page_in_the_same_queries_however_full(
        world, portal, path, bound, reviewed, row, django_assert_max_num_queries):
    hospital, user, patient, _ = world
    url = f"/h/perf/{path}"
    portal.get(url)  # the first request after sign-in also records the session
    counts, rows = [], []
    for n in (SMALL, LARGE - SMALL):
        add_records(hospital, user, patient, n)
        if not reviewed:  # waiting for a review
            with scopes_disabled():
                Review.objects.filter(hospital=hospital).delete()
                Screening.objects.filter(hospital=hospital).update(review_priority=0.5)
        with django_assert_max_num_queries(bound) as captured:
            response = portal.get(url)
        assert response.status_code == 200
        body = response.content.decode()
        rows.append(body.count(row))
        assert body.count("COVID-19") > rows[-1]  # each row shows its result's label
        counts.append(len(captured))
    assert rows[1] > rows[0] >= SMALL, rows
    assert counts[0] == counts[1], f"{counts[0]} queries for {rows[0]} rows, {counts[1]} for {rows[1]}"
