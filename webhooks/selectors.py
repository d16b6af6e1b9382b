"""Reads about webhooks. Run inside the hospital scope; another hospital's id raises
DoesNotExist (the views answer 404)."""

from django.db.models import Count, Q, QuerySet

from hospitals.models import Hospital

from .models import Attempt, Delivery, DeliveryStatus, Endpoint


def endpoint_list(*, hospital: Hospital) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(hospital=hospital).annotate(
        pending=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
        failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
    ).order_by("-created_at", "-id")


def endpoint_get(*, hospital: Hospital, pk: int) -> Endpoint:
    return Endpoint.objects.get(hospital=hospital, pk=pk)


def delivery_list(*, endpoint: Endpoint) -> QuerySet[Delivery]:
    return Delivery.objects.filter(hospital_id=endpoint.hospital_id, endpoint=endpoint).order_by("-created_at", "-id")


def delivery_get(*, hospital: Hospital, pk: int) -> Delivery:
    return Delivery.objects.select_related("endpoint", "replay_of", "replayed_by").get(hospital=hospital, pk=pk)


def attempt_list(*, delivery: Delivery) -> QuerySet[Attempt]:
    return Attempt.objects.filter(hospital_id=delivery.hospital_id, delivery=delivery).order_by("number")
