"""Portal forms for patients, status changes and lab tests. They validate input only;
every write goes through `patients.services`, whose ValidationErrors are shown on the
same form (see `hospitals.forms.add_service_errors`)."""

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import selectors
from .models import LabResult, LabTestType, Patient, Status, StatusSource
from .services import PATIENT_FIELDS


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class PatientForm(forms.Form):
    """Demographics. A plain Form built from the model's fields (not a ModelForm): a
    ModelForm would modify the instance while validating, and patient_update needs the
    stored values to tell what changed."""


PatientForm.base_fields = forms.fields_for_model(Patient, fields=PATIENT_FIELDS, widgets={
    "birth_date": DateInput(),
    "address": forms.Textarea(attrs={"rows": 3}),
})


def patient_initial(patient: Patient) -> dict:
    return {name: getattr(patient, name) for name in PATIENT_FIELDS}


class PatientSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label=_("Name or MRN"),
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("Name or MRN")}))
    status = forms.ChoiceField(required=False, label=_("Status"), choices=[("", _("Any status")), *Status.choices])
    awaiting_review = forms.BooleanField(required=False, label=_("Awaiting review"),
                                         help_text=_("A screening with an AI result that nobody has reviewed yet."))


class StatusChoiceField(forms.ChoiceField):
    """Offers only the transitions allowed now, but accepts any known status so that a
    stale page (someone else moved the patient meanwhile) or a final status gets the
    service's explanation ("A deceased patient cannot become ...") instead of a generic
    "not a valid choice"."""

    def valid_value(self, value):
        return value in Status.values


class StatusChangeForm(forms.Form):
    to_status = StatusChoiceField(label="New status")
    effective_date = forms.DateField(widget=DateInput(), help_text="The date the new status applies from.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Why: findings, results or the decision taken.")
    source = forms.ChoiceField(choices=StatusSource.choices, initial=StatusSource.CLINICIAN,
                               label="Based on")
    lab_test = forms.ModelChoiceField(queryset=None, required=False, label="Lab test",
                                      help_text="Required when the change is based on a lab result.")

    def __init__(self, *args, patient: Patient, **kwargs):
        super().__init__(*args, **kwargs)
        self.patient = patient
        self.fields["to_status"].choices = [(s, Status(s).label) for s in patient.allowed_transitions()]
        self.fields["effective_date"].initial = timezone.localdate()
        # Only this patient's tests can be chosen; another patient's id is "not a valid choice".
        self.fields["lab_test"].queryset = selectors.patient_lab_tests(patient=patient)
        self.fields["lab_test"].empty_label = "None"

    def clean(self):
        data = super().clean()
        if data.get("source") == StatusSource.LAB_RESULT and not data.get("lab_test"):
            self.add_error("lab_test", "Choose the lab test this change is based on.")
        return data


class LabTestForm(forms.Form):
    test_type = forms.ChoiceField(choices=LabTestType.choices, label="Test")
    result = forms.ChoiceField(choices=LabResult.choices)
    sample_date = forms.DateField(widget=DateInput(), label="Sample taken on")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sample_date"].initial = timezone.localdate()
