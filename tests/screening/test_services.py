"""Unit tests of the pipeline services and of the task's handling of each outcome, with a
stand-in predictor (the real worker runs in test_pipeline_worker.py)."""

import datetime
import os
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import OperationalError, connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from ml.preprocessing import ImageError
from screening import services, tasks
from screening.models import AiResult, Scan, Screening, ScreeningStatus

from .conftest import chest, png_bytes


@pytest.fixture
def screening(db, world):
    with scope(hospital=world.hospital):
        return services.scan_upload(patient=world.patient, data=png_bytes(), filename="c.png", actor=world.uploader)


def prediction(status="ok", label="normal", reason=None, version="test-1"):
    values = {"status": status, "reason": reason, "reason_code": None, "label": label, "top_class": label,
              "probabilities": {"covid": 0.1, "pneumonia": 0.2, "normal": 0.7}, "covid_probability": 0.1,
              "covid_positive": False, "decision": "covid_not_suspected", "threshold": 0.4, "model_name": "stub",
              "model_version": version, "model_sha256": "0" * 64, "preprocessing_version": "cxr-pre-1.0",
              "timings_ms": {"total": 1.0}, "quality": {}}
    return SimpleNamespace(**values, heatmap=None, to_dict=lambda: dict(values))


class StubPredictor:
    """predict_batch returns `answer` or raises it; counts its calls."""

    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    def predict_batch(self, items):
        self.calls += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return [self.answer]


class PerImage:
    """predict_batch answers each image, or raises the next of `errors` first."""

    def __init__(self, *errors):
        self.errors, self.sizes = list(errors), []

    def predict_batch(self, items):
        self.sizes.append(len(items))
        if self.errors:
            raise self.errors.pop(0)
        return [prediction() for _ in items]


@pytest.fixture
def stub(monkeypatch):
    def install(answer):
        predictor = StubPredictor(answer)
        monkeypatch.setattr(tasks, "predictor", lambda: predictor)
        monkeypatch.setattr("ml.explain.explain",
                            lambda model, decoded, class_name=None, heatmap=None: (None, b"\xff\xd8\xff heat"))
        return predictor

    return install


def run(screening, task_id="task-1"):
    return tasks.screening_run.apply(kwargs={"screening_id": screening.pk, "hospital_id": screening.hospital_id},
                                     task_id=task_id)


def reload(screening):
    with scopes_disabled():
        return Screening.objects.get(pk=screening.pk)


def test_upload_queues_a_screening_and_marks_it_enqueued(screening):
    assert screening.status == ScreeningStatus.QUEUED
    assert reload(screening).enqueued_at is not None


def test_an_upload_spooled_to_a_temporary_file_is_moved_into_storage_not_written_again(db, world):
    data = png_bytes()
    uploaded = TemporaryUploadedFile("film.png", "image/png", len(data), None)
    uploaded.write(data)
    uploaded.flush()
    spooled = os.stat(uploaded.temporary_file_path())
    with scope(hospital=world.hospital):
        scan = services.scan_upload(patient=world.patient, data=data, filename="film.png", actor=world.uploader,
                                    uploaded=uploaded).scan
    stored = os.stat(scan.file.path)
    assert (stored.st_dev, stored.st_ino) == (spooled.st_dev, spooled.st_ino)
    assert not os.path.exists(uploaded.temporary_file_path())
    uploaded.close()  # the file it would remove is gone: no error
    with open(scan.file.path, "rb") as fh:
        assert fh.read() == data
    assert services.scan_file_intact(scan=scan)


def test_claim_is_taken_once_and_a_redelivery_of_the_same_task_reclaims(screening, world):
    with scope(hospital=world.hospital):
        first = services.screening_claim(screening_id=screening.pk, task_id="a")
        assert (first.status, first.attempts, first.task_id) == (ScreeningStatus.RUNNING, 1, "a")
        assert services.screening_claim(screening_id=screening.pk, task_id="b") is None
        again = services.screening_claim(screening_id=screening.pk, task_id="a")  # its worker died: redelivered
        assert (again.status, again.attempts) == (ScreeningStatus.RUNNING, 2)
        services.screening_finish(screening=again, status=ScreeningStatus.DONE)
        assert services.screening_claim(screening_id=screening.pk, task_id="a") is None


