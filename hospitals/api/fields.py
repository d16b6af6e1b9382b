"""Serializer fields for hospital data, and the copy each request makes of the API's fields and
filters."""

from rest_framework import serializers


class HospitalPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A writable foreign key limited to the request's hospital: another hospital's id is
    refused exactly like an id that does not exist. Give `model=`; the queryset is built
    per request (inside the scope), never at import time."""

    def __init__(self, *, model, **kwargs):
        self.model = model
        kwargs.setdefault("queryset", model.objects.none())
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        hospital = getattr(request, "hospital", None)
        if hospital is None:
            return self.model.objects.none()
        return self.model.objects.filter(hospital=hospital)


def shallow_copy(prototype):
    """A new instance of the prototype's class that shares its attributes (neither __init__
    nor the copy protocol runs): a request's own copy of a field or filter that holds no
    state of a request."""
    clone = object.__new__(type(prototype))
    clone.__dict__.update(prototype.__dict__)
    return clone
