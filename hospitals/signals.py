"""Sign-ins and sign-outs go to the platform audit chain."""

from allauth.account.models import EmailAddress
from allauth.account.signals import password_reset
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .audit import audit_record


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs):
    audit_record(action="login", object_type="user", object_id=user.pk, actor=user, request=request)


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="logout", object_type="user", object_id=user.pk, actor=user, request=request)


@receiver(user_login_failed)
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # The attempted email is not stored: it may be a password typed into the wrong field.
    audit_record(action="login_failed", object_type="user", request=request)


@receiver(password_reset)
def verify_email_on_password_reset(sender, request, user, **kwargs):
    """Setting a password through the link mailed to the account's address (an invitation
    or a reset) proves control of that address, so it counts as verified; otherwise an
    invited member would have to confirm the address again before the first sign-in."""
    EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=False).update(verified=True)