def test_a_screening_another_delivery_took_is_refused_without_a_locking_transaction(screening, world):
    """In a surge most messages find their screening in another delivery's micro-batch."""
    with scope(hospital=world.hospital):
        services.screening_claim(screening_id=screening.pk, task_id="a")
        with CaptureQueriesContext(connection) as queries:
            assert services.screening_claim(screening_id=screening.pk, task_id="b") is None
    assert len(queries) == 1 and "FOR UPDATE" not in queries[0]["sql"]


def test_storing_a_result_reads_nothing_the_claim_did_not_load(screening, world):
    """The claim loads the scan, hospital and patient with the screening; the result's
    write reads only the webhook subscriptions (a result stored twice meets the unique key)."""
    with scope(hospital=world.hospital):
        claimed = services.screening_claim(screening_id=screening.pk, task_id="a")
        with CaptureQueriesContext(connection) as queries:
            services.screening_store_result(screening=claimed, prediction=prediction().to_dict(), overlay=None)
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    loaded = ("patients_patient", "screening_scan", "hospitals_hospital", "screening_airesult")
    assert not [sql for sql in reads if any(table in sql for table in loaded)]
    # One savepoint: the result's block inside the test's transaction; the audit entry opens none of its own.
    assert sum(q["sql"].startswith("SAVEPOINT") for q in queries) == 1


def test_claim_past_the_attempt_limit_fails_the_screening(screening, settings, world):
    settings.SCREENING_MAX_ATTEMPTS = 3
    with scope(hospital=world.hospital):
        for _ in range(3):
            assert services.screening_claim(screening_id=screening.pk, task_id="a") is not None
        assert services.screening_claim(screening_id=screening.pk, task_id="a") is None
    final = reload(screening)
    assert (final.status, final.attempts) == (ScreeningStatus.FAILED, 3)
    assert "Gave up after 3 attempts" in final.reason and final.finished_at is not None


def test_store_result_is_idempotent(screening, world):
    with scope(hospital=world.hospital):
        claimed = services.screening_claim(screening_id=screening.pk, task_id="a")
        one = services.screening_store_result(screening=claimed, prediction=prediction().to_dict(),
                                              overlay=b"\xff\xd8\xff heat")
        two = services.screening_store_result(screening=claimed, prediction=prediction().to_dict(),
                                              overlay=b"\xff\xd8\xff heat")
        assert one.pk == two.pk
        assert AiResult.objects.filter(screening=claimed).count() == 1
    assert reload(screening).status == ScreeningStatus.DONE


def test_sweeper_requeues_stuck_screenings_by_age_only(db, world, settings):
    settings.SCREENING_STALE_QUEUED_SECONDS, settings.SCREENING_STALE_RUNNING_SECONDS = 120, 300
    now = timezone.now()
    ago = lambda seconds: now - datetime.timedelta(seconds=seconds)  # noqa: E731
    with scope(hospital=world.hospital):
        made = [services.scan_upload(patient=world.patient, data=png_bytes(), filename=f"{i}.png",
                                     actor=world.uploader) for i in range(5)]
    with scopes_disabled():
        Screening.objects.filter(pk=made[0].pk).update(enqueued_at=ago(121))              # stuck in queued
        Screening.objects.filter(pk=made[1].pk).update(enqueued_at=ago(60))               # fresh in queued
        Screening.objects.filter(pk=made[2].pk).update(status=ScreeningStatus.RUNNING, task_id="dead",
                                                       started_at=ago(301))              # worker died
        Screening.objects.filter(pk=made[3].pk).update(status=ScreeningStatus.RUNNING, task_id="busy",
                                                       started_at=ago(30))               # still working
        Screening.objects.filter(pk=made[4].pk).update(status=ScreeningStatus.DONE, enqueued_at=ago(9999))
    enqueued = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(services, "_enqueue", lambda s: enqueued.append(s.pk))
        with TestCase.captureOnCommitCallbacks(execute=True):
            moved = services.screening_sweep(now=now)
    assert moved == 2 and sorted(enqueued) == sorted([made[0].pk, made[2].pk])
    states = {s.pk: (s.status, s.task_id) for s in map(reload, made)}
    assert states[made[2].pk] == (ScreeningStatus.QUEUED, "")
    assert states[made[3].pk] == (ScreeningStatus.RUNNING, "busy")
    assert states[made[1].pk][0] == ScreeningStatus.QUEUED and states[made[4].pk][0] == ScreeningStatus.DONE


