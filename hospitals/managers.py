"""The manager of every hospital-owned model: django-scopes' `ScopedManager(hospital=
"hospital")`, whose querysets carry `hospital = <the scope's hospital>`, with that filter
built once per model and hospital instead of for every queryset.

Each queryset of a scoped manager (`Patient.objects`, and every related manager such as
`patient.screenings`, which subclasses it) starts with `.filter(hospital=...)`; resolving
the lookup costs about 0.1 ms, more than the rest of making the queryset, and a patient's
history makes a dozen. Here the filtered query is made the first time and each queryset
gets a clone of it, as `.filter()` itself would clone it. Every other scope (none, disabled,
several hospitals) goes through django-scopes unchanged.

`ScopedPreparedSelect` is a `config.prepared.PreparedSelect` of such a manager's rows: the
scope's filter is compiled into its statement once, and each call binds the hospital of
the scope it runs in."""

from django.db import models
from django_scopes import ScopedManager, get_scope

from config.prepared import PreparedSelect

_ScopedManager = type(ScopedManager(hospital="hospital"))

# (model, database alias, hospital id) -> the query of `model.objects.filter(hospital=id)`,
# never run or changed itself: each queryset gets its own clone.
_FILTERED: dict[tuple, object] = {}


def scope_hospital_id(scope: dict) -> int | None:
    """The hospital of a scope of one hospital; None for every other scope."""
    hospital = scope.get("hospital") if scope.get("_enabled", True) else None
    return hospital.pk if isinstance(hospital, models.Model) else None


class HospitalScopedManager(_ScopedManager):
    def get_queryset(self):
        hospital_id = scope_hospital_id(getattr(self, "_override_scope", None) or get_scope())
        if hospital_id is None:
            return super().get_queryset()
        key = (self.model, self._db, hospital_id)
        query = _FILTERED.get(key)
        if query is None:
            queryset = super().get_queryset()
            _FILTERED[key] = queryset.query.chain()
            return queryset
        return self._queryset_class(model=self.model, query=query.chain(), using=self._db, hints=self._hints)


class ScopedPreparedSelect(PreparedSelect):
    """`build(*values)`: a queryset of a `HospitalScopedManager`, whose scope filter is the
    statement's first parameter (checked when it is compiled, like the values after it). In
    one hospital's scope the statement binds that hospital's id in each call; in any other
    scope (none, disabled, several hospitals) the queryset runs as django-scopes builds it
    (no scope: ScopeError)."""

    def __init__(self, build):
        super().__init__(lambda hospital_id, *values: build(*values))
        self.queryset = build

    def all(self, *values, using: str = "default") -> list:
        hospital_id = scope_hospital_id(get_scope())
        if hospital_id is None:
            return list(self.queryset(*values).using(using))
        return super().all(hospital_id, *values, using=using)
