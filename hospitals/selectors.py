"""Reads about hospitals, memberships and the audit trail."""

from django.db.models import QuerySet
from django_scopes import scopes_disabled

from config.prepared import PreparedSelect

from .models import AuditEvent, Hospital, Membership, Role, User


def membership_for(*, user: User, hospital_slug: str) -> Membership | None:
    """The user's active membership in an active hospital, or None (answered as 404)."""
    with scopes_disabled():
        return (
            Membership.objects.select_related("hospital")
            .filter(user=user, hospital__slug=hospital_slug, hospital__is_active=True, is_active=True)
            .first()
        )


# Read for every portal request (hospitals.security.active_memberships): compiled once per
# connection (config.prepared). The values are the statement's parameters, in this order.
USER_MEMBERSHIPS = PreparedSelect(
    lambda user_id, active, hospital_active: Membership.objects.select_related("hospital")
    .filter(user_id=user_id).filter(is_active=active).filter(hospital__is_active=hospital_active)
    .order_by("hospital__name"))


def user_memberships(*, user: User) -> list[Membership]:
    """Active memberships of a user in active hospitals, for the tenant scope and the
    hospital switcher."""
    with scopes_disabled():
        return USER_MEMBERSHIPS.all(user.pk, True, True)


def admin_hospital_ids(*, user: User) -> list[int]:
    """Hospitals whose Django admin this user may use (as hospital admin)."""
    with scopes_disabled():
        return list(
            Membership.objects.filter(
                user=user, role=Role.HOSPITAL_ADMIN, is_active=True, hospital__is_active=True
            ).values_list("hospital_id", flat=True)
        )


def member_list(*, hospital: Hospital) -> QuerySet[Membership]:
    return Membership.objects.filter(hospital=hospital).select_related("user").order_by("user__email")


def audit_event_list(*, hospital: Hospital) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(hospital=hospital).order_by("-seq")
