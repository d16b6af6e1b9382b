"""Celery tasks of the screening pipeline: thin adapters over `screening.services`.

The model is loaded once per worker process, in the child (`worker_process_init`, or on
the first task with the solo pool), never in the parent before fork: this module does
not import Keras at import time."""

import hashlib
import logging
import os
import random
import signal
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError

from hospitals.tenancy import HospitalTask

from . import services
from .models import ScreeningStatus

log = logging.getLogger(__name__)

# Faults that go away by themselves: the database connection, the storage, the network.
# (Other DatabaseErrors such as IntegrityError or DataError are deterministic.)
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError)


def predictor():
    from ml.inference import get_predictor

    return get_predictor()  # the shipped model, or CXR_MODEL_DIR


@worker_process_init.connect
def load_model_in_child(**kwargs):
    if settings.SCREENING_PRELOAD_MODEL:
        try:
            predictor()
        except Exception:  # noqa: BLE001 - a child that dies here is restarted in a loop; the task reports it
            log.exception("could not load the screening model in the worker process")


def fault_injection(screening) -> None:
    """Test hooks, inert unless their environment variable is set (never in production):
    SCREENING_TEST_DELAY_SECONDS sleeps before inference so a test can kill the worker
    mid-job; SCREENING_TEST_CRASH_SHA256 makes the process SIGKILL itself on the scan with
    that checksum, as a parser crashing in native code would (a poison file)."""
    delay = os.environ.get("SCREENING_TEST_DELAY_SECONDS")
    if delay:
        time.sleep(float(delay))
    crash = os.environ.get("SCREENING_TEST_CRASH_SHA256")
    if crash and crash == screening.scan.sha256:
        os.kill(os.getpid(), signal.SIGKILL)


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(300.0, 2.0 * 2**retries))


@shared_task(bind=True, base=HospitalTask, name="screening.run", acks_late=True, reject_on_worker_lost=True,
             max_retries=None, soft_time_limit=120, time_limit=180)
def screening_run(self, *, screening_id: int, hospital_id: int):
    """Screen one scan. Deterministic problems end the job (rejected / cannot_assess /
    failed); transient ones retry with backoff until the attempt limit is reached."""
    from ml.explain import explain
    from ml.preprocessing import ImageError, load_image_bytes

    try:
        screening = services.screening_claim(screening_id=screening_id, task_id=self.request.id)
    except TRANSIENT as exc:  # the database is away: try again later, the row is unchanged
        log.warning("screening %s: cannot claim (%s), retrying", screening_id, type(exc).__name__)
        raise self.retry(exc=exc, countdown=backoff(self.request.retries),
                         max_retries=settings.SCREENING_MAX_ATTEMPTS)
    if screening is None:
        return "not claimable"
    try:
        fault_injection(screening)
        with screening.scan.file.open("rb") as fh:
            data = fh.read()
        if hashlib.sha256(data).hexdigest() != screening.scan.sha256:
            services.screening_finish(screening=screening, status=ScreeningStatus.FAILED,
                                      reason="The stored file does not match its checksum; it was not screened.")
            return ScreeningStatus.FAILED
        decoded = load_image_bytes(data)
        model = predictor()
        prediction = model.predict_batch([decoded])[0]
        if prediction.status != "ok":
            services.screening_finish(screening=screening, status=ScreeningStatus.CANNOT_ASSESS,
                                      reason=prediction.reason or "The image cannot be assessed.")
            return ScreeningStatus.CANNOT_ASSESS
        _, overlay = explain(model, decoded, class_name=prediction.label)
        services.screening_store_result(screening=screening, prediction=prediction.to_dict(), heatmap_png=overlay)
        return ScreeningStatus.DONE
    except ImageError as exc:
        services.screening_finish(screening=screening, status=ScreeningStatus.REJECTED, reason=str(exc))
        return ScreeningStatus.REJECTED
    except SoftTimeLimitExceeded:
        services.screening_finish(screening=screening, status=ScreeningStatus.FAILED,
                                  reason="Screening took too long and was stopped.")
        return ScreeningStatus.FAILED
    except TRANSIENT as exc:
        if screening.attempts >= settings.SCREENING_MAX_ATTEMPTS:
            services.screening_finish(screening=screening, status=ScreeningStatus.FAILED,
                                      reason=f"Gave up after {screening.attempts} attempts: {type(exc).__name__}.")
            return ScreeningStatus.FAILED
        log.warning("screening %s: transient %s, retrying", screening_id, type(exc).__name__)
        raise self.retry(exc=exc, countdown=backoff(self.request.retries))
    except Exception as exc:  # deterministic (a bug, a broken model): end it now, never loop
        log.exception("screening %s failed", screening_id)
        services.screening_finish(screening=screening, status=ScreeningStatus.FAILED,
                                  reason=f"Screening failed ({type(exc).__name__}); it was not retried.")
        return ScreeningStatus.FAILED


@shared_task(name="screening.sweep", ignore_result=True)
def screening_sweep():
    """Periodic (Celery beat): re-enqueue screenings stuck in queued or running."""
    return services.screening_sweep()
