"""Celery tasks of the webhooks: thin adapters over `webhooks.services` (queue `default`).

The retry policy lives here: a failed attempt is tried again after the backoff the
service scheduled (`next_attempt_at`), until WEBHOOK_MAX_ATTEMPTS. If that retry message
is lost, the sweeper publishes the delivery again from the database."""

from celery import shared_task

from hospitals.tenancy import HospitalTask

from . import services


@shared_task(bind=True, base=HospitalTask, name="webhooks.deliver", acks_late=True, reject_on_worker_lost=True,
             max_retries=None, soft_time_limit=90, time_limit=120)
def delivery_send(self, *, delivery_id: int, hospital_id: int):
    """Make the next attempt of one delivery; schedule the one after when it failed."""
    outcome = services.delivery_attempt(delivery_id=delivery_id)
    if outcome is None:
        return "not due"
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.delivery.status


@shared_task(name="webhooks.sweep", ignore_result=True)
def delivery_sweep():
    """Periodic (Celery beat): re-publish overdue pending deliveries."""
    return services.delivery_sweep()
