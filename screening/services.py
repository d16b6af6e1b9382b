"""Writes about scans, screenings, AI results and reviews. Keyword-only, atomic, audited.

Pipeline: `scan_upload` validates and stores the file, creates a queued Screening and,
once the transaction commits, puts its id on the `inference` queue. The worker's
`screening_claim` / `screening_store_result` / `screening_finish` move it on. The
database is the source of truth: `screening_sweep` re-enqueues what the broker lost."""

import datetime
import hashlib
import logging
import os
import socket

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone
from django_scopes import scopes_disabled

from hospitals.audit import audit_record
from hospitals.models import User
from patients.models import Patient
from webhooks import payloads as webhook_payloads
from webhooks.services import event_emit

from .models import AiResult, Review, ReviewDecision, Scan, Screening, ScreeningStatus
from .validation import validate_scan

log = logging.getLogger(__name__)
WORKER = socket.gethostname()
# An upload publishes after its commit: two quick retries at most (about a second), then
# the sweeper takes over, so a broker outage never holds up the request.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 0.5}


def _enqueue(screening: Screening) -> None:
    """Publish the id. A broker that is down leaves the row queued; the sweeper
    re-enqueues it later, so the upload itself still succeeds."""
    from .tasks import screening_run

    try:
        screening_run.apply_async(kwargs={"screening_id": screening.pk, "hospital_id": screening.hospital_id},
                                  queue="inference", retry=True, retry_policy=PUBLISH_RETRY)
    except Exception:  # noqa: BLE001 - any broker failure; the sweeper covers it
        log.warning("could not enqueue screening %s; the sweeper will retry", screening.pk, exc_info=True)


def scan_upload(*, patient: Patient, data: bytes, filename: str, actor: User, request=None,
                uploaded: File | None = None) -> Screening:
    """Validate, store and queue one scan. A bad file raises ValidationError and nothing is
    stored: the file is written only after validation, and removed again if the database
    write fails. `uploaded` is the request's file that holds `data`: the storage moves one
    the upload already wrote to a temporary file into place rather than writing it again."""
    checked = validate_scan(data=data, filename=filename)
    decoded = checked.decoded.to_bytes()
    duplicate = Scan.objects.filter(patient=patient, sha256=checked.sha256).order_by("id").first()
    scan = Scan(
        hospital_id=patient.hospital_id, patient=patient, uploaded_by=actor,
        original_filename=(filename or "")[:255], size_bytes=len(data), sha256=checked.sha256,
        format=checked.format, width=checked.width, height=checked.height, bit_depth=checked.bit_depth,
        view_position=checked.view_position, study_uid=checked.study_uid, series_uid=checked.series_uid,
        duplicate_of=duplicate, decoded_sha256=hashlib.sha256(decoded).hexdigest(),
    )
    try:
        scan.file.save("scan", uploaded or ContentFile(data), save=False)
        scan.preview.save("preview", ContentFile(checked.preview_png), save=False)
        scan.decoded.save("decoded", ContentFile(decoded), save=False)
        with transaction.atomic():
            scan.save()
            screening = Screening.objects.create(hospital_id=patient.hospital_id, patient=patient, scan=scan,
                                                 enqueued_at=timezone.now())
            transaction.on_commit(lambda: _enqueue(screening))
            # Last: the audit append locks the hospital's chain head until the commit.
            audit_record(action="create", object_type="scan", object_id=scan.pk, hospital=patient.hospital,
                         actor=actor, request=request,
                         detail={"patient": patient.pk, "screening": screening.pk, "duplicate_of": scan.duplicate_of_id})
    except BaseException:
        for stored in (scan.file, scan.preview, scan.decoded):
            if stored.name:
                default_storage.delete(stored.name)
        raise
    return screening


def scan_file_intact(*, scan: Scan) -> bool:
    """Whether the stored original still has the checksum taken at upload. Checked before
    the file is downloaded (and by the worker before inference); a mismatch is logged as an
    error: the file was damaged or altered on disk and must be restored from backup."""
    digest = hashlib.sha256()
    try:
        with scan.file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    if digest.hexdigest() != scan.sha256:
        log.error("scan %s: stored file %s does not match its sha256; not served", scan.pk, scan.file.name)
        return False
    return True


