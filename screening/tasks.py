"""Celery tasks of the screening pipeline: thin adapters over `screening.services`.

The model is loaded once per worker process, in the child (`worker_process_init`, or on
the first task with the solo pool), never in the parent before fork: this module does
not import Keras at import time.

Micro-batching: each screening is one message. The task that runs claims its own
screening, then up to SCREENING_BATCH_MAX - 1 other queued first attempts (any
hospital), predicts them in one call and stores each result in its own hospital's scope;
the others' messages then find them ended (in this process's memory of its batches, else in
the database) and do nothing."""

import hashlib
import logging
import os
import random
import signal
import time
from collections import OrderedDict

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django_scopes import scope

from hospitals.tenancy import HospitalTask

from . import services
from .models import ScreeningStatus
from .priority import lower_priority

log = logging.getLogger(__name__)

# Faults that go away by themselves: the database connection, the storage, the network.
# (Other DatabaseErrors such as IntegrityError or DataError are deterministic.)
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError)


def predictor():
    from ml.inference import get_predictor

    return get_predictor()  # the shipped model, or CXR_MODEL_DIR


@worker_process_init.connect
def load_model_in_child(**kwargs):
    lower_priority(settings.SCREENING_WORKER_NICE)
    if settings.SCREENING_PRELOAD_MODEL:
        try:
            predictor()
        except Exception:  # noqa: BLE001 - a child that dies here is restarted in a loop; the task reports it
            log.exception("could not load the screening model in the worker process")


def fault_injection(batch) -> None:
    """Test hooks, inert unless their environment variable is set (never in production):
    SCREENING_TEST_DELAY_SECONDS sleeps before inference so a test can kill the worker
    mid-job; SCREENING_TEST_CRASH_SHA256 makes the process SIGKILL itself on the scan with
    that checksum, as a parser crashing in native code would (a poison file)."""
    delay = os.environ.get("SCREENING_TEST_DELAY_SECONDS")
    if delay:
        time.sleep(float(delay))
    crash = os.environ.get("SCREENING_TEST_CRASH_SHA256")
    if crash and any(crash == screening.scan.sha256 for screening in batch):
        os.kill(os.getpid(), signal.SIGKILL)


_injected_ooms = 0


def oom_injection() -> None:
    """Test hook, inert unless set: SCREENING_TEST_OOM_TIMES=N makes the first N predict
    calls of this worker process fail as the device running out of memory would."""
    global _injected_ooms
    if _injected_ooms < int(os.environ.get("SCREENING_TEST_OOM_TIMES") or 0):
        from ml.inference import ResourceExhaustedError

        _injected_ooms += 1
        raise ResourceExhaustedError(f"injected out-of-memory error {_injected_ooms} (SCREENING_TEST_OOM_TIMES)")


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(300.0, 2.0 * 2**retries))


