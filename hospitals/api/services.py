"""Writes about partner clients (OAuth2 client-credentials applications of one hospital).
Keyword-only, atomic, audited; called by the portal's client pages."""

import uuid
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AccessToken, Application, RefreshToken

from hospitals.audit import audit_record
from hospitals.models import Hospital, PartnerClient, User

from .scopes import API_SCOPES


@dataclass(frozen=True)
class NewClient:
    """A created client and its secret in plain text: shown once, never stored (DOT keeps
    only a hash)."""

    client: PartnerClient
    client_id: str
    client_secret: str


def partner_client_create(*, hospital: Hospital, name: str, scopes: list[str], actor: User,
                          request=None) -> NewClient:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the client a name."})
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown:
        raise ValidationError({"scopes": f"Unknown scopes: {', '.join(unknown)}."})
    if not scopes:
        raise ValidationError({"scopes": "Choose at least one scope."})
    secret = generate_client_secret()
    with transaction.atomic():
        # The account the client's writes are recorded as; it can never sign in.
        service_user = User.objects.create_user(
            email=f"api-client-{uuid.uuid4().hex[:16]}@clients.invalid", first_name="API client",
            last_name=name[:150], is_active=False,
        )
        service_user.set_unusable_password()
        service_user.save(update_fields=["password"])
        application = Application.objects.create(
            name=f"{hospital.slug}: {name}"[:255], user=service_user,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret, hash_client_secret=True, redirect_uris="",
        )
        client = PartnerClient.objects.create(
            hospital=hospital, application=application, name=name[:100],
            allowed_scopes=" ".join(s for s in API_SCOPES if s in scopes), service_user=service_user,
            created_by=actor,
        )
        audit_record(action="create", object_type="partner_client", object_id=client.pk, hospital=hospital,
                     actor=actor, request=request, detail={"scopes": client.scope_list, "name": client.name})
    return NewClient(client=client, client_id=application.client_id, client_secret=secret)


def partner_client_revoke(*, client: PartnerClient, actor: User, request=None) -> PartnerClient:
    """Revoke a client: its tokens are deleted at once and the token endpoint refuses it
    from now on (hospitals.api.scopes.PartnerOAuth2Validator)."""
    if client.revoked_at is not None:
        raise ValidationError("This client is already revoked.")
    with transaction.atomic():
        client.revoked_at, client.revoked_by = timezone.now(), actor
        client.save(update_fields=["revoked_at", "revoked_by"])
        RefreshToken.objects.filter(application=client.application).delete()
        deleted, _ = AccessToken.objects.filter(application=client.application).delete()
        audit_record(action="update", object_type="partner_client", object_id=client.pk, hospital=client.hospital,
                     actor=actor, request=request, detail={"revoked": True, "tokens_deleted": deleted})
    return client