# What the worker reads of a claimed screening, in the claiming query: the file, the
# hospital whose scope stores the result and the patient the result belongs to.
CLAIMED_WITH = ("scan", "hospital", "patient")


def _holder() -> str:
    """Who holds a claim: this host and process, so a redelivery can tell whether the run
    it would replace is still going."""
    return f"{WORKER} pid {os.getpid()}"


def _holder_gone(screening: Screening, now: datetime.datetime) -> bool:
    """Whether the process that claimed this running screening has ended. On this host its
    process id tells; a claim from another host counts as ended once it is older than the
    age at which the sweeper also takes running screenings back."""
    host, _, pid = screening.worker.rpartition(" pid ")
    if host == WORKER and pid.isdigit():
        if int(pid) == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    stale = datetime.timedelta(seconds=settings.SCREENING_STALE_RUNNING_SECONDS)
    return screening.started_at is None or screening.started_at < now - stale


def screening_claim(*, screening_id: int, task_id: str) -> Screening | None:
    """Atomically take the job for this delivery: queued -> running, attempts + 1.

    A redelivery of the same task may take a job still marked running under the same task
    id when the run that claimed it has ended (its worker died); while that run goes on
    (the broker handed the message out again after its visibility timeout) the redelivery
    does nothing. Anything else is someone else's or finished: None. Past the maximum
    attempts the job fails instead of running again (a poison file).

    Most messages of a surge find their screening already taken by another delivery's
    micro-batch: a plain read tells, without a locking transaction. (Only a re-enqueue,
    which publishes a message of its own, makes such a screening claimable again.)"""
    now = timezone.now()
    claimable = Q(status=ScreeningStatus.QUEUED) | Q(status=ScreeningStatus.RUNNING, task_id=task_id)
    if not Screening.objects.filter(claimable, pk=screening_id).exists():
        return None
    with transaction.atomic():
        screening = Screening.objects.select_for_update().filter(claimable, pk=screening_id).first()
        if screening is None:
            return None
        if screening.status == ScreeningStatus.RUNNING and not _holder_gone(screening, now):
            log.warning("screening %s: delivered again while %s still runs it; not run twice", screening.pk,
                        screening.worker)
            return None
        if screening.attempts >= settings.SCREENING_MAX_ATTEMPTS:
            screening_finish(screening=screening, status=ScreeningStatus.FAILED,
                             reason=f"Gave up after {screening.attempts} attempts; the last one did not finish.")
            return None
        Screening.objects.filter(pk=screening.pk).update(
            status=ScreeningStatus.RUNNING, attempts=F("attempts") + 1, task_id=task_id, worker=_holder(),
            started_at=now,
        )
    return Screening.objects.select_related(*CLAIMED_WITH).get(pk=screening.pk)


