"""API routes of the screening app, relative to `api/v1/`."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("screenings", views.ScreeningViewSet, basename="screening")
router.register("ai-results", views.AiResultViewSet, basename="airesult")
router.register("reviews", views.ReviewViewSet, basename="review")

urlpatterns = [path("hospitals/<slug:hospital_slug>/", include(router.urls))]
