"""Authentication of API requests: partner clients by OAuth2 bearer token, portal users by
their session (DRF's SessionAuthentication, which enforces CSRF on unsafe methods)."""

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.oauth2_backends import OAuthLibCore, get_oauthlib_core

from .scopes import client_usable, partner_client_of


class _HeaderTokenCore(OAuthLibCore):
    """Verifies the bearer token of the Authorization header only: the request body is never
    read for a token, so a body the API cannot parse is refused by the view (after the
    hospital check), not while authenticating."""

    def extract_body(self, request):
        return []


class PartnerOAuth2Authentication(OAuth2Authentication):
    """A valid bearer token (Authorization header) of a usable PartnerClient. The request's
    user becomes the client's service account (writes need a user; see PartnerClient) and
    `request.partner_client` is set; `request.auth` is the AccessToken.

    A token of a revoked client, or of an application that is not a partner client,
    authenticates nobody (401)."""

    def authenticate(self, request):
        if not request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("bearer "):
            return None
        valid, r = _HeaderTokenCore(get_oauthlib_core().server).verify_request(request._request, scopes=[])
        if not valid:
            request.oauth2_error = getattr(r, "oauth2_error", {})
            return None
        token = r.access_token
        client = partner_client_of(token.application)
        if not client_usable(client):
            request.oauth2_error = {"error": "invalid_token", "error_description": "The client was revoked."}
            return None
        request.partner_client = client
        request._request.partner_client = client  # for code that holds the Django request
        return client.service_user, token


from . import schema  # noqa: E402,F401  (registers the OpenAPI security scheme of this class)
