"""The API's FilterSets copy their filters and form fields shallowly for each request
(`hospitals.api.filters.ApiFilterSet`): each FilterSet and form still works through objects of
its own, and a method filter calls its own FilterSet's method."""

import pytest
from django.http import QueryDict

import patients.api.filters
import screening.api.filters
from hospitals.api.filters import ApiFilterSet

FILTERSETS = [cls for module in (patients.api.filters, screening.api.filters) for cls in vars(module).values()
              if isinstance(cls, type) and issubclass(cls, ApiFilterSet) and cls is not ApiFilterSet]


def test_every_filterset_of_the_api_is_checked():
    assert {cls.__name__ for cls in FILTERSETS} >= {"PatientFilter", "ScreeningFilter", "AiResultFilter"}
    assert any(f.method for cls in FILTERSETS for f in cls.base_filters.values())


@pytest.mark.parametrize("filterset_class", FILTERSETS, ids=lambda c: c.__name__)
def test_each_filterset_filters_through_filters_and_fields_of_its_own(filterset_class):
    queryset = filterset_class._meta.model._base_manager.none()
    one, other = (filterset_class(QueryDict(), queryset=queryset) for _ in range(2))
    for name, prototype in filterset_class.base_filters.items():
        mine, theirs = one.filters[name], other.filters[name]
        assert mine is not theirs and prototype not in (mine, theirs), name
        assert (mine.parent, theirs.parent, getattr(prototype, "parent", None)) == (one, other, None), name
        if prototype.method:
            assert mine.filter.f is mine and mine.filter.method == getattr(one, prototype.method), name
    forms = one.form, other.form
    for name, prototype in type(forms[0]).base_fields.items():
        assert forms[0].fields[name] is not forms[1].fields[name] and prototype not in (
            forms[0].fields[name], forms[1].fields[name]), name
    assert one.is_valid() and other.is_valid()
