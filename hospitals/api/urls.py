"""API routes of the hospitals app, relative to `api/v1/`."""

from .base import hospital_api_path
from .views import HospitalView

urlpatterns = [
    hospital_api_path("", HospitalView.as_view(), name="hospital"),
]
