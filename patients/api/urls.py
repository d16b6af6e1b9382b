"""API routes of the patients app, relative to `api/v1/`."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("patients", views.PatientViewSet, basename="patient")
router.register("status-changes", views.StatusChangeViewSet, basename="statuschange")
router.register("lab-tests", views.LabTestViewSet, basename="labtest")

urlpatterns = [path("hospitals/<slug:hospital_slug>/", include(router.urls))]
