"""Django's `date` filter with a fast path for the ISO formats the portal prints.

A template builtin (settings TEMPLATES OPTIONS "builtins"), so it replaces the `date` filter
in every template. `{{ value|date:"Y-m-d H:i" }}` gives exactly what Django's filter gives:
the engine converts an aware datetime to the current time zone before the call
(`expects_localtime`), and every other value or format goes to Django's filter. Django's
filter looks the format up in the active language's settings and parses it on each call:
a datetime printed by a template takes 31 us with it and 10 with this one (a date 19 and 4);
a worklist page prints one a row.
"""

import datetime

from django import template
from django.template.defaultfilters import date as django_date

register = template.Library()

_DATETIME = {"Y-m-d H:i": "{:04d}-{:02d}-{:02d} {:02d}:{:02d}",
             "Y-m-d H:i:s": "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}"}


@register.filter(expects_localtime=True, is_safe=False)
def date(value, arg=None):
    kind = type(value)
    if arg == "Y-m-d" and kind in (datetime.datetime, datetime.date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if kind is datetime.datetime and arg in _DATETIME:
        return _DATETIME[arg].format(value.year, value.month, value.day, value.hour, value.minute, value.second)
    return django_date(value, arg)
