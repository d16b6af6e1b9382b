"""Portal pages for webhooks: hospital admins only, secrets shown once, the delivery log
with attempts, replay, audit rows; other hospitals' ids are 404."""

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from hospitals.models import AuditEvent, Role
from tests.factories import HospitalFactory
from webhooks import services, signing
from webhooks.models import Delivery, DeliveryStatus, Endpoint

ROUTES = ["webhooks:list", "webhooks:create", "webhooks:edit", "webhooks:rotate_secret", "webhooks:deliveries",
          "webhooks:delivery", "webhooks:replay"]


def url(name, slug="hook", **kwargs):
    return reverse(name, kwargs={"hospital_slug": slug, **kwargs})


def emit(hook):
    with scope(hospital=hook.hospital):
        return services.event_emit(hospital=hook.hospital, event="review.recorded",
                                   payload={"patient": {"id": hook.patient.pk, "mrn": "HOOK-0001"}})[0]


def audit(object_type):
    with scopes_disabled():
        return list(AuditEvent.objects.filter(object_type=object_type).order_by("seq"))


def kwargs_for(name, hook, delivery):
    if name in ("webhooks:edit", "webhooks:rotate_secret", "webhooks:deliveries"):
        return {"pk": hook.endpoint.pk}
    if name in ("webhooks:delivery", "webhooks:replay"):
        return {"pk": delivery.pk}
    return {}


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.RADIOLOGIST, Role.REGISTRAR, Role.VIEWER])
def test_other_roles_get_403_everywhere_and_no_nav_link(hook, make_member, login, role):
    delivery = emit(hook)
    client = login(make_member(hook.hospital, role))
    for name in ROUTES:
        target = url(name, **kwargs_for(name, hook, delivery))
        assert client.get(target).status_code == 403, target
        assert client.post(target, {}).status_code == 403, target
    assert url("webhooks:list") not in client.get(url("hospitals:dashboard")).content.decode()
    with scopes_disabled():
        assert Delivery.objects.count() == 1


def test_admin_sees_the_nav_link_and_the_list(hook, login):
    client = login(hook.admin)
    assert url("webhooks:list") in client.get(url("hospitals:dashboard")).content.decode()
    page = client.get(url("webhooks:list")).content.decode()
    assert hook.endpoint.url in page and "Partner EHR" in page
    assert hook.secret not in page


