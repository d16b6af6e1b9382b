"""The manager of every hospital-owned model: django-scopes' `ScopedManager(hospital=
"hospital")`, whose querysets carry `hospital = <the scope's hospital>`, with that filter
built once per model and hospital instead of for every queryset.

Each queryset of a scoped manager (`Patient.objects`, and every related manager such as
`patient.screenings`, which subclasses it) starts with `.filter(hospital=...)`; resolving
the lookup costs about 0.1 ms, more than the rest of making the queryset, and a patient's
history makes a dozen. Here the filtered query is made the first time and each queryset
gets a clone of it, as `.filter()` itself would clone it. Every other scope (none, disabled,
several hospitals) goes through django-scopes unchanged."""

from django.db import models
from django_scopes import ScopedManager, get_scope

_ScopedManager = type(ScopedManager(hospital="hospital"))

# (model, database alias, hospital id) -> the query of `model.objects.filter(hospital=id)`,
# never run or changed itself: each queryset gets its own clone.
_FILTERED: dict[tuple, object] = {}


class HospitalScopedManager(_ScopedManager):
    def get_queryset(self):
        scope = getattr(self, "_override_scope", None) or get_scope()
        hospital = scope.get("hospital") if scope.get("_enabled", True) else None
        hospital_id = hospital.pk if isinstance(hospital, models.Model) else None
        if hospital_id is None:
            return super().get_queryset()
        key = (self.model, self._db, hospital_id)
        query = _FILTERED.get(key)
        if query is None:
            queryset = super().get_queryset()
            _FILTERED[key] = queryset.query.chain()
            return queryset
        return self._queryset_class(model=self.model, query=query.chain(), using=self._db, hints=self._hints)
