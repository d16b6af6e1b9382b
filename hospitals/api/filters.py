"""Filter types shared by the API's FilterSets."""

import django_filters as filters
from django import forms

MAX_ID = 2**63 - 1


class IdFilter(filters.NumberFilter):
    """An object id: a positive integer within the database's range (a larger number is a
    400, never an overflow in the database driver)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class ApiFilterSet(filters.FilterSet):
    """The base of the API's FilterSets. Their filters take no per-request arguments (fixed
    choices, no querysets), so the form class that validates the query is built once per
    FilterSet class rather than on every request; each request still gets its own form."""

    def get_form_class(self):
        form_class = type(self).__dict__.get("_form_class")
        if form_class is None:
            form_class = super().get_form_class()
            type(self)._form_class = form_class
        return form_class