def test_task_stores_the_result_and_heatmap(screening, stub):
    predictor = stub(prediction(label="normal"))
    assert run(screening).result == ScreeningStatus.DONE
    final = reload(screening)
    with scopes_disabled():
        result = AiResult.objects.get(screening=final)
    assert (final.status, final.attempts, predictor.calls) == (ScreeningStatus.DONE, 1, 1)
    assert result.label == "normal" and result.heatmap.name and result.input_sha256 == final.scan.sha256
    assert run(screening, task_id="task-2").result == "not claimable"  # a stray second message changes nothing


def test_checksum_mismatch_fails_without_inference(screening, stub):
    predictor = stub(prediction())
    with scopes_disabled():
        path = Screening.objects.get(pk=screening.pk).scan.file.path
    with open(path, "r+b") as fh:
        fh.seek(60)
        byte = fh.read(1)
        fh.seek(60)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert run(screening).result == ScreeningStatus.FAILED
    final = reload(screening)
    assert final.status == ScreeningStatus.FAILED and "checksum" in final.reason and predictor.calls == 0


def test_worker_screens_the_copy_decoded_at_upload(screening, stub, monkeypatch):
    """The upload stored the decoded image with its checksum; the worker screens exactly
    that, without decoding the original again."""
    from ml.preprocessing import DecodedImage, load_image_bytes

    predictor = stub(prediction())
    with scopes_disabled():
        scan = Screening.objects.get(pk=screening.pk).scan
        expected = load_image_bytes(scan.file.read())
    seen = []
    monkeypatch.setattr(predictor, "predict_batch", lambda items: seen.extend(items) or [prediction()])
    monkeypatch.setattr("ml.preprocessing.load_image_bytes", lambda *a, **k: pytest.fail("decoded again"))
    assert run(screening).result == ScreeningStatus.DONE
    assert len(seen) == 1 and isinstance(seen[0], DecodedImage)
    assert np.array_equal(seen[0].pixels, expected.pixels) and seen[0].original_size == expected.original_size


def test_damaged_decoded_copy_fails_without_inference(screening, stub):
    predictor = stub(prediction())
    with scopes_disabled():
        path = Screening.objects.get(pk=screening.pk).scan.decoded.path
    with open(path, "r+b") as fh:
        fh.seek(-100, 2)
        byte = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    assert run(screening).result == ScreeningStatus.FAILED
    final = reload(screening)
    assert "checksum" in final.reason and predictor.calls == 0


def test_scan_stored_without_a_decoded_copy_is_decoded_from_the_original(screening, stub):
    """Scans uploaded before copies were kept: the worker decodes their original."""
    predictor = stub(prediction(label="pneumonia"))
    with scopes_disabled():
        Scan.objects.filter(screenings=screening).update(decoded="", decoded_sha256="")
    assert run(screening).result == ScreeningStatus.DONE and predictor.calls == 1
    with scopes_disabled():
        assert AiResult.objects.get(screening=screening).label == "pneumonia"


