from django.urls import path

from . import views

app_name = "hospitals"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<int:pk>/", views.member_edit, name="member_edit"),
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    path("exports/", views.export_list, name="exports"),
    path("exports/<slug:what>.csv", views.export_csv, name="export_csv"),
]

# Partner API clients (OAuth2 client credentials) of this hospital.
urlpatterns += [
    path("api-clients/", views.api_clients, name="api_clients"),
    path("api-clients/new/", views.api_client_create, name="api_client_create"),
    path("api-clients/<int:pk>/revoke/", views.api_client_revoke, name="api_client_revoke"),
]
