"""List filters of the patients API. `updated_since` / `*_since` serve incremental sync."""

import django_filters as filters

from hospitals.api.filters import ApiFilterSet, IdFilter

from patients.models import LabResult, LabTest, LabTestType, Patient, Status, StatusChange, StatusSource


class PatientFilter(ApiFilterSet):
    status = filters.MultipleChoiceFilter(choices=Status.choices, distinct=False)
    mrn = filters.CharFilter(field_name="mrn", lookup_expr="exact")
    updated_since = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte",
                                              label="Changed at or after this time (ISO 8601).")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    status_since_after = filters.DateFilter(field_name="status_since", lookup_expr="gte")

    class Meta:
        model = Patient
        fields = ["status", "mrn", "updated_since", "created_after", "created_before", "status_since_after"]


class StatusChangeFilter(ApiFilterSet):
    patient = IdFilter(field_name="patient_id")
    to_status = filters.MultipleChoiceFilter(choices=Status.choices, distinct=False)
    source = filters.ChoiceFilter(choices=StatusSource.choices)
    changed_since = filters.IsoDateTimeFilter(field_name="changed_at", lookup_expr="gte")
    effective_after = filters.DateFilter(field_name="effective_date", lookup_expr="gte")
    effective_before = filters.DateFilter(field_name="effective_date", lookup_expr="lte")

    class Meta:
        model = StatusChange
        fields = ["patient", "to_status", "source", "changed_since", "effective_after", "effective_before"]


class LabTestFilter(ApiFilterSet):
    patient = IdFilter(field_name="patient_id")
    test_type = filters.ChoiceFilter(choices=LabTestType.choices)
    result = filters.ChoiceFilter(choices=LabResult.choices)
    sample_after = filters.DateFilter(field_name="sample_date", lookup_expr="gte")
    sample_before = filters.DateFilter(field_name="sample_date", lookup_expr="lte")
    recorded_since = filters.IsoDateTimeFilter(field_name="recorded_at", lookup_expr="gte")

    class Meta:
        model = LabTest
        fields = ["patient", "test_type", "result", "sample_after", "sample_before", "recorded_since"]
