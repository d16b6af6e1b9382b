from django.contrib import admin
from django.urls import include, path

from hospitals import views as hospital_views

urlpatterns = [
    path("", hospital_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("h/<slug:hospital_slug>/", include("hospitals.urls")),
    path("h/<slug:hospital_slug>/patients/", include("patients.urls")),
    path("h/<slug:hospital_slug>/", include("screening.urls")),
    path("h/<slug:hospital_slug>/webhooks/", include("webhooks.urls")),
]
