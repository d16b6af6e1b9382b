"""End to end with a real Celery worker and broker (the screening pipeline's worker
fixture: Redis when available, shared test database): an upload is screened by the
worker, whose result announces screening.completed, and the same worker delivers the
signed webhook to a receiver on 127.0.0.1."""

import os
import time

import pytest
from django_scopes import scope, scopes_disabled

from tests.screening.conftest import FILM, screening_model_dir, world  # noqa: F401 - fixtures
from tests.screening.test_pipeline_worker import pipeline, upload, wait_final, worker  # noqa: F401 - fixtures
from webhooks import signing
from webhooks.models import Attempt, Delivery, DeliveryStatus
from webhooks.services import endpoint_create

WAIT_SECONDS = 60


@pytest.fixture(scope="module", autouse=True)
def worker_may_post_to_loopback():
    """The worker process reads its settings from the environment: let it reach the
    receiver on 127.0.0.1 (production refuses private addresses)."""
    old = os.environ.get("WEBHOOK_ALLOW_PRIVATE_DESTINATIONS")
    os.environ["WEBHOOK_ALLOW_PRIVATE_DESTINATIONS"] = "true"
    yield
    if old is None:
        os.environ.pop("WEBHOOK_ALLOW_PRIVATE_DESTINATIONS")
    else:
        os.environ["WEBHOOK_ALLOW_PRIVATE_DESTINATIONS"] = old


def test_an_upload_ends_in_a_signed_screening_completed_webhook(pipeline, receiver, settings):  # noqa: F811
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = True
    hospital_world = pipeline.world
    with scope(hospital=hospital_world.hospital):
        endpoint, secret = endpoint_create(hospital=hospital_world.hospital, url=receiver.url,
                                           actor=hospital_world.uploader,
                                           events=["screening.completed", "screening.failed"])
    screening = upload(hospital_world, FILM.read_bytes())
    final = wait_final([screening.pk], pipeline.worker)[screening.pk]
    deadline = time.monotonic() + WAIT_SECONDS
    while not receiver.requests:
        assert time.monotonic() < deadline, pipeline.worker.log.read_text()[-4000:]
        time.sleep(0.2)
    [received] = receiver.requests
    assert receiver.verified(secret) == [True]
    body = received.json
    assert body["event"] == "screening.completed" and body["hospital"] == hospital_world.hospital.slug
    assert final.status == "done"
    assert (body["data"]["screening"]["id"], body["data"]["screening"]["status"]) == (screening.pk, "done")
    assert body["data"]["result"]["model_version"] and 0 <= body["data"]["result"]["covid_probability"] <= 1
    assert body["data"]["patient"] == {"id": hospital_world.patient.pk, "mrn": hospital_world.patient.mrn}
    deadline = time.monotonic() + 10
    while True:
        with scopes_disabled():
            delivery = Delivery.objects.get(endpoint=endpoint)
            attempts = list(Attempt.objects.filter(delivery=delivery))
        if delivery.status == DeliveryStatus.DELIVERED or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delivery.status == DeliveryStatus.DELIVERED and [a.status_code for a in attempts] == [200]
    assert received.headers["X-Webhook-Id"] == str(delivery.event_id)
    assert signing.verify(secret=secret, body=received.body, timestamp=received.headers["X-Webhook-Timestamp"],
                          signature_header=received.headers["X-Webhook-Signature"])
