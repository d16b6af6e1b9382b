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
