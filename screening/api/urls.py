"""API routes of the screening app, relative to `api/v1/`."""

urlpatterns: list = []
