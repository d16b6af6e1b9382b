"""Input and output shapes of the patients API. Input serializers only validate; the
views pass their data to patients.services. `hospital` is never a field: it comes from
the URL, and every foreign key is limited to that hospital."""

from rest_framework import serializers

from hospitals.api.fields import HospitalPrimaryKeyRelatedField
from hospitals.api.serializers import FastReadMixin
from patients.models import LabResult, LabTest, LabTestType, Patient, Status, StatusChange


class PatientSerializer(FastReadMixin, serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "mrn", "given_name", "family_name", "sex", "birth_date", "phone", "email", "address",
                  "national_id", "status", "status_since", "created_at", "updated_at"]
        read_only_fields = ["id", "status", "status_since", "created_at", "updated_at"]
        # Uniqueness of the MRN is the service's check (per hospital, with a clear message).
        validators: list = []


class StatusChangeSerializer(FastReadMixin, serializers.ModelSerializer):
    patient = HospitalPrimaryKeyRelatedField(model=Patient)
    lab_test = HospitalPrimaryKeyRelatedField(model=LabTest, required=False, allow_null=True,
                                              help_text="The lab test this change is based on (same patient).")
    to_status = serializers.ChoiceField(choices=Status.choices)
    from_status = serializers.CharField(read_only=True, help_text="Empty for the registration entry.")
    changed_by = serializers.StringRelatedField(read_only=True)

    class Meta:
        model = StatusChange
        fields = ["id", "patient", "from_status", "to_status", "effective_date", "reason", "source", "lab_test",
                  "changed_by", "changed_at"]
        read_only_fields = ["id", "from_status", "source", "changed_by", "changed_at"]


class LabTestSerializer(FastReadMixin, serializers.ModelSerializer):
    patient = HospitalPrimaryKeyRelatedField(model=Patient)
    test_type = serializers.ChoiceField(choices=LabTestType.choices)
    result = serializers.ChoiceField(choices=LabResult.choices)
    recorded_by = serializers.StringRelatedField(read_only=True)

    class Meta:
        model = LabTest
        fields = ["id", "patient", "test_type", "result", "sample_date", "notes", "recorded_by", "recorded_at"]
        read_only_fields = ["id", "recorded_by", "recorded_at"]