def screening_claim_batch(*, task_id: str, exclude: int, limit: int) -> list[Screening]:
    """Micro-batching: take up to `limit` more queued screenings of any hospital, oldest
    first, for the delivery `task_id` (which holds screening `exclude`), in one conditional
    UPDATE: a row that another worker took meanwhile is neither updated nor returned. Their
    own messages later find them claimed and do nothing. Only first attempts are taken: a
    screening tried before runs alone, so a file that kills the worker takes down no other
    screening after its first try. Runs unscoped; the caller opens each one's hospital."""
    if limit <= 0:
        return []
    with scopes_disabled():
        ids = list(Screening.objects.filter(status=ScreeningStatus.QUEUED, attempts=0).exclude(pk=exclude)
                   .order_by("enqueued_at", "id").values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Screening.objects.filter(pk__in=ids, status=ScreeningStatus.QUEUED, attempts=0).update(
            status=ScreeningStatus.RUNNING, attempts=F("attempts") + 1, task_id=task_id, worker=_holder(),
            started_at=timezone.now())
        return list(Screening.objects.filter(pk__in=ids, status=ScreeningStatus.RUNNING, task_id=task_id)
                    .select_related(*CLAIMED_WITH).order_by("id"))


def screening_release(*, task_id: str, keep: int) -> int:
    """Queue again, and publish again, the screenings that the delivery `task_id` claimed in
    a batch and did not finish (all but its own, `keep`): after a transient fault or an
    out-of-memory error, or when the delivery comes back because its worker died. Having
    been tried, each is then screened alone. Runs unscoped."""
    now = timezone.now()
    count = 0
    with scopes_disabled(), transaction.atomic():
        for screening in Screening.objects.filter(status=ScreeningStatus.RUNNING, task_id=task_id).exclude(pk=keep):
            moved = Screening.objects.filter(pk=screening.pk, status=ScreeningStatus.RUNNING, task_id=task_id).update(
                status=ScreeningStatus.QUEUED, task_id="", enqueued_at=now)
            if moved:
                transaction.on_commit(lambda s=screening: _enqueue(s))
                count += 1
    return count


def _finish(screening: Screening, status: str, reason: str = "", **fields) -> None:
    Screening.objects.filter(pk=screening.pk).update(status=status, reason=reason, finished_at=timezone.now(),
                                                     **fields)
    screening.status, screening.reason = status, reason


def review_priority_for(result: AiResult):
    """The reading queue's key a new result gives its screening (an expression for the
    screening's UPDATE): the result's COVID-19 probability, unless a review of an earlier
    result (another model version) already took the screening off the queue."""
    reviewed = Exists(Review.objects.filter(screening=OuterRef("pk")))
    return Case(When(reviewed, then=None), default=Value(result.covid_probability))


def _emit_screening_event(screening: Screening, result: AiResult | None = None) -> None:
    """The webhook of a finished screening, in the caller's transaction: done and
    cannot_assess are screening.completed, failed and rejected screening.failed."""
    completed = screening.status in (ScreeningStatus.DONE, ScreeningStatus.CANNOT_ASSESS)
    event_emit(hospital=screening.hospital, event="screening.completed" if completed else "screening.failed",
               payload=lambda: webhook_payloads.screening_data(screening, result))


def screening_finish(*, screening: Screening, status: str, reason: str = "") -> None:
    """End a job that produced no result (failed, rejected, cannot_assess)."""
    with transaction.atomic():
        _finish(screening, status, reason)
        _emit_screening_event(screening)
        audit_record(action="update", object_type="screening", object_id=screening.pk,
                     hospital=screening.hospital, detail={"status": status})


def screening_store_result(*, screening: Screening, prediction: dict, overlay: bytes | None) -> AiResult:
    """Store the model's answer and mark the job done, or cannot_assess when the quality
    gate refused the image. `overlay`: the heatmap drawn over the scan (JPEG; results stored
    earlier hold a PNG). Idempotent: a second delivery's insert meets the unique (screening,
    model version) and returns the result stored first."""
    result = AiResult(
        hospital_id=screening.hospital_id, patient=screening.patient, screening=screening,
        probabilities=prediction["probabilities"], label=prediction["label"],
        covid_probability=prediction["covid_probability"], covid_positive=prediction["covid_positive"],
        decision=prediction["decision"], threshold=prediction["threshold"], model_name=prediction["model_name"],
        model_version=prediction["model_version"], model_sha256=prediction["model_sha256"],
        preprocessing_version=prediction["preprocessing_version"], input_sha256=screening.scan.sha256,
        quality=prediction.get("quality") or {}, timings_ms=prediction.get("timings_ms") or {}, worker=WORKER,
    )
    if overlay:
        result.heatmap.save("heatmap", ContentFile(overlay), save=False)
    try:
        with transaction.atomic():
            result.save()
            _finish(screening, ScreeningStatus.DONE, review_priority=review_priority_for(result))
            _emit_screening_event(screening, result)
            # Last: the audit append locks the hospital's chain head until the commit.
            audit_record(action="create", object_type="airesult", object_id=result.pk,
                         hospital=screening.hospital, detail={"screening": screening.pk})
    except IntegrityError:
        if result.heatmap:
            default_storage.delete(result.heatmap.name)
        _finish(screening, ScreeningStatus.DONE)
        return AiResult.objects.get(screening=screening, model_version=prediction["model_version"])
    return result


def screening_sweep(*, now: datetime.datetime | None = None) -> int:
    """Re-enqueue screenings stuck in queued (the broker lost or never got the message)
    or running (the worker died) for longer than the configured ages. Runs unscoped:
    it only moves ids between the database and the broker."""
    now = now or timezone.now()
    queued_before = now - datetime.timedelta(seconds=settings.SCREENING_STALE_QUEUED_SECONDS)
    running_before = now - datetime.timedelta(seconds=settings.SCREENING_STALE_RUNNING_SECONDS)
    count = 0
    with scopes_disabled():
        stuck = Screening.objects.filter(
            Q(status=ScreeningStatus.QUEUED, enqueued_at__lt=queued_before)
            | Q(status=ScreeningStatus.QUEUED, enqueued_at__isnull=True)
            | Q(status=ScreeningStatus.RUNNING, started_at__lt=running_before)
        ).order_by("id")[:500]
        for screening in stuck:
            with transaction.atomic():
                moved = Screening.objects.filter(pk=screening.pk, status=screening.status).update(
                    status=ScreeningStatus.QUEUED, task_id="", enqueued_at=now)
                if moved:
                    transaction.on_commit(lambda s=screening: _enqueue(s))
                    count += 1
    return count


def review_create(*, result: AiResult, decision: str, clinical_label: str, radiological_signs: bool, reason: str,
                  actor: User, request=None) -> Review:
    """Record a reading of the AI result. Confirming keeps the AI label; overriding needs
    a different label. Either way a reason is required."""
    if decision not in ReviewDecision.values:
        raise ValidationError({"decision": "Choose confirm or override."})
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Give a reason for the review."})
    if decision == ReviewDecision.CONFIRM and clinical_label != result.label:
        raise ValidationError({"clinical_label": "Confirming keeps the AI label; choose override to change it."})
    if decision == ReviewDecision.OVERRIDE and clinical_label == result.label:
        raise ValidationError({"clinical_label": "An override needs a label different from the AI's."})
    with transaction.atomic():
        review = Review.objects.create(
            hospital_id=result.hospital_id, patient_id=result.patient_id, screening_id=result.screening_id,
            result=result, decision=decision, clinical_label=clinical_label,
            radiological_signs=radiological_signs, reason=reason.strip(), reviewer=actor,
        )
        Screening.objects.filter(pk=result.screening_id).update(review_priority=None)  # off the reading queue
        audit_record(action="create", object_type="review", object_id=review.pk, hospital=result.hospital,
                     actor=actor, request=request, detail={"screening": result.screening_id, "decision": decision})
        event_emit(hospital=result.hospital, event="review.recorded", payload=webhook_payloads.review_data(review))
    return review


def screening_apply_suggestion(*, screening: Screening, actor: User, effective_date: datetime.date | None = None,
                               note: str = "", request=None):
    """A clinician applies the status the reviewed screening suggests, through the
    status machine, with source "screening review". Refused when nothing is suggested."""
    from patients.models import StatusSource
    from patients.services import patient_change_status

    from .selectors import status_suggestion

    suggestion = status_suggestion(screening=screening)
    if suggestion is None:
        raise ValidationError("This screening does not suggest a status change (it needs a review and a positive "
                              "latest lab test, and the move must be allowed from the current status).")
    reason = suggestion.explanation + (f" {note.strip()}" if note and note.strip() else "")
    return patient_change_status(
        patient=screening.patient, to_status=suggestion.to_status,
        effective_date=effective_date or timezone.localdate(), reason=reason,
        source=StatusSource.SCREENING_REVIEW, lab_test=suggestion.lab_test, actor=actor, request=request,
    )
