"""FHIR search parameters over Django querysets, and searchset Bundles with keyset paging.

Search is strict: a parameter, modifier or prefix the facade does not support is a 400
OperationOutcome rather than being ignored, so a mistyped `patient=` can never widen an
answer to every patient. Repeating a parameter ANDs the values (`date=ge..&date=lt..`);
commas inside one value OR them (`patient=1,2`).

Dates follow FHIR's range semantics: a value covers the whole period its precision
names (`2024-05` is all of May, UTC unless an offset is given) and the prefixes eq, ne,
gt, lt, ge, le compare the stored instant with that period."""

import datetime
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet

from .errors import SearchError

# Parameters every search takes besides its own (`_cursor` is the opaque paging key of
# the `next` links the facade writes).
COMMON_PARAMS = {"_count", "_cursor", "_format", "_total"}
TOTAL_MODES = ("none", "estimate", "accurate")

_DATE = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le)?(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,6})?)?"
    r"(?P<tz>Z|[+\- ]\d{2}:\d{2})?)?)?)?$"
)
_INT_ID = re.compile(r"^[1-9][0-9]{0,17}$")


def parse_date(value: str) -> tuple[str, datetime.datetime, datetime.datetime]:
    """`[prefix]date` -> (prefix, start, end) of the period the value names, end exclusive."""
    match = _DATE.match(value.strip())
    if not match:
        raise SearchError(f"Invalid date {value!r}: use "
                          "[eq|ne|gt|lt|ge|le]YYYY[-MM[-DD[Thh:mm[:ss[.ffffff]][Z|+hh:mm]]]].")
    g = match.groupdict()
    tz = datetime.timezone.utc
    if g["tz"] and g["tz"] != "Z":
        # A '+' that was not percent-encoded arrives as a space.
        sign = -1 if g["tz"][0] == "-" else 1
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        tz = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
    try:
        year = int(g["year"])
        if g["month"] is None:
            start = datetime.datetime(year, 1, 1, tzinfo=tz)
            end = start.replace(year=year + 1)
        elif g["day"] is None:
            start = datetime.datetime(year, int(g["month"]), 1, tzinfo=tz)
            end = start.replace(year=year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        elif g["hour"] is None:
            start = datetime.datetime(year, int(g["month"]), int(g["day"]), tzinfo=tz)
            end = start + datetime.timedelta(days=1)
        else:
            start = datetime.datetime(year, int(g["month"]), int(g["day"]), int(g["hour"]), int(g["minute"]),
                                      int(g["second"] or 0), tzinfo=tz)
            if g["fraction"]:
                start = start.replace(microsecond=int(g["fraction"][1:].ljust(6, "0")))
                end = start + datetime.timedelta(microseconds=1)
            elif g["second"] is not None:
                end = start + datetime.timedelta(seconds=1)
            else:
                end = start + datetime.timedelta(minutes=1)
    except (ValueError, OverflowError):
        raise SearchError(f"Invalid date {value!r}.") from None
    return g["prefix"] or "eq", start, end


def date_q(field: str, value: str) -> Q:
    prefix, start, end = parse_date(value)
    return {
        "eq": Q(**{f"{field}__gte": start, f"{field}__lt": end}),
        "ne": Q(**{f"{field}__lt": start}) | Q(**{f"{field}__gte": end}),
        "gt": Q(**{f"{field}__gte": end}),
        "ge": Q(**{f"{field}__gte": start}),
        "lt": Q(**{f"{field}__lt": start}),
        "le": Q(**{f"{field}__lt": end}),
    }[prefix]


def reference_ids(value: str, resource_type: str) -> list[int]:
    """`12`, `Patient/12` or an absolute URL ending in `Patient/12` -> [12]. An id that
    cannot be one of ours matches nothing; a reference to another type is a 400."""
    ids = []
    for part in value.split(","):
        part = part.strip()
        if "/" in part:
            kind, _, pk = part.rstrip("/").rpartition("/")
            if kind.rpartition("/")[2] != resource_type:
                raise SearchError(f"Expected a {resource_type} reference, got {part!r}.")
            part = pk
        if _INT_ID.match(part):
            ids.append(int(part))
    return ids


def int_ids(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if _INT_ID.match(part.strip())]


def token_values(value: str, system: str | None) -> list[str]:
    """`value`, `system|value`, `system|` (any value), `|value` (no system) against an
    identifier of one system -> the values to match (`"*"` for any); an other system
    matches nothing."""
    values = []
    for part in value.split(","):
        if "|" in part:
            sys_, _, val = part.partition("|")
            if sys_ != system:
                continue
            values.append(val or "*")
        elif part:
            values.append(part)
    return values


# --- parameters -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One search parameter: its FHIR type and documentation (for the CapabilityStatement)
    and `apply(queryset, value, view) -> queryset` for one occurrence."""

    type: str
    documentation: str
    apply: Callable


def date_param(field: str, documentation: str) -> Param:
    return Param("date", documentation, lambda qs, value, view: qs.filter(date_q(field, value)))


def reference_param(field: str, resource_type: str, documentation: str) -> Param:
    return Param("reference", documentation,
                 lambda qs, value, view: qs.filter(**{f"{field}__in": reference_ids(value, resource_type)}))


def id_param(field: str = "pk") -> Param:
    return Param("token", "Logical id (comma-separated for several)",
                 lambda qs, value, view: qs.filter(**{f"{field}__in": int_ids(value)}))


def last_updated_param(field: str) -> Param:
    return date_param(field, "When the resource last changed (meta.lastUpdated); prefixes eq, ne, gt, lt, ge, le")


def apply_search(queryset: QuerySet, params, search_params: dict[str, Param], view) -> QuerySet:
    """Apply every query parameter of the request (a QueryDict), refusing unknown ones."""
    for name in params:
        if name in COMMON_PARAMS:
            continue
        base, _, modifier = name.partition(":")
        if base not in search_params:
            supported = ", ".join(sorted(search_params)) or "none"
            raise SearchError(f"Unknown search parameter {name!r}; supported: {supported}, _count, _total.")
        if modifier:
            raise SearchError(f"Search modifier {':' + modifier!r} is not supported.")
        for value in params.getlist(name):
            if not value.strip():
                raise SearchError(f"Search parameter {name!r} has an empty value.")
            queryset = search_params[base].apply(queryset, value, view)
    return queryset


# --- paging -----------------------------------------------------------------------------------------

def page_size(params) -> int:
    """`_count`: default API_PAGE_SIZE, capped at API_MAX_PAGE_SIZE; 0 asks for the total only."""
    raw = params.get("_count")
    if raw is None:
        return settings.API_PAGE_SIZE
    if not raw.isdigit():
        raise SearchError(f"_count must be a whole number, got {raw!r}.")
    return min(int(raw), settings.API_MAX_PAGE_SIZE)


def wants_total(params) -> bool:
    """`_total`: `none` leaves Bundle.total out, `estimate` and `accurate` count every match
    (exactly). Without it, the first page is counted and the pages of its `next` links are
    not: counting the matches of a broad search costs more than reading a page (a year of a
    large hospital's DiagnosticReports: 170 ms against 20), and a sync reads hundreds of pages."""
    mode = params.get("_total")
    if mode is None:
        return params.get("_cursor") is None
    if mode not in TOTAL_MODES:
        raise SearchError(f"_total is one of {', '.join(TOTAL_MODES)}; got {mode!r}.")
    return mode != "none"


def paginate(request, queryset, *, key: str, cursor_pattern: re.Pattern = _INT_ID):
    """Keyset paging on `key` (ascending; stable while rows are added): returns
    (page of rows, total matches or None (see `wants_total`), URL of the next page or None)."""
    params = request.query_params
    count = page_size(params)
    total = queryset.count() if wants_total(params) else None
    cursor = params.get("_cursor")
    if cursor is not None:
        if not cursor_pattern.match(cursor):
            raise SearchError("Invalid _cursor; follow the Bundle's next link.")
        queryset = queryset.filter(**{f"{key}__gt": cursor})
    rows = list(queryset.order_by(key)[:count + 1]) if count else []
    next_url = None
    if len(rows) > count:
        rows = rows[:count]
        last = rows[-1][key] if isinstance(rows[-1], dict) else getattr(rows[-1], key)
        query = [(k, v) for k in params for v in params.getlist(k) if k not in ("_cursor", "_count")]
        query += [("_count", str(count)), ("_cursor", str(last))]
        next_url = request.build_absolute_uri(f"{request.path}?{urlencode(query)}")
    return rows, total, next_url


def bundle(request, *, total: int | None, entries: list[tuple[str, dict]], next_url: str | None) -> dict:
    """A searchset Bundle: `entries` are (fullUrl, resource)."""
    links = [{"relation": "self", "url": request.build_absolute_uri()}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    out = {"resourceType": "Bundle", "type": "searchset", **({"total": total} if total is not None else {}),
           "link": links}
    if entries:
        out["entry"] = [{"fullUrl": url, "resource": resource, "search": {"mode": "match"}}
                        for url, resource in entries]
    return out
