"""FHIR routes, relative to `fhir/<slug:hospital_slug>/` (config/urls.py). FHIR paths
carry no trailing slash: `Patient`, `Patient/12`, `metadata`."""

from django.urls import path

from . import views

app_name = "fhir"

urlpatterns = [path("metadata", views.MetadataView.as_view(), name="metadata")]
for viewset in views.RESOURCE_VIEWSETS:
    name = viewset.resource_type.lower()
    urlpatterns += [
        path(viewset.resource_type, viewset.as_view({"get": "list"}), name=f"{name}-search"),
        path(f"{viewset.resource_type}/<str:pk>", viewset.as_view({"get": "retrieve"}), name=f"{name}-read"),
    ]
# Last: everything else below the slug (unknown types, _history, operations) is a 404 OperationOutcome.
urlpatterns += [path("<path:rest>", views.UnknownView.as_view(), name="unknown")]
