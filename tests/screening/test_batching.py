"""Micro-batching in the inference worker, against a real broker and a real Celery worker
process (tests/reliability/stack.py): screenings queued together are predicted in one
call, across hospitals, with no loss and no duplicate; out of device memory, the batch is
halved, and at one image the task retries with backoff while the worker keeps serving
(SCREENING_TEST_OOM_TIMES injects the errors).

The uploads are made in one transaction: their rows and messages appear together when it
commits, so the worker finds them all queued when the first message arrives."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import transaction
from django_scopes import scopes_disabled

from hospitals.models import AuditEvent, Role
from screening.models import AiResult, ScreeningStatus
from tests.factories import HospitalFactory, MembershipFactory, PatientFactory
from tests.reliability.stack import Worker, film_png, point_publisher, tally, upload, wait_final, worker_site

BATCH_MAX = 4


@pytest.fixture
def start_worker(django_db_blocker, screening_model_dir, tmp_path, settings, flushable_audit):
    """start_worker(**env) -> a running worker with these settings; this process publishes
    to its broker and shares its MEDIA_ROOT."""
    started = []

    def start(**env):
        site = worker_site(tmp_path, django_db_blocker)
        worker = Worker(tmp=tmp_path, broker=site.broker, db_url=site.db_url, model_dir=screening_model_dir,
                        media=site.media, SCREENING_BATCH_MAX=BATCH_MAX, SCREENING_BATCH_WAIT_MS=50, **env)
        started.append(worker)
        worker.start()
        settings.MEDIA_ROOT = site.media
        point_publisher(site.broker.url, site.broker.dir)
        return worker

    yield start
    point_publisher("memory://")
    for worker in started:
        worker.stop()
        if worker.broker.own:
            worker.broker.own.stop()


@pytest.fixture
def two_hospitals(world):
    with scopes_disabled():
        other = HospitalFactory(name="Batch North", slug="batch-north")
        MembershipFactory(user=world.uploader, hospital=other, role=Role.CLINICIAN)
        patient = PatientFactory(hospital=other, mrn="BATCH-0001")
    return [world, SimpleNamespace(hospital=other, uploader=world.uploader, patient=patient)]


def upload_together(worlds, count: int) -> list[int]:
    with transaction.atomic():
        return [upload(worlds[i % len(worlds)], film_png(i + 1), f"batch-{i}.png").pk for i in range(count)]


def results(ids) -> list[AiResult]:
    with scopes_disabled():
        return list(AiResult.objects.filter(screening_id__in=ids).select_related("screening"))


def test_queued_screenings_are_predicted_in_batches(start_worker, two_hospitals, figure):
    worker = start_worker()
    ids = upload_together(two_hospitals, 7)
    rows = wait_final(ids, worker)
    counts = tally(ids)
    found = results(ids)
    sizes = sorted(r.timings_ms["batch"] for r in found)
    figure("batching", f"7 screenings queued together (2 hospitals), SCREENING_BATCH_MAX={BATCH_MAX}: "
                       f"batch sizes {sizes}; lost {counts.lost}; duplicates {counts.duplicates}")
    assert counts.lost == 0 and counts.duplicates == 0 and len(found) == len(ids)
    assert all(s.attempts == 1 for s in rows.values())
    assert max(sizes) == BATCH_MAX and all(1 <= size <= BATCH_MAX for size in sizes)
    # Each result belongs to its screening's hospital and patient, and is audited there.
    assert all((r.hospital_id, r.patient_id) == (r.screening.hospital_id, r.screening.patient_id) for r in found)
    assert {r.hospital_id for r in found} == {w.hospital.pk for w in two_hospitals}
    with scopes_disabled():
        audited = {(e.hospital_id, int(e.object_id)) for e in AuditEvent.objects.filter(object_type="airesult")}
    assert audited == {(r.hospital_id, r.pk) for r in found}
    assert f"batch of {BATCH_MAX}" in worker.tail(20000)


def test_out_of_memory_halves_the_batch_then_retries_and_the_worker_keeps_serving(start_worker, two_hospitals,
                                                                                  figure):
    """Three injected errors on a batch of four: 4 -> 2 -> 1 -> the task retries with
    backoff and its batch-mates go back to the queue, each then screened alone."""
    worker = start_worker(SCREENING_TEST_OOM_TIMES=3, SCREENING_MAX_ATTEMPTS=5)
    pool = worker.pool()
    ids = upload_together(two_hospitals, BATCH_MAX)
    rows = wait_final(ids, worker)
    counts = tally(ids)
    log = worker.tail(40000)
    figure("oom", f"3 injected out-of-memory errors on a batch of {BATCH_MAX}: lost {counts.lost}, duplicates "
                  f"{counts.duplicates}, attempts {sorted(s.attempts for s in rows.values())}, worker restarted: "
                  f"{'no' if worker.pool() == pool else 'yes'}")
    assert counts.lost == 0 and counts.duplicates == 0 and counts.missing_results == 0
    assert all(s.status == ScreeningStatus.DONE for s in rows.values())
    assert "trying batches of 2" in log and "trying batches of 1" in log
    assert "injected out-of-memory error 3" in log and "Retry in" in log
    assert sorted(s.attempts for s in rows.values()) == [2] * BATCH_MAX  # each one tried again, alone
    assert all(r.timings_ms["batch"] == 1 for r in results(ids))
    assert worker.pool() == pool  # the same pool process served throughout
