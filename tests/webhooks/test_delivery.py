"""Sending deliveries to a real HTTP receiver on 127.0.0.1: signatures, retries with
backoff, the attempt log, the attempt limit, redirects, the outbox transaction, the
sweeper after a broker outage, and the Celery task."""

import datetime
import json
import socket

import pytest
from celery.exceptions import Retry
from django.db import transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled
from kombu import pools as kombu_pools

from config.celery_app import app as celery_app
from webhooks import services, signing
from webhooks.models import Attempt, Delivery, DeliveryStatus
from webhooks.tasks import delivery_send

PAYLOAD = {"patient": {"id": 1, "mrn": "HOOK-0001"}, "review": {"id": 7}}


def emit(hook, event="review.recorded", payload=PAYLOAD):
    with scope(hospital=hook.hospital):
        return services.event_emit(hospital=hook.hospital, event=event, payload=payload)


def attempt(hook, delivery, now=None):
    with scope(hospital=hook.hospital):
        return services.delivery_attempt(delivery_id=delivery.pk, now=now)


def attempts_of(delivery):
    with scopes_disabled():
        return list(Attempt.objects.filter(delivery=delivery).order_by("number"))


def test_a_delivery_arrives_signed_with_the_documented_headers_and_body(hook):
    [delivery] = emit(hook)
    outcome = attempt(hook, delivery)
    assert outcome.delivery.status == DeliveryStatus.DELIVERED and outcome.retry_in is None
    [received] = hook.receiver.requests
    assert hook.receiver.verified(hook.secret) == [True]
    assert received.headers["X-Webhook-Id"] == str(delivery.event_id)
    assert received.headers["X-Webhook-Event"] == "review.recorded"
    assert received.headers["Content-Type"] == "application/json"
    body = received.json
    assert body["id"] == str(delivery.event_id) and body["event"] == "review.recorded"
    assert body["hospital"] == "hook" and body["data"] == PAYLOAD and body["created_at"]
    [logged] = attempts_of(delivery)
    assert (logged.number, logged.status_code, logged.succeeded, logged.error) == (1, 200, True, "")
    assert logged.response_snippet == '{"ok": true}'
    # Done means done: a duplicate message finds nothing to send.
    assert attempt(hook, delivery) is None and len(hook.receiver.requests) == 1


def test_a_tampered_delivery_fails_verification_at_the_receiver(hook):
    [delivery] = emit(hook)
    attempt(hook, delivery)
    [received] = hook.receiver.requests
    ts, header = received.headers["X-Webhook-Timestamp"], received.headers["X-Webhook-Signature"]
    tampered = received.body.replace(b"HOOK-0001", b"HOOK-0002")
    assert not signing.verify(secret=hook.secret, body=tampered, timestamp=ts, signature_header=header)
    assert not signing.verify(secret=hook.secret, body=received.body, timestamp=str(int(ts) - 1),
                              signature_header=header)


