from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from oauth2_provider import views as oauth2_views

from hospitals import views as hospital_views

# The partner API: /api/v1/hospitals/<slug>/... (each app's api/urls.py), its OpenAPI
# schema and the two documentation pages (assets served locally, no CDN). Swagger UI's set-up
# script is served as a file (the split view), so the CSP holds; Redoc runs its search in a
# blob: worker, allowed on that page only.
api_v1 = [
    path("", include("hospitals.api.urls")),
    path("", include("patients.api.urls")),
    path("", include("screening.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", csp_update({"worker-src": ["blob:"]})(SpectacularRedocView.as_view(url_name="api:schema")),
         name="redoc"),
]

# OAuth2: only the client-credentials token endpoint and token revocation; applications
# are managed by hospital admins in the portal (hospitals:api_clients), not DOT's pages.
oauth2 = [
    path("token/", oauth2_views.TokenView.as_view(), name="token"),
    path("revoke_token/", oauth2_views.RevokeTokenView.as_view(), name="revoke-token"),
]

urlpatterns = [
    path("", hospital_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include((api_v1, "api"))),
    path("o/", include((oauth2, "oauth2_provider"))),
    path("h/<slug:hospital_slug>/", include("hospitals.urls")),
    path("h/<slug:hospital_slug>/patients/", include("patients.urls")),
    path("h/<slug:hospital_slug>/", include("screening.urls")),
    path("h/<slug:hospital_slug>/webhooks/", include("webhooks.urls")),
    path("fhir/<slug:hospital_slug>/", include("fhir_facade.urls")),
]

handler404 = "hospitals.api.exceptions.handler404"
handler500 = "hospitals.api.exceptions.handler500"
