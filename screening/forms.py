"""Portal forms of the screening pages. They only validate input; the writes go through
`screening.services` (which check the clinical rules again and explain refusals)."""

from django import forms
from django.conf import settings
from django.utils import timezone

from .models import AiLabel, ReviewDecision, ScreeningStatus


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one `<input type=file multiple>`; cleaned to a list."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={
            # A hint for the file picker only: the server checks the content, not the name.
            "accept": ".png,.jpg,.jpeg,.dcm,.dicom,image/png,image/jpeg,application/dicom",
        }))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        # No per-file checks here (an empty file would fail the whole form): each file is
        # validated on its own by `scan_upload`, so one bad file does not stop the others.
        files = [f for f in (data if isinstance(data, (list, tuple)) else [data]) if f]
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


class ScanUploadForm(forms.Form):
    files = MultipleFileField(
        label="Chest X-ray files",
        help_text=(f"PNG, JPEG or DICOM, up to {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at once and "
                   f"{settings.SCAN_MAX_BYTES // (1024 * 1024)} MB each."),
        error_messages={"required": "Choose at least one file to upload."},
    )


class ReviewForm(forms.Form):
    """A reading of the AI result. `radiological_signs` must be answered explicitly (no
    default): it decides between infected and carrier later."""

    decision = forms.ChoiceField(choices=ReviewDecision.choices, widget=forms.RadioSelect)
    clinical_label = forms.ChoiceField(
        choices=[("", "Choose…"), *AiLabel.choices], label="Clinical label",
        help_text="Your reading of the film. It is recorded apart from the AI's label.",
    )
    radiological_signs = forms.TypedChoiceField(
        choices=[("yes", "Yes"), ("no", "No")], coerce=lambda value: value == "yes", widget=forms.RadioSelect,
        label="Radiological signs of COVID-19 pneumonia on this film?",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                             help_text="What you saw; required for confirming and for overriding.")


class ApplyStatusForm(forms.Form):
    effective_date = forms.DateField(initial=timezone.localdate, widget=forms.DateInput(attrs={"type": "date"}),
                                     label="Effective from")
    note = forms.CharField(required=False, max_length=1000, label="Note (optional)",
                           widget=forms.TextInput())


UNREVIEWED = "unreviewed"


class WorklistFilterForm(forms.Form):
    show = forms.ChoiceField(
        required=False, label="Show",
        choices=[("", "All screenings"), (UNREVIEWED, "Done, not reviewed yet"), *ScreeningStatus.choices],
    )
