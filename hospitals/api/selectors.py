"""Reads about partner clients. Run inside the hospital scope."""

from django.db.models import QuerySet

from hospitals.models import Hospital, PartnerClient


def partner_client_list(*, hospital: Hospital) -> QuerySet[PartnerClient]:
    return (PartnerClient.objects.filter(hospital=hospital)
            .select_related("application", "created_by", "revoked_by").order_by("-created_at", "-id"))
