"""OAuth2 scopes of the partner API and the django-oauth-toolkit hooks that bind a client
to its hospital admin's choices: a token never carries a scope the client was not
allowed, and a revoked client (or one of a deactivated hospital) gets no token."""

import hashlib

from django_scopes import scopes_disabled
from oauth2_provider.models import get_access_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import SettingsScopes

from config.prepared import PreparedSelect

READ = "read"
WRITE = "write"
UPLOAD = "screening:upload"
API_SCOPES = {
    READ: "Read patients, lab tests, screenings, AI results and reviews",
    WRITE: "Create and update patients, lab tests, status changes and reviews",
    UPLOAD: "Upload chest X-rays for screening",
}

# The scope a partner client needs for each POLICY action (session users are checked
# against hospitals.permissions.POLICY with their role instead).
ACTION_SCOPES: dict[str, str] = {
    "patient.view": READ,
    "screening.view": READ,
    "patient.create": WRITE,
    "patient.edit": WRITE,
    "patient.change_status": WRITE,
    "labtest.create": WRITE,
    "screening.review": WRITE,
    "scan.upload": UPLOAD,
}


# What a bearer token is loaded with (PartnerOAuth2Validator): its application, the
# application's partner client, that client's hospital and service account, in the
# token's query. Client-credentials tokens have no user: none is joined.
TOKEN_RELATED = ("application__partner_client__hospital", "application__partner_client__service_user")
# The checksum is unique: no ORDER BY. Compiled once per connection (config.prepared).
TOKEN_BY_CHECKSUM = PreparedSelect(
    lambda checksum: get_access_token_model().objects.select_related(*TOKEN_RELATED).filter(
        token_checksum=checksum)[:1])


def partner_client_of(application):
    """The PartnerClient of a DOT application, or None (unscoped lookup: the token
    endpoint runs before any hospital is known). No query where the application was
    loaded with its client (TOKEN_RELATED)."""
    from hospitals.models import PartnerClient

    if application is None:
        return None
    if type(application).partner_client.is_cached(application):
        return getattr(application, "partner_client", None)
    with scopes_disabled():
        return PartnerClient.objects.select_related("hospital", "service_user").filter(application_id=application.pk).first()


def client_usable(client) -> bool:
    return client is not None and client.revoked_at is None and client.hospital.is_active


class PartnerScopes(SettingsScopes):
    """Available and default scopes of a client: those its hospital admin allowed."""

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        client = partner_client_of(application)
        if not client_usable(client):
            return []
        return [s for s in client.scope_list if s in API_SCOPES]

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return self.get_available_scopes(application, request)


class PartnerOAuth2Validator(OAuth2Validator):
    """Only an application that is a usable PartnerClient can authenticate at /o/token/.
    A bearer token is loaded with its partner client in one query."""

    def _load_access_token(self, token):
        return TOKEN_BY_CHECKSUM.first(hashlib.sha256(token.encode("utf-8")).hexdigest())

    def authenticate_client(self, request, *args, **kwargs):
        if not super().authenticate_client(request, *args, **kwargs):
            return False
        return client_usable(partner_client_of(request.client))
