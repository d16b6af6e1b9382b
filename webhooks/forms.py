"""Portal forms for webhook endpoints. They only validate input; the writes (and the
URL and event checks) are in `webhooks.services`."""

from django import forms

from .models import WebhookEvent


class EndpointForm(forms.Form):
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https",
                         help_text="Where deliveries are POSTed. Use https in production.")
    description = forms.CharField(max_length=200, required=False)
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)
    is_active = forms.BooleanField(label="Active", required=False, initial=True,
                                   help_text="An inactive endpoint receives nothing.")
