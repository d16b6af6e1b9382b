"""Django admin for patients and their clinical records.

Clinical records stay as the services write them: a patient's demographics can be
edited (through `patients.services`, so every change is audited), the status only moves
through the state machine in the portal (`status` is read-only here, status changes are
view-only), lab tests are added through `labtest_create` and never edited, and nothing
clinical is deleted from the admin. Field-level history (simple-history) is shown, never
reverted. Tenant limits: see `hospitals.admin.TenantAdminMixin`."""

from django import forms
from django.contrib import admin
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from hospitals.admin import (
    HospitalFilter,
    TenantAdminMixin,
    TenantHistoryAdminMixin,
    TenantInlineMixin,
    audit_changelist,
)
from hospitals.admin_site import admin_hospital_ids
from hospitals.audit import audit_record

from . import services
from .models import LabTest, Patient, StatusChange


class StatusChangeInline(TenantInlineMixin, admin.TabularInline):
    model = StatusChange
    fk_name = "patient"
    fields = ["effective_date", "from_status", "to_status", "source", "reason", "changed_by", "changed_at"]
    readonly_fields = fields
    ordering = ["-effective_date", "-changed_at"]


class LabTestInline(TenantInlineMixin, admin.TabularInline):
    model = LabTest
    fk_name = "patient"
    fields = ["sample_date", "test_type", "result", "notes", "recorded_by", "recorded_at"]
    readonly_fields = fields
    ordering = ["-sample_date", "-id"]


class PatientAdminForm(forms.ModelForm):
    """Checks the services would refuse after validation, so they show in the form."""

    class Meta:
        model = Patient
        fields = "__all__"

    def clean_birth_date(self):
        birth_date = self.cleaned_data["birth_date"]
        if birth_date and birth_date > timezone.localdate():
            raise forms.ValidationError("The birth date cannot be in the future.")
        return birth_date

    def clean(self):
        cleaned = super().clean()
        hospital_id = cleaned["hospital"].pk if cleaned.get("hospital") else self.instance.hospital_id
        mrn = (cleaned.get("mrn") or "").strip()
        if hospital_id and mrn:
            clash = Patient.objects.filter(hospital_id=hospital_id, mrn=mrn)
            if self.instance.pk:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("mrn", "A patient with this MRN already exists in this hospital.")
        return cleaned


@admin.register(Patient)
class PatientAdmin(TenantHistoryAdminMixin, SimpleHistoryAdmin):
    """Hospital admins view, register and edit patients of their hospitals (POLICY
    patient.view/create/edit); nobody deletes a patient or sets a status here."""

    form = PatientAdminForm
    hospital_admin_policy = {"view": "patient.view", "add": "patient.create", "change": "patient.edit"}
    denied_to_all = frozenset({"delete"})
    list_display = ["mrn", "family_name", "given_name", "status", "status_since", "hospital"]
    list_filter = ["status", "sex", HospitalFilter]
    search_fields = ["mrn", "family_name", "given_name"]
    list_select_related = ["hospital"]
    history_list_display = ["status"]
    inlines = [StatusChangeInline, LabTestInline]
    fields = [
        "hospital", "mrn", "given_name", "family_name", "sex", "birth_date", "phone", "email", "address",
        "national_id", "status", "status_since", "created_by", "created_at", "updated_at",
    ]
    readonly_fields = ["status", "status_since", "created_by", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        # A patient never moves to another hospital.
        return [*self.readonly_fields, "hospital"] if obj is not None else self.readonly_fields

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        ids = admin_hospital_ids(request)
        if ids and len(ids) == 1:
            initial.setdefault("hospital", next(iter(ids)))
        return initial

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in services.PATIENT_FIELDS if name in form.cleaned_data}
        if not change:
            created = services.patient_create(hospital=form.cleaned_data["hospital"], actor=request.user,
                                              request=request, **fields)
            for field in Patient._meta.concrete_fields:
                setattr(obj, field.attname, getattr(created, field.attname))
            obj._state.adding = False
            return
        current = Patient.objects.get(pk=obj.pk)
        changed = {name: value for name, value in fields.items() if name in form.changed_data}
        updated = services.patient_update(patient=current, actor=request.user, request=request, **changed)
        for field in Patient._meta.concrete_fields:
            setattr(obj, field.attname, getattr(updated, field.attname))

    # -- reads of patient data are audited, like in the portal ---------------------------------
    def change_view(self, request, object_id, form_url="", extra_context=None):
        patient = self.get_object_or_404(request, object_id)
        if request.method == "GET":
            audit_record(action="view", object_type="patient", object_id=patient.pk, hospital=patient.hospital,
                         request=request, detail={"via": "admin"})
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        patient = self.get_object_or_404(request, object_id)
        audit_record(action="view", object_type="patient", object_id=patient.pk, hospital=patient.hospital,
                     request=request, detail={"via": "admin", "history": True})
        return super().history_view(request, object_id, extra_context)

    def changelist_view(self, request, extra_context=None):
        return audit_changelist(request, super().changelist_view(request, extra_context),
                                object_type="patient", ids_key="patients")


class LabTestAddForm(forms.ModelForm):
    # `patient` is added by the admin at request time (ModelAdmin.get_form), inside the
    # hospital scope: a module-level field would query the scoped manager at import.
    class Meta:
        model = LabTest
        fields = ["test_type", "result", "sample_date", "notes"]

    def clean_sample_date(self):
        sample_date = self.cleaned_data["sample_date"]
        if sample_date and sample_date > timezone.localdate():
            raise forms.ValidationError("The sample date cannot be in the future.")
        return sample_date


@admin.register(LabTest)
class LabTestAdmin(TenantHistoryAdminMixin, SimpleHistoryAdmin):
    """Lab tests are recorded (POLICY labtest.create, through the service), never edited
    or deleted: a wrong result is followed by a new test."""

    hospital_admin_policy = {"view": "patient.view", "add": "labtest.create"}
    denied_to_all = frozenset({"change", "delete"})
    list_display = ["patient", "test_type", "result", "sample_date", "hospital", "recorded_by"]
    list_filter = ["test_type", "result", HospitalFilter]
    search_fields = ["patient__mrn", "patient__family_name"]
    list_select_related = ["patient", "hospital", "recorded_by"]
    autocomplete_fields = ["patient"]
    date_hierarchy = "sample_date"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = LabTestAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["patient", *LabTestAddForm.Meta.fields]
        return ["hospital", "patient", "test_type", "result", "sample_date", "notes", "recorded_by", "recorded_at"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.labtest_create(patient=data["patient"], test_type=data["test_type"], result=data["result"],
                                          sample_date=data["sample_date"], notes=data.get("notes", ""),
                                          actor=request.user, request=request)
        for field in LabTest._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False


@admin.register(StatusChange)
class StatusChangeAdmin(TenantAdminMixin, admin.ModelAdmin):
    """The status timeline, view-only: changes are made with `patient_change_status`."""

    hospital_admin_policy = {"view": "patient.view"}
    denied_to_all = frozenset({"add", "change", "delete"})
    list_display = ["patient", "from_status", "to_status", "effective_date", "source", "changed_by", "changed_at"]
    list_filter = ["to_status", "source", HospitalFilter]
    search_fields = ["patient__mrn", "patient__family_name"]
    list_select_related = ["patient", "hospital", "changed_by"]
