"""A SELECT of fixed shape that the ORM compiles once per database connection.

Compiling a queryset into SQL (its joins, columns and converters) costs more CPU than
running it for a small lookup that every request makes: the bearer token with its client,
hospital and service account is one such lookup, five tables wide. `PreparedSelect` keeps
the compiled statement and the layout of its rows, and each run only binds new values and
builds the instances the way `QuerySet.__iter__` does (converters, `Model.from_db`,
`select_related` populators)."""

import datetime
import weakref

from django.db import connections
from django.db.models.query import ModelIterable, get_related_populators


class PreparedSelect:
    """`build(*values)` returns the queryset (model instances; no annotations, no
    prefetches) for those values. Each value must reach the SQL as one parameter, in the
    order given and of its own type (a datetime as the database's text of it), except a
    boolean that the database's SQL writes into the statement (SQLite: `WHERE is_active`),
    which must then be the same in every call: checked when the statement is compiled."""

    def __init__(self, build):
        self.build = build
        self._compiled = weakref.WeakKeyDictionary()  # connection (one per thread) -> _Compiled

    def first(self, *values, using: str = "default"):
        """The first row's instance, or None."""
        rows = self.all(*values, using=using)
        return rows[0] if rows else None

    def all(self, *values, using: str = "default") -> list:
        connection = connections[using]
        compiled = self._compiled.get(connection)
        if compiled is None:
            compiled = self._compiled[connection] = _Compiled(self.build, values, using, connection)
        return compiled.run(values)


class _Compiled:
    def __init__(self, build, values, using, connection):
        queryset = build(*values)
        if (queryset._iterable_class is not ModelIterable or queryset._prefetch_related_lookups
                or queryset.query.annotation_select or queryset._known_related_objects):
            raise ValueError("a prepared select loads plain instances: no values, annotations or prefetches")
        compiler = queryset.query.get_compiler(using=using, connection=connection)
        self.sql, params = compiler.as_sql()
        if compiler.has_extra_select:
            raise ValueError("a prepared select selects its instances' columns only (it orders by what it selects)")
        self.binding, self.inlined = _binding(connection, values, params)
        self.compiler, self.using = compiler, using
        self.converters = compiler.get_converters([s[0] for s in compiler.select[:compiler.col_count]])
        klass_info = compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [s[0].target.attname for s in compiler.select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, compiler.select, using)

    def run(self, values) -> list:
        if any(values[i] is not value for i, value in self.inlined):
            raise ValueError(f"values {self.inlined!r} (index, value) are written into the statement: pass the same")
        params = [adapt(values[i]) if adapt else values[i] for i, adapt in self.binding]
        with self.compiler.connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        if self.converters:
            rows = self.compiler.apply_converters(rows, self.converters)
        out = []
        for row in rows:
            obj = self.model.from_db(self.using, self.init_list, row[self.start:self.end])
            for populator in self.populators:
                populator.populate(row, obj)
            out.append(obj)
        return out


def _binding(connection, values, params) -> tuple[list, list]:
    """Where each parameter comes from: (index of its value, its adaptation or None), and
    the booleans the statement holds as SQL instead of a parameter: (index, value)."""
    binding, inlined, params = [], [], list(params)
    for i, value in enumerate(values):
        if len(binding) < len(params):
            param = params[len(binding)]
            if type(value) is type(param) and value == param:  # True is no 1
                binding.append((i, None))
                continue
            if isinstance(value, datetime.datetime) and connection.ops.adapt_datetimefield_value(value) == param:
                binding.append((i, connection.ops.adapt_datetimefield_value))
                continue
        if type(value) is not bool:
            break
        inlined.append((i, value))
    if len(binding) != len(params) or len(binding) + len(inlined) != len(values):
        raise ValueError(f"the values must be the statement's parameters, in order: {tuple(params)!r}")
    return binding, inlined