def test_unreadable_image_is_rejected(screening, stub):
    stub(ImageError("The image file is corrupt.", "corrupt"))
    assert run(screening).result == ScreeningStatus.REJECTED
    final = reload(screening)
    assert (final.status, final.reason, final.attempts) == (ScreeningStatus.REJECTED, "The image file is corrupt.", 1)


def test_quality_gate_refusal_is_cannot_assess_with_the_reason(screening, stub):
    stub(prediction(status="cannot_assess", label=None, reason="Not a frontal chest X-ray."))
    assert run(screening).result == ScreeningStatus.CANNOT_ASSESS
    final = reload(screening)
    assert (final.status, final.reason) == (ScreeningStatus.CANNOT_ASSESS, "Not a frontal chest X-ray.")
    with scopes_disabled():
        assert not AiResult.objects.filter(screening=final).exists()


def test_a_batchs_other_messages_end_in_the_worker_without_a_query(db, world, stub, monkeypatch, settings):
    """A surge: one delivery's batch took three more screenings and ended them. Their own
    messages, delivered to that process afterwards, are answered from its memory without a
    query; a further message of the same screening, and the batch's own, ask the database."""
    settings.SCREENING_BATCH_MAX, settings.SCREENING_BATCH_WAIT_MS = 4, 0
    stub(None)
    model = PerImage()
    monkeypatch.setattr(tasks, "predictor", lambda: model)
    with scope(hospital=world.hospital):
        own, *others = [services.scan_upload(patient=world.patient, data=png_bytes(chest(seed=i)),
                                             filename=f"{i}.png", actor=world.uploader) for i in range(4)]
    assert run(own).result == ScreeningStatus.DONE and model.sizes == [4]
    assert {reload(s).status for s in others} == {ScreeningStatus.DONE}
    for screening in others:
        with CaptureQueriesContext(connection) as queries:
            assert run(screening, task_id=f"late-{screening.pk}").result == "not claimable"
        assert len(queries) == 0
        with CaptureQueriesContext(connection) as queries:  # a second message: the database tells
            assert run(screening, task_id=f"again-{screening.pk}").result == "not claimable"
        assert len(queries) > 0
    with CaptureQueriesContext(connection) as queries:
        assert run(own, task_id="own-again").result == "not claimable"
    assert len(queries) > 0


def test_screenings_a_batch_gave_back_are_not_taken_for_ended(db, world, stub, monkeypatch, settings):
    """A transient fault: the batch's others go back to the queue, and their messages then
    screen them (each alone, as tried before)."""
    settings.SCREENING_BATCH_MAX, settings.SCREENING_BATCH_WAIT_MS = 4, 0
    stub(None)
    model = PerImage(OperationalError("deadlock"))
    monkeypatch.setattr(tasks, "predictor", lambda: model)
    with scope(hospital=world.hospital):
        own, other = [services.scan_upload(patient=world.patient, data=png_bytes(chest(seed=i)),
                                           filename=f"{i}.png", actor=world.uploader) for i in range(2)]
    assert run(own).result == ScreeningStatus.DONE
    assert reload(other).status == ScreeningStatus.QUEUED and model.sizes == [2, 1]
    assert run(other, task_id="other").result == ScreeningStatus.DONE
    assert (reload(other).attempts, model.sizes) == (2, [2, 1, 1])


def test_transient_database_error_is_retried_then_fails_at_the_limit(screening, stub, settings):
    settings.SCREENING_MAX_ATTEMPTS = 3
    predictor = stub(OperationalError("server has gone away"))
    run(screening)
    final = reload(screening)
    assert (final.status, final.attempts, predictor.calls) == (ScreeningStatus.FAILED, 3, 3)
    assert final.reason == "Gave up after 3 attempts: OperationalError."


def test_transient_error_then_success(screening, stub, monkeypatch):
    stub(None)
    model = PerImage(OperationalError("deadlock"))
    monkeypatch.setattr(tasks, "predictor", lambda: model)
    run(screening)
    final = reload(screening)
    assert (final.status, final.attempts, len(model.sizes)) == (ScreeningStatus.DONE, 2, 2)


