"""Outgoing webhooks: per-hospital endpoints, the transactional outbox of deliveries
and the log of every HTTP attempt.

The database is the source of truth: a `Delivery` row is written in the same
transaction as the change it announces (`webhooks.services.event_emit`), so an event is
never announced for a change that rolled back and never lost for one that committed.
The broker only carries delivery ids; a periodic sweeper re-enqueues pending deliveries
the broker lost. Every row carries its hospital and a scoped manager; a child's hospital
must equal its parent's (checked in `save`)."""

import uuid

from django.conf import settings
from django.db import models

from hospitals.managers import HospitalScopedManager
from hospitals.models import Hospital


class WebhookEvent(models.TextChoices):
    SCREENING_COMPLETED = "screening.completed", "Screening completed (done or cannot assess)"
    SCREENING_FAILED = "screening.failed", "Screening failed or rejected"
    REVIEW_RECORDED = "review.recorded", "Review recorded"
    PATIENT_STATUS_CHANGED = "patient.status_changed", "Patient status changed"


class Endpoint(models.Model):
    """A receiver URL of one hospital, the events it subscribes to and its signing secret.

    The secret signs every delivery (HMAC-SHA256), so it is stored as is; it is shown to
    the admin once, when created or rotated, and never again (not in the portal, not in
    the Django admin). A deactivated endpoint gets no new deliveries."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")
    url = models.URLField("URL", max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Names of the subscribed events.")
    is_active = models.BooleanField("active", default=True)
    secret = models.CharField(max_length=100)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HospitalScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.description or self.url

    def subscribes_to(self, event: str) -> bool:
        return event in (self.events or [])


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One event for one endpoint: the outbox row. `body` is the exact JSON that is
    signed and sent, fixed when the event happened. `event_id` is the event's id (sent as
    `X-Webhook-Id`), shared by every endpoint's delivery of the event and by replays, so
    receivers can de-duplicate.

    `next_attempt_at` says when the delivery is due: the task claims a due pending
    delivery by moving it forward (a lease while the request is in flight), so a
    duplicate message from the sweeper or a redelivery finds nothing to do."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="deliveries")
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    event_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays")
    replayed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = HospitalScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"]), models.Index(fields=["endpoint", "-created_at"])]

    def save(self, *args, **kwargs):
        if self.hospital_id != self.endpoint.hospital_id:
            raise ValueError("A delivery must belong to its endpoint's hospital.")
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.event} #{self.pk} ({self.status})"


class Attempt(models.Model):
    """One HTTP request of a delivery and what came back (append-only log)."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_snippet = models.TextField(blank=True, help_text="The start of the response body, truncated.")
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)

    objects = HospitalScopedManager()

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique")]

    def save(self, *args, **kwargs):
        if self.hospital_id != self.delivery.hospital_id:
            raise ValueError("An attempt must belong to its delivery's hospital.")
        super().save(*args, **kwargs)

    def __str__(self):
        return f"Attempt {self.number} of delivery {self.delivery_id}"
