"""Writes about hospitals and their members. Keyword-only, atomic, audited."""

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.account.utils import user_pk_to_url_str
from allauth.core.context import request_context
from allauth.usersessions.models import UserSession
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from .audit import audit_record
from .models import Hospital, Membership, Role, User


def hospital_create(*, name: str, slug: str, actor: User | None = None) -> Hospital:
    with transaction.atomic():
        hospital = Hospital.objects.create(name=name, slug=slug)
        audit_record(action="create", object_type="hospital", object_id=hospital.pk, hospital=hospital, actor=actor)
    return hospital


def user_find_by_email(*, email: str) -> User | None:
    """Emails are compared case-insensitively everywhere (allauth's own unique
    constraint is conditional and not created on MySQL)."""
    return User.objects.filter(email__iexact=email.strip()).first()


def user_create(*, email: str, password: str | None = None, first_name: str = "", last_name: str = "",
                verified: bool = False, is_superuser: bool = False) -> User:
    email = email.strip().lower()
    if user_find_by_email(email=email) is not None:
        raise ValidationError({"email": "A user with this email address already exists."})
    with transaction.atomic():
        if is_superuser:
            user = User.objects.create_superuser(email=email, password=password,
                                                 first_name=first_name, last_name=last_name)
        else:
            user = User.objects.create_user(email=email, password=password, first_name=first_name, last_name=last_name)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
    return user


def _send_invitation(*, request, user: User, hospital: Hospital, role: str, new_user: bool) -> None:
    """New users get allauth's set-password link; existing users a notice."""
    context = {"hospital": hospital, "role": Role(role).label, "new_user": new_user}
    if new_user:
        key = default_token_generator.make_token(user)
        path = reverse("account_reset_password_from_key", kwargs={"uidb36": user_pk_to_url_str(user), "key": key})
        context["activate_url"] = request.build_absolute_uri(path) if request is not None else path
    # allauth's send_mail reads the request from its context variable, which only its
    # middleware sets; the service is also called outside a request cycle (tests, admin hooks).
    with request_context(request):
        get_account_adapter(request).send_mail("hospitals/email/invitation", user.email, context)


def membership_invite(*, hospital: Hospital, email: str, role: str, first_name: str = "", last_name: str = "",
                      invited_by: User, request=None) -> Membership:
    """Add someone to the hospital by email. A new address becomes an account without a
    password and receives a link to set one; an existing account gets the membership
    (reactivated if it was deactivated)."""
    if role not in Role.values:
        raise ValidationError({"role": "Unknown role."})
    with transaction.atomic():
        user = user_find_by_email(email=email)
        new_user = user is None
        if new_user:
            user = user_create(email=email, first_name=first_name, last_name=last_name)
        membership = Membership.objects.filter(hospital=hospital, user=user).first()
        if membership is not None and membership.is_active:
            raise ValidationError({"email": "This person is already a member of this hospital."})
        if membership is None:
            membership = Membership.objects.create(hospital=hospital, user=user, role=role, invited_by=invited_by)
        else:
            membership.role, membership.is_active, membership.deactivated_at = role, True, None
            membership.save(update_fields=["role", "is_active", "deactivated_at"])
        audit_record(action="create", object_type="membership", object_id=membership.pk, hospital=hospital,
                     actor=invited_by, request=request, detail={"role": role, "new_user": new_user})
        transaction.on_commit(lambda: _send_invitation(request=request, user=user, hospital=hospital,
                                                       role=role, new_user=new_user))
    return membership


def membership_change_role(*, membership: Membership, role: str, actor: User, request=None) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": "Unknown role."})
    if membership.user_id == actor.pk and role != Role.HOSPITAL_ADMIN:
        raise ValidationError({"role": "You cannot remove your own admin role."})
    with transaction.atomic():
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(action="update", object_type="membership", object_id=membership.pk,
                     hospital=membership.hospital, actor=actor, request=request,
                     detail={"role": [old, role]})
    return membership


def user_end_sessions(*, user: User) -> int:
    """End every session of the user (allauth.usersessions tracks them). Each one's session
    row is deleted, also for an account already deactivated (allauth's purge would drop
    only the tracking row of such a session and leave the session itself)."""
    sessions = list(UserSession.objects.filter(user=user))
    for session in sessions:
        session.end()
    return len(sessions)


def user_deactivate(*, user: User, actor: User | None = None, request=None) -> User:
    """Close an account: it can no longer sign in, its sessions end and its OAuth2 tokens
    (access and refresh) are deleted at once."""
    from oauth2_provider.models import AccessToken, RefreshToken

    with transaction.atomic():
        user.is_active = False
        user.save(update_fields=["is_active"])
        RefreshToken.objects.filter(user=user).delete()
        tokens, _ = AccessToken.objects.filter(user=user).delete()
        audit_record(action="update", object_type="user", object_id=user.pk, actor=actor, request=request,
                     detail={"active": False, "tokens_deleted": tokens})
        transaction.on_commit(lambda: user_end_sessions(user=user))
    return user


def membership_deactivate(*, membership: Membership, actor: User, request=None) -> Membership:
    """Revoke access to this hospital and end the member's open sessions."""
    if membership.user_id == actor.pk:
        raise ValidationError("You cannot deactivate yourself.")
    with transaction.atomic():
        membership.is_active = False
        membership.deactivated_at = timezone.now()
        membership.save(update_fields=["is_active", "deactivated_at"])
        audit_record(action="update", object_type="membership", object_id=membership.pk,
                     hospital=membership.hospital, actor=actor, request=request, detail={"active": False})
        user = membership.user
        transaction.on_commit(lambda: user_end_sessions(user=user))
    return membership


def membership_reactivate(*, membership: Membership, actor: User, request=None) -> Membership:
    with transaction.atomic():
        membership.is_active, membership.deactivated_at = True, None
        membership.save(update_fields=["is_active", "deactivated_at"])
        audit_record(action="update", object_type="membership", object_id=membership.pk,
                     hospital=membership.hospital, actor=actor, request=request, detail={"active": True})
    return membership
