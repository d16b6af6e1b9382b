"""Portal forms about members and the audit trail. They only validate input; the
writes go through `hospitals.services`."""

from django import forms

from .models import AuditAction, Role


class MemberInviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AuditFilterForm(forms.Form):
    """Filters of the audit trail page and its CSV export (the same fields for both)."""

    action = forms.ChoiceField(choices=[("", "Any action"), *AuditAction.choices], required=False)
    object_type = forms.CharField(max_length=100, required=False, label="Object type")
    actor = forms.CharField(max_length=254, required=False, label="Actor email")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data


def add_service_errors(form: forms.Form, exc) -> None:
    """Show a service's ValidationError on the form: field errors next to their fields,
    anything else (or a field the form does not have) at the top of the form."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


class ApiClientForm(forms.Form):
    """A new partner client: its name and the OAuth2 scopes it may ask for."""

    name = forms.CharField(max_length=100, help_text="The partner system, e.g. 'City lab LIS'.")
    scopes = forms.MultipleChoiceField(
        choices=[("read", "read: patients, lab tests, screenings, AI results, reviews"),
                 ("write", "write: register and edit patients, lab tests, status changes, reviews"),
                 ("screening:upload", "screening:upload: upload chest X-rays")],
        widget=forms.CheckboxSelectMultiple, initial=["read"],
    )
