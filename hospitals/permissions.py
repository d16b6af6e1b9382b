"""Who may do what inside a hospital: one declared table, read by views, admin and tests.

A role not listed for an action is refused (403). Membership in the hospital is checked
before this table is consulted; a non-member gets 404 (see `hospitals.middleware`)."""

from .models import Role

ALL_ROLES = frozenset(Role.values)

POLICY: dict[str, frozenset[str]] = {
    "patient.view": ALL_ROLES,
    "patient.create": frozenset({Role.HOSPITAL_ADMIN, Role.REGISTRAR}),
    "patient.edit": frozenset({Role.HOSPITAL_ADMIN, Role.REGISTRAR}),
    "patient.change_status": frozenset({Role.CLINICIAN}),
    "labtest.create": frozenset({Role.CLINICIAN, Role.REGISTRAR}),
    "scan.upload": frozenset({Role.CLINICIAN, Role.RADIOLOGIST, Role.REGISTRAR}),
    "screening.view": ALL_ROLES,
    "screening.review": frozenset({Role.RADIOLOGIST, Role.CLINICIAN}),
    "members.manage": frozenset({Role.HOSPITAL_ADMIN}),
    "audit.view": frozenset({Role.HOSPITAL_ADMIN}),
    "data.export": frozenset({Role.HOSPITAL_ADMIN}),
    "webhooks.manage": frozenset({Role.HOSPITAL_ADMIN}),
}


def role_can(role: str | None, action: str) -> bool:
    """True when `role` may perform `action`. Unknown actions are refused (fail closed)."""
    return role is not None and role in POLICY.get(action, frozenset())