def test_a_failing_receiver_is_retried_with_backoff_until_it_accepts(hook, settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    hook.receiver.fail_first = 2
    [delivery] = emit(hook)
    now = timezone.now()
    first = attempt(hook, delivery, now=now)
    assert first.delivery.status == DeliveryStatus.PENDING and 15 <= first.retry_in <= 30
    assert first.delivery.next_attempt_at == now + datetime.timedelta(seconds=first.retry_in)
    # Not due yet: nothing is sent.
    assert attempt(hook, delivery, now=now + datetime.timedelta(seconds=1)) is None
    second = attempt(hook, delivery, now=first.delivery.next_attempt_at)
    assert second.delivery.status == DeliveryStatus.PENDING and 30 <= second.retry_in <= 60
    third = attempt(hook, delivery, now=second.delivery.next_attempt_at)
    assert third.delivery.status == DeliveryStatus.DELIVERED and third.delivery.attempts == 3
    logged = attempts_of(delivery)
    assert [(a.number, a.status_code, a.succeeded) for a in logged] == [(1, 500, False), (2, 500, False),
                                                                       (3, 200, True)]
    # The response is logged truncated; each attempt was signed and carries the same id.
    assert logged[0].response_snippet.startswith("receiver is down") and len(logged[0].response_snippet) <= 1024
    assert hook.receiver.verified(hook.secret) == [True, True, True]
    assert len({r.headers["X-Webhook-Id"] for r in hook.receiver.requests}) == 1
    assert [r.headers["X-Webhook-Attempt"] for r in hook.receiver.requests] == ["1", "2", "3"]


def test_after_the_maximum_attempts_the_delivery_is_failed(hook, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    hook.receiver.fail_first, hook.receiver.fail_status = 99, 503
    [delivery] = emit(hook)
    outcome = attempt(hook, delivery)
    while outcome.retry_in is not None:
        outcome = attempt(hook, delivery, now=outcome.delivery.next_attempt_at)
    assert outcome.delivery.status == DeliveryStatus.FAILED and outcome.delivery.attempts == 3
    assert outcome.delivery.last_error == "Gave up after 3 attempts: HTTP 503"
    assert len(attempts_of(delivery)) == 3 and len(hook.receiver.requests) == 3
    assert attempt(hook, delivery, now=timezone.now() + datetime.timedelta(days=1)) is None


def test_redirects_are_not_followed(hook):
    hook.receiver.fail_first, hook.receiver.fail_status = 1, 302
    hook.receiver.fail_location = hook.receiver.url + "/elsewhere"
    [delivery] = emit(hook)
    outcome = attempt(hook, delivery)
    assert outcome.delivery.status == DeliveryStatus.PENDING
    assert len(hook.receiver.requests) == 1  # the Location was not requested
    [logged] = attempts_of(delivery)
    assert logged.status_code == 302 and "not followed" in logged.error


def test_a_receiver_that_is_down_is_logged_as_an_error(hook):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with scope(hospital=hook.hospital):
        services.endpoint_update(endpoint=hook.endpoint, actor=hook.admin, url=f"http://127.0.0.1:{closed}/",
                                 events=hook.endpoint.events, description="", is_active=True)
    [delivery] = emit(hook)
    outcome = attempt(hook, delivery)
    [logged] = attempts_of(delivery)
    assert outcome.delivery.status == DeliveryStatus.PENDING and outcome.retry_in
    assert logged.status_code is None and "refused" in logged.error.lower()


def test_private_destinations_are_refused_unless_allowed(hook, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = False
    [delivery] = emit(hook)
    attempt(hook, delivery)
    [logged] = attempts_of(delivery)
    assert hook.receiver.requests == [] and "non-public address" in logged.error


def test_only_active_subscribed_endpoints_get_deliveries(hook):
    with scope(hospital=hook.hospital):
        services.endpoint_update(endpoint=hook.endpoint, actor=hook.admin, url=hook.endpoint.url,
                                 events=["screening.failed"], description="", is_active=True)
        assert services.event_emit(hospital=hook.hospital, event="review.recorded", payload={}) == []
        assert len(services.event_emit(hospital=hook.hospital, event="screening.failed", payload={})) == 1
        services.endpoint_update(endpoint=hook.endpoint, actor=hook.admin, url=hook.endpoint.url,
                                 events=["screening.failed"], description="", is_active=False)
        assert services.event_emit(hospital=hook.hospital, event="screening.failed", payload={}) == []


def test_a_payload_function_is_called_only_for_subscribers(hook):
    calls = []

    def payload():
        calls.append(1)
        return {"screening": {"id": 7}}

    with scope(hospital=hook.hospital):
        services.endpoint_update(endpoint=hook.endpoint, actor=hook.admin, url=hook.endpoint.url,
                                 events=["screening.failed"], description="", is_active=True)
        assert services.event_emit(hospital=hook.hospital, event="review.recorded", payload=payload) == []
        assert calls == []
        [delivery] = services.event_emit(hospital=hook.hospital, event="screening.failed", payload=payload)
    assert calls == [1] and json.loads(delivery.body)["data"] == {"screening": {"id": 7}}


def test_a_pending_delivery_of_a_deactivated_endpoint_ends_failed_unsent(hook):
    [delivery] = emit(hook)
    with scope(hospital=hook.hospital):
        services.endpoint_update(endpoint=hook.endpoint, actor=hook.admin, url=hook.endpoint.url,
                                 events=hook.endpoint.events, description="", is_active=False)
    outcome = attempt(hook, delivery)
    assert outcome.delivery.status == DeliveryStatus.FAILED and hook.receiver.requests == []


def test_the_outbox_row_is_written_in_the_events_transaction(hook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            emit(hook)
            raise RuntimeError("the change that the event announces fails")
    with scopes_disabled():
        assert not Delivery.objects.exists()
    assert callbacks == []  # nothing is published for a rolled-back change
    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            [delivery] = emit(hook)
    assert len(callbacks) == 1
    with scopes_disabled():
        assert Delivery.objects.get().pk == delivery.pk


@pytest.fixture
def eager():
    """Publishing runs the task in this process: a broker and worker that are up."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def point_publisher(url: str) -> None:
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu_pools.reset()


def test_broker_down_at_event_time_the_sweeper_delivers_later(hook, settings, django_capture_on_commit_callbacks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    point_publisher(f"redis://127.0.0.1:{closed}/0")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            with transaction.atomic():
                [delivery] = emit(hook)
    finally:
        point_publisher("memory://")
    with scopes_disabled():
        delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.enqueued_at is None
    assert hook.receiver.requests == []
    # Not overdue yet: the sweeper leaves it alone.
    assert services.delivery_sweep() == 0
    celery_app.conf.task_always_eager = True
    try:
        later = timezone.now() + datetime.timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS + 1)
        assert services.delivery_sweep(now=later) == 1
    finally:
        celery_app.conf.task_always_eager = False
    with scopes_disabled():
        delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.enqueued_at is not None
    assert hook.receiver.verified(hook.secret) == [True]


def test_the_sweeper_skips_recently_published_and_finished_deliveries(hook, settings):
    [fresh, published, done] = [emit(hook)[0] for _ in range(3)]
    later = timezone.now() + datetime.timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS + 1)
    with scopes_disabled():
        Delivery.objects.filter(pk=published.pk).update(enqueued_at=later)
        Delivery.objects.filter(pk=done.pk).update(status=DeliveryStatus.DELIVERED)
    assert services.delivery_sweep(now=later) == 1
    with scopes_disabled():
        assert Delivery.objects.get(pk=fresh.pk).enqueued_at is not None


def test_the_task_retries_with_the_scheduled_countdown_then_delivers(hook, eager, monkeypatch):
    hook.receiver.fail_first = 1
    [delivery] = emit(hook)
    retries = []

    def retry(**options):
        retries.append(options)
        return Retry(when=options["countdown"])

    monkeypatch.setattr(delivery_send, "retry", retry)
    delivery_send.apply(kwargs={"delivery_id": delivery.pk, "hospital_id": hook.hospital.pk})
    with scopes_disabled():
        delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.status == DeliveryStatus.PENDING
    [options] = retries
    assert abs(options["countdown"] - (delivery.next_attempt_at - timezone.now()).total_seconds()) < 5
    # A message that arrives before the delivery is due (an early or duplicate one) sends nothing.
    assert delivery_send.apply(kwargs={"delivery_id": delivery.pk, "hospital_id": hook.hospital.pk}).result == (
        "not due")
    with scopes_disabled():
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    result = delivery_send.apply(kwargs={"delivery_id": delivery.pk, "hospital_id": hook.hospital.pk})
    assert result.result == DeliveryStatus.DELIVERED
    assert hook.receiver.verified(hook.secret) == [True, True]
    assert json.loads(hook.receiver.requests[1].body)["id"] == str(delivery.event_id)
