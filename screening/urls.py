from django.urls import path

from . import views

app_name = "screening"
urlpatterns = [
    path("patients/<int:patient_pk>/scans/upload/", views.upload, name="upload"),
    path("screenings/", views.worklist, name="worklist"),
    path("screenings/review/", views.review_queue, name="review_queue"),
    path("screenings/<int:pk>/", views.detail, name="detail"),
    path("screenings/<int:pk>/status.json", views.status, name="status"),
    path("screenings/<int:pk>/review/", views.review, name="review"),
    path("screenings/<int:pk>/apply-status/", views.apply_status, name="apply_status"),
    path("scans/<int:pk>/original", views.scan_original, name="scan_original"),
    path("scans/<int:pk>/preview.png", views.scan_preview, name="scan_preview"),
    path("results/<int:pk>/heatmap", views.heatmap, name="heatmap"),
]
