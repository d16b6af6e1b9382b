from django.urls import path

from . import views

app_name = "patients"
urlpatterns = [
    path("", views.patient_list, name="list"),
    path("new/", views.patient_create, name="create"),
    path("<int:pk>/", views.patient_detail, name="detail"),
    path("<int:pk>/edit/", views.patient_edit, name="edit"),
    path("<int:pk>/status/", views.patient_change_status, name="change_status"),
    path("<int:pk>/lab-tests/new/", views.labtest_create, name="labtest_create"),
]