def test_create_shows_the_secret_once_and_audits(hook, login):
    client = login(hook.admin)
    response = client.post(url("webhooks:create"), {
        "url": "https://partner.example/hooks", "description": "Lab system",
        "events": ["screening.completed", "review.recorded"], "is_active": "on"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    with scopes_disabled():
        endpoint = Endpoint.objects.get(url="https://partner.example/hooks")
    assert endpoint.events == ["screening.completed", "review.recorded"] and endpoint.is_active
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in response.content.decode()
    # Never again: not on the edit page, the list, nor in the audit trail.
    assert endpoint.secret not in client.get(url("webhooks:edit", pk=endpoint.pk)).content.decode()
    assert endpoint.secret not in client.get(url("webhooks:list")).content.decode()
    [entry] = [e for e in audit("webhook_endpoint") if e.object_id == str(endpoint.pk)]
    assert entry.action == "create" and entry.actor == hook.admin and endpoint.secret not in str(entry.detail)


def test_create_refuses_bad_input_with_messages(hook, login, settings):
    client = login(hook.admin)
    response = client.post(url("webhooks:create"), {"url": "https://partner.example/", "events": []})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = False
    response = client.post(url("webhooks:create"), {"url": "http://10.1.2.3/hook", "events": ["review.recorded"]})
    assert "only be sent to public addresses" in response.content.decode()
    response = client.post(url("webhooks:create"), {"url": "https://user:pw@partner.example/",
                                                    "events": ["review.recorded"]})
    assert "no credentials in the URL" in response.content.decode()
    with scopes_disabled():
        assert Endpoint.objects.count() == 1


def test_edit_and_deactivate(hook, login):
    client = login(hook.admin)
    response = client.post(url("webhooks:edit", pk=hook.endpoint.pk), {
        "url": hook.endpoint.url, "description": "Renamed", "events": ["patient.status_changed"]})
    assert response.status_code == 302
    with scopes_disabled():
        hook.endpoint.refresh_from_db()
    assert (hook.endpoint.description, hook.endpoint.events, hook.endpoint.is_active) == (
        "Renamed", ["patient.status_changed"], False)
    assert audit("webhook_endpoint")[-1].detail["fields"] == ["description", "events", "is_active"]
    assert "Inactive" in client.get(url("webhooks:list")).content.decode()


def test_rotating_the_secret_shows_the_new_one_once_and_the_old_one_stops_verifying(hook, login, receiver):
    client = login(hook.admin)
    assert client.get(url("webhooks:rotate_secret", pk=hook.endpoint.pk)).status_code == 302  # GET changes nothing
    response = client.post(url("webhooks:rotate_secret", pk=hook.endpoint.pk))
    with scopes_disabled():
        hook.endpoint.refresh_from_db()
    new = hook.endpoint.secret
    assert new != hook.secret and new in response.content.decode() and hook.endpoint.secret_rotated_at
    assert audit("webhook_endpoint")[-1].detail == {"secret": "rotated"}
    delivery = emit(hook)
    with scope(hospital=hook.hospital):
        services.delivery_attempt(delivery_id=delivery.pk)
    assert receiver.verified(new) == [True] and receiver.verified(hook.secret) == [False]


def test_delivery_log_detail_and_replay(hook, login, receiver, django_capture_on_commit_callbacks):
    receiver.fail_first = 1
    delivery = emit(hook)
    with scope(hospital=hook.hospital):
        services.delivery_attempt(delivery_id=delivery.pk)
    client = login(hook.admin)
    log = client.get(url("webhooks:deliveries", pk=hook.endpoint.pk)).content.decode()
    assert url("webhooks:delivery", pk=delivery.pk) in log and "HTTP 500" in log
    detail = client.get(url("webhooks:delivery", pk=delivery.pk)).content.decode()
    assert "receiver is down" in detail and str(delivery.event_id) in detail and "HOOK-0001" in detail
    assert audit("webhook_delivery")[-1].action == "view"
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url("webhooks:replay", pk=delivery.pk))
    with scopes_disabled():
        replay = Delivery.objects.exclude(pk=delivery.pk).get()
    assert response.status_code == 302 and response["Location"] == url("webhooks:delivery", pk=replay.pk)
    assert len(callbacks) == 1  # published after the commit
    assert (replay.replay_of_id, replay.replayed_by, replay.event_id, replay.body, replay.status, replay.attempts) == (
        delivery.pk, hook.admin, delivery.event_id, delivery.body, DeliveryStatus.PENDING, 0)
    entry = audit("webhook_delivery")[-1]
    assert (entry.action, entry.object_id, entry.detail["replay_of"]) == ("create", str(replay.pk), delivery.pk)
    with scope(hospital=hook.hospital):
        outcome = services.delivery_attempt(delivery_id=replay.pk)
    assert outcome.delivery.status == DeliveryStatus.DELIVERED
    assert [r.headers["X-Webhook-Id"] for r in receiver.requests] == [str(delivery.event_id)] * 2
    assert all(signing.verify(secret=hook.secret, body=r.body, timestamp=r.headers["X-Webhook-Timestamp"],
                              signature_header=r.headers["X-Webhook-Signature"]) for r in receiver.requests)
    assert "Replays" in client.get(url("webhooks:delivery", pk=delivery.pk)).content.decode()


def test_replay_of_a_deactivated_endpoint_is_refused_with_a_message(hook, login):
    delivery = emit(hook)
    with scope(hospital=hook.hospital):
        services.endpoint_update(endpoint=hook.endpoint, actor=hook.admin, url=hook.endpoint.url,
                                 events=hook.endpoint.events, description="", is_active=False)
    client = login(hook.admin)
    page = client.post(url("webhooks:replay", pk=delivery.pk), follow=True).content.decode()
    assert "endpoint is deactivated" in page
    with scopes_disabled():
        assert Delivery.objects.count() == 1


def test_another_hospitals_endpoint_and_delivery_are_404(hook, make_member, login):
    other = HospitalFactory(name="Other", slug="other")
    other_admin = make_member(other, Role.HOSPITAL_ADMIN)
    delivery = emit(hook)
    client = login(other_admin)
    for name in ROUTES[2:]:
        foreign = url(name, slug="other", **kwargs_for(name, hook, delivery))
        assert client.get(foreign).status_code == 404, foreign
        assert client.post(foreign, {}).status_code == 404, foreign
    assert hook.endpoint.url not in client.get(url("webhooks:list", slug="other")).content.decode()
    assert client.get(url("webhooks:list")).status_code == 404  # not a member of hook
    with scopes_disabled():
        assert Delivery.objects.count() == 1


def test_admin_pages_are_view_only_and_never_show_the_secret(hook, client):
    delivery = emit(hook)
    client.force_login(hook.admin)
    page = client.get(reverse("admin:webhooks_endpoint_change", args=[hook.endpoint.pk]))
    assert page.status_code == 200 and hook.endpoint.url in page.content.decode()
    assert hook.secret not in page.content.decode()
    assert client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])).status_code == 200
    assert client.get(reverse("admin:webhooks_endpoint_add")).status_code == 403
    assert client.post(reverse("admin:webhooks_endpoint_delete", args=[hook.endpoint.pk]),
                       {"post": "yes"}).status_code == 403