def predict(model, images: list) -> list:
    """`model.predict_batch` over the images; out of device memory, the batch is halved
    and tried again. Out of memory on a single image, the error propagates."""
    from ml.inference import ResourceExhaustedError

    predictions, size = [], len(images)
    while len(predictions) < len(images):
        chunk = images[len(predictions):len(predictions) + size]
        try:
            oom_injection()
            predictions.extend(model.predict_batch(chunk))
        except ResourceExhaustedError as exc:
            if size == 1:
                raise
            size = max(1, size // 2)
            log.warning("%s predicting %d images; trying batches of %d", exc, len(chunk), size)
    return predictions


def gather(task_id: str, screening) -> list:
    """The screenings predicted with this one: up to SCREENING_BATCH_MAX - 1 other queued
    first attempts. When some are waiting (a surge), wait up to SCREENING_BATCH_WAIT_MS for
    the batch to fill; a lone screening does not wait. One tried before runs alone."""
    limit = settings.SCREENING_BATCH_MAX - 1
    if screening.attempts > 1 or limit <= 0:
        return []
    found = services.screening_claim_batch(task_id=task_id, exclude=screening.pk, limit=limit)
    deadline = time.monotonic() + settings.SCREENING_BATCH_WAIT_MS / 1000.0
    while found and len(found) < limit and time.monotonic() < deadline:
        time.sleep(0.01)
        found += services.screening_claim_batch(task_id=task_id, exclude=screening.pk, limit=limit - len(found))
    return found


# Screenings that a batch of this process brought to an end (done, cannot_assess, rejected,
# failed), other than the batch's own: their messages, delivered to this process later, have
# nothing left to do. A screening's final status never changes, so the answer needs no read
# of the hospital or the screening. Each id is forgotten when its message comes, or oldest
# first past ENDED_HERE_MAX; a message that finds no id here asks the database as before.
ENDED_HERE_MAX = 4096
_ended_here: OrderedDict[int, None] = OrderedDict()


def remember_ended(screening_ids) -> None:
    for pk in screening_ids:
        _ended_here[pk] = None
    while len(_ended_here) > ENDED_HERE_MAX:
        _ended_here.popitem(last=False)


class ScreeningTask(HospitalTask):
    abstract = True

    def __call__(self, *args, **kwargs):
        screening_id = kwargs.get("screening_id")
        if screening_id in _ended_here:
            del _ended_here[screening_id]
            return "not claimable"
        return super().__call__(*args, **kwargs)


@shared_task(bind=True, base=ScreeningTask, name="screening.run", acks_late=True, reject_on_worker_lost=True,
             max_retries=None, soft_time_limit=120, time_limit=180)
def screening_run(self, *, screening_id: int, hospital_id: int):
    """Screen one scan, and with it the other screenings waiting in the queue (micro-batch:
    one predict call; each screening keeps its own claim, checksum check, result and
    outcome). Deterministic problems end a job (rejected / cannot_assess / failed);
    transient ones retry with backoff until the attempt limit is reached."""
    try:
        screening = services.screening_claim(screening_id=screening_id, task_id=self.request.id)
        if screening is None:
            return "not claimable"
        if screening.attempts > 1:  # retried, or its worker died: queue again what that batch held
            services.screening_release(task_id=self.request.id, keep=screening.pk)
        batch = [screening] + gather(self.request.id, screening)
    except TRANSIENT as exc:  # the database is away: try again later
        log.warning("screening %s: cannot claim (%s), retrying", screening_id, type(exc).__name__)
        raise self.retry(exc=exc, countdown=backoff(self.request.retries),
                         max_retries=settings.SCREENING_MAX_ATTEMPTS)
    if len(batch) > 1:
        log.info("screening %s: batch of %d (%s)", screening_id, len(batch), " ".join(str(s.pk) for s in batch))
    return screen_batch(self, batch)


def _read_checked(field, sha256: str) -> bytes | None:
    with field.open("rb") as fh:
        data = fh.read()
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def stored_image(scan):
    """The image to screen: the copy decoded at upload, else (a scan stored before there
    were copies) the original decoded again. None when the original or the copy does not
    match its sha256 (damaged or altered on disk): such a scan is not screened."""
    from ml.preprocessing import DecodedImage, load_image_bytes

    original = _read_checked(scan.file, scan.sha256)
    if original is None:
        return None
    if not scan.decoded:
        return load_image_bytes(original)
    copy = _read_checked(scan.decoded, scan.decoded_sha256)
    return None if copy is None else DecodedImage.from_bytes(copy)


def screen_batch(task, batch: list) -> str:
    """Screen the claimed batch; returns the outcome of the task's own screening (the
    first). Each screening is handled inside its own hospital's scope."""
    outcome: dict[int, str] = {}
    try:
        return _screen_batch(task, batch, outcome)
    finally:  # the others that ended, also when the task retries or stops on an error
        remember_ended(pk for pk in outcome if pk != batch[0].pk)


def _screen_batch(task, batch: list, outcome: dict[int, str]) -> str:
    from ml.explain import explain
    from ml.inference import ResourceExhaustedError
    from ml.preprocessing import ImageError

    own = batch[0]

    def finish(screening, status, reason):
        with scope(hospital=screening.hospital):
            services.screening_finish(screening=screening, status=status, reason=reason)
        outcome[screening.pk] = status

    try:
        fault_injection(batch)
        images = []
        for screening in batch:
            try:
                decoded = stored_image(screening.scan)
            except ImageError as exc:
                finish(screening, ScreeningStatus.REJECTED, str(exc))
                continue
            if decoded is None:
                finish(screening, ScreeningStatus.FAILED,
                       "The stored file does not match its checksum; it was not screened.")
                continue
            images.append((screening, decoded))
        model = predictor()
        predictions = predict(model, [decoded for _, decoded in images])
        for (screening, decoded), prediction in zip(images, predictions):
            if prediction.status != "ok":
                finish(screening, ScreeningStatus.CANNOT_ASSESS, prediction.reason or "The image cannot be assessed.")
                continue
            _, overlay = explain(model, decoded, class_name=prediction.label, heatmap=prediction.heatmap)
            with scope(hospital=screening.hospital):
                services.screening_store_result(screening=screening, prediction=prediction.to_dict(),
                                                overlay=overlay)
            outcome[screening.pk] = ScreeningStatus.DONE
    except ImageError as exc:
        for screening in batch:
            if screening.pk not in outcome:
                finish(screening, ScreeningStatus.REJECTED, str(exc))
    except SoftTimeLimitExceeded:
        for screening in batch:
            if screening.pk not in outcome:
                finish(screening, ScreeningStatus.FAILED, "Screening took too long and was stopped.")
    except (ResourceExhaustedError, *TRANSIENT) as exc:
        # Out of memory on one image, or a transient fault: the others go back to the queue
        # (each then runs alone) and this one retries with backoff, up to the attempt limit.
        try:
            services.screening_release(task_id=task.request.id, keep=own.pk)
        except TRANSIENT as away:  # the database is away too: the retry releases them when it claims
            log.warning("screening %s: cannot release its batch now (%s)", own.pk, type(away).__name__)
        if own.pk not in outcome:
            if own.attempts >= settings.SCREENING_MAX_ATTEMPTS:
                finish(own, ScreeningStatus.FAILED, f"Gave up after {own.attempts} attempts: {type(exc).__name__}.")
            else:
                log.warning("screening %s: %s, retrying", own.pk, type(exc).__name__)
                raise task.retry(exc=exc, countdown=backoff(task.request.retries))
    except Exception as exc:  # deterministic (a bug, a broken model): end them now, never loop
        log.exception("screening batch %s failed", [s.pk for s in batch])
        for screening in batch:
            if screening.pk not in outcome:
                finish(screening, ScreeningStatus.FAILED,
                       f"Screening failed ({type(exc).__name__}); it was not retried.")
    return outcome[own.pk]


@shared_task(name="screening.sweep", ignore_result=True)
def screening_sweep():
    """Periodic (Celery beat): re-enqueue screenings stuck in queued or running."""
    return services.screening_sweep()