def test_unexpected_error_fails_at_once_and_is_not_retried(screening, stub):
    predictor = stub(KeyError("bug"))
    assert run(screening).result == ScreeningStatus.FAILED
    final = reload(screening)
    assert (final.status, final.attempts, predictor.calls) == (ScreeningStatus.FAILED, 1, 1)
    assert "KeyError" in final.reason and "not retried" in final.reason


def test_the_reading_queue_key_follows_results_and_reviews(db, world):
    """`review_priority`, kept by the services, gives the queue the definition reads from
    the results and reviews themselves: done, no review, the latest result's COVID-19
    probability first, then the oldest. Another hospital's screenings never join it."""
    import importlib

    from django.apps import apps
    from django.db.models import F, OuterRef, Subquery

    from hospitals.models import Role
    from screening.selectors import review_queue

    from ..factories import HospitalFactory, MembershipFactory, PatientFactory

    def store(screening, covid, version="test-1"):
        answer = prediction(version=version).to_dict() | {"covid_probability": covid}
        claimed = services.screening_claim(screening_id=screening.pk, task_id=f"t-{version}") or screening
        return services.screening_store_result(screening=claimed, prediction=answer, overlay=None)

    def review(result):
        services.review_create(result=result, decision="confirm", clinical_label=result.label,
                               radiological_signs=False, reason="Read.", actor=world.uploader)

    def upload(n, hospital=world.hospital, patient=world.patient):
        with scope(hospital=hospital):
            return services.scan_upload(patient=patient, data=png_bytes(), filename=f"{n}.png",
                                        actor=world.uploader)

    def by_definition(hospital):
        latest = AiResult.objects.filter(screening=OuterRef("pk")).order_by("-created_at", "-id")
        return list(Screening.objects.filter(hospital=hospital, status=ScreeningStatus.DONE, reviews__isnull=True)
                    .annotate(p=Subquery(latest.values("covid_probability")[:1]))
                    .order_by(F("p").desc(nulls_last=True), "created_at", "id").values_list("pk", "p"))

    other = HospitalFactory(name="Other General", slug="other")
    with scopes_disabled():
        MembershipFactory(user=world.uploader, hospital=other, role=Role.CLINICIAN)
        other_patient = PatientFactory(hospital=other, mrn="OTHER-1")
    s = [upload(n) for n in range(7)]
    elsewhere = upload(99, other, other_patient)
    with scope(hospital=world.hospital):
        store(s[0], 0.40)                                    # waiting
        store(s[1], 0.70)
        store(s[1], 0.20, version="test-2")                  # waiting, by its latest result
        review(store(s[2], 0.90))                            # reviewed: off the queue
        review(store(s[3], 0.95))
        store(s[3], 0.99, version="test-2")                  # a later model's result does not put it back
        store(s[4], 0.40)                                    # a tie with s[0]: the older first
        services.screening_finish(screening=s[5], status=ScreeningStatus.CANNOT_ASSESS, reason="Blurred.")
        # s[6] stays queued
    with scope(hospital=other):
        store(elsewhere, 0.97)
    with scope(hospital=world.hospital):
        queue = list(review_queue(hospital=world.hospital).values_list("pk", "review_priority"))
        assert queue == by_definition(world.hospital) == [(s[0].pk, 0.40), (s[4].pk, 0.40), (s[1].pk, 0.20)]
    with scopes_disabled():
        # The migration that added the key sets it the same way from the rows alone.
        kept = dict(Screening.objects.values_list("pk", "review_priority"))
        Screening.objects.update(review_priority=None)
        importlib.import_module("screening.migrations.0008_screening_review_priority").waiting_screenings_priority(
            apps, None)
        assert dict(Screening.objects.values_list("pk", "review_priority")) == kept
