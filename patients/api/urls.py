"""API routes of the patients app, relative to `api/v1/`."""

urlpatterns: list = []
