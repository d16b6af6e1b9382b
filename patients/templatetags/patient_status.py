"""A patient's status as the portal shows it: `{% status_badge status %}`, a badge with its
label, and `{% status_transition from_status to_status %}`, a recorded change.

Tags, not an included template: the patient list, the dashboard's recent changes and a
patient's timeline print one or two a row, and an include costs the engine a template lookup
and a context of its own each time (30 us a badge against 2)."""

from django import template
from django.utils.html import format_html
from django.utils.translation import gettext

from patients.models import Status

register = template.Library()


def _badge(status, label):
    return format_html('<span class="badge status-{}">{}</span>', status, label)


_BADGES = {value: _badge(value, label) for value, label in Status.choices}


@register.simple_tag
def status_badge(status):
    """The badge of a status (its value or a `Status`); a value that is no status shows as it is."""
    badge = _BADGES.get(status)
    return badge if badge is not None else _badge(status, status)


@register.simple_tag
def status_transition(from_status, to_status):
    """Both statuses of a change with an arrow between them (screen readers read "to"
    instead), or the new status alone for the first one."""
    if not from_status:
        return status_badge(to_status)
    return format_html('{} <span aria-hidden="true">→</span><span class="visually-hidden">{}</span> {}',
                       status_badge(from_status), gettext("to"), status_badge(to_status))
