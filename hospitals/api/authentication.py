"""Authentication of API requests: partner clients by OAuth2 bearer token, portal users by
their session (DRF's SessionAuthentication, which enforces CSRF on unsafe methods)."""

from oauth2_provider.contrib.rest_framework import OAuth2Authentication

from .scopes import client_usable, partner_client_of


class PartnerOAuth2Authentication(OAuth2Authentication):
    """A valid bearer token of a usable PartnerClient. The request's user becomes the
    client's service account (writes need a user; see PartnerClient) and
    `request.partner_client` is set; `request.auth` is the AccessToken.

    A token of a revoked client, or of an application that is not a partner client,
    authenticates nobody (401)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        _user, token = result
        client = partner_client_of(token.application)
        if not client_usable(client):
            request.oauth2_error = {"error": "invalid_token", "error_description": "The client was revoked."}
            return None
        request.partner_client = client
        request._request.partner_client = client  # for code that holds the Django request
        return client.service_user, token


from . import schema  # noqa: E402,F401  (registers the OpenAPI security scheme of this class)
